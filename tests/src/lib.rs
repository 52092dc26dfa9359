//! Support code for the integration tests of flatmachines (not published).

pub mod fake_llm;

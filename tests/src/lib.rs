//! Integration tests of flatmachines (not published). The support code they share (agent
//! adapters, temporary directories, the scripted OpenAI-compatible server) is the
//! `flatmachines-testkit` crate in `tests/kit`.

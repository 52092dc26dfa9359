//! Integration tests of flatmachines live in `tests/`; this crate has no code of its own.

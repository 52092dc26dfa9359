//! Child machines: `machine:`, `foreach:` and `launch:` (`parallel-and-launch.md`).
//! Placeholder until peer machines land: such states fail with `NotImplementedError`.

use super::{Run, StateFailure};
use crate::error::Error;
use crate::machine::{MachineDef, StateDef};
use serde_json::Value;

/// Components a child run shares with its parent.
#[derive(Clone, Default)]
pub(crate) struct Shared {}

/// The children of one run.
pub(crate) struct Children {}

impl Children {
    pub(crate) fn new(_def: &MachineDef, _inherited: Option<Shared>) -> Children {
        Children {}
    }

    /// Waits for background children before the run returns.
    pub(crate) async fn finish(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

impl Run<'_> {
    /// `machine:` / `foreach:`: runs the children and returns the state's output.
    pub(crate) async fn run_children(&mut self, _state: &StateDef) -> Result<Value, StateFailure> {
        Err(StateFailure::new(
            "NotImplementedError",
            "child machines (`machine`, `foreach`) are not supported yet",
        ))
    }

    /// `launch:`: fire-and-forget.
    pub(crate) async fn launch(&mut self, _state: &StateDef) -> Result<(), StateFailure> {
        Err(StateFailure::new(
            "NotImplementedError",
            "`launch` is not supported yet",
        ))
    }
}

//! Checkpoints, locks and resume (`persistence.md`). Placeholder until persistence lands:
//! nothing is saved and resuming is refused.

use super::Run;
use crate::error::Error;
use crate::machine::MachineDef;
use serde_json::Value;

/// A checkpoint event (`persistence.md` §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    MachineStart,
    StateEnter,
    Execute,
    StateExit,
    MachineEnd,
}

/// Components a child run shares with its parent.
#[derive(Clone, Default)]
pub(crate) struct Shared {}

/// The persistence of one run.
pub(crate) struct Persist {}

/// Where a resumed run continues.
pub(crate) enum Resumed {
    /// Re-enter this state (its index).
    At(usize),
    /// The execution had ended; this is its output.
    Finished(Value),
}

impl Persist {
    pub(crate) fn new(
        _def: &MachineDef,
        _execution_id: &str,
        _inherited: Option<Shared>,
    ) -> Result<Persist, Error> {
        Ok(Persist {})
    }

    /// Takes the execution's lock for the whole run.
    pub(crate) async fn acquire(&mut self, _execution_id: &str, _machine: &str) -> Result<(), Error> {
        Ok(())
    }

    /// Releases the lock; never fails the run.
    pub(crate) async fn release(&mut self, _execution_id: &str) {}
}

impl Run<'_> {
    /// Saves a snapshot for `event` if the machine checkpoints it. `state` is the state index
    /// (none for `machine_start`/`machine_end`).
    pub(crate) async fn checkpoint(
        &mut self,
        _event: Event,
        _state: Option<usize>,
        _output: Option<&Value>,
    ) -> Result<(), Error> {
        Ok(())
    }
}

/// Restores `run` from the latest checkpoint of `execution_id`.
pub(crate) async fn resume(run: &mut Run<'_>, execution_id: &str) -> Result<Resumed, Error> {
    Err(Error::Unsupported {
        machine: run.def.name.clone(),
        state: String::new(),
        feature: format!("resuming `{execution_id}` (persistence)"),
    })
}

//! What generated `State` enums share.

use std::fmt;

/// A state name that is not a state of the machine (from `FromStr` or deserialization of a
/// generated `State`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownState {
    machine: &'static str,
    name: String,
}

impl UnknownState {
    /// The error for `name`, which is not a state of `machine`.
    pub fn new(machine: &'static str, name: &str) -> Self {
        UnknownState {
            machine,
            name: name.to_string(),
        }
    }

    /// The machine's name.
    pub fn machine(&self) -> &'static str {
        self.machine
    }

    /// The name that was not found.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for UnknownState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a state of machine `{}`",
            self.name, self.machine
        )
    }
}

impl std::error::Error for UnknownState {}

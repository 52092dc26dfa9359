//! The `(class, message)` pair of a Python exception.

use std::fmt;

/// An exception as the reference raises it: its class name (`ValueError`, `KeyError`, …), which
/// `on_error` maps match on and `context.last_error_type` shows, and its message
/// (`context.last_error`). Every failure inside a state — a template, a condition, an agent, a
/// child machine, a launch — becomes one before `on_error` decides what happens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exception {
    /// The class name.
    pub kind: String,
    /// The message.
    pub message: String,
}

impl Exception {
    /// An exception of class `kind`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Exception {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

/// `Class: message`, as Python prints an uncaught exception's last line.
impl fmt::Display for Exception {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Exception {}

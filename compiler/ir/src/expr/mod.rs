//! Condition expressions (`transitions[].condition`).
//!
//! Two engines exist, selected per machine by `expression_engine`:
//!
//! * [`simple`] (the default): the whitelisted subset of Python expression
//!   syntax that the reference walks. This module parses it into an AST that
//!   both the runtime interpreter and the code generator consume.
//! * `cel`: full CEL, checked by the compiler's `expr::cel` and evaluated by the
//!   runtime's `cel` feature; only its [`ParseError`] lives here.
//!
//! Both report syntax problems as a [`ParseError`], with byte offsets into the
//! condition text, so the caller can map them onto the YAML source.

use serde::Serialize;
use std::fmt;
use std::ops::Range;

pub mod simple;

/// The longest CEL condition, in bytes, that the compiler checks and the runtime compiles.
/// The `cel` parser recurses once per unary operator or chained selection, with large frames;
/// bounding the input bounds the stack it needs. No hand-written condition comes anywhere near
/// this.
pub const MAX_CEL_LEN: usize = 16 * 1024;

/// A condition that does not parse, or that uses syntax its engine rejects.
///
/// The reference only finds these when the transition is first evaluated, in
/// the middle of a run; reporting them at compile time is the point of this
/// module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParseError {
    /// What is wrong, naming the construct (e.g. "unary minus is not
    /// supported"). One line, no trailing period.
    pub message: String,
    /// Byte offsets, into the condition text, of the offending token (or of
    /// the whole text when the engine gives no position). Always lies on
    /// `char` boundaries, so `&src[span]` is safe.
    pub span: Range<usize>,
    /// How to fix it, when there is something better to say than the message.
    pub help: Option<String>,
}

impl ParseError {
    /// An error without help text.
    pub fn new(message: impl Into<String>, span: Range<usize>) -> Self {
        ParseError {
            message: message.into(),
            span,
            help: None,
        }
    }

    /// The same error with `help` attached.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// Prints the message only; the help line and span are left to the caller's
/// diagnostic renderer.
impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

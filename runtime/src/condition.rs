//! Transition conditions (`transitions[].condition`), compiled once per machine and
//! evaluated against the live context.
//!
//! ```
//! use flatmachines::unstable::condition::{Condition, Engine};
//! use serde_json::json;
//!
//! let cond = Condition::compile("context.score >= 8 and context.round < 4", Engine::Simple)?;
//! assert!(cond.evaluate(&json!({"score": 9, "round": 1}))?);
//!
//! let err = Condition::compile("context.score > 3", Engine::Simple)?
//!     .evaluate(&json!({"score": "9"}))
//!     .unwrap_err();
//! assert_eq!(err.kind(), "TypeError");
//! assert_eq!(err.message(), "'>' not supported between instances of 'str' and 'int'");
//! # Ok::<(), flatmachines::unstable::condition::ConditionError>(())
//! ```
//!
//! Two engines exist (spec `templates-and-expressions.md`, Part B):
//!
//! * [`Engine::Simple`], the default: a whitelisted subset of Python expression syntax,
//!   parsed by [`flatmachines_ir::expr::simple`] and evaluated here with Python's
//!   semantics (equality, ordering, arithmetic, truthiness, error types and messages).
//!   The building blocks ([`py_eq`], [`py_cmp`], [`py_arith`], [`py_truthy`], [`attr`],
//!   [`index`], …, one function per construct in [`ops`]) are public so that generated code
//!   gives identical results: the macros compile each condition to straight-line Rust calling
//!   them ([`NativeCondition`], evaluated as [`Condition::Native`]).
//! * [`Engine::Cel`] (feature `cel`): standard CEL over the JSON context, see
//!   `CelCondition`.
//!
//! The only variable is `context`. Whatever the engine, the result is converted to a
//! boolean with Python truthiness, and empty or whitespace-only text means "always true".
//!
//! Errors are [`ConditionError`]s carrying the Python exception class the reference raises
//! ([`ConditionError::kind`]) and its message.

use flatmachines_ir::expr::ParseError;
use flatmachines_ir::expr::simple::{self, Expr};
use serde_json::Value;
use std::fmt;

#[cfg(feature = "cel")]
mod cel;
mod native;
mod py;

#[cfg(feature = "cel")]
pub use cel::{CelCondition, MAX_CEL_DEPTH, MAX_CEL_ITERATIONS, cel_truthy};
pub use native::{LazyCondition, NativeCondition, NativeFn, ops};
pub use py::{
    MAX_SEQUENCE_LEN, PyValue, attr, eval, index, json_attr, literal, lookup_name, py_arith,
    py_cmp, py_eq, py_repr_str, py_truthy,
};

/// Which language a machine's conditions are written in (`expression_engine`); the IR's type.
pub use flatmachines_ir::Engine;

/// A condition ready to be evaluated: parse it once per machine with
/// [`Condition::compile`], evaluate it at every transition with [`Condition::evaluate`].
#[derive(Debug, Clone)]
pub enum Condition {
    /// Empty or whitespace-only text, or no condition at all: always true.
    Always,
    /// A simple-engine expression, interpreted.
    Simple(Expr),
    /// A simple-engine expression compiled to Rust by the code generator.
    Native(NativeCondition),
    /// A compiled CEL program.
    #[cfg(feature = "cel")]
    Cel(CelCondition),
    /// A condition that did not compile, kept for a machine run with errors allowed: every
    /// evaluation fails with the compile error, when the reference would raise it.
    Invalid(ConditionError),
}

impl Condition {
    /// Parses `src` for `engine`.
    ///
    /// Empty or whitespace-only text gives [`Condition::Always`] for both engines.
    ///
    /// # Errors
    /// A [`ConditionError`] of kind `ValueError` when the text does not parse or uses
    /// syntax the engine rejects (for the simple engine, [`ConditionError::parse_error`]
    /// has the details and span), or when `engine` is [`Engine::Cel`] and the `cel`
    /// feature is off. The reference only raises these when the transition is first
    /// evaluated; a caller that wants that timing can keep the error and return it from
    /// the first evaluation.
    pub fn compile(src: &str, engine: Engine) -> Result<Condition, ConditionError> {
        if src.trim().is_empty() {
            return Ok(Condition::Always);
        }
        match engine {
            Engine::Simple => match simple::parse(src) {
                Ok(Some(expr)) => Ok(Condition::Simple(expr)),
                Ok(None) => Ok(Condition::Always),
                Err(e) => Err(ConditionError::invalid_syntax(src, e)),
            },
            #[cfg(feature = "cel")]
            Engine::Cel => CelCondition::compile(src).map(Condition::Cel),
            #[cfg(not(feature = "cel"))]
            Engine::Cel => Err(ConditionError::new(
                ErrorKind::ValueError,
                format!(
                    "CEL expression error: {src} - the CEL engine is not available \
                     (build flatmachines with the `cel` feature)"
                ),
            )),
        }
    }

    /// Evaluates the condition with `context` as the only variable and converts the result
    /// with Python truthiness.
    ///
    /// Never clones the context: the simple engine reads it through references and only
    /// builds values for arithmetic results. The CEL engine converts it to CEL values on
    /// every call.
    ///
    /// # Errors
    /// What the reference raises: `KeyError` (unknown variable, missing subscript key),
    /// `TypeError` (mixed-type ordering or arithmetic, bad subscript), `IndexError`,
    /// `ZeroDivisionError`, `MemoryError` (oversized repetition), or `ValueError` for any
    /// CEL failure.
    pub fn evaluate(&self, context: &Value) -> Result<bool, ConditionError> {
        match self {
            Condition::Always => Ok(true),
            Condition::Simple(expr) => Ok(py_truthy(&eval(expr, context)?)),
            Condition::Native(native) => native.evaluate(context),
            #[cfg(feature = "cel")]
            Condition::Cel(program) => program.evaluate(context),
            Condition::Invalid(e) => Err(e.clone()),
        }
    }

    /// Whether this is [`Condition::Always`].
    pub fn is_always(&self) -> bool {
        matches!(self, Condition::Always)
    }
}

/// The Python exception class a condition error corresponds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Unknown variable, or a missing key in a subscript (`context['missing']`).
    KeyError,
    /// An operation on values of the wrong types (`'5' > 3`, `1 + 'a'`, `5[0]`).
    TypeError,
    /// A list or string index out of range.
    IndexError,
    /// An invalid or unsupported expression, and every CEL failure.
    ValueError,
    /// Division by zero.
    ZeroDivisionError,
    /// A repetition (`'ab' * n`, `[x] * n`) longer than [`MAX_SEQUENCE_LEN`].
    MemoryError,
}

impl ErrorKind {
    /// The Python class name, e.g. `"KeyError"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::KeyError => "KeyError",
            ErrorKind::TypeError => "TypeError",
            ErrorKind::IndexError => "IndexError",
            ErrorKind::ValueError => "ValueError",
            ErrorKind::ZeroDivisionError => "ZeroDivisionError",
            ErrorKind::MemoryError => "MemoryError",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A condition that failed to compile or to evaluate.
///
/// Displays as Python prints the last line of a traceback, `Kind: message`, e.g.
/// `TypeError: '<' not supported between instances of 'str' and 'int'` or
/// `KeyError: 'missing'`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ConditionError {
    kind: ErrorKind,
    message: String,
    parse_error: Option<ParseError>,
}

impl ConditionError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ConditionError {
            kind,
            message: message.into(),
            parse_error: None,
        }
    }

    /// A `TypeError`.
    pub fn type_error(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::TypeError, message)
    }

    /// A `KeyError` for a missing map key: the message is the key as Python's `repr`
    /// writes it, e.g. `'missing'`.
    pub fn missing_key(key: &str) -> Self {
        Self::new(ErrorKind::KeyError, py_repr_str(key))
    }

    /// The `KeyError` for a variable other than `context`: `Unknown variable: <name>`.
    pub fn unknown_variable(name: &str) -> Self {
        Self::new(ErrorKind::KeyError, format!("Unknown variable: {name}"))
    }

    /// The `ValueError` for simple-engine text that does not parse: the message is
    /// `Invalid expression syntax: <src> - <what is wrong>`, and the parser's error, with
    /// its span into `src`, is kept for [`ConditionError::parse_error`].
    pub fn invalid_syntax(src: &str, error: ParseError) -> Self {
        ConditionError {
            kind: ErrorKind::ValueError,
            message: format!("Invalid expression syntax: {src} - {}", error.message),
            parse_error: Some(error),
        }
    }

    /// The Python class name of the error: `"KeyError"`, `"TypeError"`, `"IndexError"`,
    /// `"ValueError"`, `"ZeroDivisionError"` or `"MemoryError"`.
    pub fn kind(&self) -> &'static str {
        self.kind.as_str()
    }

    /// The error class as an enum.
    pub fn error_kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, as Python's `str(exception)` gives it, except for the unknown-variable
    /// `KeyError`, whose message is `Unknown variable: <name>` without the quotes Python's
    /// `KeyError.__str__` adds. A missing-key `KeyError`'s message is the key's `repr`
    /// (`'missing'`), as in Python.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// For a simple-engine condition that failed to parse, the parser's error (message,
    /// byte span into the condition text, help).
    pub fn parse_error(&self) -> Option<&ParseError> {
        self.parse_error.as_ref()
    }
}

#[cfg(test)]
mod tests;

//! A diagnostic of the compiler's checks, flattened to data: what `flatmachines check --format
//! json` prints for it and what `flatmachines::Error::Invalid` carries. The compiler builds
//! these from its spanned diagnostics; the runtime needs only the data.

use serde::Serialize;

/// How serious a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The machine must not run: the compiler refuses it.
    Error,
    /// The machine runs, but probably not as its author meant.
    Warning,
}

impl Severity {
    /// `"error"` or `"warning"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One problem found in a machine, with its location as displayed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The stable code, e.g. `FM0102` (`docs/diagnostics.md`).
    pub code: String,
    /// Error or warning.
    pub severity: Severity,
    /// The one-line message.
    pub message: String,
    /// How to fix it, when there is something to say.
    pub help: Option<String>,
    /// The file, as displayed, when the diagnostic has a location.
    pub file: Option<String>,
    /// 1-based line.
    pub line: Option<u32>,
    /// 1-based column.
    pub column: Option<u32>,
}

impl Diagnostic {
    /// Whether it refuses the machine.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

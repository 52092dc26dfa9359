//! Template errors, named and worded like the reference's Python exceptions.

use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind};

use crate::py::repr::write_str_repr;

/// A template failed to compile or render.
///
/// `Display` is the message the reference would put in `context.last_error`
/// (`'dict object' has no attribute 'missing'`), and [`kind`](Self::kind) the Python
/// exception class for `context.last_error_type` (`UndefinedError`, `TypeError`,
/// `JSONDecodeError`, `TemplateSyntaxError`, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    kind: &'static str,
    message: String,
    line: Option<usize>,
}

impl TemplateError {
    /// Creates an error from a Python class name and message.
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        TemplateError {
            kind,
            message: message.into(),
            line: None,
        }
    }

    /// The Python exception class the reference raises for this failure, e.g.
    /// `"UndefinedError"`, `"TypeError"`, `"JSONDecodeError"`, `"TemplateSyntaxError"`,
    /// `"TemplateAssertionError"`, `"ZeroDivisionError"`, `"ValueError"`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The message (what `str(exception)` gives in the reference, as far as we can match it).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The 1-based line inside the template text, when known (syntax errors and most render
    /// errors).
    pub fn line(&self) -> Option<usize> {
        self.line
    }
}

/// The Python class and message of an error raised by our own filters and methods, carried
/// as the `source` of a minijinja error.
#[derive(Debug)]
pub(crate) struct PyErr {
    pub class: &'static str,
    pub message: String,
}

impl std::fmt::Display for PyErr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PyErr {}

/// Translates a minijinja error. `eval` evaluates a small expression (the parent of an
/// undefined lookup) in the failed render's variables, so the message can name the parent's
/// Python type as Jinja2 does.
pub(crate) fn translate(err: &Error, eval: &dyn Fn(&str) -> Option<Value>) -> TemplateError {
    let line = err.line();
    let with_line = |kind: &'static str, message: String| TemplateError {
        kind,
        message,
        line,
    };
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        if let Some(py) = s.downcast_ref::<PyErr>() {
            return with_line(py.class, py.message.clone());
        }
        source = s.source();
    }

    let detail = err.detail().unwrap_or_default();
    if let Some(expr) = undefined_expr(detail) {
        return with_line("UndefinedError", undefined_message(expr, eval));
    }
    let base = || {
        if detail.is_empty() {
            err.kind().to_string()
        } else {
            detail.to_owned()
        }
    };
    match err.kind() {
        ErrorKind::UndefinedError => with_line("UndefinedError", base()),
        ErrorKind::SyntaxError | ErrorKind::BadEscape | ErrorKind::InvalidDelimiter => {
            with_line("TemplateSyntaxError", base())
        }
        ErrorKind::UnknownFilter => with_line(
            "TemplateAssertionError",
            format!("No filter named {}.", quoted_name(detail, "filter")),
        ),
        ErrorKind::UnknownTest => with_line(
            "TemplateAssertionError",
            format!("No test named {}.", quoted_name(detail, "test")),
        ),
        ErrorKind::UnknownFunction => with_line(
            "UndefinedError",
            format!("{} is undefined", quoted_name(detail, "function")),
        ),
        ErrorKind::UnknownMethod => with_line("UndefinedError", unknown_method_message(detail)),
        ErrorKind::TemplateNotFound => with_line(
            "TypeError",
            "no loader for this environment specified".to_owned(),
        ),
        ErrorKind::CannotUnpack => with_line("ValueError", base()),
        // The reference has no limit (it would run on); name ours so the cause is clear.
        ErrorKind::OutOfFuel => with_line(
            "RuntimeError",
            format!(
                "template fuel limit of {} instructions exceeded (a loop runs too long)",
                super::env::FUEL_LIMIT
            ),
        ),
        ErrorKind::InvalidOperation => match zero_division_message(detail) {
            Some(message) => with_line("ZeroDivisionError", message.to_owned()),
            None => with_line("TypeError", base()),
        },
        _ => with_line("TypeError", base()),
    }
}

/// The expression minijinja names in "`x.y` is undefined", if the error is about one.
fn undefined_expr(detail: &str) -> Option<&str> {
    let end = detail.find("` is undefined")?;
    let start = detail[..end].rfind('`')? + 1;
    Some(&detail[start..end])
}

/// minijinja says "unable to calculate 1 // 0"; Python's message depends on the operator
/// and on whether a float is involved.
fn zero_division_message(detail: &str) -> Option<&'static str> {
    let rest = detail.strip_prefix("unable to calculate ")?;
    let mut parts = rest.split_whitespace();
    let (lhs, op, rhs) = (parts.next()?, parts.next()?, parts.next()?);
    if rhs.parse::<f64>().ok()? != 0.0 {
        return None;
    }
    let is_float = |t: &str| t.contains(['.', 'e', 'E']) || t.contains("inf") || t.contains("NaN");
    let float = is_float(lhs) || is_float(rhs);
    Some(match (op, float) {
        ("/", false) => "division by zero",
        ("/", true) => "float division by zero",
        ("//", false) => "integer division or modulo by zero",
        ("//", true) => "float floor division by zero",
        ("%", false) => "integer modulo by zero",
        ("%", true) => "float modulo",
        _ => "division by zero",
    })
}

/// Extracts a name minijinja mentions in its detail text, e.g. "filter foo is unknown" →
/// `'foo'`.
fn quoted_name(detail: &str, what: &str) -> String {
    let rest = detail.strip_prefix(what).unwrap_or(detail).trim_start();
    let name = rest.split_whitespace().next().unwrap_or(rest);
    let mut out = String::new();
    write_str_repr(&mut out, name.trim_matches(|c| c == '`' || c == '\''));
    out
}

/// "string has no method named foo" → `'str object' has no attribute 'foo'`.
fn unknown_method_message(detail: &str) -> String {
    let Some((kind, name)) = detail.split_once(" has no method named ") else {
        return detail.to_owned();
    };
    let ty = match kind {
        "map" => "dict object",
        "string" => "str object",
        "sequence" => "list object",
        "number" => "int object",
        "bool" => "bool object",
        "none" => "None",
        other => other,
    };
    attribute_message(ty, name)
}

fn attribute_message(ty: &str, name: &str) -> String {
    let mut out = String::new();
    write_str_repr(&mut out, ty);
    out.push_str(" has no attribute ");
    write_str_repr(&mut out, name);
    out
}

/// Jinja2's `Undefined` message for the expression `expr` that came out undefined:
/// `'x' is undefined` for a name, `'dict object' has no attribute 'k'` for `parent.k` or
/// `parent['k']`, `list object has no element 3` for `parent[3]`.
fn undefined_message(expr: &str, eval: &dyn Fn(&str) -> Option<Value>) -> String {
    let fallback = || {
        let mut out = String::new();
        write_str_repr(&mut out, expr);
        out.push_str(" is undefined");
        out
    };
    // (parent, key text as minijinja printed it, key is a string)
    let split = if let Some(inner) = expr.strip_suffix(']') {
        match inner.rfind('[') {
            Some(open) => {
                let key = &inner[open + 1..];
                let is_str = key.starts_with('\'') || key.starts_with('"');
                Some((&inner[..open], key.to_owned(), is_str))
            }
            None => None,
        }
    } else {
        expr.rsplit_once('.').map(|(parent, name)| {
            let mut key = String::new();
            write_str_repr(&mut key, name);
            (parent, key, true)
        })
    };
    let Some((parent, key, is_str)) = split else {
        return fallback();
    };
    if parent.contains("(...)") || key == "..." {
        return fallback();
    }
    let ty = match eval(parent) {
        Some(v) => match v.kind() {
            ValueKind::None => "None",
            ValueKind::Map => "dict object",
            ValueKind::Seq if v.is_tuple() => "tuple object",
            ValueKind::Seq => "list object",
            ValueKind::String => "str object",
            ValueKind::Number if v.is_integer() => "int object",
            ValueKind::Number => "float object",
            ValueKind::Bool => "bool object",
            _ => return fallback(),
        },
        None => return fallback(),
    };
    if is_str {
        let mut out = String::new();
        write_str_repr(&mut out, ty);
        out.push_str(" has no attribute ");
        out.push_str(&key);
        out
    } else {
        format!("{ty} has no element {key}")
    }
}

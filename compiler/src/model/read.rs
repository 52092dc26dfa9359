//! Reading typed fields out of YAML mappings, reporting every defect instead of stopping.

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::source::Spanned;
use crate::suggest;
use crate::yaml::{Node, Value};

/// The entries of a mapping whose keys were checked against a list of known fields.
pub(crate) struct Fields<'a> {
    entries: &'a [(Node, Node)],
}

impl<'a> Fields<'a> {
    /// Reads `node` as a mapping of the kind `what` (used in messages). Unknown keys become
    /// warnings with a suggestion; a non-mapping is an error and yields `None`.
    pub(crate) fn of(
        node: &'a Node,
        what: &str,
        known: &[&str],
        diags: &mut Diagnostics,
    ) -> Option<Self> {
        let Some(entries) = node.as_map() else {
            diags.push(
                Diagnostic::new(
                    Code::WrongType,
                    node.span,
                    format!("{what} must be a map, found {}", node.kind_name()),
                )
                .help(format!("write {what} as `key: value` lines")),
            );
            return None;
        };
        for (k, _) in entries {
            let name = k.key_str().unwrap_or_default();
            if !known.contains(&name.as_str()) {
                let help = suggest::help(&name, known.iter().copied())
                    .unwrap_or_else(|| format!("{what} takes: {}", known.join(", ")));
                diags.push(
                    Diagnostic::new(
                        Code::UnknownField,
                        k.span,
                        format!("unknown field `{name}` in {what}; it is ignored"),
                    )
                    .help(help),
                );
            }
        }
        Some(Fields { entries })
    }

    /// The value of `key`, with its key node. A null value counts as absent, as it does for the
    /// reference's `dict.get(...) or default` reads.
    pub(crate) fn entry(&self, key: &str) -> Option<(&'a Node, &'a Node)> {
        self.entries
            .iter()
            .find(|(k, _)| k.key_str().as_deref() == Some(key))
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k, v))
    }

    /// The value of `key`, if present and not null.
    pub(crate) fn node(&self, key: &str) -> Option<&'a Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The value of `key` as a string. Numbers and booleans are accepted and spelled as Python
    /// would; lists and maps are an error.
    pub(crate) fn string(
        &self,
        key: &str,
        what: &str,
        diags: &mut Diagnostics,
    ) -> Option<Spanned<String>> {
        let node = self.node(key)?;
        scalar_string(node, &format!("`{key}` of {what}"), diags)
    }

    /// The value of `key` as a number.
    pub(crate) fn number(
        &self,
        key: &str,
        what: &str,
        diags: &mut Diagnostics,
    ) -> Option<Spanned<f64>> {
        let node = self.node(key)?;
        number(node, &format!("`{key}` of {what}"), diags)
    }

    /// The value of `key` as an integer.
    pub(crate) fn integer(
        &self,
        key: &str,
        what: &str,
        diags: &mut Diagnostics,
    ) -> Option<Spanned<i64>> {
        let node = self.node(key)?;
        match node.value {
            Value::Int(i) => Some(Spanned::new(i, node.span)),
            _ => {
                diags.push(wrong_type(
                    node,
                    &format!("`{key}` of {what}"),
                    "an integer",
                ));
                None
            }
        }
    }

    /// The value of `key` as a boolean.
    pub(crate) fn boolean(
        &self,
        key: &str,
        what: &str,
        diags: &mut Diagnostics,
    ) -> Option<Spanned<bool>> {
        let node = self.node(key)?;
        match node.value {
            Value::Bool(b) => Some(Spanned::new(b, node.span)),
            _ => {
                diags.push(wrong_type(node, &format!("`{key}` of {what}"), "a boolean"));
                None
            }
        }
    }
}

/// A scalar as a string (numbers and booleans spelled the YAML way they were loaded).
pub(crate) fn scalar_string(
    node: &Node,
    what: &str,
    diags: &mut Diagnostics,
) -> Option<Spanned<String>> {
    match &node.value {
        Value::Str(s) => Some(Spanned::new(s.clone(), node.span)),
        Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
            Some(Spanned::new(node.key_str().unwrap_or_default(), node.span))
        }
        _ => {
            diags.push(wrong_type(node, what, "a string"));
            None
        }
    }
}

/// A number (integer or float).
pub(crate) fn number(node: &Node, what: &str, diags: &mut Diagnostics) -> Option<Spanned<f64>> {
    match node.as_f64() {
        Some(f) => Some(Spanned::new(f, node.span)),
        None => {
            diags.push(wrong_type(node, what, "a number"));
            None
        }
    }
}

/// A mapping key as a spanned string.
pub(crate) fn key(node: &Node) -> Spanned<String> {
    Spanned::new(node.key_str().unwrap_or_default(), node.span)
}

/// A `WrongType` diagnostic.
pub(crate) fn wrong_type(node: &Node, what: &str, expected: &str) -> Diagnostic {
    Diagnostic::new(
        Code::WrongType,
        node.span,
        format!("{what} must be {expected}, found {}", node.kind_name()),
    )
}

/// A list of strings, or a single string taken as a one-element list.
pub(crate) fn string_list(
    node: &Node,
    what: &str,
    diags: &mut Diagnostics,
) -> Vec<Spanned<String>> {
    match &node.value {
        Value::Seq(items) => items
            .iter()
            .filter_map(|i| scalar_string(i, what, diags))
            .collect(),
        _ => scalar_string(node, what, diags).into_iter().collect(),
    }
}

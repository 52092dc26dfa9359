//! Python's spelling of template values (`minijinja::Value`): `str()`, `repr()` and
//! `json.dumps()` of what a template computes. The spelling itself — string quoting, floats,
//! JSON escapes — and the same for JSON values live in [`crate::py`].

use std::fmt::Write as _;

use crate::py::repr::{write_float, write_json_str, write_str_repr};
use minijinja::value::{Value as MjValue, ValueKind};

/// Python `str()` of a template value (what `{{ v }}` prints without a finalizer, what
/// `| string` and `| join` produce).
pub(crate) fn mj_str(v: &MjValue) -> String {
    if v.kind() == ValueKind::Bytes {
        return mj_repr(v);
    }
    match v.as_str() {
        Some(s) => s.to_owned(),
        None if v.is_undefined() => String::new(),
        None => {
            let mut out = String::new();
            write_mj_repr(&mut out, v, 0);
            out
        }
    }
}

/// Python `repr()` of a template value.
pub(crate) fn mj_repr(v: &MjValue) -> String {
    let mut out = String::new();
    write_mj_repr(&mut out, v, 0);
    out
}

/// Appends Python `str()` of a template value.
pub(crate) fn write_mj_str(out: &mut String, v: &MjValue) {
    if v.kind() == ValueKind::Bytes {
        return write_mj_repr(out, v, 0);
    }
    match v.as_str() {
        Some(s) => out.push_str(s),
        None if v.is_undefined() => {}
        None => write_mj_repr(out, v, 0),
    }
}

/// Nesting limit for printing: deeper structures print `...` as Python does for recursive
/// containers, so a pathological value cannot overflow the stack.
const MAX_DEPTH: usize = 200;

/// Appends Python `repr()` of a template value.
pub(crate) fn write_mj_repr(out: &mut String, v: &MjValue, depth: usize) {
    if depth > MAX_DEPTH {
        out.push_str("...");
        return;
    }
    if let Some(range) = v.downcast_object_ref::<super::env::PyRange>() {
        out.push_str(&range.repr());
        return;
    }
    match v.kind() {
        ValueKind::Undefined => out.push_str("Undefined"),
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if v.is_true() { "True" } else { "False" }),
        ValueKind::Number => write_mj_number(out, v, false),
        ValueKind::String => write_str_repr(out, v.as_str().unwrap_or_default()),
        ValueKind::Bytes => {
            out.push_str("b'");
            for b in v.as_bytes().unwrap_or_default() {
                let _ = write!(out, "{}", b.escape_ascii());
            }
            out.push('\'');
        }
        ValueKind::Seq => {
            let tuple = v.is_tuple();
            out.push(if tuple { '(' } else { '[' });
            let mut n = 0;
            if let Ok(iter) = v.try_iter() {
                for item in iter {
                    if n > 0 {
                        out.push_str(", ");
                    }
                    write_mj_repr(out, &item, depth + 1);
                    n += 1;
                }
            }
            if tuple && n == 1 {
                out.push(',');
            }
            out.push(if tuple { ')' } else { ']' });
        }
        ValueKind::Map => {
            out.push('{');
            for (i, (k, item)) in map_items(v).into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_mj_repr(out, &k, depth + 1);
                out.push_str(": ");
                write_mj_repr(out, &item, depth + 1);
            }
            out.push('}');
        }
        // Iterables of unknown length (one-shot iterators) must not be consumed by printing.
        ValueKind::Iterable if v.len().is_some() => {
            let view = v
                .downcast_object_ref::<super::env::DictView>()
                .map(|d| d.kind);
            if let Some(kind) = view {
                out.push_str(kind);
                out.push('(');
            }
            out.push('[');
            if let Ok(iter) = v.try_iter() {
                for (i, item) in iter.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_mj_repr(out, &item, depth + 1);
                }
            }
            out.push(']');
            if view.is_some() {
                out.push(')');
            }
        }
        _ => {
            let _ = write!(out, "{v}");
        }
    }
}

/// The `(key, value)` pairs of a map value, in its iteration order.
pub(crate) fn map_items(v: &MjValue) -> Vec<(MjValue, MjValue)> {
    if let Some(dict) = v.downcast_object_ref::<super::value::PyDict>() {
        return dict.entries().to_vec();
    }
    match v.try_iter() {
        Ok(keys) => keys
            .map(|k| {
                let item = v.get_item(&k).unwrap_or_default();
                (k, item)
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn write_mj_number(out: &mut String, v: &MjValue, json: bool) {
    if v.is_integer() {
        let _ = write!(out, "{v}");
    } else {
        write_float(out, f64::try_from(v.clone()).unwrap_or(f64::NAN), json);
    }
}

/// Options of the JSON writer for template values.
#[derive(Clone, Copy, Default)]
pub(crate) struct JsonStyle {
    /// `sort_keys=True`.
    pub sort_keys: bool,
    /// Escape `<`, `>`, `&`, `'` (Jinja's `htmlsafe_json_dumps`).
    pub html_safe: bool,
    /// `indent=N`: newline-separated items, `,` item separator.
    pub indent: Option<usize>,
}

/// Python `json.dumps` of a template value. Fails like Python does on values JSON cannot
/// represent (undefined, functions, namespaces): `TypeError: Object of type X is not JSON
/// serializable`.
pub(crate) fn mj_dumps(v: &MjValue, style: JsonStyle) -> Result<String, String> {
    let mut out = String::new();
    write_mj_json(&mut out, v, style, 0)?;
    Ok(out)
}

fn newline_indent(out: &mut String, style: JsonStyle, level: usize) {
    if let Some(n) = style.indent {
        out.push('\n');
        for _ in 0..n * level {
            out.push(' ');
        }
    }
}

fn write_mj_json(
    out: &mut String,
    v: &MjValue,
    style: JsonStyle,
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("maximum recursion depth exceeded while encoding a JSON object".into());
    }
    let item_sep = if style.indent.is_some() { "," } else { ", " };
    match v.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => write_mj_number(out, v, true),
        ValueKind::String => write_json_str(out, v.as_str().unwrap_or_default(), style.html_safe),
        // Dict views and ranges are not lists: `json.dumps(d.items())` fails.
        ValueKind::Iterable if v.downcast_object_ref::<super::env::DictView>().is_some() => {
            return Err(format!(
                "Object of type {} is not JSON serializable",
                py_type_name(v)
            ));
        }
        ValueKind::Seq if v.downcast_object_ref::<super::env::PyRange>().is_some() => {
            return Err(format!(
                "Object of type {} is not JSON serializable",
                py_type_name(v)
            ));
        }
        ValueKind::Seq | ValueKind::Iterable if v.len().is_some() => {
            let items: Vec<MjValue> = v.try_iter().map(|i| i.collect()).unwrap_or_default();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline_indent(out, style, depth + 1);
                write_mj_json(out, item, style, depth + 1)?;
            }
            newline_indent(out, style, depth);
            out.push(']');
        }
        ValueKind::Map => {
            let mut items = Vec::new();
            for (k, item) in map_items(v) {
                items.push((json_key(&k)?, item));
            }
            if style.sort_keys {
                items.sort_by(|a, b| a.0.cmp(&b.0));
            }
            if items.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, (k, item)) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline_indent(out, style, depth + 1);
                write_json_str(out, k, style.html_safe);
                out.push_str(": ");
                write_mj_json(out, item, style, depth + 1)?;
            }
            newline_indent(out, style, depth);
            out.push('}');
        }
        _ => {
            return Err(format!(
                "Object of type {} is not JSON serializable",
                py_type_name(v)
            ));
        }
    }
    Ok(())
}

/// `json.dumps` turns `int`, `float`, `bool` and `None` keys into strings and rejects the rest.
fn json_key(k: &MjValue) -> Result<String, String> {
    Ok(match k.kind() {
        ValueKind::String => k.as_str().unwrap_or_default().to_owned(),
        ValueKind::None => "null".into(),
        ValueKind::Bool => if k.is_true() { "true" } else { "false" }.into(),
        ValueKind::Number => {
            let mut s = String::new();
            write_mj_number(&mut s, k, true);
            s
        }
        _ => {
            return Err(format!(
                "keys must be str, int, float, bool or None, not {}",
                py_type_name(k)
            ));
        }
    })
}

/// The Python class name of the value the reference would hold (`dict`, `str`, `NoneType`…).
pub(crate) fn py_type_name(v: &MjValue) -> &'static str {
    match v.kind() {
        ValueKind::Undefined => "Undefined",
        ValueKind::None => "NoneType",
        ValueKind::Bool => "bool",
        ValueKind::Number if v.is_integer() => "int",
        ValueKind::Number => "float",
        ValueKind::String => "str",
        ValueKind::Bytes => "bytes",
        ValueKind::Seq if v.is_tuple() => "tuple",
        ValueKind::Seq if v.downcast_object_ref::<super::env::PyRange>().is_some() => "range",
        ValueKind::Seq => "list",
        ValueKind::Map => "dict",
        ValueKind::Iterable => match v.downcast_object_ref::<super::env::DictView>() {
            Some(view) => view.kind,
            None => "generator",
        },
        _ => "object",
    }
}

/// Python `pprint.pformat(v)` (Jinja2's `pprint` filter): `repr()` with dict keys sorted, and
/// containers whose repr does not fit in 80 columns split one item per line.
pub(crate) fn pformat(v: &MjValue) -> String {
    let mut out = String::new();
    pformat_into(&mut out, v, 0, 0, 0);
    out
}

/// Dict items sorted by key as `pprint` sorts them (keys of one type in their order, mixed
/// types by type name first).
fn sorted_items(v: &MjValue) -> Vec<(MjValue, MjValue)> {
    let mut items = map_items(v);
    items.sort_by(|(a, _), (b, _)| py_type_name(a).cmp(py_type_name(b)).then_with(|| a.cmp(b)));
    items
}

/// `pprint`'s one-line repr: `repr()` with sorted dicts at every level.
fn safe_repr(out: &mut String, v: &MjValue, depth: usize) {
    if depth > MAX_DEPTH {
        out.push_str("...");
        return;
    }
    match v.kind() {
        ValueKind::Map => {
            out.push('{');
            for (i, (k, item)) in sorted_items(v).into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                safe_repr(out, &k, depth + 1);
                out.push_str(": ");
                safe_repr(out, &item, depth + 1);
            }
            out.push('}');
        }
        ValueKind::Seq => {
            let tuple = v.is_tuple();
            out.push(if tuple { '(' } else { '[' });
            let items: Vec<MjValue> = v.try_iter().map(|i| i.collect()).unwrap_or_default();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                safe_repr(out, item, depth + 1);
            }
            if tuple && items.len() == 1 {
                out.push(',');
            }
            out.push(if tuple { ')' } else { ']' });
        }
        _ => write_mj_repr(out, v, depth),
    }
}

/// `PrettyPrinter._format` with width 80.
fn pformat_into(out: &mut String, v: &MjValue, indent: usize, allowance: usize, depth: usize) {
    const WIDTH: usize = 80;
    let mut rep = String::new();
    safe_repr(&mut rep, v, depth);
    let max_width = WIDTH.saturating_sub(indent + allowance);
    if rep.chars().count() <= max_width || depth > MAX_DEPTH {
        out.push_str(&rep);
        return;
    }
    match v.kind() {
        ValueKind::Map => {
            let items = sorted_items(v);
            out.push('{');
            let indent = indent + 1;
            let last = items.len().saturating_sub(1);
            for (i, (k, item)) in items.iter().enumerate() {
                let mut key = String::new();
                safe_repr(&mut key, k, depth + 1);
                out.push_str(&key);
                out.push_str(": ");
                let allow = if i == last { allowance + 1 } else { 1 };
                pformat_into(
                    out,
                    item,
                    indent + key.chars().count() + 2,
                    allow,
                    depth + 1,
                );
                if i != last {
                    out.push_str(",\n");
                    out.push_str(&" ".repeat(indent));
                }
            }
            out.push('}');
        }
        ValueKind::Seq => {
            let tuple = v.is_tuple();
            let items: Vec<MjValue> = v.try_iter().map(|i| i.collect()).unwrap_or_default();
            let (open, close) = match (tuple, items.len()) {
                (true, 1) => ("(", ",)"),
                (true, _) => ("(", ")"),
                _ => ("[", "]"),
            };
            out.push_str(open);
            let indent = indent + 1;
            let allowance = allowance + close.len();
            let last = items.len().saturating_sub(1);
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(",\n");
                    out.push_str(&" ".repeat(indent));
                }
                let allow = if i == last { allowance } else { 1 };
                pformat_into(out, item, indent, allow, depth + 1);
            }
            out.push_str(close);
        }
        ValueKind::String => pformat_str(
            out,
            v.as_str().unwrap_or_default(),
            indent,
            allowance,
            depth + 1,
        ),
        _ => out.push_str(&rep),
    }
}

fn str_repr(s: &str) -> String {
    let mut out = String::new();
    write_str_repr(&mut out, s);
    out
}

/// `PrettyPrinter._pprint_str`: a string too long for the line is split after whitespace
/// into adjacent literals, one per line (in parentheses when it is the whole value).
fn pformat_str(out: &mut String, s: &str, mut indent: usize, mut allowance: usize, level: usize) {
    const WIDTH: usize = 80;
    let width_of = |t: &str| str_repr(t).chars().count();
    let mut chunks: Vec<String> = Vec::new();
    let lines = super::env::splitlines_keepends(s);
    if level == 1 {
        indent += 1;
        allowance += 1;
    }
    let max_width = WIDTH.saturating_sub(indent);
    let mut max_width1 = max_width;
    let mut last_rep = str_repr(s);
    for (i, line) in lines.iter().enumerate() {
        let rep = str_repr(line);
        last_rep.clone_from(&rep);
        if i == lines.len() - 1 {
            max_width1 = max_width1.saturating_sub(allowance);
        }
        if rep.chars().count() <= max_width1 {
            chunks.push(rep);
            continue;
        }
        // Alternating runs of non-space and space, as `re.findall(r'\S*\s*', line)`.
        let mut parts: Vec<&str> = Vec::new();
        let mut rest = *line;
        while !rest.is_empty() {
            let word = rest.find(super::env::is_py_space).unwrap_or(rest.len());
            let space = rest[word..]
                .find(|c: char| !super::env::is_py_space(c))
                .map_or(rest.len(), |e| word + e);
            parts.push(&rest[..space]);
            rest = &rest[space..];
        }
        let mut max_width2 = max_width;
        let mut current = String::new();
        for (j, part) in parts.iter().enumerate() {
            let candidate = format!("{current}{part}");
            if j == parts.len() - 1 && i == lines.len() - 1 {
                max_width2 = max_width2.saturating_sub(allowance);
            }
            if width_of(&candidate) > max_width2 {
                if !current.is_empty() {
                    chunks.push(str_repr(&current));
                }
                current = (*part).to_owned();
            } else {
                current = candidate;
            }
        }
        if !current.is_empty() {
            chunks.push(str_repr(&current));
        }
    }
    if chunks.len() <= 1 {
        out.push_str(&last_rep);
        return;
    }
    if level == 1 {
        out.push('(');
    }
    for (i, chunk) in chunks.iter().enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(chunk);
    }
    if level == 1 {
        out.push(')');
    }
}

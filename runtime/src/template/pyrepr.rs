//! Python's spelling of values: `str()`, `repr()` and `json.dumps()`.
//!
//! The reference prints everything through Python, so the exact text of `True`, `None`,
//! `1e-05`, `{'k': 'v'}` or `"h\u00e9llo"` is observable in rendered templates, prompts and
//! error messages. Two value models are covered: `serde_json::Value` (contexts, outputs) and
//! `minijinja::Value` (what a template computes).

use std::fmt::Write as _;

use flatmachines_ir::pyfmt::float_repr;
use minijinja::value::{Value as MjValue, ValueKind};
use serde_json::Value as Json;

/// Python `str()` of a JSON value, as the reference would print the decoded value: strings
/// as they are, `True`/`False`/`None`, Python float repr, and containers in repr form
/// (`{'k': [1, 'a', None]}`).
pub fn py_str(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        _ => py_repr(v),
    }
}

/// Python `repr()` of a JSON value: like [`py_str`] but strings are quoted the way Python
/// quotes them (`'it'`, `"it's"`).
pub fn py_repr(v: &Json) -> String {
    let mut out = String::new();
    write_json_repr(&mut out, v);
    out
}

/// Python `json.dumps(v)` with default arguments: `, ` and `: ` separators, key order kept,
/// every non-ASCII character escaped as `\uXXXX` (`ensure_ascii=True`), floats in Python repr
/// (`1e-05`, `3.0`).
pub fn dumps(v: &Json) -> String {
    let mut out = String::new();
    write_json_dumps(&mut out, v);
    out
}

fn write_json_repr(out: &mut String, v: &Json) {
    match v {
        Json::Null => out.push_str("None"),
        Json::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
        Json::Number(n) => write_json_number(out, n, false),
        Json::String(s) => write_str_repr(out, s),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_json_repr(out, item);
            }
            out.push(']');
        }
        Json::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_str_repr(out, k);
                out.push_str(": ");
                write_json_repr(out, item);
            }
            out.push('}');
        }
    }
}

fn write_json_dumps(out: &mut String, v: &Json) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => write_json_number(out, n, true),
        Json::String(s) => write_json_str(out, s, false),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_json_dumps(out, item);
            }
            out.push(']');
        }
        Json::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_json_str(out, k, false);
                out.push_str(": ");
                write_json_dumps(out, item);
            }
            out.push('}');
        }
    }
}

fn write_json_number(out: &mut String, n: &serde_json::Number, json: bool) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else {
        write_float(out, n.as_f64().unwrap_or(f64::NAN), json);
    }
}

/// Writes a float as Python does: `repr()` for text, and `json.dumps`'s `NaN` / `Infinity`
/// spellings inside JSON.
pub(crate) fn write_float(out: &mut String, f: f64, json: bool) {
    if json && !f.is_finite() {
        out.push_str(if f.is_nan() {
            "NaN"
        } else if f > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        });
    } else {
        out.push_str(&float_repr(f));
    }
}

/// Writes `s` quoted as Python's `repr(str)`: single quotes unless the text contains a single
/// quote and no double quote; backslash, the quote, `\n`, `\r`, `\t` escaped; other
/// non-printable characters as `\xNN`, `\uNNNN` or `\UNNNNNNNN`.
pub(crate) fn write_str_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !is_printable(c) => {
                let cp = c as u32;
                let _ = if cp <= 0xff {
                    write!(out, "\\x{cp:02x}")
                } else if cp <= 0xffff {
                    write!(out, "\\u{cp:04x}")
                } else {
                    write!(out, "\\U{cp:08x}")
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Python's `str.isprintable()` for one character, approximated without Unicode tables:
/// control characters, the separators other than the ASCII space, the common format
/// characters and the private-use areas are not printable. (Python also escapes unassigned
/// code points; we print them, which only matters for text no model will ever produce.)
fn is_printable(c: char) -> bool {
    let cp = c as u32;
    !(c.is_control()
        || matches!(cp, 0xa0 | 0xad | 0x1680 | 0x180e | 0x2000..=0x200f | 0x2028..=0x202f)
        || matches!(cp, 0x205f..=0x2064 | 0x2066..=0x206f | 0x3000 | 0xfeff | 0xfff9..=0xfffb)
        || matches!(cp, 0x061c | 0x06dd | 0x070f | 0x08e2 | 0x110bd | 0x110cd)
        || matches!(cp, 0x1d173..=0x1d17a | 0xe0001 | 0xe0020..=0xe007f)
        || matches!(cp, 0xe000..=0xf8ff | 0xf0000..=0xffffd | 0x100000..=0x10fffd))
}

/// Writes `s` as a JSON string literal the way `json.dumps` does with `ensure_ascii=True`:
/// `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, every other character outside printable ASCII
/// as `\uXXXX` (surrogate pairs above the BMP). With `html_safe`, also `<`, `>`, `&` and `'`
/// as `\u003c` etc. (Jinja's `tojson`).
pub(crate) fn write_json_str(out: &mut String, s: &str, html_safe: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\'' if html_safe => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            ' '..='~' => out.push(c),
            c => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Python `str()` of a template value (what `{{ v }}` prints without a finalizer, what
/// `| string` and `| join` produce).
pub(crate) fn mj_str(v: &MjValue) -> String {
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
        ValueKind::Seq => "list",
        ValueKind::Map => "dict",
        ValueKind::Iterable => "generator",
        _ => "object",
    }
}

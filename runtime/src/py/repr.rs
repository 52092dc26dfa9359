//! Python's `str()` and `repr()` of values, and the string and float spellings every printer
//! shares. The reference prints everything through Python, so the exact text of `True`, `None`,
//! `1e-05`, `{'k': 'v'}` or `"h\u00e9llo"` is observable in rendered templates, prompts and
//! error messages.

use flatmachines_ir::pyfmt::float_repr;
use serde_json::Value as Json;
use std::fmt::Write as _;

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

fn write_json_repr(out: &mut String, v: &Json) {
    match v {
        Json::Null => out.push_str("None"),
        Json::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
        Json::Number(n) => write_json_number(out, n),
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

fn write_json_number(out: &mut String, n: &serde_json::Number) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else {
        write_float(out, n.as_f64().unwrap_or(f64::NAN), false);
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

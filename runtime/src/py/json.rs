//! Python's `json.dumps` with default arguments, written straight into bytes: separators
//! `", "` and `": "`, keys in map order, `ensure_ascii` (non-ASCII as lowercase `\uXXXX`,
//! surrogate pairs above U+FFFF), floats in Python `repr` spelling and `NaN` / `Infinity`.
//! Snapshots (byte-identical to the reference's), `tojson`-free template output and the
//! executor all print JSON through here.

use serde_json::Value;

/// Appends `value` as Python's `json.dumps(value)` writes it: separators `", "` and `": "`,
/// keys in map order, non-ASCII escaped as lowercase `\uXXXX` (surrogate pairs above U+FFFF),
/// floats in Python `repr` spelling.
pub fn write_dumps(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                write_u64(out, u);
            } else if let Some(i) = n.as_i64() {
                write_i64(out, i);
            } else {
                write_float(out, n.as_f64().unwrap_or(f64::NAN));
            }
        }
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                write_dumps(out, v);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                write_str(out, k);
                out.extend_from_slice(b": ");
                write_dumps(out, v);
            }
            out.push(b'}');
        }
    }
}

/// `value` as Python's `json.dumps(value)` text (see [`write_dumps`]).
pub fn dumps(value: &Value) -> String {
    let mut out = Vec::with_capacity(128);
    write_dumps(&mut out, value);
    // Only ASCII is ever written.
    String::from_utf8(out).unwrap_or_default()
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn write_u_escape(out: &mut Vec<u8>, unit: u32) {
    out.extend_from_slice(&[
        b'\\',
        b'u',
        HEX[(unit >> 12 & 0xf) as usize],
        HEX[(unit >> 8 & 0xf) as usize],
        HEX[(unit >> 4 & 0xf) as usize],
        HEX[(unit & 0xf) as usize],
    ]);
}

/// Bytes a JSON string with `ensure_ascii` cannot hold as they are: controls, `"`, `\`, DEL and
/// everything above ASCII.
static NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = i < 0x20 || i == b'"' as usize || i == b'\\' as usize || i >= 0x7f;
        i += 1;
    }
    table
};

/// Whether none of the 8 bytes of `w` is in [`NEEDS_ESCAPE`] (bit tricks: a byte above 0x7f, a
/// byte below 0x20, or a byte equal to `"`, `\\` or DEL).
#[inline]
fn clean_word(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    (w & HIGH)
        | below_space
        | zero_byte(w ^ (ONES * u64::from(b'"')))
        | zero_byte(w ^ (ONES * u64::from(b'\\')))
        | zero_byte(w ^ (ONES * 0x7f))
        == 0
}

/// A JSON string with `ensure_ascii` escaping.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        // Eight plain bytes at a time: most strings (ids, names, times) need no escape at all.
        while let Some(chunk) = bytes.get(i..i + 8)
            && clean_word(u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])))
        {
            i += 8;
        }
        let Some(&b) = bytes.get(i) else { break };
        if !NEEDS_ESCAPE[b as usize] {
            i += 1;
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if b < 0x80 {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0c => out.extend_from_slice(b"\\f"),
                other => write_u_escape(out, u32::from(other)),
            }
            i += 1;
        } else {
            let c = s[i..].chars().next().unwrap_or('\u{fffd}');
            let cp = u32::from(c);
            if cp >= 0x10000 {
                let v = cp - 0x10000;
                write_u_escape(out, 0xd800 | (v >> 10));
                write_u_escape(out, 0xdc00 | (v & 0x3ff));
            } else {
                write_u_escape(out, cp);
            }
            i += c.len_utf8();
        }
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

pub(crate) fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut pos = buf.len();
    loop {
        pos -= 1;
        buf[pos] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[pos..]);
}

pub(crate) fn write_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    write_u64(out, n.unsigned_abs());
}

/// A float as Python's `json.dumps` writes it (`repr`, and `NaN`/`Infinity`/`-Infinity`).
pub(crate) fn write_float(out: &mut Vec<u8>, f: f64) {
    if f.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if f.is_infinite() {
        out.extend_from_slice(if f > 0.0 { b"Infinity" } else { b"-Infinity" });
    } else if f.fract() == 0.0 && f.abs() < 1e16 {
        // Integral values below 1e16 print as `<integer>.0` (the common case: costs of 0.0).
        if f.is_sign_negative() {
            out.push(b'-');
        }
        write_u64(out, f.abs() as u64);
        out.extend_from_slice(b".0");
    } else {
        out.extend_from_slice(flatmachines_ir::pyfmt::float_repr(f).as_bytes());
    }
}

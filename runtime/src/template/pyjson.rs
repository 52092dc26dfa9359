//! Python's `json.loads`, straight into template values (the machine environment's
//! `fromjson` filter).
//!
//! What it accepts beyond strict JSON (and `serde_json`): `NaN`, `Infinity` and `-Infinity`,
//! numbers beyond `f64` (`1e400` is `inf`), and integers of any size kept exact (Python ints
//! are unbounded; ours up to 128 bits, larger ones become floats). Objects keep the first
//! position and the last value of a repeated key, like a Python dict. Only what Python
//! accepts is accepted: on any error the caller reports `serde_json`'s diagnosis, worded as
//! Python's.

use minijinja::value::Value;

use super::value::PyDict;

/// Nesting deeper than this is refused (Python raises `RecursionError` near 1000 levels; the
/// limit keeps the parser's recursion far from the stack's end).
const MAX_DEPTH: usize = 128;

/// Parses `text` as Python's `json.loads` does; `None` if Python would raise.
pub(crate) fn loads(text: &str) -> Option<Value> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        pos: 0,
    };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    (p.pos == p.s.len()).then_some(v)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    /// JSON whitespace: space, tab, newline, carriage return.
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.s[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => self.string().map(Value::from),
            b'n' if self.eat("null") => Some(Value::from(())),
            b't' if self.eat("true") => Some(Value::from(true)),
            b'f' if self.eat("false") => Some(Value::from(false)),
            b'N' if self.eat("NaN") => Some(Value::from(f64::NAN)),
            b'I' if self.eat("Infinity") => Some(Value::from(f64::INFINITY)),
            b'-' if self.eat("-Infinity") => Some(Value::from(f64::NEG_INFINITY)),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn array(&mut self, depth: usize) -> Option<Value> {
        self.pos += 1;
        let mut items = Vec::new();
        self.ws();
        if self.peek()? == b']' {
            self.pos += 1;
            return Some(Value::from(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth + 1)?);
            self.ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Some(Value::from(items));
                }
                _ => return None,
            }
        }
    }

    fn object(&mut self, depth: usize) -> Option<Value> {
        self.pos += 1;
        let mut entries: Vec<(Value, Value)> = Vec::new();
        self.ws();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(Value::from_object(PyDict::new(entries)));
        }
        loop {
            self.ws();
            if self.peek()? != b'"' {
                return None;
            }
            let key = self.string()?;
            self.ws();
            if self.peek()? != b':' {
                return None;
            }
            self.pos += 1;
            self.ws();
            let value = self.value(depth + 1)?;
            // A repeated key keeps its first position and takes the last value.
            match entries.iter_mut().find(|(k, _)| k.as_str() == Some(&key)) {
                Some(entry) => entry.1 = value,
                None => entries.push((Value::from(key), value)),
            }
            self.ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(Value::from_object(PyDict::new(entries)));
                }
                _ => return None,
            }
        }
    }

    /// A string literal (at its opening quote).
    fn string(&mut self) -> Option<String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let start = self.pos;
            // Copy the run of plain characters at once.
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&self.text[start..self.pos]);
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Some(out);
                }
                b'\\' => {
                    self.pos += 1;
                    let c = match self.peek()? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            self.pos += 1;
                            let hi = self.hex4()?;
                            let c = if (0xd800..0xdc00).contains(&hi) && self.eat("\\u") {
                                let lo = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&lo) {
                                    // Python keeps lone surrogates; a Rust string cannot.
                                    return None;
                                }
                                char::from_u32(0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00))?
                            } else {
                                char::from_u32(hi)?
                            };
                            out.push(c);
                            continue;
                        }
                        _ => return None,
                    };
                    self.pos += 1;
                    out.push(c);
                }
                // Control characters are refused (Python's `strict=True`).
                _ => return None,
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.text.get(self.pos..self.pos + 4)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.pos += 4;
        u32::from_str_radix(digits, 16).ok()
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?`: an int without fraction and
    /// exponent, else a float (`inf` when too large).
    fn number(&mut self) -> Option<Value> {
        let start = self.pos;
        self.eat("-");
        let digits = |p: &mut Self| {
            let from = p.pos;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.pos += 1;
            }
            p.pos - from
        };
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => {
                digits(self);
            }
            _ => return None,
        }
        let mut float = false;
        // Python's number pattern ends where these parts do not fit; what follows must then
        // be a delimiter, which the caller checks.
        if self.peek() == Some(b'.') && matches!(self.s.get(self.pos + 1), Some(b'0'..=b'9')) {
            self.pos += 1;
            digits(self);
            float = true;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            let save = self.pos;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                self.pos = save;
            } else {
                float = true;
            }
        }
        let text = &self.text[start..self.pos];
        if !float {
            if let Ok(i) = text.parse::<i64>() {
                return Some(Value::from(i));
            }
            if let Ok(i) = text.parse::<i128>() {
                return Some(Value::from(i));
            }
            if let Ok(u) = text.parse::<u128>() {
                return Some(Value::from(u));
            }
        }
        // Rust's float parsing rounds correctly like Python's, and gives ±inf on overflow.
        text.parse::<f64>().ok().map(Value::from)
    }
}

#[cfg(test)]
mod tests {
    use super::loads;

    fn show(text: &str) -> Option<String> {
        loads(text).map(|v| super::super::pyrepr::mj_repr(&v))
    }

    #[test]
    fn accepts_what_python_accepts() {
        assert_eq!(show("1e400").as_deref(), Some("inf"));
        assert_eq!(
            show("[-1e400, NaN, Infinity]").as_deref(),
            Some("[-inf, nan, inf]")
        );
        assert_eq!(show("-0").as_deref(), Some("0"));
        assert_eq!(show("-0.0").as_deref(), Some("-0.0"));
        assert_eq!(
            show("123456789012345678901234567890").as_deref(),
            Some("123456789012345678901234567890")
        );
        assert_eq!(
            show(r#" {"b": 1, "a": [true, null], "b": 2} "#).as_deref(),
            Some("{'b': 2, 'a': [True, None]}")
        );
        assert_eq!(
            show(r#""\ud83d\ude00 \u00e9\/\t""#).as_deref(),
            Some(r"'😀 é/\t'")
        );
    }

    #[test]
    fn refuses_what_python_refuses() {
        for text in [
            "",
            "01",
            "[1,]",
            "nan",
            "1.",
            "-",
            "Infinityx",
            "tru",
            r#""\x""#,
            "[1 2]",
            r#"{"a" 1}"#,
            "\"a\nb\"",
            r#""\ud800""#,
            "{'a': 1}",
            "+1",
            ".5",
        ] {
            assert_eq!(show(text), None, "{text:?}");
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(show(&deep), None, "too deep");
    }
}

//! Decoding of JSON documents nested deeper than `serde_json` accepts (128 levels), without
//! recursion: snapshots of deep contexts, which both this runtime and the Python SDK write, must
//! resume. The structure is walked with an explicit stack; every scalar (string, number) is
//! handed to `serde_json` as its own small document, so escapes and numbers decode exactly as
//! in the fast path.

use serde_json::{Map, Value};

/// Why a document does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeepError {
    /// Arrays and objects nest deeper than the limit.
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// Not JSON; the message names the byte offset.
    Syntax(String),
}

/// How deeply `bytes` nest arrays and objects (strings skipped), scanning without recursion;
/// stops counting once past `limit` (returns `limit + 1`). Malformed text gives some depth:
/// the parse reports the syntax error.
pub(crate) fn nesting_depth(bytes: &[u8], limit: usize) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > max {
                        max = depth;
                        if max > limit {
                            return max;
                        }
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        i += 1;
    }
    max
}

/// An array or object being filled.
enum Frame {
    Array(Vec<Value>),
    /// The object so far and the key whose value comes next.
    Object(Map<String, Value>, Option<String>),
}

/// Parses one JSON document of at most `limit` nested arrays/objects into a [`Value`], with the
/// memory of an explicit stack instead of the call stack.
pub(crate) fn parse(bytes: &[u8], limit: usize) -> Result<Value, DeepError> {
    let mut p = Parser { bytes, pos: 0 };
    let mut stack: Vec<Frame> = Vec::new();
    // What was just completed and must be put into the enclosing frame.
    let mut done: Option<Value>;
    loop {
        // Expect a value (or the end of an empty container).
        p.skip_ws();
        let b = p.peek().ok_or_else(|| p.error("unexpected end of input"))?;
        done = match b {
            b'[' | b'{' => {
                if stack.len() >= limit {
                    return Err(DeepError::TooDeep { limit });
                }
                p.pos += 1;
                p.skip_ws();
                let close = if b == b'[' { b']' } else { b'}' };
                if p.peek() == Some(close) {
                    p.pos += 1;
                    Some(if b == b'[' {
                        Value::Array(Vec::new())
                    } else {
                        Value::Object(Map::new())
                    })
                } else if b == b'[' {
                    stack.push(Frame::Array(Vec::new()));
                    None
                } else {
                    let key = p.key()?;
                    stack.push(Frame::Object(Map::new(), Some(key)));
                    None
                }
            }
            _ => Some(p.scalar()?),
        };
        // Close every container the completed value ends.
        while let Some(value) = done.take() {
            let Some(frame) = stack.last_mut() else {
                p.skip_ws();
                if p.pos != p.bytes.len() {
                    return Err(p.error("trailing characters"));
                }
                return Ok(value);
            };
            match frame {
                Frame::Array(items) => items.push(value),
                Frame::Object(map, key) => {
                    // A repeated key keeps its last value, as `serde_json` and Python do.
                    map.insert(key.take().unwrap_or_default(), value);
                }
            }
            p.skip_ws();
            match (p.peek(), &mut *frame) {
                (Some(b','), Frame::Array(_)) => p.pos += 1,
                (Some(b','), Frame::Object(_, key)) => {
                    p.pos += 1;
                    p.skip_ws();
                    *key = Some(p.key()?);
                }
                (Some(b']'), Frame::Array(_)) | (Some(b'}'), Frame::Object(..)) => {
                    p.pos += 1;
                    done = Some(match stack.pop() {
                        Some(Frame::Array(items)) => Value::Array(items),
                        Some(Frame::Object(map, _)) => Value::Object(map),
                        None => return Err(p.error("unbalanced")),
                    });
                }
                _ => return Err(p.error("expected `,` or a closing bracket")),
            }
        }
    }
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn error(&self, what: &str) -> DeepError {
        DeepError::Syntax(format!("{what} at byte {}", self.pos))
    }

    /// An object key and the `:` after it.
    fn key(&mut self) -> Result<String, DeepError> {
        if self.peek() != Some(b'"') {
            return Err(self.error("expected a string key"));
        }
        let Value::String(key) = self.scalar()? else {
            return Err(self.error("expected a string key"));
        };
        self.skip_ws();
        if self.peek() != Some(b':') {
            return Err(self.error("expected `:`"));
        }
        self.pos += 1;
        Ok(key)
    }

    /// A string, number or literal, decoded by `serde_json` from its own bytes.
    fn scalar(&mut self) -> Result<Value, DeepError> {
        let start = self.pos;
        if self.peek() == Some(b'"') {
            self.pos += 1;
            loop {
                match self.peek() {
                    None => return Err(self.error("unterminated string")),
                    Some(b'\\') => self.pos += 2,
                    Some(b'"') => {
                        self.pos += 1;
                        break;
                    }
                    Some(_) => self.pos += 1,
                }
            }
        } else {
            while matches!(
                self.peek(),
                Some(b'-' | b'+' | b'.' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
            ) {
                self.pos += 1;
            }
        }
        let token = &self.bytes[start..self.pos.min(self.bytes.len())];
        if token.is_empty() {
            return Err(self.error("expected a value"));
        }
        serde_json::from_slice(token)
            .map_err(|e| DeepError::Syntax(format!("{e} in the value at byte {start}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> String {
        let mut s = String::from("{\"leaf\": \"é\\n\", \"n\": null}");
        for i in 1..depth {
            s = if i % 2 == 0 {
                format!("{{\"k{i}\": {s}, \"n\": {i}}}")
            } else {
                format!("[true, {s}, -0.5e3]")
            };
        }
        s
    }

    #[test]
    fn agrees_with_serde_json_where_it_can_parse() {
        for text in [
            r#"{"a": [1, 2.5, -3e-2, "x\"y", {"b": {}}, []], "c": null, "d": true, "a": 7}"#,
            r#"[]"#,
            r#"  "s\u00e9"  "#,
            r#"18446744073709551615"#,
            r#"{"k": [[[]], {}, [{"z": false}]]}"#,
            &nested(60),
        ] {
            let expected: Value = serde_json::from_str(text).unwrap();
            assert_eq!(parse(text.as_bytes(), 1000).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn deep_documents_and_the_limit() {
        let text = nested(5000);
        assert_eq!(nesting_depth(text.as_bytes(), 10_000), 5000);
        let v = parse(text.as_bytes(), 5000).unwrap();
        let mut depth = 0;
        let mut at = &v;
        loop {
            depth += 1;
            at = match at {
                Value::Array(a) => &a[1],
                Value::Object(m) if m.contains_key("leaf") => break,
                Value::Object(m) => m.values().next().unwrap(),
                _ => unreachable!(),
            };
        }
        assert_eq!(depth, 5000);
        assert_eq!(at, &json!({"leaf": "é\n", "n": null}));
        assert_eq!(
            parse(text.as_bytes(), 4999),
            Err(DeepError::TooDeep { limit: 4999 })
        );
        assert_eq!(nesting_depth(text.as_bytes(), 100), 101);
        assert_eq!(nesting_depth(br#"{"a": "[[[[", "b": "\"{{"}"#, 100), 1);
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "",
            "[",
            "[1,",
            "[1 2]",
            "{\"a\" 1}",
            "{\"a\": 1,}",
            "[1]]",
            "{1: 2}",
            "\"abc",
            "[tru]",
            "{\"a\": }",
        ] {
            assert!(
                matches!(parse(bad.as_bytes(), 100), Err(DeepError::Syntax(_))),
                "{bad:?}"
            );
        }
    }
}

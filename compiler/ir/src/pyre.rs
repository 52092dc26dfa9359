//! Python `re` patterns as `mdap_voting` compiles them (`re.compile(pattern, re.DOTALL)`),
//! run with `fancy-regex` (look-around, back-references, atomic groups, possessive
//! quantifiers). The compiler checks patterns with [`compile`] and the runtime matches with
//! what it returns, so a pattern the compiler accepts never fails at run time.
//!
//! Where the two syntaxes read the same text differently, the pattern is rewritten first:
//!
//! * `$` (outside a class, without a multi-line flag): Python's matches at the end or before a
//!   final newline, which is `fancy-regex`'s `\Z`;
//! * `\Z`: Python's is the very end, `fancy-regex`'s `\z`;
//! * `[`, `&` and `~` inside a class are literals in Python but start a nested class or a set
//!   operation in Rust, so they are escaped.

use fancy_regex::Regex;

/// A pattern that does not compile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternError {
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for PatternError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PatternError {}

/// Compiles a Python `re` pattern with `re.DOTALL`, as `mdap_voting` does.
pub fn compile(pattern: &str) -> Result<Regex, PatternError> {
    // `(?s)`: DOTALL. The size limit keeps a hostile pattern from taking the memory.
    fancy_regex::RegexBuilder::new(&format!("(?s){}", translate(pattern)))
        .delegate_size_limit(1 << 22)
        .build()
        .map_err(|e| PatternError {
            message: e.to_string(),
        })
}

/// Whether the pattern turns on multi-line mode with an inline flag (`(?m)`, `(?im:…)`), in
/// which `$` means the same in both syntaxes.
fn has_multiline_flag(pattern: &str) -> bool {
    let b = pattern.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'(' if b[i + 1] == b'?' => {
                let flags = b[i + 2..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphabetic() || **c == b'-')
                    .take_while(|c| **c != b'-');
                if flags.into_iter().any(|c| *c == b'm') {
                    return true;
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
    false
}

/// Rewrites the places where Python and `fancy-regex` read the same text differently (see the
/// module documentation).
fn translate(pattern: &str) -> String {
    let multiline = has_multiline_flag(pattern);
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars().peekable();
    // Inside `[...]`: Python classes do not nest and have no set operations.
    let mut in_class = false;
    // Just after `[` or `[^`, where `]` is a literal.
    let mut class_start = false;
    while let Some(c) = chars.next() {
        let at_start = std::mem::take(&mut class_start);
        match c {
            '\\' => match chars.next() {
                Some('Z') if !in_class => out.push_str("\\z"),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            },
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    chars.next();
                    out.push('^');
                }
                class_start = true;
            }
            ']' if in_class && !at_start => {
                in_class = false;
                out.push(']');
            }
            ']' if in_class => out.push_str("\\]"),
            '[' | '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
            }
            '$' if !in_class && !multiline => out.push_str("\\Z"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::compile;

    fn group1(pattern: &str, text: &str) -> Option<String> {
        let re = compile(pattern).unwrap();
        let caps = re.captures(text).unwrap()?;
        caps.get(1).map(|m| m.as_str().to_string())
    }

    #[test]
    fn dot_matches_newlines() {
        assert_eq!(group1("A: (.*)", "A: x\ny").as_deref(), Some("x\ny"));
    }

    #[test]
    fn dollar_and_big_z_read_as_python_reads_them() {
        // `$` matches before a final newline; `\Z` only at the very end.
        assert_eq!(group1(r"(\d+)$", "42\n").as_deref(), Some("42"));
        assert_eq!(group1(r"(\d+)\Z", "42\n"), None);
        assert_eq!(group1(r"(\d+)\Z", "42").as_deref(), Some("42"));
        // With a multi-line flag `$` is an end of line in both.
        assert_eq!(group1(r"(?m)(\d+)$", "42\nx").as_deref(), Some("42"));
        // Escaped and in classes, `$` is a literal.
        assert_eq!(group1(r"\$(\d+)", "$5").as_deref(), Some("5"));
        assert_eq!(group1(r"[$](\d+)", "$5").as_deref(), Some("5"));
    }

    #[test]
    fn classes_are_flat_as_in_python() {
        assert_eq!(group1(r"[[](a)", "[a").as_deref(), Some("a"));
        assert_eq!(group1(r"[]x](a)", "]a").as_deref(), Some("a"));
        assert_eq!(group1(r"[^]](a)", "xa").as_deref(), Some("a"));
        assert_eq!(group1(r"[a&&b](c)", "&c").as_deref(), Some("c"));
        assert_eq!(group1(r"[~](c)", "~c").as_deref(), Some("c"));
    }

    #[test]
    fn python_extensions_work() {
        assert_eq!(group1(r"(?P<n>a)(?P=n)(b)", "aab"), Some("a".into()));
        assert_eq!(group1(r"(?<=x)(\d)", "y1x2").as_deref(), Some("2"));
        assert_eq!(
            group1(r"({.*})", "x {\"a\": 1} y").as_deref(),
            Some("{\"a\": 1}")
        );
    }

    #[test]
    fn bad_patterns_are_errors() {
        assert!(compile("(a").is_err());
        assert!(compile("a)").is_err());
        assert!(compile("*a").is_err());
    }
}

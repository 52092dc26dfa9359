//! A YAML tree that remembers where every key and value was written.
//!
//! Built from `saphyr-parser` events rather than through serde so that (a) every node has a
//! span, (b) duplicate keys and other defects are collected as diagnostics instead of aborting at
//! the first one, and (c) plain scalars are typed with the YAML 1.1 rules of PyYAML's safe loader,
//! which the reference uses (`yes` is a boolean, `1e3` is a string, `010` is 8).

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::source::{FileId, Pos, SourceFile, Span};
use saphyr_parser::{Event, Parser, ScalarStyle, Span as YSpan};
use std::collections::HashMap;

/// How a scalar was written. Block styles matter for mapping template lines back to the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Not a scalar, or a plain scalar.
    Plain,
    /// `'…'`
    SingleQuoted,
    /// `"…"`
    DoubleQuoted,
    /// `|` block.
    Literal,
    /// `>` block.
    Folded,
}

/// A YAML value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// A boolean (YAML 1.1 spellings).
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order.
    Map(Vec<(Node, Node)>),
}

/// A YAML value with its location.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where the value was written.
    pub span: Span,
    /// How a scalar was written.
    pub style: Style,
}

impl Node {
    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The entries, if this is a mapping.
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The items, if this is a sequence.
    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The value of `key`, if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.key_is(key))
            .map(|(_, v)| v)
    }

    /// The number, if this is an integer or a float.
    pub fn as_f64(&self) -> Option<f64> {
        match self.value {
            Value::Int(i) => Some(i as f64),
            Value::Float(f) => Some(f),
            _ => None,
        }
    }

    /// Whether this is null.
    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// Whether this mapping key spells `name` (without allocating for string keys, the common
    /// case: this runs for every key of every mapping).
    pub fn key_is(&self, name: &str) -> bool {
        match &self.value {
            Value::Str(s) => s == name,
            _ => self.key_str().as_deref() == Some(name),
        }
    }

    /// The mapping key as Python would turn it into a string key of a JSON object.
    pub fn key_str(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(crate::pyfmt::float_repr(*f)),
            Value::Bool(true) => Some("true".into()),
            Value::Bool(false) => Some("false".into()),
            Value::Null => Some("null".into()),
            Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// A short name of the value's kind, for messages.
    pub fn kind_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    /// Converts the node into JSON, as the reference's `json.dumps` would see the loaded value.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or(J::Null),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .filter_map(|(k, v)| Some((k.key_str()?, v.to_json())))
                    .collect(),
            ),
        }
    }
}

/// Parses `file` into a tree. Syntax errors and duplicate keys are reported into `diags`; a file
/// with a syntax error yields `None`, an empty file yields a null node.
pub fn parse(file: &SourceFile, id: FileId, diags: &mut Diagnostics) -> Option<Node> {
    let mut builder = Builder {
        file,
        id,
        diags,
        anchors: HashMap::new(),
        stack: Vec::new(),
        root: None,
        documents: 0,
    };
    let mut parser = Parser::new_from_str(&file.text);
    loop {
        match parser.next_event() {
            None => break,
            Some(Ok((event, span))) => {
                if !builder.event(event, span) {
                    break;
                }
            }
            Some(Err(e)) => {
                let m = e.marker();
                let pos = file.pos_at(m.line(), m.col());
                builder.diags.push(
                    Diagnostic::new(
                        Code::YamlSyntax,
                        Span {
                            file: id,
                            start: pos,
                            end: pos,
                        },
                        format!("invalid YAML: {}", e.info()),
                    )
                    .help("fix the YAML syntax; a YAML linter shows the same position"),
                );
                return None;
            }
        }
    }
    match builder.root.take() {
        Some(root) => Some(root),
        None => {
            let pos = Pos {
                line: 1,
                col: 1,
                offset: 0,
            };
            Some(Node {
                value: Value::Null,
                span: Span {
                    file: id,
                    start: pos,
                    end: pos,
                },
                style: Style::Plain,
            })
        }
    }
}

enum Frame {
    Seq {
        start: Pos,
        items: Vec<Node>,
        anchor: usize,
    },
    Map {
        start: Pos,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        anchor: usize,
        /// Values of `<<` merge keys, applied when the mapping ends so explicit keys win.
        merges: Vec<Node>,
    },
}

struct Builder<'a> {
    file: &'a SourceFile,
    id: FileId,
    diags: &'a mut Diagnostics,
    anchors: HashMap<usize, Node>,
    stack: Vec<Frame>,
    root: Option<Node>,
    documents: usize,
}

impl Builder<'_> {
    fn span(&self, s: YSpan) -> Span {
        Span {
            file: self.id,
            start: self.file.pos_at(s.start.line(), s.start.col()),
            end: self.file.pos_at(s.end.line(), s.end.col()),
        }
    }

    /// Handles one event; returns false to stop reading.
    fn event(&mut self, event: Event<'_>, span: YSpan) -> bool {
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    let sp = self.span(span);
                    self.diags.push(
                        Diagnostic::new(
                            Code::YamlSyntax,
                            sp,
                            "the file holds more than one YAML document",
                        )
                        .help(
                            "a machine file must hold exactly one document; remove the extra `---`",
                        ),
                    );
                    return false;
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let sp = self.span(span);
                let node = self.scalar(&text, style, tag.as_deref(), sp);
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.add(node);
            }
            Event::Alias(id) => {
                let sp = self.span(span);
                match self.anchors.get(&id) {
                    Some(node) => {
                        let mut node = node.clone();
                        node.span = sp;
                        self.add(node);
                    }
                    None => {
                        self.diags.push(Diagnostic::new(
                            Code::YamlSyntax,
                            sp,
                            "alias to an unknown anchor",
                        ));
                        self.add(Node {
                            value: Value::Null,
                            span: sp,
                            style: Style::Plain,
                        });
                    }
                }
            }
            Event::SequenceStart(anchor, _) => {
                let start = self.span(span).start;
                self.stack.push(Frame::Seq {
                    start,
                    items: Vec::new(),
                    anchor,
                });
            }
            Event::MappingStart(anchor, _) => {
                let start = self.span(span).start;
                self.stack.push(Frame::Map {
                    start,
                    entries: Vec::new(),
                    key: None,
                    anchor,
                    merges: Vec::new(),
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let end = self.span(span).end;
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq {
                        start,
                        items,
                        anchor,
                    }) => (
                        Node {
                            value: Value::Seq(items),
                            span: Span {
                                file: self.id,
                                start,
                                end,
                            },
                            style: Style::Plain,
                        },
                        anchor,
                    ),
                    Some(Frame::Map {
                        start,
                        entries,
                        anchor,
                        merges,
                        ..
                    }) => (
                        Node {
                            value: Value::Map(apply_merges(entries, merges)),
                            span: Span {
                                file: self.id,
                                start,
                                end,
                            },
                            style: Style::Plain,
                        },
                        anchor,
                    ),
                    None => return true,
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.add(node);
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
        true
    }

    fn add(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                key,
                merges,
                ..
            }) => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    if k.style == Style::Plain && k.as_str() == Some("<<") {
                        merges.push(node);
                        return;
                    }
                    if let Some(name) = k.key_str()
                        && let Some((first, _)) = entries.iter().find(|(e, _)| e.key_is(&name))
                    {
                        self.diags.push(
                            Diagnostic::new(
                                Code::DuplicateKey,
                                k.span,
                                format!("duplicate key `{name}`"),
                            )
                            .note(first.span, format!("`{name}` is first defined here"))
                            .help("remove one of the two entries; YAML loaders silently keep only the last one"),
                        );
                        // Keeping one entry avoids a cascade (two `start` states, …).
                        return;
                    }
                    entries.push((k, node));
                }
            },
        }
    }

    fn scalar(
        &mut self,
        text: &str,
        style: ScalarStyle,
        tag: Option<&saphyr_parser::Tag>,
        span: Span,
    ) -> Node {
        let style = match style {
            ScalarStyle::Plain => Style::Plain,
            ScalarStyle::SingleQuoted => Style::SingleQuoted,
            ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
            ScalarStyle::Literal => Style::Literal,
            ScalarStyle::Folded => Style::Folded,
        };
        let value = match tag {
            Some(t) if t.is_yaml_core_schema() || t.handle == "!!" => match t.suffix.as_str() {
                "str" => Value::Str(text.to_string()),
                "null" => Value::Null,
                "bool" => resolve_bool(text).map_or(Value::Str(text.into()), Value::Bool),
                "int" => resolve_int(text).map_or(Value::Str(text.into()), Value::Int),
                "float" => resolve_float(text)
                    .or_else(|| resolve_int(text).map(|i| i as f64))
                    .map_or(Value::Str(text.into()), Value::Float),
                _ => resolve_plain(text),
            },
            _ if style == Style::Plain => resolve_plain(text),
            _ => Value::Str(text.to_string()),
        };
        Node { value, span, style }
    }
}

/// Applies YAML merge keys (`<<: *base`) as PyYAML does: merged entries come first, explicit
/// keys win, and among several merged maps the first one listed wins.
fn apply_merges(entries: Vec<(Node, Node)>, merges: Vec<Node>) -> Vec<(Node, Node)> {
    if merges.is_empty() {
        return entries;
    }
    let mut merged: Vec<(Node, Node)> = Vec::new();
    let sources = merges.into_iter().flat_map(|m| match m.value {
        Value::Seq(items) => items,
        _ => vec![m],
    });
    for src in sources {
        if let Value::Map(src_entries) = src.value {
            for (k, v) in src_entries {
                let name = k.key_str();
                let taken = merged
                    .iter()
                    .chain(entries.iter())
                    .any(|(e, _)| e.key_str() == name);
                if !taken {
                    merged.push((k, v));
                }
            }
        }
    }
    merged.extend(entries);
    merged
}

/// Types a plain scalar as PyYAML's `SafeLoader` does (YAML 1.1 implicit resolvers).
pub fn resolve_plain(text: &str) -> Value {
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Value::Null;
    }
    if let Some(b) = resolve_bool(text) {
        return Value::Bool(b);
    }
    if let Some(i) = resolve_int(text) {
        return Value::Int(i);
    }
    if let Some(f) = resolve_float(text) {
        return Value::Float(f);
    }
    Value::Str(text.to_string())
}

fn resolve_bool(text: &str) -> Option<bool> {
    match text {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn split_sign(text: &str) -> (i64, &str) {
    match text.as_bytes().first() {
        Some(b'-') => (-1, &text[1..]),
        Some(b'+') => (1, &text[1..]),
        _ => (1, text),
    }
}

fn resolve_int(text: &str) -> Option<i64> {
    let (sign, body) = split_sign(text);
    if body.is_empty() {
        return None;
    }
    let digits = |s: &str, radix: u32| -> Option<i64> {
        let cleaned: String = s.chars().filter(|&c| c != '_').collect();
        if cleaned.is_empty() || !s.chars().all(|c| c == '_' || c.is_digit(radix)) {
            return None;
        }
        i64::from_str_radix(&cleaned, radix).ok()
    };
    let magnitude = if let Some(b) = body.strip_prefix("0b") {
        digits(b, 2)?
    } else if let Some(x) = body.strip_prefix("0x") {
        digits(x, 16)?
    } else if body.len() > 1 && body.starts_with('0') {
        digits(&body[1..], 8)?
    } else if body.contains(':') {
        // Sexagesimal (base 60) integers, e.g. `1:30` = 90, a YAML 1.1 oddity PyYAML keeps.
        let mut parts = body.split(':');
        let first = parts.next()?;
        if !first.starts_with(|c: char| ('1'..='9').contains(&c)) {
            return None;
        }
        let mut acc = digits(first, 10)?;
        for p in parts {
            if p.is_empty() || p.len() > 2 || !p.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let v: i64 = p.parse().ok()?;
            if v >= 60 {
                return None;
            }
            acc = acc.checked_mul(60)?.checked_add(v)?;
        }
        acc
    } else {
        if !body.starts_with(|c: char| c.is_ascii_digit()) || (body.starts_with('0') && body != "0")
        {
            return None;
        }
        digits(body, 10)?
    };
    Some(sign * magnitude)
}

fn resolve_float(text: &str) -> Option<f64> {
    let (sign, body) = split_sign(text);
    let sign = sign as f64;
    match body {
        ".inf" | ".Inf" | ".INF" => return Some(sign * f64::INFINITY),
        ".nan" | ".NaN" | ".NAN" if text == body => return Some(f64::NAN),
        _ => {}
    }
    // PyYAML: `[0-9][0-9_]*\.[0-9_]*([eE][-+][0-9]+)?` or `\.[0-9][0-9_]*([eE][-+][0-9]+)?`.
    // A dot is required and an exponent needs its sign, so `1e3` and `1.0e3` stay strings.
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let dot = mantissa.find('.')?;
    let (int_part, frac_part) = (&mantissa[..dot], &mantissa[dot + 1..]);
    let int_ok = if int_part.is_empty() {
        frac_part.starts_with(|c: char| c.is_ascii_digit())
    } else {
        int_part.starts_with(|c: char| c.is_ascii_digit())
            && int_part.chars().all(|c| c.is_ascii_digit() || c == '_')
    };
    if !int_ok || !frac_part.chars().all(|c| c.is_ascii_digit() || c == '_') {
        return None;
    }
    if let Some(exp) = exponent {
        let digits = exp.strip_prefix(['-', '+'])?;
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
    }
    let cleaned: String = body.chars().filter(|&c| c != '_').collect();
    let cleaned = if cleaned.starts_with('.') {
        format!("0{cleaned}")
    } else {
        cleaned
    };
    cleaned.parse::<f64>().ok().map(|f| sign * f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceMap;

    fn load(text: &str) -> (Option<Node>, Diagnostics) {
        let mut map = SourceMap::new();
        let id = map.add(SourceFile::new("t.yml".into(), "t.yml".into(), text.into()));
        let mut diags = Diagnostics::new();
        let node = parse(map.get(id), id, &mut diags);
        (node, diags)
    }

    #[test]
    fn plain_scalars_follow_yaml_1_1() {
        assert_eq!(resolve_plain("yes"), Value::Bool(true));
        assert_eq!(resolve_plain("Off"), Value::Bool(false));
        assert_eq!(resolve_plain("~"), Value::Null);
        assert_eq!(resolve_plain("010"), Value::Int(8));
        assert_eq!(resolve_plain("0x1F"), Value::Int(31));
        assert_eq!(resolve_plain("1_000"), Value::Int(1000));
        assert_eq!(resolve_plain("-5"), Value::Int(-5));
        assert_eq!(resolve_plain("1:30"), Value::Int(90));
        assert_eq!(resolve_plain("1.5"), Value::Float(1.5));
        assert_eq!(resolve_plain("1.0e+3"), Value::Float(1000.0));
        assert_eq!(resolve_plain(".5"), Value::Float(0.5));
        assert_eq!(resolve_plain("-.inf"), Value::Float(f64::NEG_INFINITY));
        // PyYAML needs a dot and a signed exponent: these stay strings.
        assert_eq!(resolve_plain("1e3"), Value::Str("1e3".into()));
        assert_eq!(resolve_plain("1.0e3"), Value::Str("1.0e3".into()));
        assert_eq!(resolve_plain("09"), Value::Str("09".into()));
        assert_eq!(resolve_plain("2.6.0"), Value::Str("2.6.0".into()));
        assert_eq!(resolve_plain("y"), Value::Str("y".into()));
    }

    #[test]
    fn spans_point_at_values() {
        let (node, diags) = load("a:\n  b: hello\n  c: [1, 2]\n");
        assert!(diags.is_empty());
        let node = node.unwrap();
        let b = node.get("a").unwrap().get("b").unwrap();
        assert_eq!(b.as_str(), Some("hello"));
        assert_eq!((b.span.start.line, b.span.start.col), (2, 6));
        let c = node.get("a").unwrap().get("c").unwrap();
        assert_eq!(c.as_seq().unwrap()[1].span.start.col, 10);
    }

    #[test]
    fn duplicate_keys_are_reported_with_both_places() {
        let (_, diags) = load("a: 1\nb: 2\na: 3\n");
        let d: Vec<_> = diags.iter().collect();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].code, Code::DuplicateKey);
        assert_eq!(d[0].span.unwrap().start.line, 3);
        assert_eq!(d[0].notes[0].span.unwrap().start.line, 1);
    }

    #[test]
    fn syntax_errors_are_diagnostics() {
        let (node, diags) = load("a: [1, 2\nb: 3\n");
        assert!(node.is_none());
        assert_eq!(diags.iter().next().unwrap().code, Code::YamlSyntax);
    }

    #[test]
    fn anchors_and_merge_keys() {
        let (node, diags) = load("base: &b {x: 1, y: 2}\nder:\n  <<: *b\n  y: 3\n");
        assert!(diags.is_empty(), "{diags:?}");
        let der = node.unwrap().get("der").unwrap().to_json();
        assert_eq!(der, serde_json::json!({"x": 1, "y": 3}));
    }

    #[test]
    fn empty_file_is_null_and_quoted_scalars_are_strings() {
        let (node, _) = load("");
        assert!(node.unwrap().is_null());
        let (node, _) = load("a: 'yes'\nb: \"1\"\n");
        let node = node.unwrap();
        assert_eq!(node.get("a").unwrap().as_str(), Some("yes"));
        assert_eq!(node.get("b").unwrap().as_str(), Some("1"));
    }

    #[test]
    fn multiple_documents_are_rejected() {
        let (_, diags) = load("a: 1\n---\nb: 2\n");
        assert!(diags.has_errors());
    }
}

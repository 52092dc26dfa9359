//! A YAML tree that remembers where every key and value was written.
//!
//! Built from `saphyr-parser` events rather than through serde so that (a) every node has a
//! span, (b) duplicate keys and other defects are collected as diagnostics instead of aborting at
//! the first one, and (c) plain scalars are typed with the YAML 1.1 rules of PyYAML's safe loader,
//! which the reference uses (`yes` is a boolean, `1e3` is a string, `010` is 8).

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::source::{FileId, Pos, SourceFile, Span};
use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Span as YSpan};
use std::collections::{HashMap, HashSet};

/// The deepest nesting of lists and maps a document may have. Machines nest a few levels (an
/// output schema perhaps a dozen); the limit keeps a hostile file (`- - - … 1`, 60 000 levels)
/// from exhausting the stack of every recursive walk over the tree. Flow collections
/// (`[[[…]]]`) are already limited to 255 levels by the parser.
pub const MAX_DEPTH: usize = 256;

/// The most nodes a document may hold, counting every node an alias copies (and the copy an
/// anchor keeps). A 100 000-state machine has about 700 000; the limit stops an alias bomb
/// ("billion laughs": nine nested lists of nine aliases expand to 9^9 nodes from 500 bytes)
/// before it exhausts memory.
pub const MAX_NODES: usize = 1_000_000;

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
/// with a syntax error (or one past [`MAX_DEPTH`] or [`MAX_NODES`]) yields `None`, an empty file
/// yields a null node.
pub fn parse(file: &SourceFile, id: FileId, diags: &mut Diagnostics) -> Option<Node> {
    parse_document(file, id, diags).root
}

/// What [`parse_document`] found.
#[derive(Debug)]
pub struct Parsed {
    /// The tree; `None` after an error that stops reading.
    pub root: Option<Node>,
    /// The first key of the top-level map, when the document is a map and its first key a
    /// scalar; read even when a later syntax error leaves no tree. The loader tells a document
    /// from a file that merely parses as YAML (`/etc/shadow` reads as a map of one odd key) by
    /// its keys, so as not to quote the latter.
    pub first_key: Option<String>,
}

/// [`parse`], also giving the first key of the document (see [`Parsed::first_key`]).
pub fn parse_document(file: &SourceFile, id: FileId, diags: &mut Diagnostics) -> Parsed {
    if let Some((offset, c)) = unprintable(&file.text) {
        let pos = file.pos_of_offset(offset);
        diags.push(
            Diagnostic::new(
                Code::NotYamlText,
                Span {
                    file: id,
                    start: pos,
                    end: pos,
                },
                format!(
                    "the file is not YAML text: it holds the control character U+{:04X} at line {}, column {}",
                    c as u32, pos.line, pos.col
                ),
            )
            .help("YAML allows tabs and line breaks but no other control characters; is this the right file?"),
        );
        return Parsed {
            root: None,
            first_key: None,
        };
    }
    let mut builder = Builder {
        file,
        id,
        diags,
        anchors: HashMap::new(),
        stack: Vec::new(),
        root: None,
        documents: 0,
        nodes: 0,
        failed: false,
        first_key: None,
        cursor: Cursor::default(),
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
                let pos = builder.pos(e.marker());
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
                builder.failed = true;
                break;
            }
        }
    }
    let first_key = builder.first_key.take();
    if builder.failed {
        return Parsed {
            root: None,
            first_key,
        };
    }
    let root = match builder.root.take() {
        Some(root) => root,
        None => {
            let pos = Pos {
                line: 1,
                col: 1,
                offset: 0,
            };
            Node {
                value: Value::Null,
                span: Span {
                    file: id,
                    start: pos,
                    end: pos,
                },
                style: Style::Plain,
            }
        }
    };
    Parsed {
        root: Some(root),
        first_key,
    }
}

/// The first character YAML does not allow in a stream (PyYAML's reader refuses the same ones):
/// a C0 control other than tab and line breaks, DEL, a C1 control other than NEL, U+FFFE or
/// U+FFFF. Its byte offset and the character.
pub fn unprintable(text: &str) -> Option<(usize, char)> {
    text.char_indices().find(|&(_, c)| {
        matches!(c, '\u{0}'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{7F}')
            || matches!(c, '\u{80}'..='\u{9F}') && c != '\u{85}'
            || matches!(c, '\u{FFFE}' | '\u{FFFF}')
    })
}

enum Frame {
    Seq {
        start: Pos,
        items: Vec<Node>,
        anchor: usize,
        /// Nodes in the collection, itself included (what an alias to it copies).
        size: usize,
    },
    Map {
        start: Pos,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        anchor: usize,
        /// Values of `<<` merge keys, applied when the mapping ends so explicit keys win.
        merges: Vec<Node>,
        /// Each key (as [`Node::key_str`]) with where it is written, so a duplicate is found
        /// without a scan of the entries: a map of 100 000 states stays linear.
        seen: HashMap<String, Span>,
        /// Nodes in the collection, itself included.
        size: usize,
    },
}

/// Where the parser's last position was, as a character index and a byte offset, so a
/// position is found by walking from there rather than from the start of its line (a
/// 100 KB one-line document would be quadratic).
#[derive(Default)]
struct Cursor {
    chars: usize,
    byte: usize,
}

struct Builder<'a> {
    file: &'a SourceFile,
    id: FileId,
    diags: &'a mut Diagnostics,
    /// Anchored nodes with their sizes.
    anchors: HashMap<usize, (Node, usize)>,
    stack: Vec<Frame>,
    root: Option<Node>,
    documents: usize,
    /// Nodes built so far, copies made by anchors and aliases included.
    nodes: usize,
    /// Whether reading stopped at an error, leaving no usable tree.
    failed: bool,
    /// The first key of the top-level map.
    first_key: Option<String>,
    cursor: Cursor,
}

impl Builder<'_> {
    /// The position of a parser marker. Lines and columns are the parser's; the byte offset is
    /// found from its character index.
    fn pos(&mut self, m: &Marker) -> Pos {
        let text = self.file.text.as_str();
        let target = m.index();
        let c = &mut self.cursor;
        if target >= c.chars {
            for ch in text[c.byte..].chars().take(target - c.chars) {
                c.byte += ch.len_utf8();
                c.chars += 1;
            }
        } else {
            for ch in text[..c.byte].chars().rev().take(c.chars - target) {
                c.byte -= ch.len_utf8();
                c.chars -= 1;
            }
        }
        let line = m.line().clamp(1, self.file.line_count() as usize);
        Pos {
            line: line as u32,
            col: m.col() as u32 + 1,
            offset: c.byte as u32,
        }
    }

    fn span(&mut self, s: YSpan) -> Span {
        Span {
            file: self.id,
            start: self.pos(&s.start),
            end: self.pos(&s.end),
        }
    }

    /// Counts `n` more nodes; past [`MAX_NODES`] reports the limit at `span` and stops reading.
    fn charge(&mut self, n: usize, span: Span) -> bool {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes <= MAX_NODES {
            return true;
        }
        self.diags.push(
            Diagnostic::new(
                Code::LimitExceeded,
                span,
                format!(
                    "the document grows past {MAX_NODES} nodes, the limit, when its aliases are expanded"
                ),
            )
            .note(None, "each alias (`*name`) copies the whole node its anchor (`&name`) names")
            .help("no machine is this large; aliases of aliases multiply (an alias bomb looks like this)"),
        );
        self.failed = true;
        false
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
                if !self.charge(1, sp) {
                    return false;
                }
                let node = self.scalar(&text, style, tag.as_deref(), sp);
                if anchor > 0 {
                    if !self.charge(1, sp) {
                        return false;
                    }
                    self.anchors.insert(anchor, (node.clone(), 1));
                }
                self.add(node, 1);
            }
            Event::Alias(id) => {
                let sp = self.span(span);
                let size = self.anchors.get(&id).map(|(_, size)| *size);
                match size {
                    Some(size) => {
                        // Charged before the copy is made: the copy is what exhausts memory.
                        if !self.charge(size, sp) {
                            return false;
                        }
                        if let Some((node, _)) = self.anchors.get(&id) {
                            let mut node = node.clone();
                            node.span = sp;
                            self.add(node, size);
                        }
                    }
                    None => {
                        self.diags.push(Diagnostic::new(
                            Code::YamlSyntax,
                            sp,
                            "alias to an unknown anchor",
                        ));
                        self.add(
                            Node {
                                value: Value::Null,
                                span: sp,
                                style: Style::Plain,
                            },
                            1,
                        );
                    }
                }
            }
            Event::SequenceStart(anchor, _) => {
                let sp = self.span(span);
                if !self.enter(sp) {
                    return false;
                }
                self.stack.push(Frame::Seq {
                    start: sp.start,
                    items: Vec::new(),
                    anchor,
                    size: 1,
                });
            }
            Event::MappingStart(anchor, _) => {
                let sp = self.span(span);
                if !self.enter(sp) {
                    return false;
                }
                self.stack.push(Frame::Map {
                    start: sp.start,
                    entries: Vec::new(),
                    key: None,
                    anchor,
                    merges: Vec::new(),
                    seen: HashMap::new(),
                    size: 1,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let end = self.span(span).end;
                let (node, anchor, size) = match self.stack.pop() {
                    Some(Frame::Seq {
                        start,
                        items,
                        anchor,
                        size,
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
                        size,
                    ),
                    Some(Frame::Map {
                        start,
                        entries,
                        anchor,
                        merges,
                        size,
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
                        size,
                    ),
                    None => return true,
                };
                if anchor > 0 {
                    // The anchor keeps a copy: charged like an alias, or nested anchors over
                    // a large node would copy it once per level.
                    if !self.charge(size, node.span) {
                        return false;
                    }
                    self.anchors.insert(anchor, (node.clone(), size));
                }
                self.add(node, size);
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
        true
    }

    /// Opens a collection at `span`: counts its node and refuses to nest past [`MAX_DEPTH`].
    fn enter(&mut self, span: Span) -> bool {
        if self.stack.len() >= MAX_DEPTH {
            self.diags.push(
                Diagnostic::new(
                    Code::LimitExceeded,
                    span,
                    format!("lists and maps nest deeper than {MAX_DEPTH} levels, the limit"),
                )
                .help("a machine nests a few levels; flatten the document"),
            );
            self.failed = true;
            return false;
        }
        self.charge(1, span)
    }

    /// Adds a finished node of `size` nodes to the collection being built (or makes it the
    /// root).
    fn add(&mut self, node: Node, size: usize) {
        let depth = self.stack.len();
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, size: s, .. }) => {
                *s += size;
                items.push(node);
            }
            Some(Frame::Map {
                entries,
                key,
                merges,
                seen,
                size: s,
                ..
            }) => {
                *s += size;
                match key.take() {
                    None => {
                        if self.first_key.is_none() && depth == 1 {
                            self.first_key = node.key_str();
                        }
                        *key = Some(node);
                    }
                    Some(k) => {
                        if k.style == Style::Plain && k.as_str() == Some("<<") {
                            merges.push(node);
                            return;
                        }
                        if let Some(name) = k.key_str() {
                            if let Some(first) = seen.get(&name) {
                                self.diags.push(
                                    Diagnostic::new(
                                        Code::DuplicateKey,
                                        k.span,
                                        format!("duplicate key `{name}`"),
                                    )
                                    .note(*first, format!("`{name}` is first defined here"))
                                    .help("remove one of the two entries; YAML loaders silently keep only the last one"),
                                );
                                // Keeping one entry avoids a cascade (two `start` states, …).
                                return;
                            }
                            seen.insert(name, k.span);
                        }
                        entries.push((k, node));
                    }
                }
            }
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
    // The keys already present, explicit or merged: a set, so merging large maps stays linear.
    let mut taken: HashSet<Option<String>> = entries.iter().map(|(k, _)| k.key_str()).collect();
    let sources = merges.into_iter().flat_map(|m| match m.value {
        Value::Seq(items) => items,
        _ => vec![m],
    });
    for src in sources {
        if let Value::Map(src_entries) = src.value {
            for (k, v) in src_entries {
                if taken.insert(k.key_str()) {
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

    /// Runs `f` on another thread and fails if it has not finished within a minute: the
    /// inputs below take well under a second each, so only a hang (or a quadratic blow-up that
    /// amounts to one) trips it.
    fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("parsing did not finish within a minute")
    }

    fn codes(diags: &Diagnostics) -> Vec<Code> {
        diags.iter().map(|d| d.code).collect()
    }

    #[test]
    fn an_alias_bomb_stops_at_the_node_limit() {
        // 9 levels of 9 aliases: 9^9 (387 million) copies from under 500 bytes.
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for w in names.windows(2) {
            let aliases = vec![format!("*{}", w[0]); 9].join(", ");
            text.push_str(&format!("{}: &{} [{aliases}]\n", w[1], w[1]));
        }
        let (node, diags) = within_a_minute(move || load(&text));
        assert!(node.is_none());
        assert_eq!(codes(&diags), [Code::LimitExceeded]);
        let d = diags.iter().next().unwrap();
        assert!(d.message.contains(&MAX_NODES.to_string()), "{}", d.message);
    }

    #[test]
    fn aliases_within_the_limit_are_expanded() {
        let (node, diags) = load("a: &a [1, 2]\nb: [*a, *a]\n");
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(
            node.unwrap().get("b").unwrap().to_json(),
            serde_json::json!([[1, 2], [1, 2]])
        );
    }

    #[test]
    fn nesting_stops_at_the_depth_limit() {
        // 60 000 levels of block lists: without the limit, the tree's recursive walks (and its
        // drop) overflow the stack.
        let deep = format!("{}1\n", "- ".repeat(60_000));
        let (node, diags) = within_a_minute(move || load(&deep));
        assert!(node.is_none());
        assert_eq!(codes(&diags), [Code::LimitExceeded]);
        assert!(diags.iter().next().unwrap().message.contains("256"));
        // At the limit itself, the document is read (and walked) as usual.
        let ok = format!("{}1\n", "- ".repeat(MAX_DEPTH));
        let (node, diags) = load(&ok);
        assert!(diags.is_empty(), "{diags:?}");
        assert!(node.unwrap().to_json().is_array());
    }

    #[test]
    fn a_map_with_many_keys_is_read_in_linear_time() {
        // 200 000 keys, one duplicate at the end: a scan of the entries per key (as duplicate
        // detection once was) takes minutes here.
        let mut text: String = (0..200_000).map(|i| format!("k{i}: {i}\n")).collect();
        text.push_str("k7: again\n");
        let (node, diags) = within_a_minute(move || load(&text));
        assert_eq!(node.unwrap().as_map().unwrap().len(), 200_000);
        let d: Vec<_> = diags.iter().collect();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].code, Code::DuplicateKey);
        assert_eq!(d[0].notes[0].span.unwrap().start.line, 8);
    }

    #[test]
    fn merging_large_maps_keeps_explicit_keys() {
        let base: String = (0..50_000).map(|i| format!(" k{i}: {i},")).collect();
        let text = format!("base: &b {{{base} last: 0}}\nder:\n  <<: *b\n  k3: mine\n");
        let (node, diags) = within_a_minute(move || load(&text));
        assert!(diags.is_empty(), "{diags:?}");
        let der = node.unwrap().get("der").unwrap().clone();
        assert_eq!(der.as_map().unwrap().len(), 50_001);
        assert_eq!(der.get("k3").unwrap().as_str(), Some("mine"));
    }

    #[test]
    fn positions_on_a_long_line_with_wide_characters() {
        // Byte offsets come from the parser's character index, found by walking from the last
        // position: a one-line document of 100 000 items is linear, not quadratic.
        let items: Vec<String> = (0..100_000).map(|i| format!("é{i}")).collect();
        let text = format!("[{}]", items.join(", "));
        let (node, diags) = within_a_minute(move || load(&text));
        assert!(diags.is_empty());
        let node = node.unwrap();
        let last = &node.as_seq().unwrap()[99_999];
        assert_eq!(last.as_str(), Some("é99999"));
        let (node, _) = load("a: [é, \"ü\", x]\nb: ñ\n");
        let node = node.unwrap();
        let x = &node.get("a").unwrap().as_seq().unwrap()[2];
        assert_eq!((x.span.start.line, x.span.start.col), (1, 13));
        // `a: [é, "ü", x]`: é and ü are two bytes each.
        assert_eq!(x.span.start.offset, 14);
        let b = node.get("b").unwrap();
        assert_eq!(
            (b.span.start.line, b.span.start.col, b.span.start.offset),
            (2, 4, 20)
        );
        assert_eq!(b.span.end.offset, 22);
    }

    #[test]
    fn offsets_agree_with_lines_and_columns() {
        fn walk(node: &Node, file: &SourceFile) {
            for pos in [node.span.start, node.span.end] {
                let at = file.pos_at(pos.line as usize, pos.col as usize - 1);
                assert_eq!(at, pos, "{:?}", node.value);
            }
            match &node.value {
                Value::Seq(items) => items.iter().for_each(|i| walk(i, file)),
                Value::Map(entries) => entries.iter().for_each(|(k, v)| {
                    walk(k, file);
                    walk(v, file);
                }),
                _ => {}
            }
        }
        for text in [
            "a: 1\r\nb:\r\n  - ü\r\n  - {x: 'ÿ'}\r\n",
            "s: |\n  línea\n  dos\nt: >\n  ñ\nu: 3\t# tab\n",
            "a:\n\n\n  # c é\n  b: \"😀\" # 😀\n  c: [1,\n    2]\n",
        ] {
            let mut map = SourceMap::new();
            let id = map.add(SourceFile::new("t".into(), "t".into(), text.into()));
            let mut diags = Diagnostics::new();
            let node = parse(map.get(id), id, &mut diags);
            assert!(diags.is_empty(), "{text:?}: {diags:?}");
            walk(&node.unwrap(), map.get(id));
        }
        // A byte order mark takes no column, and the offsets step over its three bytes.
        let (node, _) = load("\u{feff}a: 1\nb: [é, 2]\n");
        let node = node.unwrap();
        let (a, _) = &node.as_map().unwrap()[0];
        assert_eq!((a.span.start.col, a.span.start.offset), (1, 3));
        let two = &node.get("b").unwrap().as_seq().unwrap()[1];
        assert_eq!((two.span.start.line, two.span.start.col), (2, 8));
        assert_eq!(two.span.start.offset, 16);
    }

    #[test]
    fn control_characters_are_not_yaml_text() {
        let (node, diags) = load("a: 1\nb: x\u{0}y\n");
        assert!(node.is_none());
        assert_eq!(codes(&diags), [Code::NotYamlText]);
        let d = diags.iter().next().unwrap();
        let start = d.span.unwrap().start;
        assert_eq!((start.line, start.col), (2, 5));
        assert!(d.message.contains("U+0000"), "{}", d.message);
        assert_eq!(unprintable("tab\there\r\n\u{85}é"), None);
        assert_eq!(unprintable("a\u{7f}"), Some((1, '\u{7f}')));
    }

    #[test]
    fn the_first_key_survives_a_syntax_error() {
        let first_key = |text: &str| {
            let mut map = SourceMap::new();
            let id = map.add(SourceFile::new("t".into(), "t".into(), text.into()));
            parse_document(map.get(id), id, &mut Diagnostics::new()).first_key
        };
        assert_eq!(first_key("# c\nspec: x\ndata: 1").as_deref(), Some("spec"));
        assert_eq!(first_key("a: [1, 2\n").as_deref(), Some("a"));
        assert_eq!(first_key("a:\n  b: 1\n  c: [\n").as_deref(), Some("a"));
        assert_eq!(first_key("- a: 1"), None);
        assert_eq!(first_key("root:x:0:0:root:/root:/bin/bash\n"), None);
        assert_eq!(first_key(""), None);
    }

    #[test]
    fn multiple_documents_are_rejected() {
        let (_, diags) = load("a: 1\n---\nb: 2\n");
        assert!(diags.has_errors());
    }
}

//! The `simple` condition engine: a whitelisted subset of Python expressions.
//!
//! The reference parses a condition with Python's own parser and then walks
//! the tree, rejecting every node kind outside a small whitelist. This module
//! reproduces that as a standalone lexer and recursive-descent parser, so that
//! every condition the reference would reject (at run time, mid-run) is
//! rejected here at compile time, with a message that names the construct.
//!
//! Accepted grammar (spec `templates-and-expressions.md` B.1), loosest
//! binding first; precedence and associativity are Python's:
//!
//! ```text
//! expr       := or_expr
//! or_expr    := and_expr ( "or" and_expr )*
//! and_expr   := not_expr ( "and" not_expr )*
//! not_expr   := "not" not_expr | comparison
//! comparison := arith ( ("=="|"!="|"<"|"<="|">"|">=") arith )*   chained
//! arith      := term ( ("+"|"-") term )*
//! term       := postfix ( ("*"|"/") postfix )*
//! postfix    := primary ( "." IDENT | "[" expr "]" )*
//! primary    := literal | IDENT | "(" expr ")"
//! ```
//!
//! Where this parser knowingly differs from Python's:
//!
//! * Any ASCII whitespace, newlines included, separates tokens anywhere
//!   (conditions often come from YAML block scalars). Python would reject a
//!   newline outside brackets. `#` comments and backslash line continuations
//!   are accepted, as Python does.
//! * Integer literals must fit in `i64` ([`Literal::Int`]); larger ones are an
//!   error instead of a Python big integer.
//! * Strings must be valid Unicode: `\ud800`-style lone surrogates are an
//!   error, and `\N{...}` named escapes are not supported.
//! * Identifiers are ASCII letters, digits and `_`, plus any non-ASCII
//!   alphabetic/alphanumeric character; they are not NFKC-normalised.
//! * A number immediately followed by a letter (`1and 2`) is an error;
//!   Python still tolerates some of these with a warning.
//! * Bytes (`b'…'`), complex (`1j`) and Ellipsis (`...`) constants are
//!   rejected: Python parses them as constants, but they have no JSON value.
//! * Nesting is bounded ([`MAX_NESTING`] brackets, [`MAX_DEPTH`] tree
//!   levels) so that the parser and every later tree walk stay within a small
//!   stack; Python's own limits are higher.

pub use super::ParseError;
use serde::Serialize;
use std::fmt;
use std::ops::Range;

/// Deepest bracket nesting (`(`, `[`) accepted.
///
/// Python allows 200, but each level costs this recursive-descent parser
/// about 12 KiB of stack in debug builds (3 KiB in release); 32 levels stay
/// under 400 KiB, far below a 2 MiB thread stack, and far beyond what any
/// condition needs.
pub const MAX_NESTING: usize = 32;

/// Deepest syntax tree accepted (a lone name has depth 1, `a + b` depth 2).
/// Consumers of [`Expr`] walk it recursively; this bound is what makes that
/// safe for any input text.
pub const MAX_DEPTH: usize = 200;

/// A parsed condition, or a part of one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Expr {
    /// What the expression is.
    pub kind: ExprKind,
    /// Byte offsets into the condition text. As in Python's AST, the
    /// parentheses around an expression are not part of its own span, but
    /// they are part of an enclosing expression's span (`(a + b) * c`).
    pub span: Range<usize>,
}

/// The kinds of expression the simple engine accepts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ExprKind {
    /// A constant, including the names `true`/`True`, `false`/`False`,
    /// `null`/`None`, which the engine resolves before any variable.
    Literal(Literal),
    /// A variable. For transitions only `context` exists; any other name is
    /// an "Unknown variable" error at evaluation time, not a parse error.
    Name(String),
    /// `base.name`: a map key (null when missing) or, for other values, a
    /// host attribute.
    Attr(Box<Expr>, String),
    /// `base[index]`: a list index, map key (an error when missing) or
    /// string index.
    Index(Box<Expr>, Box<Expr>),
    /// `not operand`: negated truthiness.
    Not(Box<Expr>),
    /// `a and b and …`, at least two operands, short-circuiting, with a
    /// boolean result. A parenthesised `and` inside stays a separate node.
    And(Vec<Expr>),
    /// `a or b or …`, at least two operands, short-circuiting, with a
    /// boolean result. A parenthesised `or` inside stays a separate node.
    Or(Vec<Expr>),
    /// A comparison chain `first op1 x1 op2 x2 …` meaning
    /// `first op1 x1 and x1 op2 x2 …`, each operand evaluated at most once.
    /// `rest` is never empty.
    Compare {
        /// The leftmost operand.
        first: Box<Expr>,
        /// Each operator with its right-hand operand, left to right.
        rest: Vec<(CmpOp, Expr)>,
    },
    /// Arithmetic on two operands (left-associative in the source).
    Binary {
        /// The operator.
        op: ArithOp,
        /// The left operand.
        lhs: Box<Expr>,
        /// The right operand.
        rhs: Box<Expr>,
    },
}

/// A constant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Literal {
    /// An integer literal (decimal, `0x`, `0o` or `0b`); always
    /// non-negative, since there is no unary minus.
    Int(i64),
    /// A float literal; `inf` when it overflows (`1e999`), as in Python.
    Float(f64),
    /// A string literal, escapes resolved and adjacent literals joined.
    Str(String),
    /// `true`/`True` or `false`/`False`.
    Bool(bool),
    /// `null`/`None`.
    Null,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtE,
    /// `>`
    Gt,
    /// `>=`
    GtE,
}

impl CmpOp {
    /// The operator as written, e.g. `"<="`.
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::NotEq => "!=",
            CmpOp::Lt => "<",
            CmpOp::LtE => "<=",
            CmpOp::Gt => ">",
            CmpOp::GtE => ">=",
        }
    }
}

/// An arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ArithOp {
    /// `+`: addition, or concatenation of strings or lists.
    Add,
    /// `-`
    Sub,
    /// `*`: multiplication, or repetition of a string by an integer.
    Mul,
    /// `/`: true division, always a float.
    Div,
}

impl ArithOp {
    /// The operator as written, e.g. `"+"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
        }
    }

    /// Whether it binds like `*` (tighter) rather than like `+`.
    fn is_multiplicative(self) -> bool {
        matches!(self, ArithOp::Mul | ArithOp::Div)
    }
}

impl Expr {
    /// An expression of `kind` covering `span`.
    pub fn new(kind: ExprKind, span: Range<usize>) -> Self {
        Expr { kind, span }
    }
}

/// Parses a simple-engine condition.
///
/// Returns `Ok(None)` for empty or whitespace-only text, which the reference
/// evaluates as `true` without parsing (a comment alone is a syntax error,
/// as in Python).
///
/// # Errors
/// The first problem found: a Python syntax error, or valid Python the
/// simple engine does not support (unary minus, `in`, calls, …). The error
/// names the construct, spans the offending token, and usually says how to
/// rewrite the condition.
pub fn parse(src: &str) -> Result<Option<Expr>, ParseError> {
    if src.trim().is_empty() {
        return Ok(None);
    }
    let tokens = Lexer::new(src).run()?;
    if tokens.len() == 1 {
        return Err(ParseError::new("expected an expression", 0..src.len())
            .with_help("only a comment was found; leave the condition empty to mean `true`"));
    }
    let mut parser = Parser {
        src,
        tokens,
        pos: 0,
        nesting: 0,
    };
    let node = parser.parse_expr()?;
    if !matches!(parser.peek().tok, Tok::Eof) {
        return Err(parser.unexpected_after_operand(Closer::End));
    }
    Ok(Some(node.expr))
}

/// A path of names read from a variable, such as `context.a.b`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathRef {
    /// The variable, then each key: `["context", "a", "b"]`. Subscripts with
    /// a string literal count as keys (`context['a']` gives
    /// `["context", "a"]`); any other subscript ends the path.
    pub segments: Vec<String>,
    /// Where the path is written.
    pub span: Range<usize>,
}

/// Every maximal path read from a variable, in source order, with its span.
///
/// `context.a.b == context.c` gives `context.a.b` and `context.c` (not the
/// prefixes `context` or `context.a`). Paths rooted at any name are listed,
/// so a caller can also flag names other than `context`, which do not exist
/// for transitions. `context.lst[0].x` gives `context.lst`: the path stops at
/// a non-string subscript, whose own paths are listed separately.
pub fn path_refs(expr: &Expr) -> Vec<PathRef> {
    let mut out = Vec::new();
    collect_paths(expr, &mut out);
    out
}

/// The distinct paths of [`path_refs`], in order of first appearance,
/// without spans.
pub fn referenced_paths(expr: &Expr) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    for path in path_refs(expr) {
        if !out.contains(&path.segments) {
            out.push(path.segments);
        }
    }
    out
}

/// Every variable read, with the span of its name, in source order
/// (duplicates included). `true`, `None` and the like are literals, not
/// variables; for transitions any name other than `context` is an
/// "Unknown variable" error at evaluation time.
pub fn free_names(expr: &Expr) -> Vec<(String, Range<usize>)> {
    let mut out = Vec::new();
    collect_names(expr, &mut out);
    out
}

fn collect_names(expr: &Expr, out: &mut Vec<(String, Range<usize>)>) {
    match &expr.kind {
        ExprKind::Name(name) => out.push((name.clone(), expr.span.clone())),
        ExprKind::Literal(_) => {}
        ExprKind::Attr(base, _) | ExprKind::Not(base) => collect_names(base, out),
        ExprKind::Index(base, index) => {
            collect_names(base, out);
            collect_names(index, out);
        }
        ExprKind::And(items) | ExprKind::Or(items) => {
            items.iter().for_each(|e| collect_names(e, out));
        }
        ExprKind::Compare { first, rest } => {
            collect_names(first, out);
            rest.iter().for_each(|(_, e)| collect_names(e, out));
        }
        ExprKind::Binary { lhs, rhs, .. } => {
            collect_names(lhs, out);
            collect_names(rhs, out);
        }
    }
}

fn collect_paths(expr: &Expr, out: &mut Vec<PathRef>) {
    if let Some(segments) = as_path(expr) {
        out.push(PathRef {
            segments,
            span: expr.span.clone(),
        });
        return;
    }
    match &expr.kind {
        ExprKind::Literal(_) | ExprKind::Name(_) => {}
        ExprKind::Attr(base, _) | ExprKind::Not(base) => collect_paths(base, out),
        ExprKind::Index(base, index) => {
            collect_paths(base, out);
            collect_paths(index, out);
        }
        ExprKind::And(items) | ExprKind::Or(items) => {
            items.iter().for_each(|e| collect_paths(e, out));
        }
        ExprKind::Compare { first, rest } => {
            collect_paths(first, out);
            rest.iter().for_each(|(_, e)| collect_paths(e, out));
        }
        ExprKind::Binary { lhs, rhs, .. } => {
            collect_paths(lhs, out);
            collect_paths(rhs, out);
        }
    }
}

/// The path `expr` reads, if it is nothing but a path.
fn as_path(expr: &Expr) -> Option<Vec<String>> {
    match &expr.kind {
        ExprKind::Name(name) => Some(vec![name.clone()]),
        ExprKind::Attr(base, name) => {
            let mut path = as_path(base)?;
            path.push(name.clone());
            Some(path)
        }
        ExprKind::Index(base, index) => match &index.kind {
            ExprKind::Literal(Literal::Str(key)) => {
                let mut path = as_path(base)?;
                path.push(key.clone());
                Some(path)
            }
            _ => None,
        },
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Display: canonical source form
// ---------------------------------------------------------------------------

/// Binding strength of an expression's outermost operator; atoms and
/// postfix expressions bind tightest.
fn precedence(kind: &ExprKind) -> u8 {
    match kind {
        ExprKind::Or(_) => 1,
        ExprKind::And(_) => 2,
        ExprKind::Not(_) => 3,
        ExprKind::Compare { .. } => 4,
        ExprKind::Binary { op, .. } if op.is_multiplicative() => 6,
        ExprKind::Binary { .. } => 5,
        ExprKind::Literal(_) | ExprKind::Name(_) | ExprKind::Attr(..) | ExprKind::Index(..) => 7,
    }
}

const ATOM: u8 = 7;

/// Writes an operand, parenthesised whenever it has an operator of its own,
/// so that mixed precedence is explicit in snapshots.
fn operand(f: &mut fmt::Formatter<'_>, e: &Expr) -> fmt::Result {
    if precedence(&e.kind) < ATOM {
        write!(f, "({e})")
    } else {
        write!(f, "{e}")
    }
}

/// Prints the expression as simple-engine source that parses back to the
/// same tree (spans aside): `True`/`False`/`None` for constants, single-quoted
/// strings, and parentheses around every operand that has an operator of its
/// own, so that precedence is explicit, except the left operand of a
/// same-precedence arithmetic chain and `not not`: `a + (b * c) - d`,
/// `a or (b and c)`, `not (a == b)`, `not not a`.
///
/// The explicit parentheses can nest deeper than the source did; a tree
/// whose printed form exceeds [`MAX_NESTING`] does not parse back.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ExprKind::Literal(lit) => write!(f, "{lit}"),
            ExprKind::Name(name) => f.write_str(name),
            ExprKind::Attr(base, name) => {
                // `1.x` would lex as the float `1.` followed by `x`.
                if matches!(base.kind, ExprKind::Literal(Literal::Int(_))) {
                    write!(f, "({base}).{name}")
                } else {
                    operand(f, base)?;
                    write!(f, ".{name}")
                }
            }
            ExprKind::Index(base, index) => {
                operand(f, base)?;
                write!(f, "[{index}]")
            }
            ExprKind::Not(inner) => {
                f.write_str("not ")?;
                // `not not x` is unambiguous, and parenthesising each level
                // of a long run would nest deeper than MAX_NESTING allows.
                if matches!(inner.kind, ExprKind::Not(_)) {
                    write!(f, "{inner}")
                } else {
                    operand(f, inner)
                }
            }
            ExprKind::And(items) | ExprKind::Or(items) => {
                let sep = if matches!(self.kind, ExprKind::And(_)) {
                    " and "
                } else {
                    " or "
                };
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(sep)?;
                    }
                    operand(f, item)?;
                }
                Ok(())
            }
            ExprKind::Compare { first, rest } => {
                operand(f, first)?;
                for (op, rhs) in rest {
                    write!(f, " {} ", op.as_str())?;
                    operand(f, rhs)?;
                }
                Ok(())
            }
            ExprKind::Binary { op, lhs, rhs } => {
                if precedence(&lhs.kind) == precedence(&self.kind) {
                    write!(f, "{lhs}")?;
                } else {
                    operand(f, lhs)?;
                }
                write!(f, " {} ", op.as_str())?;
                operand(f, rhs)
            }
        }
    }
}

/// Python literal syntax that the lexer reads back to the same value
/// (`inf` prints as `1e999`; NaN, which no literal produces, as `nan`).
impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Int(i) => write!(f, "{i}"),
            Literal::Float(x) if x.is_nan() => f.write_str("nan"),
            Literal::Float(x) if x.is_infinite() => f.write_str("1e999"),
            // `{:?}` always has a `.` or an exponent, so it reads back as a
            // float, never as an integer.
            Literal::Float(x) => write!(f, "{x:?}"),
            Literal::Str(s) => {
                f.write_str("'")?;
                for c in s.chars() {
                    match c {
                        '\\' => f.write_str("\\\\")?,
                        '\'' => f.write_str("\\'")?,
                        '\n' => f.write_str("\\n")?,
                        '\r' => f.write_str("\\r")?,
                        '\t' => f.write_str("\\t")?,
                        c if (c as u32) < 0x20 || c == '\x7f' => write!(f, "\\x{:02x}", c as u32)?,
                        c => write!(f, "{c}")?,
                    }
                }
                f.write_str("'")
            }
            Literal::Bool(true) => f.write_str("True"),
            Literal::Bool(false) => f.write_str("False"),
            Literal::Null => f.write_str("None"),
        }
    }
}

impl fmt::Display for CmpOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for ArithOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// An identifier that is not a Python keyword (`true`, `null`, … are
    /// names to Python; the parser turns them into literals).
    Name(String),
    /// A Python keyword, reserved even where the simple engine has no use
    /// for it, because Python rejects it as a name.
    Kw(&'static str),
    Int(i64),
    Float(f64),
    Str(String),
    /// Operators and delimiters, including some that are not Python tokens
    /// (`&&`, `||`, `===`) so that they get a precise message.
    Op(&'static str),
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    span: Range<usize>,
}

const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

/// Longest first, so that the first match is the longest.
const OPERATORS: &[&str] = &[
    "**=", "//=", ">>=", "<<=", "...", "===", "!==", "->", ":=", "**", "//", "<<", ">>", "<=",
    ">=", "==", "!=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "@=", "&&", "||", "<>", "+",
    "-", "*", "/", "%", "@", "&", "|", "^", "~", "<", ">", "(", ")", "[", "]", "{", "}", ",", ":",
    ".", ";", "=", "!",
];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || (!c.is_ascii() && c.is_alphabetic())
}

fn is_ident_continue(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || (!c.is_ascii() && c.is_alphanumeric())
}

struct Lexer<'s> {
    src: &'s str,
    pos: usize,
}

impl<'s> Lexer<'s> {
    fn new(src: &'s str) -> Self {
        Lexer { src, pos: 0 }
    }

    fn rest(&self) -> &'s str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// All tokens, ending with [`Tok::Eof`].
    fn run(mut self) -> Result<Vec<Token>, ParseError> {
        let mut tokens = Vec::new();
        loop {
            self.skip_trivia()?;
            let start = self.pos;
            let Some(c) = self.peek() else {
                tokens.push(Token {
                    tok: Tok::Eof,
                    span: start..start,
                });
                return Ok(tokens);
            };
            let tok = if is_ident_start(c) {
                self.ident_or_prefixed_string()?
            } else if c.is_ascii_digit()
                || (c == '.' && self.peek2().is_some_and(|d| d.is_ascii_digit()))
            {
                self.number()?
            } else if c == '\'' || c == '"' {
                self.string(start, "")?
            } else if let Some(op) = OPERATORS
                .iter()
                .copied()
                .find(|op| self.rest().starts_with(op))
            {
                self.pos += op.len();
                Tok::Op(op)
            } else {
                return Err(invalid_character(c, start));
            };
            tokens.push(Token {
                tok,
                span: start..self.pos,
            });
        }
    }

    /// Skips whitespace, `#` comments and backslash line continuations.
    fn skip_trivia(&mut self) -> Result<(), ParseError> {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\n' | '\r' | '\x0c' => {
                    self.pos += 1;
                }
                '#' => {
                    let len = self.rest().find('\n').unwrap_or(self.rest().len());
                    self.pos += len;
                }
                '\\' => {
                    let after = &self.rest()[1..];
                    if after.starts_with('\n') {
                        self.pos += 2;
                    } else if after.starts_with("\r\n") {
                        self.pos += 3;
                    } else {
                        return Err(ParseError::new(
                            "unexpected character `\\` outside a string",
                            self.pos..self.pos + 1,
                        )
                        .with_help("a backslash outside a string may only end a line, to continue it on the next"));
                    }
                }
                _ => break,
            }
        }
        Ok(())
    }

    fn ident_or_prefixed_string(&mut self) -> Result<Tok, ParseError> {
        let start = self.pos;
        while self.peek().is_some_and(is_ident_continue) {
            self.bump();
        }
        let word = &self.src[start..self.pos];
        if matches!(self.peek(), Some('\'' | '"'))
            && matches!(
                word.to_ascii_lowercase().as_str(),
                "r" | "u" | "b" | "br" | "rb" | "f" | "fr" | "rf" | "t" | "tr" | "rt"
            )
        {
            return self.string(start, word);
        }
        Ok(match KEYWORDS.iter().copied().find(|k| *k == word) {
            Some(kw) => Tok::Kw(kw),
            None => Tok::Name(word.to_owned()),
        })
    }

    /// A run of digits of `radix` in which single underscores may separate
    /// digits (and, after a `0x`-style prefix, precede the first one).
    /// Returns the digits without underscores; `Err` holds the offset of a
    /// misplaced underscore.
    fn digits(&mut self, radix: u32, leading_underscore: bool) -> Result<String, usize> {
        let mut out = String::new();
        loop {
            match self.peek() {
                Some('_') if leading_underscore || !out.is_empty() => {
                    if self.peek2().is_some_and(|d| d.is_digit(radix)) {
                        self.pos += 1;
                    } else {
                        return Err(self.pos);
                    }
                }
                Some(d) if d.is_digit(radix) => {
                    out.push(d);
                    self.pos += 1;
                }
                _ => return Ok(out),
            }
        }
    }

    /// The end of the identifier-like run starting at the current position,
    /// for spanning the whole of a malformed literal such as `12abc`.
    fn run_end(&self) -> usize {
        let len: usize = self
            .rest()
            .chars()
            .take_while(|c| is_ident_continue(*c))
            .map(char::len_utf8)
            .sum();
        self.pos + len
    }

    /// The end of a malformed literal whose first bad character is at `at`:
    /// at least that character, and the rest of an identifier-like run.
    fn error_end(&self, at: usize) -> usize {
        let bad = self.src[at..].chars().next().map_or(0, char::len_utf8);
        self.run_end().max(at + bad)
    }

    fn number(&mut self) -> Result<Tok, ParseError> {
        let start = self.pos;
        let lower_prefix = self.rest().get(..2).map(str::to_ascii_lowercase);
        let radix = match lower_prefix.as_deref() {
            Some("0x") => Some((16, "hexadecimal")),
            Some("0o") => Some((8, "octal")),
            Some("0b") => Some((2, "binary")),
            _ => None,
        };
        if let Some((radix, kind)) = radix {
            self.pos += 2;
            let invalid = |this: &Self, at: usize| {
                ParseError::new(format!("invalid {kind} literal"), start..this.error_end(at))
            };
            let digits = self.digits(radix, true).map_err(|at| invalid(self, at))?;
            if let Some(c) = self.peek().filter(|c| is_ident_continue(*c)) {
                let err = if c.is_ascii_digit() {
                    ParseError::new(
                        format!("invalid digit `{c}` in {kind} literal"),
                        self.pos..self.pos + 1,
                    )
                } else {
                    invalid(self, self.pos)
                };
                return Err(err);
            }
            if digits.is_empty() {
                return Err(ParseError::new(
                    format!("invalid {kind} literal"),
                    start..self.pos,
                ));
            }
            return u64::from_str_radix(&digits, radix)
                .ok()
                .and_then(|v| i64::try_from(v).ok())
                .map(Tok::Int)
                .ok_or_else(|| too_large(start..self.pos));
        }

        let invalid_decimal = |this: &Self, at: usize| {
            ParseError::new("invalid decimal literal", start..this.error_end(at))
        };
        let int_part = self
            .digits(10, false)
            .map_err(|at| invalid_decimal(self, at))?;
        let mut text = int_part.clone();
        let mut is_float = false;
        if self.peek() == Some('.') {
            self.pos += 1;
            is_float = true;
            text.push('.');
            if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                text += &self
                    .digits(10, false)
                    .map_err(|at| invalid_decimal(self, at))?;
            }
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let sign = matches!(self.peek2(), Some('+' | '-'));
            let first_digit = self.rest()[1 + usize::from(sign)..].chars().next();
            if first_digit.is_some_and(|d| d.is_ascii_digit()) {
                text.push('e');
                if sign {
                    text.push_str(&self.rest()[1..2]);
                }
                self.pos += 1 + usize::from(sign);
                text += &self
                    .digits(10, false)
                    .map_err(|at| invalid_decimal(self, at))?;
                is_float = true;
            }
        }
        if matches!(self.peek(), Some('j' | 'J')) && !self.peek2().is_some_and(is_ident_continue) {
            return Err(ParseError::new(
                "complex (imaginary) number literals are not supported",
                start..self.pos + 1,
            ));
        }
        if self.peek().is_some_and(is_ident_continue) {
            return Err(invalid_decimal(self, self.pos));
        }
        let span = start..self.pos;
        if is_float {
            // The text is `digits . digits e digits` with every part
            // optional but one, which Rust's float syntax accepts.
            return text
                .parse::<f64>()
                .map(Tok::Float)
                .map_err(|_| ParseError::new("invalid float literal", span));
        }
        if int_part.len() > 1 && int_part.starts_with('0') && int_part.bytes().any(|b| b != b'0') {
            return Err(ParseError::new(
                "leading zeros in decimal integer literals are not permitted",
                span,
            )
            .with_help(format!(
                "write `{}`, or `0o{}` for an octal number",
                int_part.trim_start_matches('0'),
                int_part.trim_start_matches('0')
            )));
        }
        int_part
            .parse::<i64>()
            .map(Tok::Int)
            .map_err(|_| too_large(span))
    }

    /// A string literal whose `prefix` (possibly empty) starts at `start`;
    /// the current position is at the opening quote.
    fn string(&mut self, start: usize, prefix: &str) -> Result<Tok, ParseError> {
        let prefix = prefix.to_ascii_lowercase();
        let raw = prefix.contains('r');
        let bytes = prefix.contains('b');
        let formatted = prefix.contains('f') || prefix.contains('t');
        // Bytes and f-strings are rejected whatever they contain, so their
        // escapes are only skipped over, to find where they end.
        let cook = !raw && !bytes && !formatted;

        let Some(quote) = self.bump() else {
            return Err(ParseError::new("expected a string", start..self.pos));
        };
        let mut after = self.rest().chars();
        let triple = after.next() == Some(quote) && after.next() == Some(quote);
        if triple {
            self.pos += 2;
        }
        let closing: String = std::iter::repeat_n(quote, if triple { 3 } else { 1 }).collect();
        let unterminated = |end: usize| {
            let what = if triple {
                "unterminated triple-quoted string literal"
            } else {
                "unterminated string literal"
            };
            ParseError::new(what, start..end)
                .with_help(format!("close the string with `{closing}`"))
        };

        let mut value = String::new();
        loop {
            if self.rest().starts_with(closing.as_str()) {
                self.pos += closing.len();
                break;
            }
            let Some(c) = self.peek() else {
                return Err(unterminated(self.pos));
            };
            if !triple && (c == '\n' || c == '\r') {
                return Err(unterminated(self.pos));
            }
            if c != '\\' {
                value.push(c);
                self.pos += c.len_utf8();
                continue;
            }
            let escape_start = self.pos;
            self.pos += 1;
            let Some(e) = self.bump() else {
                return Err(unterminated(self.pos));
            };
            if !cook {
                // A backslash still keeps the next character (even a quote
                // or a line break) from ending the literal.
                value.push('\\');
                value.push(e);
                continue;
            }
            match e {
                '\n' => {}
                '\r' => {
                    if self.peek() == Some('\n') {
                        self.pos += 1;
                    }
                }
                '\\' | '\'' | '"' => value.push(e),
                'a' => value.push('\x07'),
                'b' => value.push('\x08'),
                'f' => value.push('\x0c'),
                'n' => value.push('\n'),
                'r' => value.push('\r'),
                't' => value.push('\t'),
                'v' => value.push('\x0b'),
                '0'..='7' => {
                    let mut code = e.to_digit(8).unwrap_or(0);
                    for _ in 0..2 {
                        match self.peek().and_then(|d| d.to_digit(8)) {
                            Some(d) => {
                                code = code * 8 + d;
                                self.pos += 1;
                            }
                            None => break,
                        }
                    }
                    // At most 0o777, always a valid scalar value.
                    value.push(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
                }
                'x' | 'u' | 'U' => {
                    let (len, form) = match e {
                        'x' => (2, "\\xXX"),
                        'u' => (4, "\\uXXXX"),
                        _ => (8, "\\UXXXXXXXX"),
                    };
                    let hex: String = self
                        .rest()
                        .chars()
                        .take(len)
                        .take_while(char::is_ascii_hexdigit)
                        .collect();
                    if hex.len() < len {
                        return Err(ParseError::new(
                            format!("truncated `{form}` escape"),
                            escape_start..self.pos + hex.len(),
                        )
                        .with_help(format!(
                            "`\\{e}` must be followed by exactly {len} hexadecimal digits"
                        )));
                    }
                    self.pos += len;
                    let code = u32::from_str_radix(&hex, 16).unwrap_or(u32::MAX);
                    let Some(ch) = char::from_u32(code) else {
                        let why = if (0xD800..0xE000).contains(&code) {
                            "is a lone surrogate, which a condition string cannot hold"
                        } else {
                            "is not a Unicode character"
                        };
                        return Err(ParseError::new(
                            format!("`{}` {why}", &self.src[escape_start..self.pos]),
                            escape_start..self.pos,
                        ));
                    };
                    value.push(ch);
                }
                'N' => {
                    return Err(ParseError::new(
                        "`\\N{...}` named escapes are not supported",
                        escape_start..self.pos,
                    )
                    .with_help("write the character itself, or use a `\\uXXXX` escape"));
                }
                // Python keeps unknown escapes as written (with a warning).
                other => {
                    value.push('\\');
                    value.push(other);
                }
            }
        }
        let span = start..self.pos;
        if formatted {
            return Err(ParseError::new("f-strings are not supported", span)
                .with_help("build the string with `+`, e.g. `'step ' + context.name`"));
        }
        if bytes {
            return Err(ParseError::new("bytes literals are not supported", span)
                .with_help("remove the `b` prefix to write a string"));
        }
        Ok(Tok::Str(value))
    }
}

#[cold]
#[inline(never)]
fn too_deep(span: Range<usize>) -> ParseError {
    ParseError::new(
        format!("expression is nested too deeply (more than {MAX_DEPTH} levels)"),
        span,
    )
    .with_help("split the condition into simpler parts")
}

#[cold]
#[inline(never)]
fn too_many_brackets(open: Range<usize>) -> ParseError {
    ParseError::new(
        format!("too many nested brackets (more than {MAX_NESTING})"),
        open,
    )
}

fn too_large(span: Range<usize>) -> ParseError {
    ParseError::new("integer literal is too large", span).with_help(format!(
        "the simple engine's integers go up to {}; write a float such as `1e20` for larger numbers",
        i64::MAX
    ))
}

fn invalid_character(c: char, at: usize) -> ParseError {
    let span = at..at + c.len_utf8();
    let code = c as u32;
    if c.is_control() || c.is_whitespace() {
        return ParseError::new(
            format!("invalid non-printable character U+{code:04X}"),
            span,
        )
        .with_help("use plain spaces, tabs or line breaks between tokens");
    }
    let err = ParseError::new(format!("invalid character `{c}` (U+{code:04X})"), span);
    match c {
        '?' => err.with_help(
            "the simple engine has no `c ? a : b`; use separate transitions, or `expression_engine: cel`",
        ),
        '\u{2018}' | '\u{2019}' | '\u{201C}' | '\u{201D}' => {
            err.with_help("use straight quotes, `'` or `\"`, around strings")
        }
        '$' => err.with_help("variables are written without `$`, e.g. `context.score`"),
        _ => err,
    }
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

/// An expression under construction, with what the parser needs to know
/// about it beyond the [`Expr`] itself.
struct Node {
    expr: Expr,
    /// Depth of the tree rooted here, checked against [`MAX_DEPTH`].
    depth: usize,
    /// The span including any parentheses around the expression, which the
    /// span of an enclosing expression starts or ends with.
    outer: Range<usize>,
}

/// What the parser expects after a complete operand when it finds a token
/// that cannot continue the expression.
#[derive(Clone)]
enum Closer {
    /// The end of the text.
    End,
    /// The `)` of the `(` at this span.
    Paren(Range<usize>),
    /// The `]` of the `[` at this span.
    Bracket(Range<usize>),
}

struct Parser<'s> {
    src: &'s str,
    /// Never empty: ends with [`Tok::Eof`], which `bump` never moves past.
    tokens: Vec<Token>,
    pos: usize,
    /// Brackets currently open, checked against [`MAX_NESTING`].
    nesting: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn peek_nth(&self, n: usize) -> &Token {
        &self.tokens[(self.pos + n).min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let token = self.peek().clone();
        if !matches!(token.tok, Tok::Eof) {
            self.pos += 1;
        }
        token
    }

    fn at_kw(&self, kw: &str) -> bool {
        matches!(self.peek().tok, Tok::Kw(k) if k == kw)
    }

    fn at_op(&self, op: &str) -> bool {
        matches!(self.peek().tok, Tok::Op(o) if o == op)
    }

    fn text(&self, span: &Range<usize>) -> &str {
        self.src.get(span.clone()).unwrap_or("")
    }

    /// A node one level above children of depth `child_depth`.
    fn node(
        &self,
        kind: ExprKind,
        span: Range<usize>,
        child_depth: usize,
    ) -> Result<Node, ParseError> {
        let depth = child_depth + 1;
        if depth > MAX_DEPTH {
            return Err(too_deep(span));
        }
        Ok(Node {
            expr: Expr::new(kind, span.clone()),
            depth,
            outer: span,
        })
    }

    fn open_bracket(&mut self, open: &Range<usize>) -> Result<(), ParseError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(too_many_brackets(open.clone()));
        }
        Ok(())
    }

    // The functions from here to `parse_parenthesized` recurse once per
    // bracket level. They are kept small, with every error built in a
    // separate cold function, because their frames are what
    // [`MAX_NESTING`] multiplies.

    fn parse_expr(&mut self) -> Result<Node, ParseError> {
        let first = self.parse_and()?;
        if !self.at_kw("or") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.at_kw("or") {
            self.bump();
            items.push(self.parse_and()?);
        }
        self.bool_node(items, ExprKind::Or)
    }

    fn parse_and(&mut self) -> Result<Node, ParseError> {
        let first = self.parse_not()?;
        if !self.at_kw("and") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.at_kw("and") {
            self.bump();
            items.push(self.parse_not()?);
        }
        self.bool_node(items, ExprKind::And)
    }

    /// A flat `and`/`or` over two or more operands, as in Python's `BoolOp`.
    fn bool_node(
        &self,
        items: Vec<Node>,
        kind: fn(Vec<Expr>) -> ExprKind,
    ) -> Result<Node, ParseError> {
        let depth = items.iter().map(|n| n.depth).max().unwrap_or(0);
        let start = items.first().map_or(0, |n| n.outer.start);
        let end = items.last().map_or(0, |n| n.outer.end);
        let exprs = items.into_iter().map(|n| n.expr).collect();
        self.node(kind(exprs), start..end, depth)
    }

    fn parse_not(&mut self) -> Result<Node, ParseError> {
        // Iterative, so that a long run of `not`s costs no stack.
        let mut nots = Vec::new();
        while self.at_kw("not") {
            nots.push(self.bump().span.start);
        }
        let mut node = self.parse_comparison()?;
        for start in nots.into_iter().rev() {
            let span = start..node.outer.end;
            node = self.node(ExprKind::Not(Box::new(node.expr)), span, node.depth)?;
        }
        Ok(node)
    }

    fn comparison_op(&self) -> Option<CmpOp> {
        match self.peek().tok {
            Tok::Op("==") => Some(CmpOp::Eq),
            Tok::Op("!=") => Some(CmpOp::NotEq),
            Tok::Op("<") => Some(CmpOp::Lt),
            Tok::Op("<=") => Some(CmpOp::LtE),
            Tok::Op(">") => Some(CmpOp::Gt),
            Tok::Op(">=") => Some(CmpOp::GtE),
            _ => None,
        }
    }

    fn parse_comparison(&mut self) -> Result<Node, ParseError> {
        let first = self.parse_arith()?;
        let mut rest = Vec::new();
        while let Some(op) = self.comparison_op() {
            self.bump();
            rest.push((op, self.parse_arith()?));
        }
        if rest.is_empty() {
            return Ok(first);
        }
        let depth = rest
            .iter()
            .map(|(_, n)| n.depth)
            .fold(first.depth, usize::max);
        let end = rest.last().map_or(first.outer.end, |(_, n)| n.outer.end);
        let span = first.outer.start..end;
        let rest = rest.into_iter().map(|(op, n)| (op, n.expr)).collect();
        self.node(
            ExprKind::Compare {
                first: Box::new(first.expr),
                rest,
            },
            span,
            depth,
        )
    }

    /// `arith`: `+` and `-`, left-associative.
    fn parse_arith(&mut self) -> Result<Node, ParseError> {
        let mut lhs = self.parse_term()?;
        loop {
            let op = match self.peek().tok {
                Tok::Op("+") => ArithOp::Add,
                Tok::Op("-") => ArithOp::Sub,
                _ => return Ok(lhs),
            };
            self.bump();
            let rhs = self.parse_term()?;
            lhs = self.binary_node(op, lhs, rhs)?;
        }
    }

    /// `term`: `*` and `/`, left-associative.
    fn parse_term(&mut self) -> Result<Node, ParseError> {
        let mut lhs = self.parse_postfix()?;
        loop {
            let op = match self.peek().tok {
                Tok::Op("*") => ArithOp::Mul,
                Tok::Op("/") => ArithOp::Div,
                _ => return Ok(lhs),
            };
            self.bump();
            let rhs = self.parse_postfix()?;
            lhs = self.binary_node(op, lhs, rhs)?;
        }
    }

    fn binary_node(&self, op: ArithOp, lhs: Node, rhs: Node) -> Result<Node, ParseError> {
        let span = lhs.outer.start..rhs.outer.end;
        let depth = lhs.depth.max(rhs.depth);
        let kind = ExprKind::Binary {
            op,
            lhs: Box::new(lhs.expr),
            rhs: Box::new(rhs.expr),
        };
        self.node(kind, span, depth)
    }

    fn parse_postfix(&mut self) -> Result<Node, ParseError> {
        let mut node = if self.at_op("(") {
            self.parse_parenthesized()?
        } else {
            self.parse_atom()?
        };
        loop {
            node = match self.peek().tok {
                Tok::Op(".") => self.parse_attr(node)?,
                Tok::Op("[") => self.parse_index(node)?,
                Tok::Op("(") => return Err(self.call_error(&node)),
                _ => return Ok(node),
            };
        }
    }

    fn parse_index(&mut self, base: Node) -> Result<Node, ParseError> {
        let open = self.bump().span;
        self.open_bracket(&open)?;
        if self.at_op("]") || self.at_op(":") {
            return Err(self.bad_subscript(open));
        }
        let index = self.parse_expr()?;
        if !self.at_op("]") {
            return Err(self.unexpected_after_operand(Closer::Bracket(open)));
        }
        let close = self.bump().span;
        self.nesting -= 1;
        let span = base.outer.start..close.end;
        let depth = base.depth.max(index.depth);
        self.node(
            ExprKind::Index(Box::new(base.expr), Box::new(index.expr)),
            span,
            depth,
        )
    }

    fn parse_parenthesized(&mut self) -> Result<Node, ParseError> {
        let open = self.bump().span;
        self.open_bracket(&open)?;
        if self.at_op(")") {
            return Err(self.empty_tuple(open));
        }
        let inner = self.parse_expr()?;
        if !self.at_op(")") {
            return Err(self.unexpected_after_operand(Closer::Paren(open)));
        }
        let close = self.bump().span;
        self.nesting -= 1;
        Ok(Node {
            outer: open.start..close.end,
            ..inner
        })
    }

    /// `base.name`, at the `.`.
    fn parse_attr(&mut self, base: Node) -> Result<Node, ParseError> {
        let dot = self.bump().span;
        let name = self.peek().clone();
        let Tok::Name(attr) = name.tok else {
            return Err(self.bad_attribute(&base, dot, &name));
        };
        self.bump();
        let span = base.outer.start..name.span.end;
        self.node(ExprKind::Attr(Box::new(base.expr), attr), span, base.depth)
    }

    /// A primary other than a parenthesised expression.
    fn parse_atom(&mut self) -> Result<Node, ParseError> {
        let token = self.peek().clone();
        let lit = match token.tok {
            Tok::Int(i) => Literal::Int(i),
            Tok::Float(x) => Literal::Float(x),
            Tok::Kw("True") => Literal::Bool(true),
            Tok::Kw("False") => Literal::Bool(false),
            Tok::Kw("None") => Literal::Null,
            Tok::Name(name) => match name.as_str() {
                "true" => Literal::Bool(true),
                "false" => Literal::Bool(false),
                "null" => Literal::Null,
                _ => {
                    self.bump();
                    return self.node(ExprKind::Name(name), token.span, 0);
                }
            },
            Tok::Str(_) => {
                // Adjacent literals are one string, as in Python.
                let mut value = String::new();
                let mut end = token.span.end;
                while let Tok::Str(part) = &self.peek().tok {
                    value.push_str(part);
                    end = self.peek().span.end;
                    self.bump();
                }
                let span = token.span.start..end;
                return self.node(ExprKind::Literal(Literal::Str(value)), span, 0);
            }
            _ => return Err(self.bad_operand(&token)),
        };
        self.bump();
        self.node(ExprKind::Literal(lit), token.span, 0)
    }

    // Errors. Cold and out of line: see the note above `parse_expr`.

    #[cold]
    #[inline(never)]
    fn bad_attribute(&self, base: &Node, dot: Range<usize>, name: &Token) -> ParseError {
        if let Tok::Kw(kw) = name.tok {
            let base = self.text(&base.outer);
            let base = if base.len() <= 40 { base } else { "x" };
            return ParseError::new(
                format!("`{kw}` is a Python keyword and cannot be used as an attribute name"),
                name.span.clone(),
            )
            .with_help(format!(
                "use a subscript, `{base}['{kw}']` (which, unlike `.`, fails when the key is missing)"
            ));
        }
        ParseError::new(
            format!(
                "expected an attribute name after `.`, found {}",
                self.describe(name)
            ),
            dot.start..name.span.end.max(dot.end),
        )
    }

    /// `x[]` or a slice starting with `:`.
    #[cold]
    #[inline(never)]
    fn bad_subscript(&self, open: Range<usize>) -> ParseError {
        if self.at_op(":") {
            return self.slice_error();
        }
        ParseError::new("empty subscript `[]`", open.start..self.peek().span.end)
            .with_help("put an index or a key inside, e.g. `x[0]` or `x['key']`")
    }

    #[cold]
    #[inline(never)]
    fn empty_tuple(&self, open: Range<usize>) -> ParseError {
        ParseError::new("tuples are not supported", open.start..self.peek().span.end)
            .with_help("`()` is an empty tuple; a condition needs a value between the parentheses")
    }

    #[cold]
    #[inline(never)]
    fn slice_error(&self) -> ParseError {
        ParseError::new(
            "slices (`x[a:b]`) are not supported",
            self.peek().span.clone(),
        )
        .with_help("subscript a single element, e.g. `x[0]`")
    }

    #[cold]
    #[inline(never)]
    fn call_error(&self, callee: &Node) -> ParseError {
        let paren = self.peek().span.clone();
        let (span, help) = match &callee.expr.kind {
            ExprKind::Name(name) if name == "len" => (
                callee.expr.span.start..paren.end,
                "the simple engine has no functions; use `expression_engine: cel`, where this is `size(x)`"
                    .to_owned(),
            ),
            ExprKind::Name(name) => (
                callee.expr.span.start..paren.end,
                format!("the simple engine has no functions such as `{name}`; use `expression_engine: cel`"),
            ),
            ExprKind::Attr(_, method) => (
                callee.expr.span.end - method.len()..paren.end,
                format!(
                    "the simple engine cannot call methods such as `.{method}()`; use `expression_engine: cel`, \
                     which has string and list functions"
                ),
            ),
            _ => (
                paren,
                "the simple engine cannot call anything; use `expression_engine: cel`".to_owned(),
            ),
        };
        ParseError::new("function and method calls are not supported", span).with_help(help)
    }

    /// The error for a token where an operand must start.
    #[cold]
    #[inline(never)]
    fn bad_operand(&self, token: &Token) -> ParseError {
        let span = token.span.clone();
        let unsupported =
            |msg: &str, help: &str| ParseError::new(msg, span.clone()).with_help(help);
        match &token.tok {
            Tok::Op("-") => {
                let help = match &self.peek_nth(1).tok {
                    Tok::Int(_) | Tok::Float(_) => {
                        let n = self.text(&self.peek_nth(1).span);
                        format!(
                            "write `(0 - {n})` instead of `-{n}`, or rewrite the comparison \
                             (e.g. `x > -1` as `x + 1 > 0`), or use `expression_engine: cel`"
                        )
                    }
                    _ => {
                        "subtract from zero instead, e.g. `0 - x`, or use `expression_engine: cel`"
                            .to_owned()
                    }
                };
                unsupported(
                    "unary minus is not supported (so negative numbers cannot be written directly)",
                    &help,
                )
            }
            Tok::Op("+") => unsupported("unary plus is not supported", "remove the `+`"),
            Tok::Op("~") => unsupported(
                "the bitwise inversion operator `~` is not supported",
                "use `not` for logical negation",
            ),
            Tok::Op("!") => unsupported(
                "`!` is not an operator in the simple engine",
                "use `not`, e.g. `not context.done`",
            ),
            Tok::Op("[") => unsupported(
                "list literals are not supported",
                "compare elements one at a time, or use `expression_engine: cel`",
            ),
            Tok::Op("{") => unsupported(
                "dict and set literals are not supported",
                "compare keys one at a time, or use `expression_engine: cel`",
            ),
            Tok::Op("*") => ParseError::new("starred expressions (`*x`) are not supported", span),
            Tok::Op("**") => ParseError::new("dict unpacking (`**x`) is not supported", span),
            Tok::Op("...") => {
                ParseError::new("the `...` (Ellipsis) literal is not supported", span)
            }
            Tok::Kw("not") => unsupported(
                "`not` cannot be used here without parentheses",
                "put the negation in parentheses, e.g. `a == (not b)`",
            ),
            Tok::Kw("lambda") => ParseError::new("lambda expressions are not supported", span),
            Tok::Kw(kw @ ("await" | "yield")) => {
                ParseError::new(format!("`{kw}` expressions are not supported"), span)
            }
            _ => {
                let found = self.describe(token);
                let message = match self.pos.checked_sub(1).map(|i| &self.tokens[i]) {
                    Some(prev) => format!(
                        "expected an expression after `{}`, found {found}",
                        self.text(&prev.span)
                    ),
                    None => format!("expected an expression, found {found}"),
                };
                ParseError::new(message, span)
            }
        }
    }

    /// The error for the current token, found after a complete operand where
    /// `closer` (or an operator) was expected.
    #[cold]
    #[inline(never)]
    fn unexpected_after_operand(&self, closer: Closer) -> ParseError {
        let token = self.peek().clone();
        let span = token.span.clone();
        let err = |msg: &str| ParseError::new(msg, span.clone());
        let (Tok::Op(_) | Tok::Kw(_)) = token.tok else {
            return self.missing_operator(&token, &closer);
        };
        match (&token.tok, &closer) {
            (Tok::Op(close @ (")" | "]" | "}")), Closer::End) => {
                err(&format!("unmatched `{close}`"))
                    .with_help("remove it, or add the opening bracket it closes")
            }
            (Tok::Op(close @ (")" | "]" | "}")), Closer::Paren(open) | Closer::Bracket(open)) => {
                let open_text = self.text(open);
                let expected = if open_text == "(" { ")" } else { "]" };
                err(&format!(
                    "closing `{close}` does not match the opening `{open_text}`"
                ))
                .with_help(format!("close the `{open_text}` with `{expected}`"))
            }
            (Tok::Op("%"), _) => err("the modulo operator `%` is not supported")
                .with_help("use `expression_engine: cel`, which has `%`"),
            (Tok::Op("//"), _) => err("floor division `//` is not supported")
                .with_help("use `/` (true division), or `expression_engine: cel`"),
            (Tok::Op("**"), _) => err("the power operator `**` is not supported")
                .with_help("multiply instead, e.g. `x * x`"),
            (Tok::Op("@"), _) => err("the matrix multiplication operator `@` is not supported"),
            (Tok::Op(op @ ("&" | "|" | "^" | "<<" | ">>")), _) => {
                let e = err(&format!("the bitwise operator `{op}` is not supported"));
                match *op {
                    "&" => e.with_help("for a logical AND use `and`"),
                    "|" => e.with_help("for a logical OR use `or`"),
                    _ => e,
                }
            }
            (Tok::Op("&&"), _) => {
                err("`&&` is not an operator in the simple engine").with_help("use `and`")
            }
            (Tok::Op("||"), _) => {
                err("`||` is not an operator in the simple engine").with_help("use `or`")
            }
            (Tok::Op("!"), _) => err("`!` is not an operator in the simple engine")
                .with_help("use `!=` for inequality, or `not` before an expression to negate it"),
            (Tok::Op("="), _) => {
                let next = self.peek_nth(1);
                let adjacent = next.span.start == span.end;
                let help = match next.tok {
                    Tok::Op(">") if adjacent => "did you mean `>=`?",
                    Tok::Op("<") if adjacent => "did you mean `<=`?",
                    _ => "did you mean `==`?",
                };
                err("`=` is assignment, which a condition cannot contain").with_help(help)
            }
            (Tok::Op("==="), _) => {
                err("`===` is not an operator in the simple engine").with_help("use `==`")
            }
            (Tok::Op("!=="), _) => {
                err("`!==` is not an operator in the simple engine").with_help("use `!=`")
            }
            (Tok::Op("<>"), _) => {
                err("`<>` is not an operator in the simple engine").with_help("use `!=`")
            }
            (Tok::Op(":="), _) => err("assignment expressions (`:=`) are not supported")
                .with_help("did you mean `==`?"),
            (Tok::Op(op), _)
                if op.len() >= 2
                    && op.ends_with('=')
                    && !matches!(*op, "==" | "!=" | "<=" | ">=") =>
            {
                err(&format!(
                    "augmented assignment `{op}` is not allowed in a condition"
                ))
                .with_help("a condition only reads values; did you mean a comparison?")
            }
            (Tok::Op(","), Closer::Bracket(_)) => {
                err("tuple subscripts (`x[a, b]`) are not supported")
                    .with_help("subscript one key at a time, e.g. `x[a][b]`")
            }
            (Tok::Op(","), _) => err("tuples are not supported").with_help(
                "a condition is a single expression; combine conditions with `and` / `or`",
            ),
            (Tok::Op(":"), Closer::Bracket(_)) => self.slice_error(),
            (Tok::Kw("in"), _) => {
                err("the membership operator `in` is not supported").with_help(IN_HELP)
            }
            (Tok::Kw("not"), _) if matches!(self.peek_nth(1).tok, Tok::Kw("in")) => {
                ParseError::new(
                    "the membership operator `not in` is not supported",
                    span.start..self.peek_nth(1).span.end,
                )
                .with_help(IN_HELP)
            }
            (Tok::Kw("not"), _) => err("unexpected `not` after an expression").with_help(
                "`not` goes before what it negates, e.g. `not (a == b)`; for inequality use `!=`",
            ),
            (Tok::Kw("is"), _) => {
                let (what, span, help) = if matches!(self.peek_nth(1).tok, Tok::Kw("not")) {
                    (
                        "`is not`",
                        span.start..self.peek_nth(1).span.end,
                        "use `!=` instead, e.g. `x != None`",
                    )
                } else {
                    ("`is`", span.clone(), "use `==` instead, e.g. `x == None`")
                };
                ParseError::new(
                    format!("the identity operator {what} is not supported"),
                    span,
                )
                .with_help(help)
            }
            (Tok::Kw("if"), _) => err(
                "conditional expressions (`a if c else b`) are not supported",
            )
            .with_help("use separate transitions, or `expression_engine: cel` with `c ? a : b`"),
            (Tok::Kw("for"), _) => {
                err("comprehensions and generator expressions are not supported").with_help(
                    "use `expression_engine: cel`, which has `all`, `exists`, `filter` and `map`",
                )
            }
            _ => self.missing_operator(&token, &closer),
        }
    }

    /// The generic error for a token that cannot follow a complete operand.
    #[cold]
    #[inline(never)]
    fn missing_operator(&self, token: &Token, closer: &Closer) -> ParseError {
        let found = self.describe(token);
        match (closer, &token.tok) {
            (Closer::Paren(open) | Closer::Bracket(open), Tok::Eof) => {
                let open_text = self.text(open);
                let close = if open_text == "(" { ")" } else { "]" };
                ParseError::new(format!("unclosed `{open_text}`"), open.clone())
                    .with_help(format!("add the missing `{close}`"))
            }
            _ => {
                let message = match closer {
                    Closer::End => {
                        format!("expected an operator or the end of the condition, found {found}")
                    }
                    Closer::Paren(_) => format!("expected `)` or an operator, found {found}"),
                    Closer::Bracket(_) => format!("expected `]` or an operator, found {found}"),
                };
                let err = ParseError::new(message, token.span.clone());
                match token.tok {
                    // Two operands in a row.
                    Tok::Name(_) | Tok::Int(_) | Tok::Float(_) | Tok::Str(_) => err.with_help(
                        "did you forget an operator such as `and`, `or` or `==` between the two?",
                    ),
                    _ => err,
                }
            }
        }
    }

    fn describe(&self, token: &Token) -> String {
        match &token.tok {
            Tok::Name(name) => format!("name `{name}`"),
            Tok::Kw(kw) => format!("keyword `{kw}`"),
            Tok::Int(_) | Tok::Float(_) => format!("number `{}`", self.text(&token.span)),
            Tok::Str(_) => "a string literal".to_owned(),
            Tok::Op(op) => format!("`{op}`"),
            Tok::Eof => "the end of the condition".to_owned(),
        }
    }
}

const IN_HELP: &str =
    "compare with `==` / `!=` instead, or use `expression_engine: cel`, where `x in list` works";

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn ok(src: &str) -> Expr {
        match parse(src) {
            Ok(Some(e)) => e,
            Ok(None) => panic!("{src:?} parsed as empty"),
            Err(e) => panic!("{src:?} failed: {e:?}"),
        }
    }

    #[track_caller]
    fn show(src: &str) -> String {
        ok(src).to_string()
    }

    #[track_caller]
    fn err(src: &str) -> ParseError {
        match parse(src) {
            Ok(e) => panic!("{src:?} parsed: {e:?}"),
            Err(e) => {
                assert!(src.get(e.span.clone()).is_some(), "{src:?}: bad span {e:?}");
                e
            }
        }
    }

    /// The error's message, the text its span covers, and its help.
    #[track_caller]
    fn err3(src: &str) -> (String, String, String) {
        let e = err(src);
        (
            e.message,
            src[e.span].to_owned(),
            e.help.unwrap_or_default(),
        )
    }

    fn lit(src: &str) -> Literal {
        match ok(src).kind {
            ExprKind::Literal(l) => l,
            other => panic!("{src:?} is not a literal: {other:?}"),
        }
    }

    fn name(n: &str, span: Range<usize>) -> Expr {
        Expr::new(ExprKind::Name(n.into()), span)
    }

    // --- B.2 rows that are parse questions --------------------------------

    #[test]
    fn b2_accepted_rows() {
        let rows = [
            ("context.score >= 8", "context.score >= 8"),
            (
                "context.score >= 8 and context.round < 4",
                "(context.score >= 8) and (context.round < 4)",
            ),
            ("not context.flag", "not context.flag"),
            ("context.name == 'bob'", "context.name == 'bob'"),
            ("context.name == \"bob\"", "context.name == 'bob'"),
            ("context.missing", "context.missing"),
            ("context.missing == null", "context.missing == None"),
            ("context.missing == None", "context.missing == None"),
            ("context.d.a.b == 5", "context.d.a.b == 5"),
            ("context.d.x.y", "context.d.x.y"),
            ("1 < context.round < 3", "1 < context.round < 3"),
            ("context.round + 1", "context.round + 1"),
            ("context.round / 4", "context.round / 4"),
            ("context.lst[0] == 1", "context.lst[0] == 1"),
            ("context['name']", "context['name']"),
            ("context['missing']", "context['missing']"),
            ("context.lst[5]", "context.lst[5]"),
            ("context.flag == true", "context.flag == True"),
            ("context.flag == 1", "context.flag == 1"),
            ("context.s5 == 5", "context.s5 == 5"),
            ("context.s5 > 3", "context.s5 > 3"),
            ("context.missing > 3", "context.missing > 3"),
            (
                "context.zero or context.score",
                "context.zero or context.score",
            ),
            ("context.machine.step", "context.machine.step"),
            ("'abc' < 'abd'", "'abc' < 'abd'"),
            ("1.5e3 > 1000", "1500.0 > 1000"),
            ("0x10 == 16", "16 == 16"),
            ("context.name + '!'", "context.name + '!'"),
            // An unknown variable is an evaluation error, not a parse error.
            ("input.x", "input.x"),
        ];
        for (src, canonical) in rows {
            assert_eq!(show(src), canonical, "{src}");
        }
    }

    #[test]
    fn b2_empty_means_true() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("   "), Ok(None));
        assert_eq!(parse("\n\t \r\n"), Ok(None));
    }

    #[test]
    fn b2_rejected_rows() {
        let (msg, at, _) = err3("context.round > -1");
        assert!(msg.contains("unary minus"), "{msg}");
        assert_eq!(at, "-");

        let (msg, at, _) = err3("'b' in context.name");
        assert!(msg.contains("`in`"), "{msg}");
        assert_eq!(at, "in");

        let (msg, at, help) = err3("len(context.lst)");
        assert!(msg.contains("calls are not supported"), "{msg}");
        assert_eq!(at, "len(");
        assert!(help.contains("size(x)"), "{help}");

        let (msg, at, _) = err3("context.round % 2");
        assert!(msg.contains('%'), "{msg}");
        assert_eq!(at, "%");

        let (msg, at, help) = err3("context.score >= 8 && context.round < 4");
        assert!(msg.contains("&&"), "{msg}");
        assert_eq!(at, "&&");
        assert_eq!(help, "use `and`");
    }

    // --- Tree shape and precedence ----------------------------------------

    #[test]
    fn or_binds_looser_than_and() {
        let e = ok("a or b and c");
        let ExprKind::Or(items) = &e.kind else {
            panic!("{e:?}")
        };
        assert_eq!(items[0], name("a", 0..1));
        assert!(matches!(&items[1].kind, ExprKind::And(v) if v.len() == 2));
        assert_eq!(items[1].span, 5..12);
        assert_eq!(e.to_string(), "a or (b and c)");
        assert_eq!(show("a and b or c"), "(a and b) or c");
    }

    #[test]
    fn bool_ops_are_flat_but_parentheses_nest() {
        let e = ok("a or b or c");
        assert!(matches!(&e.kind, ExprKind::Or(v) if v.len() == 3));
        let e = ok("(a or b) or c");
        let ExprKind::Or(items) = &e.kind else {
            panic!()
        };
        assert_eq!(items.len(), 2);
        assert!(matches!(&items[0].kind, ExprKind::Or(v) if v.len() == 2));
        assert_eq!(e.to_string(), "(a or b) or c");
        assert_eq!(show("a and b and c"), "a and b and c");
    }

    #[test]
    fn not_binds_looser_than_comparison() {
        let e = ok("not a == b");
        let ExprKind::Not(inner) = &e.kind else {
            panic!("{e:?}")
        };
        assert!(matches!(inner.kind, ExprKind::Compare { .. }));
        assert_eq!(e.span, 0..10);
        assert_eq!(e.to_string(), "not (a == b)");
        assert_eq!(show("not a and b"), "(not a) and b");
        assert_eq!(show("not not a"), "not not a");
        assert_eq!(show("not (not a == b)"), "not not (a == b)");
        assert_eq!(show("a and not b or c"), "(a and (not b)) or c");
    }

    #[test]
    fn multiplication_binds_tighter_than_addition() {
        let e = ok("a + b * c");
        let ExprKind::Binary {
            op: ArithOp::Add,
            lhs,
            rhs,
        } = &e.kind
        else {
            panic!("{e:?}")
        };
        assert_eq!(**lhs, name("a", 0..1));
        assert!(matches!(
            rhs.kind,
            ExprKind::Binary {
                op: ArithOp::Mul,
                ..
            }
        ));
        assert_eq!(e.to_string(), "a + (b * c)");
        assert_eq!(show("a * b + c"), "(a * b) + c");
        assert_eq!(show("a / b * c"), "a / b * c");
        assert_eq!(show("(a + b) * c"), "(a + b) * c");
    }

    #[test]
    fn arithmetic_is_left_associative() {
        let e = ok("a - b - c");
        let ExprKind::Binary {
            op: ArithOp::Sub,
            lhs,
            rhs,
        } = &e.kind
        else {
            panic!()
        };
        assert!(matches!(
            lhs.kind,
            ExprKind::Binary {
                op: ArithOp::Sub,
                ..
            }
        ));
        assert_eq!(**rhs, name("c", 8..9));
        assert_eq!(e.to_string(), "a - b - c");
        assert_eq!(show("a - (b - c)"), "a - (b - c)");
        assert_eq!(show("a - b + c"), "a - b + c");
    }

    #[test]
    fn arithmetic_binds_tighter_than_comparison() {
        assert_eq!(show("a + 1 > b * 2"), "(a + 1) > (b * 2)");
        assert_eq!(show("x.y[0] + 1 == 2"), "(x.y[0] + 1) == 2");
    }

    #[test]
    fn comparisons_chain() {
        let e = ok("a < b <= c != d");
        let ExprKind::Compare { first, rest } = &e.kind else {
            panic!()
        };
        assert_eq!(**first, name("a", 0..1));
        let ops: Vec<CmpOp> = rest.iter().map(|(op, _)| *op).collect();
        assert_eq!(ops, [CmpOp::Lt, CmpOp::LtE, CmpOp::NotEq]);
        assert_eq!(rest[2].1, name("d", 14..15));
        assert_eq!(e.to_string(), "a < b <= c != d");
        // Parentheses break a chain into nested comparisons.
        let e = ok("(a < b) < c");
        let ExprKind::Compare { first, rest } = &e.kind else {
            panic!()
        };
        assert!(matches!(first.kind, ExprKind::Compare { .. }));
        assert_eq!(rest.len(), 1);
        assert_eq!(e.to_string(), "(a < b) < c");
        for op in ["==", "!=", "<", "<=", ">", ">="] {
            let e = ok(&format!("a {op} b"));
            let ExprKind::Compare { rest, .. } = &e.kind else {
                panic!()
            };
            assert_eq!(rest[0].0.as_str(), op);
        }
    }

    #[test]
    fn postfix_binds_tightest() {
        let e = ok("context.lst[1].x");
        let ExprKind::Attr(base, attr) = &e.kind else {
            panic!()
        };
        assert_eq!(attr, "x");
        let ExprKind::Index(inner, idx) = &base.kind else {
            panic!()
        };
        assert_eq!(idx.kind, ExprKind::Literal(Literal::Int(1)));
        assert_eq!(inner.span, 0..11);
        assert_eq!(base.span, 0..14);
        assert_eq!(e.span, 0..16);
        assert_eq!(show("context[context.k]['a']"), "context[context.k]['a']");
        assert_eq!(show("(a + b).c"), "(a + b).c");
        assert_eq!(show("'abc'[0]"), "'abc'[0]");
        assert_eq!(show("a . b"), "a.b");
        assert_eq!(show("a[b + 1]"), "a[b + 1]");
    }

    #[test]
    fn spans_follow_python_parentheses_rules() {
        let src = "(a + b) * c";
        let e = ok(src);
        assert_eq!(e.span, 0..11);
        let ExprKind::Binary { lhs, .. } = &e.kind else {
            panic!()
        };
        assert_eq!(lhs.span, 1..6);
        assert_eq!(ok("((a))").span, 2..3);
        assert_eq!(ok("  x  ").span, 2..3);
        let e = ok("not (a)");
        assert_eq!(e.span, 0..7);
    }

    #[test]
    fn names_and_keyword_literals() {
        assert_eq!(ok("context").kind, ExprKind::Name("context".into()));
        assert_eq!(ok("_x1").kind, ExprKind::Name("_x1".into()));
        assert_eq!(ok("été").kind, ExprKind::Name("été".into()));
        for (src, l) in [
            ("true", Literal::Bool(true)),
            ("True", Literal::Bool(true)),
            ("false", Literal::Bool(false)),
            ("False", Literal::Bool(false)),
            ("null", Literal::Null),
            ("None", Literal::Null),
        ] {
            assert_eq!(lit(src), l, "{src}");
        }
        // After `.` these are plain keys.
        assert_eq!(show("context.true"), "context.true");
        assert_eq!(show("context.null.x"), "context.null.x");
        // Soft keywords are names.
        assert_eq!(ok("match").kind, ExprKind::Name("match".into()));
    }

    // --- Literals ---------------------------------------------------------

    #[test]
    fn integer_literals() {
        for (src, v) in [
            ("0", 0),
            ("00", 0),
            ("0_0", 0),
            ("7", 7),
            ("1_000", 1000),
            ("0x10", 16),
            ("0X_ff", 255),
            ("0o7", 7),
            ("0O17", 15),
            ("0b1", 1),
            ("0b_1010", 10),
            ("9223372036854775807", i64::MAX),
            ("0x7fff_ffff_ffff_ffff", i64::MAX),
        ] {
            assert_eq!(lit(src), Literal::Int(v), "{src}");
        }
    }

    #[test]
    fn float_literals() {
        for (src, v) in [
            ("1.5", 1.5),
            ("1.5e3", 1500.0),
            (".5", 0.5),
            ("1.", 1.0),
            ("1e3", 1000.0),
            ("1E+3", 1000.0),
            ("2e-2", 0.02),
            ("1_0.2_5", 10.25),
            ("1.e2", 100.0),
            ("01.5", 1.5),
            ("0e0", 0.0),
        ] {
            assert_eq!(lit(src), Literal::Float(v), "{src}");
        }
        assert_eq!(lit("1e999"), Literal::Float(f64::INFINITY));
        assert_eq!(show("1e999"), "1e999");
        assert_eq!(show("1e300"), "1e300");
        assert_eq!(show("1.0"), "1.0");
    }

    #[test]
    fn bad_number_literals() {
        let (msg, at, help) = err3("x == 012");
        assert!(msg.contains("leading zeros"), "{msg}");
        assert_eq!(at, "012");
        assert!(help.contains("0o12"), "{help}");
        let (msg, at, _) = err3("1__0");
        assert_eq!(msg, "invalid decimal literal");
        assert_eq!(at, "1__0");
        let (msg, _, _) = err3("1_");
        assert_eq!(msg, "invalid decimal literal");
        let (msg, at, _) = err3("12abc > 1");
        assert_eq!(msg, "invalid decimal literal");
        assert_eq!(at, "12abc");
        let (msg, _, _) = err3("1e");
        assert_eq!(msg, "invalid decimal literal");
        let (msg, _, _) = err3("1.x");
        assert_eq!(msg, "invalid decimal literal");
        let (msg, at, _) = err3("0b102");
        assert_eq!(msg, "invalid digit `2` in binary literal");
        assert_eq!(at, "2");
        let (msg, at, _) = err3("0o8");
        assert_eq!(msg, "invalid digit `8` in octal literal");
        assert_eq!(at, "8");
        let (msg, at, _) = err3("0x");
        assert_eq!(msg, "invalid hexadecimal literal");
        assert_eq!(at, "0x");
        assert_eq!(err3("0x.5").1, "0x");
        assert_eq!(err3("1é").1, "1é");
        let (msg, _, _) = err3("0xfg");
        assert_eq!(msg, "invalid hexadecimal literal");
        let (msg, at, _) = err3("x == 2j");
        assert!(msg.contains("complex"), "{msg}");
        assert_eq!(at, "2j");
        let (msg, at, help) = err3("9223372036854775808");
        assert_eq!(msg, "integer literal is too large");
        assert_eq!(at, "9223372036854775808");
        assert!(help.contains("1e20"), "{help}");
        assert_eq!(err3("0x8000000000000000").0, "integer literal is too large");
        assert_eq!(
            err3("0b1111111111111111111111111111111111111111111111111111111111111111111").0,
            "integer literal is too large"
        );
    }

    #[test]
    fn string_literals_and_escapes() {
        let cases = [
            (r#"'a'"#, "a"),
            (r#""a""#, "a"),
            (r#"'it\'s'"#, "it's"),
            (r#""say \"hi\"""#, "say \"hi\""),
            (r#"'"'"#, "\""),
            (r#"'\\'"#, "\\"),
            (r#"'\n\t\r'"#, "\n\t\r"),
            (r#"'\a\b\f\v'"#, "\x07\x08\x0c\x0b"),
            (r#"'\x41\x7a'"#, "Az"),
            (r#"'\u00e9'"#, "é"),
            (r#"'\U0001F600'"#, "\u{1F600}"),
            (r#"'\101\0'"#, "A\0"),
            (r#"'\d'"#, "\\d"),
            ("'a\\\nb'", "ab"),
            (r#"r'\d\n'"#, "\\d\\n"),
            (r#"R'\''"#, "\\'"),
            (r#"u'x'"#, "x"),
            ("'''a\n'b'''", "a\n'b"),
            (r#""""q""""#, "q"),
            ("'ünï'", "ünï"),
            (r#"'a' "b"  'c'"#, "abc"),
            ("''", ""),
        ];
        for (src, v) in cases {
            assert_eq!(lit(src), Literal::Str(v.into()), "{src}");
        }
        assert_eq!(ok("'a' 'b' == x").span, 0..12);
        let e = ok("'a' 'b'");
        assert_eq!(e.span, 0..7);
    }

    #[test]
    fn string_display_reparses() {
        let e = ok(r#"'it\'s \\ "q"\n\x01é'"#);
        let printed = e.to_string();
        assert_eq!(printed, r#"'it\'s \\ "q"\n\x01é'"#);
        assert_eq!(ok(&printed).kind, e.kind);
    }

    #[test]
    fn bad_string_literals() {
        let (msg, at, help) = err3("context.name == 'bob");
        assert_eq!(msg, "unterminated string literal");
        assert_eq!(at, "'bob");
        assert_eq!(help, "close the string with `'`");
        let (msg, at, _) = err3("x == \"ab\ncd\"");
        assert_eq!(msg, "unterminated string literal");
        assert_eq!(at, "\"ab");
        let (msg, _, help) = err3("'''abc''");
        assert_eq!(msg, "unterminated triple-quoted string literal");
        assert_eq!(help, "close the string with `'''`");
        assert_eq!(err3("'abc\\'").0, "unterminated string literal");
        let (msg, at, _) = err3(r#"'\x4'"#);
        assert_eq!(msg, "truncated `\\xXX` escape");
        assert_eq!(at, "\\x4");
        assert_eq!(err3(r#"'\u12'"#).0, "truncated `\\uXXXX` escape");
        assert_eq!(err3(r#"'\U0001F6'"#).0, "truncated `\\UXXXXXXXX` escape");
        let (msg, at, _) = err3(r#"'\ud800'"#);
        assert!(msg.contains("lone surrogate"), "{msg}");
        assert_eq!(at, "\\ud800");
        assert!(
            err3(r#"'\U00110000'"#)
                .0
                .contains("not a Unicode character")
        );
        let (msg, at, _) = err3(r#"'\N{DASH}'"#);
        assert!(msg.contains("named escapes"), "{msg}");
        assert_eq!(at, "\\N");
        let (msg, at, help) = err3("f'{context.x}' == 'a'");
        assert_eq!(msg, "f-strings are not supported");
        assert_eq!(at, "f'{context.x}'");
        assert!(help.contains('+'), "{help}");
        assert_eq!(err3("F\"x\"").0, "f-strings are not supported");
        assert_eq!(err3("rf'x'").0, "f-strings are not supported");
        assert_eq!(err3("f'\\x'").0, "f-strings are not supported");
        let (msg, at, _) = err3("b'abc' == x");
        assert_eq!(msg, "bytes literals are not supported");
        assert_eq!(at, "b'abc'");
        assert_eq!(err3("rb'x'").0, "bytes literals are not supported");
    }

    // --- Rejected constructs: message, span, help -------------------------

    #[test]
    fn unary_operators() {
        let (msg, at, help) = err3("x > -1");
        assert!(msg.starts_with("unary minus is not supported"), "{msg}");
        assert_eq!(at, "-");
        assert!(
            help.contains("`(0 - 1)`") && help.contains("expression_engine: cel"),
            "{help}"
        );
        let (msg, at, help) = err3("-x");
        assert!(msg.starts_with("unary minus"), "{msg}");
        assert_eq!(at, "-");
        assert!(help.contains("0 - x"), "{help}");
        let (msg, at, _) = err3("a * -b");
        assert!(msg.starts_with("unary minus"), "{msg}");
        assert_eq!(at, "-");
        let (msg, at, help) = err3("x == +1");
        assert_eq!(msg, "unary plus is not supported");
        assert_eq!(at, "+");
        assert_eq!(help, "remove the `+`");
        let (msg, at, _) = err3("~x");
        assert!(msg.contains('~'), "{msg}");
        assert_eq!(at, "~");
    }

    #[test]
    fn unsupported_binary_operators() {
        for (src, op, needle) in [
            ("a % 2", "%", "modulo"),
            ("a // 2", "//", "floor division"),
            ("a ** 2", "**", "power"),
            ("a @ b", "@", "matrix"),
            ("a & b", "&", "bitwise"),
            ("a | b", "|", "bitwise"),
            ("a ^ b", "^", "bitwise"),
            ("a << 1", "<<", "bitwise"),
            ("a >> 1", ">>", "bitwise"),
        ] {
            let (msg, at, _) = err3(src);
            assert!(msg.contains(needle), "{src}: {msg}");
            assert_eq!(at, op, "{src}");
        }
        assert_eq!(err3("a & b").2, "for a logical AND use `and`");
        assert_eq!(err3("a | b").2, "for a logical OR use `or`");
    }

    #[test]
    fn c_style_logic_operators() {
        let (msg, at, help) = err3("a || b");
        assert!(msg.contains("||"), "{msg}");
        assert_eq!(at, "||");
        assert_eq!(help, "use `or`");
        let (msg, at, help) = err3("!context.done");
        assert!(msg.contains('!'), "{msg}");
        assert_eq!(at, "!");
        assert!(help.contains("use `not`"), "{help}");
        let (_, at, help) = err3("a ! b");
        assert_eq!(at, "!");
        assert!(help.contains("!="), "{help}");
        let (_, at, help) = err3("a === b");
        assert_eq!(at, "===");
        assert_eq!(help, "use `==`");
        assert_eq!(err3("a !== b").2, "use `!=`");
        assert_eq!(err3("a <> b").2, "use `!=`");
    }

    #[test]
    fn membership_and_identity() {
        let (msg, at, help) = err3("x in context.lst");
        assert_eq!(msg, "the membership operator `in` is not supported");
        assert_eq!(at, "in");
        assert!(help.contains("cel"), "{help}");
        let (msg, at, _) = err3("x not in context.lst");
        assert_eq!(msg, "the membership operator `not in` is not supported");
        assert_eq!(at, "not in");
        let (msg, at, help) = err3("context.x is None");
        assert_eq!(msg, "the identity operator `is` is not supported");
        assert_eq!(at, "is");
        assert!(help.contains("== None"), "{help}");
        let (msg, at, help) = err3("context.x is not None");
        assert_eq!(msg, "the identity operator `is not` is not supported");
        assert_eq!(at, "is not");
        assert!(help.contains("!= None"), "{help}");
        // Inside brackets and after a chain, too.
        assert_eq!(err3("(a in b)").1, "in");
        assert_eq!(err3("a[x in y]").1, "in");
        assert_eq!(err3("a < b in c").1, "in");
        let (msg, at, _) = err3("a not b");
        assert_eq!(msg, "unexpected `not` after an expression");
        assert_eq!(at, "not");
    }

    #[test]
    fn calls() {
        let (msg, at, help) = err3("len(context.lst) > 0");
        assert_eq!(msg, "function and method calls are not supported");
        assert_eq!(at, "len(");
        assert!(help.contains("size(x)"), "{help}");
        let (_, at, help) = err3("str(context.x) == '1'");
        assert_eq!(at, "str(");
        assert!(help.contains("`str`"), "{help}");
        let (_, at, help) = err3("context.name.upper() == 'BOB'");
        assert_eq!(at, "upper(");
        assert!(help.contains(".upper()"), "{help}");
        assert_eq!(err3("context.f[0](1)").1, "(");
        // A method without a call is an attribute (a reference quirk at run time).
        assert_eq!(show("context.name.upper"), "context.name.upper");
    }

    #[test]
    fn collection_literals() {
        let (msg, at, _) = err3("context.x == [1, 2]");
        assert_eq!(msg, "list literals are not supported");
        assert_eq!(at, "[");
        let (msg, at, _) = err3("{'a': 1} == x");
        assert_eq!(msg, "dict and set literals are not supported");
        assert_eq!(at, "{");
        assert_eq!(err3("{1, 2}").0, "dict and set literals are not supported");
        let (msg, at, _) = err3("(1, 2)");
        assert_eq!(msg, "tuples are not supported");
        assert_eq!(at, ",");
        let (msg, at, _) = err3("a, b");
        assert_eq!(msg, "tuples are not supported");
        assert_eq!(at, ",");
        let (msg, at, _) = err3("x == ()");
        assert_eq!(msg, "tuples are not supported");
        assert_eq!(at, "()");
        let (msg, at, _) = err3("x[1, 2]");
        assert!(msg.contains("tuple subscripts"), "{msg}");
        assert_eq!(at, ",");
        assert_eq!(err3("[x for x in y]").0, "list literals are not supported");
        let (msg, at, _) = err3("(x for x in y)");
        assert!(msg.contains("comprehensions"), "{msg}");
        assert_eq!(at, "for");
        assert!(err3("*a").0.contains("starred"));
        assert!(err3("x == ...").0.contains("Ellipsis"));
    }

    #[test]
    fn conditional_and_lambda() {
        let (msg, at, help) = err3("a if c else b");
        assert_eq!(
            msg,
            "conditional expressions (`a if c else b`) are not supported"
        );
        assert_eq!(at, "if");
        assert!(help.contains("c ? a : b"), "{help}");
        let (msg, at, _) = err3("lambda: 1");
        assert_eq!(msg, "lambda expressions are not supported");
        assert_eq!(at, "lambda");
        let (msg, at, help) = err3("a ? b : c");
        assert!(msg.contains("invalid character `?`"), "{msg}");
        assert_eq!(at, "?");
        assert!(help.contains("cel"), "{help}");
    }

    #[test]
    fn slices() {
        for (src, at) in [
            ("x[1:2]", ":"),
            ("x[:2]", ":"),
            ("x[::2]", ":"),
            ("x[a:]", ":"),
        ] {
            let (msg, got, help) = err3(src);
            assert_eq!(msg, "slices (`x[a:b]`) are not supported", "{src}");
            assert_eq!(got, at, "{src}");
            assert!(help.contains("x[0]"), "{help}");
        }
        let (msg, at, _) = err3("x[]");
        assert_eq!(msg, "empty subscript `[]`");
        assert_eq!(at, "[]");
    }

    #[test]
    fn assignment_instead_of_equality() {
        let (msg, at, help) = err3("context.x = 1");
        assert_eq!(msg, "`=` is assignment, which a condition cannot contain");
        assert_eq!(at, "=");
        assert_eq!(help, "did you mean `==`?");
        assert_eq!(err3("x => 1").2, "did you mean `>=`?");
        assert_eq!(err3("x =< 1").2, "did you mean `<=`?");
        assert_eq!(err3("x = > 1").2, "did you mean `==`?");
        let (msg, at, _) = err3("(y := 1)");
        assert!(msg.contains(":="), "{msg}");
        assert_eq!(at, ":=");
        let (msg, at, _) = err3("x += 1");
        assert!(msg.contains("augmented assignment `+=`"), "{msg}");
        assert_eq!(at, "+=");
    }

    #[test]
    fn brackets() {
        let (msg, at, help) = err3("(a == b");
        assert_eq!(msg, "unclosed `(`");
        assert_eq!(at, "(");
        assert_eq!(help, "add the missing `)`");
        let (msg, at, _) = err3("x[(a == b]");
        assert_eq!(msg, "closing `]` does not match the opening `(`");
        assert_eq!(at, "]");
        let (msg, at, _) = err3("x[0");
        assert_eq!(msg, "unclosed `[`");
        assert_eq!(at, "[");
        let (msg, at, _) = err3("a == b)");
        assert_eq!(msg, "unmatched `)`");
        assert_eq!(at, ")");
        assert_eq!(err3("a]").0, "unmatched `]`");
        assert_eq!(err3("a}").0, "unmatched `}`");
        assert_eq!(err3("(a]").0, "closing `]` does not match the opening `(`");
        let (msg, at, _) = err3("(a b)");
        assert_eq!(msg, "expected `)` or an operator, found name `b`");
        assert_eq!(at, "b");
        let (msg, _, _) = err3("x[a b]");
        assert_eq!(msg, "expected `]` or an operator, found name `b`");
    }

    #[test]
    fn python_syntax_errors() {
        let (msg, at, _) = err3("a ==");
        assert_eq!(
            msg,
            "expected an expression after `==`, found the end of the condition"
        );
        assert_eq!(at, "");
        let (msg, at, help) = err3("a b");
        assert_eq!(
            msg,
            "expected an operator or the end of the condition, found name `b`"
        );
        assert_eq!(at, "b");
        assert!(help.contains("`and`"), "{help}");
        assert_eq!(err3("a == 1 2").1, "2");
        assert_eq!(
            err3("x 'a'").0,
            "expected an operator or the end of the condition, found a string literal"
        );
        let (msg, at, _) = err3("a == == b");
        assert_eq!(msg, "expected an expression after `==`, found `==`");
        assert_eq!(at, "==");
        let (msg, at, _) = err3("a and");
        assert_eq!(
            msg,
            "expected an expression after `and`, found the end of the condition"
        );
        assert_eq!(at, "");
        assert_eq!(
            err3("and a").0,
            "expected an expression, found keyword `and`"
        );
        assert_eq!(err3("a or or b").1, "or");
        assert_eq!(err3("a + * b").1, "*");
        let (msg, at, help) = err3("a == not b");
        assert_eq!(msg, "`not` cannot be used here without parentheses");
        assert_eq!(at, "not");
        assert!(help.contains("(not b)"), "{help}");
        assert_eq!(show("a == (not b)"), "a == (not b)");
        let (msg, at, _) = err3("context.");
        assert_eq!(
            msg,
            "expected an attribute name after `.`, found the end of the condition"
        );
        assert_eq!(at, ".");
        // `.1` lexes as a number, as in Python.
        assert_eq!(
            err3("context.1").0,
            "expected an operator or the end of the condition, found number `.1`"
        );
        assert_eq!(
            err3("context.(a)").0,
            "expected an attribute name after `.`, found `(`"
        );
        let (msg, at, help) = err3("context.if");
        assert_eq!(
            msg,
            "`if` is a Python keyword and cannot be used as an attribute name"
        );
        assert_eq!(at, "if");
        assert!(help.contains("context['if']"), "{help}");
        assert!(err3("context.None").0.contains("keyword"));
        let (msg, at, _) = err3("a $ b");
        assert_eq!(msg, "invalid character `$` (U+0024)");
        assert_eq!(at, "$");
        let (msg, at, _) = err3("a\u{a0}== b");
        assert_eq!(msg, "invalid non-printable character U+00A0");
        assert_eq!(at, "\u{a0}");
        assert!(err3("x == \u{201C}a\u{201D}").2.contains("straight quotes"));
        let (msg, _, _) = err3("a \\ b");
        assert!(msg.contains('\\'), "{msg}");
        assert_eq!(err3("if").1, "if");
        assert_eq!(err3("a; b").1, ";");
        assert_eq!(
            err3("x == await y").0,
            "`await` expressions are not supported"
        );
    }

    #[test]
    fn whitespace_comments_and_continuations() {
        assert_eq!(
            show("context.a == 1\n  and context.b\r\n\tor\x0ccontext.c"),
            "((context.a == 1) and context.b) or context.c",
        );
        assert_eq!(show("a  # a comment\n and b"), "a and b");
        assert_eq!(show("a == \\\n 1"), "a == 1");
        let (msg, at, help) = err3("# only a comment");
        assert_eq!(msg, "expected an expression");
        assert_eq!(at, "# only a comment");
        assert!(help.contains("empty"), "{help}");
        // Leading/trailing whitespace, even non-ASCII, is trimmed like Python's
        // str.strip() before the emptiness check only.
        assert_eq!(parse("\u{2003}"), Ok(None));
    }

    // --- Limits and robustness --------------------------------------------

    #[test]
    fn nesting_limits() {
        let deep = |n: usize| format!("{}a{}", "(".repeat(n), ")".repeat(n));
        assert_eq!(show(&deep(MAX_NESTING)), "a");
        let (msg, at, _) = err3(&deep(MAX_NESTING + 1));
        assert!(msg.contains("too many nested brackets"), "{msg}");
        assert_eq!(at, "(");
        let brackets = format!(
            "{}0{}",
            "a[".repeat(MAX_NESTING + 1),
            "]".repeat(MAX_NESTING + 1)
        );
        assert!(err(&brackets).message.contains("too many nested brackets"));

        let chain = |n: usize| format!("a{}", " + a".repeat(n));
        ok(&chain(MAX_DEPTH - 1));
        let e = err(&chain(MAX_DEPTH));
        assert!(e.message.contains("nested too deeply"), "{e:?}");
        let e = err(&format!("{}a", "not ".repeat(100_000)));
        assert!(e.message.contains("nested too deeply"), "{e:?}");
        let e = err(&format!("a{}", ".b".repeat(100_000)));
        assert!(e.message.contains("nested too deeply"), "{e:?}");
        // Flat operand lists do not add depth.
        ok(&format!("a{}", " and a".repeat(10_000)));
        ok(&format!("a{}", " < a".repeat(10_000)));
    }

    #[test]
    fn deepest_trees_are_safe_to_walk() {
        // The deepest accepted trees: printing, cloning, comparing, walking
        // and dropping them recurse on a default test-thread stack.
        let chain = format!("a{}", " + a".repeat(MAX_DEPTH - 1));
        let nested = format!(
            "{}a{}",
            "(".repeat(MAX_NESTING),
            " + a)".repeat(MAX_NESTING)
        );
        let nots = format!("{}a", "not ".repeat(MAX_DEPTH - 1));
        let negated = format!(
            "{}a{}",
            "(not a[".repeat(MAX_NESTING / 2),
            "])".repeat(MAX_NESTING / 2)
        );
        let sources = [chain, nested, nots, negated];
        for src in &sources {
            let e = ok(src);
            let copy = e.clone();
            assert_eq!(copy, e);
            assert_eq!(ok(&e.to_string()).to_string(), e.to_string());
            assert_eq!(referenced_paths(&e)[0], vec!["a".to_owned()]);
        }
        // Guard the stack budget documented on MAX_NESTING, with a margin for
        // callers' own frames: all of the above fits in 1 MiB.
        let small_stack = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || {
                for src in &sources {
                    let e = parse(src).unwrap().unwrap();
                    let _ = (e.to_string(), e.clone(), path_refs(&e));
                }
            })
            .unwrap();
        assert!(small_stack.join().is_ok());
    }

    /// A tiny deterministic generator, so that the test needs no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[(self.next() % items.len() as u64) as usize]
        }
    }

    #[test]
    fn garbage_never_panics_and_output_round_trips() {
        let pieces = [
            "context",
            ".",
            "a",
            "[",
            "]",
            "(",
            ")",
            "0",
            "1.5",
            "0x1f",
            "1e",
            "'s'",
            "\"q",
            "'",
            "\\",
            "+",
            "-",
            "*",
            "/",
            "//",
            "%",
            "**",
            "==",
            "=",
            "!=",
            "!",
            "<",
            "<=",
            ">",
            ">=",
            "<>",
            "and",
            "or",
            "not",
            "in",
            "is",
            "if",
            "else",
            "lambda",
            "None",
            "true",
            ",",
            ":",
            "{",
            "}",
            " ",
            "\n",
            "#",
            "é",
            "€",
            "\u{1F600}",
            "\u{0301}",
            "\u{a0}",
            "\0",
            "\t",
            "_",
            "r'",
            "f'",
            "b'",
            "'''",
            "\\x",
            "\\u12",
            "\\N{",
            "9999999999999999999999",
            "0b2",
            "01",
            ".",
            "...",
        ];
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut accepted = 0;
        for _ in 0..3000 {
            let n = (rng.next() % 12) as usize;
            let src: String = (0..n).map(|_| rng.pick(&pieces)).collect();
            check_one(&src, &mut accepted);
        }
        // Raw random characters, including multi-byte ones.
        for _ in 0..500 {
            let n = (rng.next() % 16) as usize;
            let src: String = (0..n)
                .map(|_| match rng.next() % 4 {
                    0 => char::from_u32((rng.next() % 0x11_0000) as u32).unwrap_or('x'),
                    _ => char::from((rng.next() % 128) as u8),
                })
                .collect();
            check_one(&src, &mut accepted);
        }
        assert!(accepted > 20, "generator too weak: {accepted} accepted");

        // Mostly well-formed operator/operand sequences, for the round trip.
        let atoms = [
            "context.a",
            "x[0]",
            "1",
            "2.5",
            "'s'",
            "(a or b)",
            "not c",
            "True",
            "null",
            "context['k'].z",
            "(1 < y)",
            "u.v.w",
        ];
        let ops = ["and", "or", "==", "<", "+", "-", "*", "/", ">=", "!=", "<="];
        let mut accepted = 0;
        for _ in 0..2000 {
            let n = (rng.next() % 6) as usize;
            let mut src = rng.pick(&atoms).to_owned();
            for _ in 0..n {
                src = format!("{src} {} {}", rng.pick(&ops), rng.pick(&atoms));
            }
            check_one(&src, &mut accepted);
        }
        assert!(accepted > 1000, "generator too weak: {accepted} accepted");
    }

    fn check_one(src: &str, accepted: &mut usize) {
        match parse(src) {
            Ok(None) => assert!(src.trim().is_empty(), "{src:?}"),
            Ok(Some(e)) => {
                *accepted += 1;
                assert!(src.get(e.span.clone()).is_some(), "{src:?}: {e:?}");
                let printed = e.to_string();
                let again = parse(&printed)
                    .unwrap_or_else(|err| panic!("{src:?} printed as {printed:?}: {err:?}"))
                    .unwrap_or_else(|| panic!("{src:?} printed as empty"));
                assert_eq!(again.to_string(), printed, "{src:?}");
                let _ = path_refs(&e);
            }
            Err(e) => {
                assert!(src.get(e.span.clone()).is_some(), "{src:?}: {e:?}");
                assert!(!e.message.is_empty());
            }
        }
    }

    #[test]
    fn display_round_trips() {
        for src in [
            "a or b and c",
            "not a == b",
            "a + b * c - d / e",
            "(a or b) or (c and (d or e))",
            "1 < a.b[0] <= 'x' + 'y'",
            "(1).real",
            "1.5.real",
            "(a + b)[0]",
            "context['k'].x[context.i + 1]",
            "not not a",
            "(a < b) == (c < d)",
            "a - (b + c)",
            "x == 1e999",
        ] {
            let e = ok(src);
            let printed = e.to_string();
            let again = ok(&printed);
            assert_eq!(again.to_string(), printed, "{src}");
            assert_eq!(
                strip_spans(again),
                strip_spans(e),
                "{src} printed as {printed}"
            );
        }
    }

    fn strip_spans(mut e: Expr) -> Expr {
        e.span = 0..0;
        e.kind = match e.kind {
            ExprKind::Attr(b, n) => ExprKind::Attr(Box::new(strip_spans(*b)), n),
            ExprKind::Index(b, i) => {
                ExprKind::Index(Box::new(strip_spans(*b)), Box::new(strip_spans(*i)))
            }
            ExprKind::Not(b) => ExprKind::Not(Box::new(strip_spans(*b))),
            ExprKind::And(v) => ExprKind::And(v.into_iter().map(strip_spans).collect()),
            ExprKind::Or(v) => ExprKind::Or(v.into_iter().map(strip_spans).collect()),
            ExprKind::Compare { first, rest } => ExprKind::Compare {
                first: Box::new(strip_spans(*first)),
                rest: rest
                    .into_iter()
                    .map(|(op, e)| (op, strip_spans(e)))
                    .collect(),
            },
            ExprKind::Binary { op, lhs, rhs } => ExprKind::Binary {
                op,
                lhs: Box::new(strip_spans(*lhs)),
                rhs: Box::new(strip_spans(*rhs)),
            },
            other => other,
        };
        e
    }

    // --- Paths --------------------------------------------------------------

    #[test]
    fn referenced_paths_lists_maximal_paths() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let e =
            ok("context.a.b == context.c and context['d'].e > 1 or not context.lst[context.i].x");
        assert_eq!(
            referenced_paths(&e),
            vec![
                p(&["context", "a", "b"]),
                p(&["context", "c"]),
                p(&["context", "d", "e"]),
                p(&["context", "lst"]),
                p(&["context", "i"]),
            ]
        );
        let e = ok("input.x + context.a + context.a");
        assert_eq!(
            referenced_paths(&e),
            vec![p(&["input", "x"]), p(&["context", "a"])]
        );
        let refs = path_refs(&e);
        assert_eq!(refs.len(), 3);
        assert_eq!(refs[2].span, 22..31);
        assert!(referenced_paths(&ok("true and 1 < 2 and 'a'.b")).is_empty());
        assert_eq!(referenced_paths(&ok("context")), vec![p(&["context"])]);
    }

    #[test]
    fn free_names_spans_the_variable() {
        let src = "context.a > 1 and output.x or (input)['k'] == foo";
        let names: Vec<(String, &str)> = free_names(&ok(src))
            .into_iter()
            .map(|(n, r)| (n, &src[r]))
            .collect();
        assert_eq!(
            names,
            [
                ("context".to_owned(), "context"),
                ("output".to_owned(), "output"),
                ("input".to_owned(), "input"),
                ("foo".to_owned(), "foo"),
            ]
        );
        assert!(free_names(&ok("True or null")).is_empty());
    }

    #[test]
    fn serializes_for_snapshots() {
        let v = serde_json::to_value(ok("not context.x == 1")).unwrap();
        assert_eq!(v["span"], serde_json::json!({"start": 0, "end": 18}));
        assert_eq!(v["kind"]["Not"]["kind"]["Compare"]["rest"][0][0], "Eq");
        let e = serde_json::to_value(err("x > -1")).unwrap();
        assert_eq!(e["span"], serde_json::json!({"start": 4, "end": 5}));
    }
}

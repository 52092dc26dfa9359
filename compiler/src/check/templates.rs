//! Template and condition checks: syntax, and the variables each site can see (`templates-and-expressions.md` §A.4, Part B).

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::expr;
use crate::source::{SourceMap, Span};
use crate::yaml::{Node, Style, Value};
use minijinja::Environment;
use std::collections::BTreeSet;

/// Names a Jinja template can use without them being variables of the site.
const JINJA_GLOBALS: &[&str] = &[
    "range",
    "dict",
    "lipsum",
    "cycler",
    "joiner",
    "namespace",
    "loop",
    "self",
    "super",
    "varargs",
    "kwargs",
    "caller",
    "debug",
    "true",
    "false",
    "none",
    "True",
    "False",
    "None",
];

/// What a template site can see, for messages and scope checks.
pub(crate) struct Scope<'a> {
    /// Where the template is, e.g. "the `output` of final state `done`".
    pub site: &'a str,
    /// Variables defined there.
    pub vars: &'a [&'a str],
    /// Variables defined there but always empty (foreach per-item `context`).
    pub empty: &'a [&'a str],
    /// Whether the site is an agent prompt (its own environment, no value templates).
    pub prompt: bool,
}

/// A parsed template's facts the checks need.
pub(crate) struct TemplateFacts {
    /// Dotted variable paths the template reads (`output.score`, `context`).
    pub paths: BTreeSet<String>,
}

/// Parses templates once with one environment configured like the reference's.
pub(crate) struct Templates {
    env: Environment<'static>,
}

impl Templates {
    pub(crate) fn new() -> Self {
        let env = Environment::new();
        Templates { env }
    }

    /// Whether `s` is rendered by Jinja (the reference's test: contains `{{` or `{%`).
    pub(crate) fn is_template(s: &str) -> bool {
        s.contains("{{") || s.contains("{%")
    }

    /// Checks one template string written at `node`. Returns what it reads when it parses.
    pub(crate) fn check(
        &self,
        text: &str,
        node: &Node,
        scope: &Scope<'_>,
        sources: &SourceMap,
        diags: &mut Diagnostics,
    ) -> Option<TemplateFacts> {
        let tmpl = match self.env.template_from_str(text) {
            Ok(t) => t,
            Err(e) => {
                let span = e
                    .range()
                    .map(|r| span_in_scalar(node, r.start, r.end, sources))
                    .or_else(|| e.line().map(|l| line_in_scalar(node, l, sources)))
                    .unwrap_or(node.span);
                let detail = e.detail().unwrap_or("syntax error");
                diags.push(
                    Diagnostic::new(
                        Code::TemplateSyntax,
                        span,
                        format!("template in {} does not parse: {detail}", scope.site),
                    )
                    .help(template_help(detail)),
                );
                return None;
            }
        };
        for (start, end, what) in divergent_constructs(text) {
            diags.push(
                Diagnostic::new(
                    Code::TemplateDivergence,
                    span_in_scalar(node, start, end, sources),
                    format!("template in {} uses {what}", scope.site),
                )
                .help(divergence_help(what)),
            );
        }
        for finding in python_object_findings(text) {
            let span = span_in_scalar(node, finding.start, finding.end, sources);
            let diag = match &finding.what {
                Finding::UnknownTest(name) => Diagnostic::new(
                    Code::UnknownTemplateTest,
                    span,
                    format!(
                        "template in {} names the test `{name}`, which does not exist",
                        scope.site
                    ),
                )
                .help(
                    crate::suggest::help(name, JINJA2_TESTS.iter().copied()).unwrap_or_else(|| {
                        "rendering fails with `TemplateRuntimeError` as soon as an item is \
                             tested (here and in the reference)"
                            .to_owned()
                    }),
                ),
                Finding::PrintsIterator(filter) => Diagnostic::new(
                    Code::PrintsPythonObject,
                    span,
                    format!(
                        "template in {} prints the result of `{filter}`, which the reference \
                         prints as a Python object (`<generator object … at 0x…>`{}); here it \
                         prints the items",
                        scope.site,
                        if *filter == "reverse" {
                            ", unless the value is a string"
                        } else {
                            ""
                        }
                    ),
                )
                .help(format!(
                    "append `| list` (`{filter}(…) | list`) to print the items in both"
                )),
            };
            diags.push(diag);
        }
        let paths: BTreeSet<String> = tmpl.undeclared_variables(true).into_iter().collect();
        let roots: BTreeSet<String> = tmpl.undeclared_variables(false).into_iter().collect();
        for root in &roots {
            if JINJA_GLOBALS.contains(&root.as_str()) || scope.vars.contains(&root.as_str()) {
                if scope.empty.contains(&root.as_str()) {
                    diags.push(foreach_scope(root, node, scope));
                }
                continue;
            }
            // A name alone renders as "", an attribute of it is an error at run time.
            let nested = paths.iter().any(|p| p.starts_with(&format!("{root}.")));
            let vars = scope
                .vars
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let (code, what) = if nested {
                (Code::UndefinedVariable, "is not defined")
            } else {
                (
                    Code::EmptyVariable,
                    "is not defined and renders as an empty string",
                )
            };
            diags.push(
                Diagnostic::new(
                    code,
                    node.span,
                    format!("`{root}` {what} in {}", scope.site),
                )
                .help(crate::suggest::help(root, scope.vars.iter().copied()).unwrap_or_else(|| {
                    if scope.vars == ["context"] {
                        format!("a final state's `output` sees only `context`; copy what it needs from `{root}` into the context first")
                    } else {
                        format!("use a variable defined there, or guard it: `{{% if {root} is defined %}}`")
                    }
                }))
                .note(None, format!("variables there: {vars}")),
            );
        }
        Some(TemplateFacts { paths })
    }

    /// Checks a value as the reference's `render_value` treats it: a template when it holds
    /// `{{`/`{%`, a bare path when it is one, else a literal. Returns the paths it reads.
    pub(crate) fn check_value(
        &self,
        node: &Node,
        scope: &Scope<'_>,
        sources: &SourceMap,
        diags: &mut Diagnostics,
    ) -> BTreeSet<String> {
        let Value::Str(s) = &node.value else {
            return BTreeSet::new();
        };
        if Self::is_template(s) {
            return self
                .check(s, node, scope, sources, diags)
                .map(|f| f.paths)
                .unwrap_or_default();
        }
        match bare_path(s) {
            Some(path) => {
                let root = path.split('.').next().unwrap_or_default();
                if !scope.prompt && !scope.vars.contains(&root) {
                    diags.push(
                        Diagnostic::new(
                            Code::EmptyVariable,
                            node.span,
                            format!(
                                "`{}` is not defined in {}, so this bare path is always null",
                                root, scope.site
                            ),
                        )
                        .note(None, format!("variables there: {}", scope.vars.join(", "))),
                    );
                } else if scope.empty.contains(&root) {
                    diags.push(foreach_scope(root, node, scope));
                }
                std::iter::once(path.to_string()).collect()
            }
            None => BTreeSet::new(),
        }
    }

    /// Checks a map the way `render_map` renders it: string values, nested maps, and the
    /// string elements of lists (maps inside lists are copied unrendered). Returns every
    /// (path, node) read.
    pub(crate) fn check_map(
        &self,
        node: &Node,
        scope: &Scope<'_>,
        sources: &SourceMap,
        diags: &mut Diagnostics,
    ) -> Vec<(String, Node)> {
        let mut out = Vec::new();
        self.walk_map(node, scope, sources, diags, &mut out);
        out
    }

    fn walk_map(
        &self,
        node: &Node,
        scope: &Scope<'_>,
        sources: &SourceMap,
        diags: &mut Diagnostics,
        out: &mut Vec<(String, Node)>,
    ) {
        let Some(entries) = node.as_map() else { return };
        for (_, v) in entries {
            match &v.value {
                Value::Str(_) => out.extend(
                    self.check_value(v, scope, sources, diags)
                        .into_iter()
                        .map(|p| (p, v.clone())),
                ),
                Value::Map(_) => self.walk_map(v, scope, sources, diags, out),
                Value::Seq(items) => {
                    for item in items.iter().filter(|i| matches!(i.value, Value::Str(_))) {
                        out.extend(
                            self.check_value(item, scope, sources, diags)
                                .into_iter()
                                .map(|p| (p, item.clone())),
                        );
                    }
                }
                _ => {}
            }
        }
    }
}

/// `root` is read in a per-item foreach template, where it is always empty.
/// Python methods that modify a list or dict in place. Template values are immutable in the
/// runtime, so calling one is an error there (Jinja2 modifies the object).
const MUTATING_METHODS: &[&str] = &[
    "append",
    "extend",
    "insert",
    "remove",
    "pop",
    "popitem",
    "setdefault",
    "update",
    "clear",
    "sort",
    "reverse",
];

/// What [`divergent_constructs`] reports.
const MUTATION: &str = "a method that modifies a list or dict in place";
const MACRO_VARARGS: &str = "`varargs`/`kwargs`, which macros do not collect here";
const NUMBER_PARTS: &str = "`.real`/`.imag`, which numbers do not have here";

/// The constructs of `text` the runtime renders differently than Jinja2
/// (`docs/compatibility.md`, "Running"), as byte ranges in `text`: calls of mutating methods
/// (`x.append(…)`) and the implicit macro variables `varargs` / `kwargs`. Only the insides of
/// `{{ … }}` and `{% … %}` are scanned, string literals skipped.
pub(crate) fn divergent_constructs(text: &str) -> Vec<(usize, usize, &'static str)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < bytes.len() {
        let close = match &bytes[i..i + 2] {
            b"{{" => b"}}",
            b"{%" => b"%}",
            b"{#" => {
                // Comments hold no code.
                i = text[i..].find("#}").map_or(bytes.len(), |e| i + e + 2);
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        i += 2;
        let mut quote: Option<u8> = None;
        while i < bytes.len() {
            let b = bytes[i];
            if let Some(q) = quote {
                if b == b'\\' {
                    i += 1;
                } else if b == q {
                    quote = None;
                }
                i += 1;
                continue;
            }
            if b == b'\'' || b == b'"' {
                quote = Some(b);
                i += 1;
                continue;
            }
            if bytes[i..].starts_with(close) {
                i += 2;
                break;
            }
            if b.is_ascii_alphabetic() || b == b'_' {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let word = &text[start..i];
                let after_dot = text[..start].trim_end().ends_with('.');
                let called = text[i..].trim_start().starts_with('(');
                if after_dot && called && MUTATING_METHODS.contains(&word) {
                    out.push((start, i, MUTATION));
                } else if !after_dot && matches!(word, "varargs" | "kwargs") {
                    out.push((start, i, MACRO_VARARGS));
                } else if after_dot
                    && !called
                    && matches!(word, "real" | "imag")
                    && !after_root(&text[..start])
                {
                    out.push((start, i, NUMBER_PARTS));
                }
                continue;
            }
            i += 1;
        }
    }
    out
}

/// The tests Jinja2 3.1 defines (`sorted(jinja2.Environment().tests)`; recorded in
/// `tests/fixtures/templates/cases.json`, and the runtime defines the same).
pub(crate) const JINJA2_TESTS: &[&str] = &[
    "!=",
    "<",
    "<=",
    "==",
    ">",
    ">=",
    "boolean",
    "callable",
    "defined",
    "divisibleby",
    "eq",
    "equalto",
    "escaped",
    "even",
    "false",
    "filter",
    "float",
    "ge",
    "greaterthan",
    "gt",
    "in",
    "integer",
    "iterable",
    "le",
    "lessthan",
    "lower",
    "lt",
    "mapping",
    "ne",
    "none",
    "number",
    "odd",
    "sameas",
    "sequence",
    "string",
    "test",
    "true",
    "undefined",
    "upper",
];

/// Filters whose result is a Python iterator or generator in Jinja2: printed directly, it
/// shows as `<generator object … at 0x…>` (an address, different at every run).
const ITERATOR_FILTERS: &[&str] = &[
    "reverse",
    "map",
    "select",
    "reject",
    "selectattr",
    "rejectattr",
    "unique",
    "batch",
    "slice",
    "items",
];

/// A construct [`python_object_findings`] reports.
#[derive(Debug, PartialEq)]
pub(crate) enum Finding {
    /// `select`/`reject`/`selectattr`/`rejectattr` with a literal test name Jinja2 lacks.
    UnknownTest(String),
    /// `{{ … | reverse }}` and other filters whose result prints as a Python object.
    PrintsIterator(&'static str),
}

/// One finding at the byte range `[start, end)` of the template text.
#[derive(Debug, PartialEq)]
pub(crate) struct Located {
    pub start: usize,
    pub end: usize,
    pub what: Finding,
}

/// A token of a tag's expression, as far as these checks need one.
#[derive(Debug, PartialEq)]
enum Tok<'a> {
    /// A name.
    Ident(&'a str),
    /// A string literal's contents (escapes left as written).
    Str(&'a str),
    /// Any other character.
    Punct(u8),
}

/// A token with its byte range `[start, end)` and bracket depth.
type Spanned<'a> = (usize, usize, usize, Tok<'a>);

/// Splits the insides of `{{ … }}` and `{% … %}` into tokens; `bool` is whether the tag is
/// `{{ … }}`. Comments are skipped.
fn tags(text: &str) -> Vec<(bool, Vec<Spanned<'_>>)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < bytes.len() {
        let expr = match &bytes[i..i + 2] {
            b"{{" => true,
            b"{%" => false,
            b"{#" => {
                i = text[i..].find("#}").map_or(bytes.len(), |e| i + e + 2);
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        let close: &[u8] = if expr { b"}}" } else { b"%}" };
        i += 2;
        let (mut depth, mut toks) = (0usize, Vec::new());
        while i < bytes.len() {
            let b = bytes[i];
            if depth == 0 && bytes[i..].starts_with(close) {
                i += 2;
                break;
            }
            if b == b'\'' || b == b'"' {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                let end = (i + 1).min(bytes.len());
                toks.push((
                    start,
                    end,
                    depth,
                    Tok::Str(&text[start + 1..i.min(bytes.len())]),
                ));
                i = end;
            } else if b.is_ascii_alphabetic() || b == b'_' {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                toks.push((start, i, depth, Tok::Ident(&text[start..i])));
            } else {
                match b {
                    b'(' | b'[' | b'{' => depth += 1,
                    b')' | b']' | b'}' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                if !b.is_ascii_whitespace() {
                    toks.push((i, i + 1, depth, Tok::Punct(b)));
                }
                i += 1;
            }
        }
        out.push((expr, toks));
    }
    out
}

/// Constructs whose outcome the reference decides by Python objects: a `select`-like filter
/// naming a test that does not exist (a `TemplateRuntimeError` once an item is tested), and
/// a `{{ … }}` printing a filter result that is a Python iterator in Jinja2.
pub(crate) fn python_object_findings(text: &str) -> Vec<Located> {
    let mut out = Vec::new();
    for (expr, toks) in tags(text) {
        // The filter applied last at the top level of a `{{ … }}`.
        let mut last_filter: Option<(usize, usize, &str)> = None;
        for (k, (start, end, depth, tok)) in toks.iter().enumerate() {
            let Tok::Ident(name) = tok else { continue };
            let piped = k > 0 && toks[k - 1].3 == Tok::Punct(b'|');
            if !piped {
                continue;
            }
            if *depth == toks[k - 1].2 && *depth == 0 {
                last_filter = Some((*start, *end, name));
            }
            // `select('name'` / `selectattr('attr', 'name'`.
            let test_arg = match *name {
                "select" | "reject" => 2,
                "selectattr" | "rejectattr" => 4,
                _ => continue,
            };
            if toks.get(k + 1).map(|t| &t.3) != Some(&Tok::Punct(b'(')) {
                continue;
            }
            if test_arg == 4
                && !(matches!(toks.get(k + 2).map(|t| &t.3), Some(Tok::Str(_)))
                    && toks.get(k + 3).map(|t| &t.3) == Some(&Tok::Punct(b',')))
            {
                continue;
            }
            if let Some((s, e, _, Tok::Str(test))) = toks.get(k + test_arg)
                && matches!(
                    toks.get(k + test_arg + 1).map(|t| &t.3),
                    Some(Tok::Punct(b',' | b')'))
                )
                && !test.contains('\\')
                && !JINJA2_TESTS.contains(test)
            {
                out.push(Located {
                    start: *s,
                    end: *e,
                    what: Finding::UnknownTest((*test).to_owned()),
                });
            }
        }
        if expr
            && let Some((start, end, name)) = last_filter
            && let Some(filter) = ITERATOR_FILTERS.iter().find(|f| **f == name)
        {
            out.push(Located {
                start,
                end,
                what: Finding::PrintsIterator(filter),
            });
        }
    }
    out
}

/// Whether `before` (the text up to a `.name`) ends with `context.`, `input.` or `output.`:
/// a key of those maps, which is no number.
fn after_root(before: &str) -> bool {
    let head = before.trim_end().trim_end_matches('.').trim_end();
    ["context", "input", "output"].iter().any(|root| {
        head.strip_suffix(root).is_some_and(|rest| {
            !rest
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        })
    })
}

fn divergence_help(what: &str) -> String {
    if what == MUTATION {
        "template values cannot be modified at run time (the call fails); build values with \
         `namespace()`, `{% set x = x + [item] %}` or filters"
            .to_owned()
    } else if what == NUMBER_PARTS {
        "for a real number `x.real` is `x` and `x.imag` is `0`: write that instead".to_owned()
    } else {
        "declare the arguments the macro takes (`{% macro m(a, b=none) %}`)".to_owned()
    }
}

fn foreach_scope(root: &str, node: &Node, scope: &Scope<'_>) -> Diagnostic {
    Diagnostic::new(
        Code::ForeachScope,
        node.span,
        format!("`{root}` is always empty in {}", scope.site),
    )
    .help("per-item templates see only the item variable; put what they need into the items")
}

fn template_help(detail: &str) -> String {
    if detail.contains("unknown statement") || detail.contains("unexpected end of input") {
        "check that every `{%` block is closed (`{% endif %}`, `{% endfor %}`)".into()
    } else if detail.contains("unexpected") {
        "check the `{{ … }}` / `{% … %}` delimiters and the expression inside them".into()
    } else {
        "templates use Jinja syntax: `{{ context.name }}`".into()
    }
}

pub use flatmachines_ir::bare_path;

/// Checks a transition condition.
pub(crate) fn check_condition(
    text: &str,
    node_span: Span,
    style: Style,
    cel: bool,
    sources: &SourceMap,
    diags: &mut Diagnostics,
) {
    let node = Node {
        value: Value::Str(text.to_string()),
        span: node_span,
        style,
    };
    if cel {
        #[cfg(feature = "cel")]
        if let Err(e) = expr::cel::check(text) {
            diags.push(
                Diagnostic::new(
                    Code::CelSyntax,
                    span_in_scalar(&node, e.span.start, e.span.end, sources),
                    format!(
                        "CEL condition `{}` does not parse: {}",
                        text.trim(),
                        e.message
                    ),
                )
                .help_opt(e.help.clone())
                .help_opt(
                    Some("CEL uses `&&`, `||`, `!` and `size(x)`".to_string())
                        .filter(|_| e.help.is_none()),
                ),
            );
        }
        return;
    }
    match expr::simple::parse(text) {
        Err(e) => diags.push(
            Diagnostic::new(
                Code::ConditionSyntax,
                span_in_scalar(&node, e.span.start, e.span.end, sources),
                format!("condition `{}` does not parse: {}", text.trim(), e.message),
            )
            .help(e.help.clone().unwrap_or_else(|| {
                "conditions are Python-like: `context.score >= 8 and not context.done`".into()
            })),
        ),
        Ok(Some(ast)) => {
            for (name, range) in expr::simple::free_names(&ast) {
                if name != "context" {
                    diags.push(
                        Diagnostic::new(
                            Code::ConditionScope,
                            span_in_scalar(&node, range.start, range.end, sources),
                            format!("condition reads `{name}`, but conditions can only read `context`"),
                        )
                        .help(match name.as_str() {
                            "output" | "input" => "copy the value into the context first (`output_to_context`), then test `context.…`".to_string(),
                            _ => crate::suggest::help(&name, ["context"]).unwrap_or_else(|| {
                                "write `context.<key>`".to_string()
                            }),
                        }),
                    );
                }
            }
        }
        Ok(None) => {}
    }
}

/// The span of bytes `start..end` of a scalar's value, mapped back onto the file. Exact for
/// single-line plain and quoted scalars and for block scalars; approximate for folded
/// multi-line flow scalars and for quoted scalars with escapes.
pub(crate) fn span_in_scalar(node: &Node, start: usize, end: usize, sources: &SourceMap) -> Span {
    let Value::Str(text) = &node.value else {
        return node.span;
    };
    // An error "at the end" of a block scalar points at its last character, not past the
    // final line break.
    let len = text.trim_end_matches('\n').len();
    let (start, end) = (start.min(len), end.min(len).max(start.min(len)));
    let at = |off: usize| {
        let off = floor_char_boundary(text, off);
        let before = &text[..off];
        let idx = before.matches('\n').count();
        let col = before.rsplit('\n').next().unwrap_or("").chars().count();
        position(node, idx, col, sources)
    };
    let s = at(start);
    let e = at(end);
    Span {
        file: node.span.file,
        start: s,
        end: if e.offset >= s.offset { e } else { s },
    }
}

fn line_in_scalar(node: &Node, line: usize, sources: &SourceMap) -> Span {
    let p = position(node, line.saturating_sub(1), 0, sources);
    Span {
        file: node.span.file,
        start: p,
        end: p,
    }
}

fn position(node: &Node, idx: usize, col: usize, sources: &SourceMap) -> crate::source::Pos {
    let file = sources.get(node.span.file);
    let first_line = node.span.start.line as usize;
    let indent = |line: usize| {
        file.line_text(line as u32)
            .chars()
            .take_while(|c| *c == ' ')
            .count()
    };
    match node.style {
        Style::Literal | Style::Folded => {
            let content_line = block_content_line(file, first_line);
            let line = content_line + idx;
            file.pos_at(line, indent(line) + col)
        }
        Style::Plain | Style::SingleQuoted | Style::DoubleQuoted => {
            let quote = usize::from(node.style != Style::Plain);
            if idx == 0 {
                file.pos_at(first_line, node.span.start.col as usize - 1 + quote + col)
            } else {
                let line = first_line + idx;
                file.pos_at(line, indent(line) + col)
            }
        }
    }
}

/// The first content line of a block scalar whose event span starts near `line`: the line after
/// the closest line at or above it that ends with a block indicator (`|`, `>-`, `|2+` …) and
/// is less indented than the line after it. The parser's span may start at the indicator, at
/// the content, or after it, depending on what follows the scalar.
fn block_content_line(file: &crate::source::SourceFile, line: usize) -> usize {
    let indent = |l: usize| {
        file.line_text(l as u32)
            .chars()
            .take_while(|c| *c == ' ')
            .count()
    };
    let is_indicator = |l: usize| {
        let text = file.line_text(l as u32);
        let text = text.split(" #").next().unwrap_or(text).trim_end();
        let tail = text.trim_end_matches(|c: char| c == '-' || c == '+' || c.is_ascii_digit());
        // Blank lines inside the block have no indentation: compare with the next real line.
        let next = (l + 1..=file.line_count() as usize)
            .find(|n| !file.line_text(*n as u32).trim().is_empty())
            .unwrap_or(l + 1);
        (tail.ends_with('|') || tail.ends_with('>')) && indent(l) < indent(next)
    };
    let mut l = line;
    while l >= 1 {
        if is_indicator(l) {
            return l + 1;
        }
        l -= 1;
    }
    line
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::divergent_constructs;
    use crate::check::test_support::check_files;

    fn found(text: &str) -> Vec<&str> {
        divergent_constructs(text)
            .into_iter()
            .map(|(s, e, _)| &text[s..e])
            .collect()
    }

    #[test]
    fn finds_mutating_calls_and_macro_varargs() {
        assert_eq!(
            found("{% set _ = context.items.append(1) %}{{ d.pop ('a') }}"),
            vec!["append", "pop"]
        );
        assert_eq!(
            found("{% macro m() %}{{ varargs }}{{ kwargs.x }}{% endmacro %}"),
            vec!["varargs", "kwargs"]
        );
        // Not calls, other names, plain text, string literals and comments.
        assert!(found("{{ d.pop }}{{ x.appendix() }}{{ context.kwargs }}").is_empty());
        assert!(found("call x.append(1) {{ 'y.append(2)' }}{# z.pop() #}").is_empty());
        assert!(found("{{ '%s' % x }}{{ a ~ b }}{{ s.upper() }}").is_empty());
        assert_eq!(
            found("{{ context.n.real }}{% if x.imag %}{% endif %}"),
            vec!["real", "imag"]
        );
        assert!(found("{{ context.real }}{{ x.real_name }}{{ 'a.real' }}").is_empty());
    }

    #[test]
    fn finds_unknown_tests_and_printed_iterators() {
        use super::{Finding, python_object_findings};
        let found = |text: &str| -> Vec<(String, Finding)> {
            python_object_findings(text)
                .into_iter()
                .map(|l| (text[l.start..l.end].to_owned(), l.what))
                .collect()
        };
        let unknown = |s: &str| Finding::UnknownTest(s.to_owned());
        assert_eq!(
            found("{{ xs | select('startingwith', 'a') | list }}"),
            vec![("'startingwith'".to_owned(), unknown("startingwith"))]
        );
        assert_eq!(
            found("{% for u in us | selectattr('age', \"nosuch\", 1) %}{% endfor %}"),
            vec![("\"nosuch\"".to_owned(), unknown("nosuch"))]
        );
        assert_eq!(
            found("{{ us | rejectattr('admin', 'odd') | reject('truthy') | list }}"),
            vec![("'truthy'".to_owned(), unknown("truthy"))]
        );
        // Known tests, non-literal names, `selectattr` without a test, other filters.
        assert!(
            found(
                "{{ xs | select('>', 1) | reject(name) | selectattr('a') | map('nosuch') | list }}\
                 {{ xs | select('odd') | list }}{{ 'select(\"x\")' }}{# x | select('y') #}"
            )
            .is_empty()
        );
        // Printed iterators: only the last filter of a `{{ }}`, at the top level.
        assert_eq!(
            found("{{ context.lst | reverse }}{{ d | items }}"),
            vec![
                ("reverse".to_owned(), Finding::PrintsIterator("reverse")),
                ("items".to_owned(), Finding::PrintsIterator("items")),
            ]
        );
        assert_eq!(
            found("{{ xs | map('upper') }}"),
            vec![("map".to_owned(), Finding::PrintsIterator("map"))]
        );
        assert!(
            found(
                "{{ xs | reverse | list }}{{ (xs | reverse) | join }}{% set y = xs | reverse %}\
                 {{ {'a': xs | map('x')} | length }}{{ xs | map('x') | join(',') }}"
            )
            .is_empty()
        );
    }

    #[test]
    fn the_known_tests_are_jinja2s() {
        let cases: serde_json::Value =
            serde_json::from_str(include_str!("../../../tests/fixtures/templates/cases.json"))
                .expect("cases.json");
        let recorded: Vec<&str> = cases["tests"]
            .as_array()
            .expect("tests recorded")
            .iter()
            .map(|t| t.as_str().expect("name"))
            .collect();
        assert_eq!(recorded, super::JINJA2_TESTS);
    }

    #[test]
    fn warns_with_fm0312_and_fm0313() {
        let machine = "spec: flatmachine
spec_version: \"2.6.0\"
data:
  name: t
  states:
    start:
      type: initial
      transitions: [{to: done}]
    done:
      type: final
      output:
        a: \"{{ context.xs | select('postive') | list }}\"
        b: \"{{ context.xs | reverse }}\"
        c: \"{{ context.xs | select('odd') | reverse | list }}\"
";
        let (codes, _) = check_files(&[("machine.yml", machine)]);
        assert_eq!(
            codes,
            vec!["FM0312 machine.yml:12:36", "FM0313 machine.yml:13:29"]
        );
    }

    #[test]
    fn warns_with_fm0311_where_the_call_is() {
        let machine = "spec: flatmachine
spec_version: \"2.6.0\"
data:
  name: t
  states:
    start:
      type: initial
      transitions: [{to: done}]
    done:
      type: final
      output:
        a: \"{% set _ = context.log.append(1) %}{{ context.log }}\"
        b: \"{{ '%.2f' % context.x }}\"
";
        let (codes, _) = check_files(&[("machine.yml", machine)]);
        assert_eq!(codes, vec!["FM0311 machine.yml:12:36"]);
    }
}

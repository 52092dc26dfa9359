//! Diagnostics: stable codes, severities, and their rustc-style and JSON renderings.
//!
//! Checks never stop at the first problem: every phase pushes into one [`Diagnostics`]
//! collection, which is sorted by position and reported as a whole.

use crate::source::{SourceMap, Span};
use std::fmt::Write as _;

/// How serious a diagnostic is (shared with the runtime through `flatmachines-ir`).
pub use flatmachines_ir::diagnostic::Severity;

macro_rules! codes {
    ($( $(#[$doc:meta])* $name:ident = $code:literal, $sev:ident, $summary:literal; )*) => {
        /// A stable diagnostic code. Codes are never reused or renumbered.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Code {
            $( $(#[$doc])* $name, )*
        }

        impl Code {
            /// Every code, in numeric order.
            pub const ALL: &'static [Code] = &[$(Code::$name),*];

            /// The code as printed, e.g. `FM0102`.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$name => $code,)* }
            }

            /// The severity diagnostics with this code have.
            pub fn severity(self) -> Severity {
                match self { $(Code::$name => Severity::$sev,)* }
            }

            /// One line saying what the code is about.
            pub fn summary(self) -> &'static str {
                match self { $(Code::$name => $summary,)* }
            }
        }
    };
}

codes! {
    /// The file is not valid YAML (or JSON).
    YamlSyntax = "FM0001", Error, "the file is not valid YAML";
    /// A mapping has the same key twice.
    DuplicateKey = "FM0002", Error, "a mapping has the same key twice";
    /// A file named by the machine cannot be read.
    FileNotFound = "FM0003", Error, "a referenced file does not exist or cannot be read";
    /// The `spec` field is missing or not the expected document kind.
    WrongSpec = "FM0004", Error, "`spec` is missing or names another kind of document";
    /// The `data` section is missing.
    MissingData = "FM0005", Error, "the `data` section is missing";
    /// The `spec_version` major is newer than any known format.
    UnsupportedSpecVersion = "FM0006", Error, "`spec_version` is not a version this compiler supports";
    /// The `spec_version` differs from 2.6: fields of other versions are not understood.
    SpecVersionMismatch = "FM0007", Warning, "`spec_version` differs from 2.6, the version this compiler implements";
    /// A value has the wrong type (a list where a map is expected, and so on).
    WrongType = "FM0008", Error, "a value has the wrong type";
    /// Machines reference each other in a cycle.
    MachineCycle = "FM0009", Error, "child machines reference each other in a cycle";
    /// A required field is missing.
    MissingField = "FM0010", Error, "a required field is missing";
    /// A file is larger, nests deeper or expands its aliases to more nodes than the front end
    /// accepts (limits no real machine reaches; they bound the time and memory of a check).
    LimitExceeded = "FM0011", Error, "a file exceeds a limit of the compiler: size, nesting depth or alias expansion";
    /// A file is not YAML text (invalid UTF-8 or a control character): its text is not quoted.
    NotYamlText = "FM0012", Error, "a file is not YAML text: invalid UTF-8 or a control character";
    /// The `states` map is missing or empty.
    NoStates = "FM0101", Error, "the machine has no states";
    /// A transition names a state that does not exist.
    UnknownTransitionTarget = "FM0102", Error, "a transition target is not a state";
    /// An `on_error` target names a state that does not exist.
    UnknownOnErrorTarget = "FM0103", Error, "an `on_error` target is not a state";
    /// More than one state has `type: initial`.
    MultipleInitialStates = "FM0104", Error, "more than one state has `type: initial`";
    /// No state has `type: initial`.
    NoInitialState = "FM0105", Error, "no state has `type: initial`";
    /// No state has `type: final`.
    NoFinalState = "FM0106", Error, "no state has `type: final`";
    /// A state cannot be reached from the initial state.
    UnreachableState = "FM0107", Warning, "a state cannot be reached from the initial state";
    /// No final state can be reached from a state: a loop with no way out.
    NoPathToFinal = "FM0108", Error, "no final state can be reached from a state";
    /// A non-final state has no transitions: the run would silently end there.
    DeadEndState = "FM0109", Warning, "a non-final state has no transitions";
    /// A transition follows an unconditional one and is never taken.
    UnreachableTransition = "FM0110", Warning, "a transition after an unconditional one is never taken";
    /// A state `type` other than `initial` or `final`.
    UnknownStateType = "FM0111", Warning, "a state `type` is neither `initial` nor `final`";
    /// Two state names map to the same Rust identifier.
    StateNameCollision = "FM0112", Warning, "two state names map to the same Rust identifier";
    /// A transition has no `to`.
    TransitionWithoutTarget = "FM0113", Warning, "a transition has no `to` and is skipped";
    /// A final state has transitions, which are never taken.
    FinalStateTransitions = "FM0114", Warning, "a final state has transitions that are never taken";
    /// A state runs a tool loop but has no transitions: the loop's result has nowhere to go.
    ToolLoopWithoutTransitions = "FM0115", Error, "a `tool_loop` state has no transitions";
    /// `agent:` names no entry of `agents`.
    UnknownAgent = "FM0201", Error, "`agent` names no entry of `agents`";
    /// `machine:` / `launch:` / `foreach` names no entry of `machines`.
    UnknownMachine = "FM0202", Error, "a machine reference names no entry of `machines`";
    /// An agent reference has an unsupported shape.
    InvalidAgentRef = "FM0203", Error, "an agent reference is neither a path, an inline flatagent nor a typed ref";
    /// A child machine reference has an unsupported shape.
    InvalidMachineRef = "FM0204", Error, "a machine reference is neither a path nor an inline flatmachine";
    /// `output.X` is read where the agent's output schema has no field `X`.
    UnknownOutputField = "FM0205", Warning, "`output.X` is read but the agent's output schema has no field `X`";
    /// A model profile is not defined.
    UnknownProfile = "FM0206", Error, "a model profile is not defined";
    /// An agent or machine is declared but no state uses it.
    UnusedReference = "FM0207", Warning, "an agent or machine is declared but never used";
    /// `allowed_tools`/`denied_tools` names a tool the agent's `data.tools` does not declare
    /// (a Rust tool registered at run time may still provide it).
    UnknownTool = "FM0208", Warning, "a tool in `allowed_tools`/`denied_tools` is not declared by the agent";
    /// A `server:tool` name or pattern names no server of the agent's `data.mcp.servers`.
    UnknownMcpServer = "FM0209", Error, "a `server:tool` name names no MCP server of the agent";
    /// `tool_loop` on an agent whose adapter cannot run machine-driven tool loops.
    ToolLoopUnsupported = "FM0210", Error, "`tool_loop` names an agent whose adapter cannot run tool loops";
    /// A template does not parse.
    TemplateSyntax = "FM0301", Error, "a template does not parse";
    /// A simple-engine condition does not parse.
    ConditionSyntax = "FM0302", Error, "a condition does not parse";
    /// A CEL condition does not parse.
    CelSyntax = "FM0303", Error, "a CEL condition does not parse";
    /// `expression_engine` is neither `simple` nor `cel`.
    UnknownExpressionEngine = "FM0304", Error, "`expression_engine` is neither `simple` nor `cel`";
    /// A condition reads `input` or `output`, which conditions cannot see.
    ConditionScope = "FM0305", Error, "a condition reads a variable other than `context`";
    /// A `foreach` template reads a variable that is not in scope per item.
    ForeachScope = "FM0306", Warning, "a per-item `foreach` template reads a variable that is empty there";
    /// `foreach` is a Jinja template, which yields a string, not a list.
    ForeachNotList = "FM0307", Warning, "`foreach` must be a bare path to a list, not a `{{ }}` template";
    /// A state `input` reads `input.X` that the initial context does not capture.
    UncapturedInput = "FM0308", Warning, "a state reads `input.X`, but inside states `input` is the context";
    /// A template reads an attribute of a variable its site does not define: an error at run time.
    UndefinedVariable = "FM0309", Error, "a template reads a variable that is not defined at its site";
    /// A template or bare path reads a variable its site does not define: it is always empty.
    EmptyVariable = "FM0310", Warning, "a template or bare path reads a variable that is always empty at its site";
    /// A template uses a construct the runtime renders differently than the reference (docs/compatibility.md).
    TemplateDivergence = "FM0311", Warning, "a template uses a Jinja2 construct that behaves differently here";
    /// `select`/`reject`/`selectattr`/`rejectattr` names a test Jinja2 does not define: rendering
    /// fails once an item is tested.
    UnknownTemplateTest = "FM0312", Warning, "a template's `select`/`reject` names a test that does not exist";
    /// A template prints a filter result that Jinja2 prints as a Python iterator object.
    PrintsPythonObject = "FM0313", Warning, "a template prints a filter result that the reference prints as a Python object";
    /// `execution.type` is unknown.
    UnknownExecutionType = "FM0401", Error, "`execution.type` is not default, retry, parallel or mdap_voting";
    /// A retry backoff is negative.
    NegativeBackoff = "FM0402", Error, "a retry backoff is negative";
    /// `jitter` is outside 0..=1.
    JitterOutOfRange = "FM0403", Error, "`jitter` is outside 0..=1";
    /// `foreach` without `machine`.
    ForeachWithoutMachine = "FM0404", Error, "`foreach` requires `machine`";
    /// `mode` is neither `settled` nor `any`.
    UnknownMode = "FM0405", Error, "`mode` is neither `settled` nor `any`";
    /// `persistence.backend` is unknown.
    UnknownPersistenceBackend = "FM0406", Error, "`persistence.backend` is not memory, local or sqlite";
    /// A numeric option is out of range.
    InvalidNumber = "FM0407", Error, "a numeric option is out of range";
    /// An MCP `tool_filter` pattern without `server:`, which never matches a qualified tool name.
    McpPatternWithoutServer = "FM0408", Error, "an MCP `tool_filter` pattern has no `server:` part";
    /// An MCP server has both `command` and `url`, or a `url` that is not http(s).
    InvalidMcpTransport = "FM0409", Error, "an MCP server has both `command` and `url`, or a `url` that is not http(s)";
    /// A machine with a `wait_for` state writes no `waiting` checkpoint (persistence disabled, or
    /// `checkpoint_on` without `waiting`): a parked run can never be found and resumed.
    UnfindableWait = "FM0410", Error, "a `wait_for` state parks runs that can never be found again: persistence is disabled or `checkpoint_on` lacks `waiting`";
    /// A number of seconds (a timeout, a backoff) that no run can wait: negative, not a number,
    /// infinite, or longer than a year.
    InvalidDuration = "FM0411", Error, "a duration is negative, not a number, infinite or longer than a year";
    /// The `metadata` an `mdap_voting` state's agent carries cannot be used: a parsing pattern
    /// that does not compile or has no group, an unknown parsing `type`, or a misshapen `mdap`,
    /// `parsing` or `validation`.
    InvalidMdapMetadata = "FM0412", Error, "an `mdap_voting` agent's `metadata` has a pattern that does not compile, an unknown parsing `type`, or a misshapen `mdap`/`parsing`/`validation`";
    /// `settings.max_cost` (the run's spend limit, beyond the reference) is not a non-negative
    /// number.
    InvalidBudget = "FM0413", Error, "`settings.max_cost` is not a non-negative number";
    /// A model block names a provider the `flatagent` adapter does not speak.
    UnknownProvider = "FM0414", Error, "a model block's `provider` is not a known provider";
    /// An unknown field: the reference ignores it.
    UnknownField = "FM0501", Warning, "an unknown field is ignored";
    /// A field the 2.6 runtime declares but never reads.
    IgnoredField = "FM0502", Warning, "a field the 2.6 runtime never reads";
    /// `agent`, `machine`, `foreach`, `launch`, `action` or a final `output` in a `wait_for`
    /// state: the state ends as soon as it consumes a signal, so they never run.
    IgnoredInWaitingState = "FM0503", Warning, "a field of a `wait_for` state never runs: the signal's data is the state's output";
    /// The machine needs a part of the runtime this build of `flatmachines` leaves out.
    MissingRuntimeFeature = "FM0601", Error, "the machine needs a runtime feature that is not enabled";
}

/// A secondary location or remark attached to a diagnostic.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    /// Where the note points, if anywhere.
    pub span: Option<Span>,
    /// What the note says.
    pub message: String,
}

/// One problem found in a machine.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// Stable code.
    pub code: Code,
    /// Error or warning.
    pub severity: Severity,
    /// One line, quoting the user's text.
    pub message: String,
    /// Where the problem is.
    pub span: Option<Span>,
    /// What to do about it.
    pub help: Option<String>,
    /// Secondary locations and remarks.
    pub notes: Vec<Note>,
}

impl Diagnostic {
    /// A diagnostic with the code's own severity.
    pub fn new(code: Code, span: impl Into<Option<Span>>, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: code.severity(),
            message: message.into(),
            span: span.into(),
            help: None,
            notes: Vec::new(),
        }
    }

    /// Adds a help line.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds a help line when there is one.
    pub fn help_opt(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    /// Adds a note, optionally pointing somewhere.
    pub fn note(mut self, span: impl Into<Option<Span>>, message: impl Into<String>) -> Self {
        self.notes.push(Note {
            span: span.into(),
            message: message.into(),
        });
        self
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Every diagnostic found while loading and checking machines.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics {
    list: Vec<Diagnostic>,
}

impl Diagnostics {
    /// An empty collection.
    pub fn new() -> Self {
        Diagnostics::default()
    }

    /// Adds a diagnostic.
    pub fn push(&mut self, d: Diagnostic) {
        self.list.push(d);
    }

    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.list.iter().any(Diagnostic::is_error)
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.list.iter().filter(|d| d.is_error()).count()
    }

    /// Number of warnings.
    pub fn warning_count(&self) -> usize {
        self.list.len() - self.error_count()
    }

    /// Whether the collection is empty.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The diagnostics, in the order they were found or, after [`Diagnostics::sort`], by position.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.list.iter()
    }

    /// Sorts by file, then position, then code, and drops exact duplicates (the same file can be
    /// checked twice when two machines share it).
    pub fn sort(&mut self) {
        self.list.sort_by(|a, b| {
            let ka = a.span.map(|s| (s.file, s.start.offset));
            let kb = b.span.map(|s| (s.file, s.start.offset));
            ka.cmp(&kb)
                .then(a.code.cmp(&b.code))
                .then(a.message.cmp(&b.message))
        });
        self.list.dedup();
    }

    /// Moves every diagnostic of `other` into this collection.
    pub fn extend(&mut self, other: Diagnostics) {
        self.list.extend(other.list);
    }

    /// The diagnostics as a vector.
    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.list
    }
}

/// A diagnostic flattened for `--format json` (and for `flatmachines::Error::Invalid`).
pub use flatmachines_ir::diagnostic::Diagnostic as JsonDiagnostic;

impl Diagnostic {
    /// The JSON form of this diagnostic.
    pub fn to_json(&self, sources: &SourceMap) -> JsonDiagnostic {
        let loc = self.span.map(|s| {
            let f = sources.get(s.file);
            let (line, col) = f.display_pos(s.start);
            (f.display.clone(), line, col)
        });
        JsonDiagnostic {
            code: self.code.as_str().to_string(),
            severity: self.severity,
            message: self.message.clone(),
            help: self.help.clone(),
            file: loc.as_ref().map(|l| l.0.clone()),
            line: loc.as_ref().map(|l| l.1),
            column: loc.as_ref().map(|l| l.2),
        }
    }

    /// Renders this diagnostic like rustc does:
    ///
    /// ```text
    /// error[FM0102]: transition target `revew` is not a state
    ///   --> review.yml:14:13
    ///    |
    /// 14 |         - to: revew
    ///    |               ^^^^^
    ///    |
    ///    = help: did you mean `review`?
    /// ```
    pub fn render(&self, sources: &SourceMap) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}[{}]: {}",
            self.severity.as_str(),
            self.code.as_str(),
            self.message
        );
        let gutter = self
            .span
            .iter()
            .chain(self.notes.iter().filter_map(|n| n.span.as_ref()))
            .map(|s| {
                let (line, _) = sources.get(s.file).display_pos(s.end);
                line.to_string().len()
            })
            .max()
            .unwrap_or(0)
            .max(1);
        let pad = " ".repeat(gutter);
        if let Some(span) = self.span {
            render_excerpt(&mut out, sources, span, &pad);
        }
        let plain: Vec<&Note> = self.notes.iter().filter(|n| n.span.is_none()).collect();
        if !plain.is_empty() || self.help.is_some() {
            if self.span.is_some() {
                let _ = writeln!(out, "{pad} |");
            }
            for note in plain {
                let _ = writeln!(out, "{pad} = note: {}", note.message);
            }
            if let Some(help) = &self.help {
                let _ = writeln!(out, "{pad} = help: {help}");
            }
        }
        for note in &self.notes {
            if let Some(span) = note.span {
                let _ = writeln!(out, "note: {}", note.message);
                render_excerpt(&mut out, sources, span, &pad);
            }
        }
        out
    }
}

/// The most characters of a source line an excerpt quotes: a long line (minified JSON, a
/// file that is not YAML) is shown as a window around the column, marked with `…`.
pub const EXCERPT_CHARS: usize = 120;

fn render_excerpt(out: &mut String, sources: &SourceMap, span: Span, pad: &str) {
    let file = sources.get(span.file);
    let (line, col) = file.display_pos(span.start);
    let _ = writeln!(out, "{pad}--> {}:{}:{}", file.display, line, col);
    if file.is_withheld() {
        // Not YAML text, perhaps secrets: the position is all that is shown.
        return;
    }
    let text = file.display_line_text(span.start);
    let chars: Vec<char> = text.chars().collect();
    let col0 = (col as usize).saturating_sub(1).min(chars.len());
    // A span over several lines is underlined up to the end of its first line.
    let end0 = if span.end.line == span.start.line && span.end.col > span.start.col {
        col0 + (span.end.col - span.start.col) as usize
    } else {
        chars.len()
    }
    .clamp(col0 + 1, chars.len().max(col0 + 1));
    let (from, to) = if chars.len() <= EXCERPT_CHARS {
        (0, chars.len())
    } else {
        let from = col0
            .saturating_sub(EXCERPT_CHARS / 4)
            .min(chars.len() - EXCERPT_CHARS);
        (from, from + EXCERPT_CHARS)
    };
    let lead = if from > 0 { "…" } else { "" };
    let trail = if to < chars.len() { "…" } else { "" };
    let shown: String = chars[from..to].iter().collect();
    let _ = writeln!(out, "{pad} |");
    let _ = writeln!(
        out,
        "{line:>width$} | {lead}{shown}{trail}",
        width = pad.len()
    );
    let indent = lead.chars().count() + col0 - from;
    let width = end0.min(to.max(col0 + 1)) - col0;
    let _ = writeln!(out, "{pad} | {}{}", " ".repeat(indent), "^".repeat(width));
}

/// Renders every diagnostic followed by a summary line, as `flatmachines check` prints them.
pub fn render_all(diags: &Diagnostics, sources: &SourceMap) -> String {
    let mut out = String::new();
    for d in diags.iter() {
        out.push_str(&d.render(sources));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    use crate::source::{FileId, Pos, SourceFile};

    fn span_at(file: FileId, line: u32, col: u32, len: u32) -> Span {
        let pos = |col| Pos {
            line,
            col,
            offset: 0,
        };
        Span {
            file,
            start: pos(col),
            end: pos(col + len),
        }
    }

    #[test]
    fn excerpts_quote_at_most_a_window_of_one_line() {
        let mut sources = SourceMap::new();
        let long = format!(
            "x: [{}SECRET, {}1]\nnext\n",
            "a, ".repeat(200),
            "b, ".repeat(100)
        );
        let id = sources.add(SourceFile::new("m.yml".into(), "m.yml".into(), long));
        let d = Diagnostic::new(Code::WrongType, span_at(id, 1, 605, 6), "m");
        let out = d.render(&sources);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1], " --> m.yml:1:605");
        let quoted = lines[3].strip_prefix("1 | ").unwrap();
        assert!(quoted.starts_with('…') && quoted.ends_with('…'), "{quoted}");
        assert_eq!(quoted.chars().count(), EXCERPT_CHARS + 2);
        // The underline still sits under the span.
        let caret = lines[4].find('^').unwrap();
        let quoted_at = lines[3].find("SECRET").unwrap();
        assert_eq!(
            lines[3][..quoted_at].chars().count(),
            lines[4][..caret].chars().count()
        );
        assert_eq!(lines[4].matches('^').count(), 6);
        assert!(!out.contains("next"));
        // A short line is quoted whole, and a span at its very end still gets a caret.
        let id = sources.add(SourceFile::new(
            "s.yml".into(),
            "s.yml".into(),
            "a: b".into(),
        ));
        let out = Diagnostic::new(Code::WrongType, span_at(id, 1, 5, 0), "m").render(&sources);
        assert!(out.contains("1 | a: b\n  |     ^\n"), "{out}");
    }

    #[test]
    fn withheld_files_are_never_quoted() {
        let mut sources = SourceMap::new();
        let id = sources.add(SourceFile::new(
            "/etc/shadow".into(),
            "/etc/shadow".into(),
            "root:$6$hash:19000::::::\n".into(),
        ));
        sources.withhold(id);
        let d = Diagnostic::new(Code::WrongType, span_at(id, 1, 1, 4), "not a map")
            .note(span_at(id, 1, 6, 3), "here too");
        let out = d.render(&sources);
        assert!(!out.contains("hash"), "{out}");
        assert!(out.contains("--> /etc/shadow:1:1"), "{out}");
        assert!(out.contains("--> /etc/shadow:1:6"), "{out}");
    }

    #[test]
    fn codes_are_unique_and_well_formed() {
        let mut seen = HashSet::new();
        for code in Code::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert_eq!(s.len(), 6);
            assert!(s.starts_with("FM") && s[2..].chars().all(|c| c.is_ascii_digit()));
        }
    }
}

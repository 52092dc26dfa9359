//! The machine IR of flatmachines: one machine and everything it references, lowered once from
//! the checked model, in the form both back ends read.
//!
//! * The code generator emits a [`Bundle`] as `static` Rust data (every field is a
//!   [`Cow::Borrowed`] there), so a compiled machine parses no YAML and runs no check when it
//!   starts.
//! * The loader (the runtime's `loader` feature, the CLI) builds the same [`Bundle`] with owned
//!   data from YAML at run time.
//!
//! The runtime's executor reads only this. Everything here is plain data with the reference's
//! defaults already applied; what needs the live context (templates, conditions) is kept as
//! source text, the site it belongs to given by the field that holds it.
//!
//! This crate also holds the pure syntax both sides share: the `simple` condition grammar
//! ([`expr`]), Python's float spelling ([`pyfmt`]) and the bare-path rule of templates
//! ([`bare_path`]).

pub mod diagnostic;
pub mod expr;
mod json;
pub mod providers;
pub mod pyfmt;
#[cfg(feature = "regex")]
pub mod pyre;

pub use json::Json;

use std::borrow::Cow;

/// Text: borrowed in generated statics, owned when loaded at run time.
pub type Str = Cow<'static, str>;

/// A sequence: borrowed in generated statics, owned when loaded at run time.
pub type List<T> = Cow<'static, [T]>;

/// A machine with everything it references: its child machines (each lowered once, however
/// many machines name it) and the profiles documents they use.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Bundle {
    /// Index 0 is the entry machine; [`Child::machine`] refers to the others by index.
    pub machines: List<MachineIr>,
    /// The `data` of every `profiles.yml` read, by [`MachineIr::profiles`] /
    /// [`Agent::profiles`] index.
    pub profiles: List<Json>,
}

impl Bundle {
    /// The entry machine, if the bundle has one (a file that did not load has none).
    pub fn root(&self) -> Option<&MachineIr> {
        self.machines.first()
    }
}

/// Which language a machine's conditions are written in (`expression_engine`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Engine {
    /// `simple` (the default): the whitelisted Python subset of [`expr::simple`].
    #[default]
    Simple,
    /// `cel`: the Common Expression Language.
    Cel,
}

impl Engine {
    /// The engine named by an `expression_engine` value (`"simple"` or `"cel"`), if any.
    pub fn from_name(name: &str) -> Option<Engine> {
        match name {
            "simple" => Some(Engine::Simple),
            "cel" => Some(Engine::Cel),
            _ => None,
        }
    }

    /// The `expression_engine` spelling of the engine.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Simple => "simple",
            Engine::Cel => "cel",
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One lowered machine document.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MachineIr {
    /// `data.name` (`unnamed-machine` when absent, as the reference).
    pub name: Str,
    /// `spec_version` (`2.6.0` when absent or empty).
    pub spec_version: Str,
    /// The file the machine was read from (`None` for inline YAML or an inline child).
    pub path: Option<Str>,
    /// The directory its relative references resolve against.
    pub dir: Str,
    /// The condition language.
    pub engine: Engine,
    /// `data.context`: templates rendered with `input` when a run starts (`{}` when absent).
    pub context: Json,
    /// `data.settings` (`null` when absent).
    pub settings: Json,
    /// Limits taken from `settings`.
    pub limits: Limits,
    /// `data.hooks`, resolved by the runtime's hooks registry.
    pub hooks: Option<Json>,
    /// The states, in YAML order; transitions and `on_error` refer to them by index.
    pub states: List<StateIr>,
    /// The state a fresh run starts in: the one with `type: initial`, else `start`, else the
    /// first.
    pub initial: u32,
    /// Every distinct condition text of the machine, by [`Transition::condition`] id.
    pub conditions: List<Str>,
    /// `data.agents`, in YAML order.
    pub agents: List<Agent>,
    /// The profiles this machine's agents resolve models against, by [`Bundle::profiles`]
    /// index (`None`: none of its own; a child then inherits its parent's).
    pub profiles: Option<u32>,
    /// `data.persistence`, with defaults applied.
    pub persistence: Persistence,
    /// `data.machines`, in YAML order.
    pub machines: List<Child>,
    /// The whole document as compact JSON text, as the reference's `json.dumps` sees it (what
    /// a subprocess or a queue worker is handed for this machine; parsed only then).
    pub document: Str,
}

impl MachineIr {
    /// A machine with no states, for a file that did not load.
    pub fn empty() -> MachineIr {
        MachineIr {
            name: Cow::Borrowed("unnamed-machine"),
            spec_version: Cow::Borrowed("2.6.0"),
            path: None,
            dir: Cow::Borrowed("."),
            engine: Engine::Simple,
            context: Json::EMPTY_OBJECT,
            settings: Json::Null,
            limits: Limits::default(),
            hooks: None,
            states: Cow::Borrowed(&[]),
            initial: 0,
            conditions: Cow::Borrowed(&[]),
            agents: Cow::Borrowed(&[]),
            profiles: None,
            persistence: Persistence {
                enabled: true,
                backend: Backend::Memory,
                db_path: None,
                checkpoint_on: None,
                config: Cow::Borrowed("null\n"),
            },
            machines: Cow::Borrowed(&[]),
            document: Cow::Borrowed("null"),
        }
    }

    /// The index of the state named `name`.
    pub fn state_index(&self, name: &str) -> Option<usize> {
        self.states.iter().position(|s| s.name == name)
    }
}

/// Limits of a run that the YAML sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    /// `settings.max_steps` (the runtime's default, 1000, applies when absent).
    pub max_steps: Option<u64>,
    /// `settings.max_concurrent_children`, when a positive integer (else unbounded).
    pub max_concurrent_children: Option<u32>,
}

/// One state, lowered.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StateIr {
    /// The YAML name.
    pub name: Str,
    /// `type: final`.
    pub is_final: bool,
    /// `agent:`.
    pub agent: Option<Str>,
    /// `execution:` with defaults applied.
    pub execution: Execution,
    /// `tool_loop:` when it is truthy (`config.md` §3.5): the state runs a machine-driven tool
    /// loop instead of one agent call.
    pub tool_loop: Option<ToolLoop>,
    /// For a tool loop: its conditional transitions, in YAML order (even those after an
    /// unconditional one), which the loop checks after every tool call to leave early.
    pub loop_exits: List<Transition>,
    /// `input:`: templates rendered with the context.
    pub input: Option<Json>,
    /// `output_to_context:`, in YAML order: context key and template.
    pub output_to_context: List<(Str, Json)>,
    /// A final state's non-empty `output:` map.
    pub output: Option<Json>,
    /// The transitions the executor can take, in order: entries without a target are dropped
    /// and nothing after the first unconditional one is kept.
    pub transitions: List<Transition>,
    /// `on_error:`.
    pub on_error: Option<OnError>,
    /// `action:`.
    pub action: Option<Str>,
    /// `wait_for:`.
    pub wait_for: Option<Json>,
    /// `machine:` / `foreach:`.
    pub call: Option<Call>,
    /// `mode:` of a `machine:` list or `foreach:`.
    pub mode: Mode,
    /// `timeout:` in seconds.
    pub timeout: Option<f64>,
    /// `launch:` machine names.
    pub launch: List<Str>,
    /// `launch_input:`.
    pub launch_input: Option<Json>,
}

/// The guardrails of a tool loop (`config.md` §3.5), defaults applied.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ToolLoop {
    /// LLM turns at most (default 20; converted with Python's `int`).
    pub max_turns: Guard,
    /// Executed tool calls at most (default 50; `int`).
    pub max_tool_calls: Guard,
    /// Seconds one tool call may take (default 30).
    pub tool_timeout: Guard,
    /// Seconds the whole loop may take (default 600).
    pub total_timeout: Guard,
    /// Cost the loop may reach (`None`: no limit).
    pub max_cost: Option<Guard>,
    /// Tools the model may call (empty: all).
    pub allowed_tools: List<Str>,
    /// Tools the model may not call.
    pub denied_tools: List<Str>,
}

impl ToolLoop {
    /// `tool_loop: true`: every guardrail at its default.
    pub const DEFAULT: ToolLoop = ToolLoop {
        max_turns: Guard::Number(20.0),
        max_tool_calls: Guard::Number(50.0),
        tool_timeout: Guard::Number(30.0),
        total_timeout: Guard::Number(600.0),
        max_cost: None,
        allowed_tools: Cow::Borrowed(&[]),
        denied_tools: Cow::Borrowed(&[]),
    };
}

/// A guardrail value: a number from the YAML, or a template rendered with the context when the
/// loop starts and then converted.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum Guard {
    /// A number (a YAML boolean counts as 0 or 1, as in Python).
    Number(f64),
    /// Template text.
    Template(Str),
}

/// A transition the executor may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Transition {
    /// The condition's id in [`MachineIr::conditions`]; `None` when the transition is
    /// unconditional (no condition, or blank text).
    pub condition: Option<u32>,
    /// The target state's index.
    pub target: u32,
}

/// `on_error:`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum OnError {
    /// One recovery state for every error.
    State(u32),
    /// By exception class name (`default` for the rest), in YAML order.
    Map(List<(Str, u32)>),
}

/// `execution:` with the reference's defaults applied (`execution.md` §11).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum Execution {
    /// One call.
    Default,
    /// Retries with backoffs.
    Retry {
        /// Seconds before each retry (default `[2, 8, 16, 35]`).
        backoffs: List<f64>,
        /// Relative jitter (default 0.1).
        jitter: f64,
        /// Retry an empty result too.
        retry_on_empty: bool,
    },
    /// `n_samples` calls at once (default 3).
    Parallel {
        /// How many.
        n_samples: u32,
    },
    /// Voting until one answer leads by `k_margin`.
    MdapVoting {
        /// The lead needed (default 3).
        k_margin: u32,
        /// At most this many samples (default 10).
        max_candidates: u32,
        /// Longer responses are discarded.
        max_response_tokens: Option<u32>,
    },
}

/// `machine:` / `foreach:` of a state.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum Call {
    /// `machine: child`.
    Single(Str),
    /// `machine: [a, b]` or `[{name, input}]`: each name with its own input template, if any.
    List(List<(Str, Option<Json>)>),
    /// `foreach:`.
    Foreach {
        /// The expression yielding the items.
        items: Json,
        /// `as` (default `item`).
        item: Str,
        /// `key`.
        key: Option<Json>,
        /// The machine each item runs (the first of a list).
        machine: Str,
    },
}

/// `mode:` of a parallel `machine:` list or a `foreach:`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum Mode {
    /// Wait for every child (the default).
    #[default]
    Settled,
    /// Wait for the first child to finish.
    Any,
}

/// An entry of `data.agents`, resolved.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Agent {
    /// The name states use.
    pub name: Str,
    /// The adapter's type name (`flatagent` for files and inline documents).
    pub ty: Str,
    /// A reference the compiler did not resolve (a `ref:` of another adapter type), relative to
    /// [`Agent::dir`].
    pub reference: Option<Str>,
    /// The agent's document (a flatagent file the compiler loaded, or an inline one), or the
    /// `config:` of a typed reference.
    pub config: Option<Json>,
    /// The directory the agent's own references resolve against.
    pub dir: Str,
    /// The profiles next to the agent's file, by [`Bundle::profiles`] index.
    pub profiles: Option<u32>,
}

/// `data.persistence` with defaults applied (`persistence.md` §3).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Persistence {
    /// `enabled` (default true).
    pub enabled: bool,
    /// `backend`.
    pub backend: Backend,
    /// `db_path` of the SQLite backend.
    pub db_path: Option<Str>,
    /// `checkpoint_on` event names (`None`: every event).
    pub checkpoint_on: Option<List<Str>>,
    /// What config stores keep so a run resumes without its files: the machine's document with
    /// its agents and child machines embedded (`config.md` §4.2), as JSON with a 2-space indent
    /// whose floats read back as floats under YAML 1.1 (so it loads as a machine file too).
    pub config: Str,
}

/// The checkpoint backend a machine names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum Backend {
    /// `memory` (the default).
    #[default]
    Memory,
    /// `local`: files.
    Local,
    /// `sqlite`.
    Sqlite,
}

/// An entry of `data.machines`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Child {
    /// The name states use.
    pub name: Str,
    /// The file it names, resolved against the parent's directory (`None` for an inline
    /// document).
    pub path: Option<Str>,
    /// An inline document the compiler did not lower.
    pub inline: Option<Json>,
    /// The lowered child, by [`Bundle::machines`] index (`None`: it was not loaded, and the
    /// runtime's loader reads [`Child::path`] on first use).
    pub machine: Option<u32>,
}

/// The bare-path grammar of templates (`^(output|context|input)(\.[A-Za-z_][A-Za-z0-9_]*)*$`
/// after trimming): such a template yields the value at the path with its type, not text.
/// Returns the trimmed path.
pub fn bare_path(s: &str) -> Option<&str> {
    let t = s.trim();
    let mut parts = t.split('.');
    let root = parts.next()?;
    if !matches!(root, "output" | "context" | "input") {
        return None;
    }
    let ident = |p: &str| {
        let mut cs = p.chars();
        cs.next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    parts.all(ident).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_paths() {
        assert_eq!(bare_path(" context.a_1.b "), Some("context.a_1.b"));
        assert_eq!(bare_path("input"), Some("input"));
        assert_eq!(bare_path("context.1a"), None);
        assert_eq!(bare_path("ctx.a"), None);
        assert_eq!(bare_path("context..a"), None);
    }
}

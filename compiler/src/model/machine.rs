//! The spanned model of a `spec: flatmachine` document (spec 2.6.0, `config.md`).

use super::read::{Fields, key, number, scalar_string, string_list, wrong_type};
use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::source::{FileId, Span, Spanned};
use crate::yaml::{Node, Style, Value};

/// A machine document.
#[derive(Clone, Debug)]
pub struct MachineDoc {
    /// The file the document is in (for inline child machines, the parent's file).
    pub file: FileId,
    /// The whole document as loaded, for the runtime and checkpoints.
    pub root: Node,
    /// `spec`.
    pub spec: Option<Spanned<String>>,
    /// `spec_version`.
    pub spec_version: Option<Spanned<String>>,
    /// `data`.
    pub data: MachineData,
    /// `metadata` (free-form).
    pub metadata: Option<Node>,
}

/// The `data` section of a machine.
#[derive(Clone, Debug, Default)]
pub struct MachineData {
    /// Whether the document has a `data` map (checks of its content are skipped otherwise).
    pub present: bool,
    /// Where `data` is, or the document when it is missing.
    pub span: Span,
    /// `name`.
    pub name: Option<Spanned<String>>,
    /// `expression_engine`: `simple` or `cel`.
    pub expression_engine: Option<Spanned<String>>,
    /// `context`: the initial context template.
    pub context: Option<Node>,
    /// `agents`, in document order.
    pub agents: Vec<AgentEntry>,
    /// `machines`, in document order.
    pub machines: Vec<MachineEntry>,
    /// `states`, in document order.
    pub states: Vec<State>,
    /// Where `states` is, if present.
    pub states_span: Option<Span>,
    /// `settings` (free-form, handed to adapters).
    pub settings: Option<Node>,
    /// `persistence`.
    pub persistence: Option<Persistence>,
    /// `hooks`.
    pub hooks: Option<Node>,
}

/// One entry of `data.agents`.
#[derive(Clone, Debug)]
pub struct AgentEntry {
    /// The name states use in `agent:`.
    pub name: Spanned<String>,
    /// What the name refers to.
    pub reference: AgentRef,
}

/// The three accepted shapes of an agent reference.
#[derive(Clone, Debug)]
pub enum AgentRef {
    /// A path to an agent file, relative to the machine's file.
    Path(Spanned<String>),
    /// An inline `spec: flatagent` document.
    Inline(Node),
    /// A value of a shape no adapter accepts (already reported); kept so the name is known.
    Invalid(Span),
    /// `{type, ref?, config?}`: an adapter registered under `type`.
    Typed {
        /// The adapter type name.
        ty: Spanned<String>,
        /// `ref`: a path or adapter-specific locator.
        reference: Option<Spanned<String>>,
        /// `config`: adapter-specific.
        config: Option<Node>,
        /// The whole map.
        span: Span,
    },
}

/// One entry of `data.machines`.
#[derive(Clone, Debug)]
pub struct MachineEntry {
    /// The name states use in `machine:`, `launch:`.
    pub name: Spanned<String>,
    /// What the name refers to.
    pub reference: MachineRef,
}

/// A child machine reference.
#[derive(Clone, Debug)]
pub enum MachineRef {
    /// A path to a machine file, relative to the parent's file.
    Path(Spanned<String>),
    /// An inline `spec: flatmachine` document.
    Inline(Node),
    /// A value of another shape (already reported); kept so the name is known.
    Invalid(Span),
}

/// A state.
#[derive(Clone, Debug)]
pub struct State {
    /// The state's name (its key in `states`).
    pub name: Spanned<String>,
    /// The state's map.
    pub span: Span,
    /// `type`.
    pub ty: Option<Spanned<String>>,
    /// `agent`.
    pub agent: Option<Spanned<String>>,
    /// `execution`.
    pub execution: Option<Execution>,
    /// `tool_loop` (`true` or a map).
    pub tool_loop: Option<Node>,
    /// `input` template map.
    pub input: Option<Node>,
    /// `output_to_context` template map.
    pub output_to_context: Option<Node>,
    /// `output` template map (final states).
    pub output: Option<Node>,
    /// `transitions`, in order.
    pub transitions: Vec<Transition>,
    /// `on_error`.
    pub on_error: Option<OnError>,
    /// `action`.
    pub action: Option<Spanned<String>>,
    /// `wait_for` channel template.
    pub wait_for: Option<Node>,
    /// `machine`.
    pub machine: Option<MachineCall>,
    /// `foreach` expression.
    pub foreach: Option<Node>,
    /// `as`: the foreach item variable.
    pub as_name: Option<Spanned<String>>,
    /// `key` template.
    pub key: Option<Node>,
    /// `mode`: `settled` or `any`.
    pub mode: Option<Spanned<String>>,
    /// `timeout` in seconds.
    pub timeout: Option<Spanned<f64>>,
    /// `launch`: machines started fire-and-forget.
    pub launch: Vec<Spanned<String>>,
    /// `launch_input` template map.
    pub launch_input: Option<Node>,
}

impl State {
    /// Whether the state has `type: final`.
    pub fn is_final(&self) -> bool {
        self.ty.as_ref().is_some_and(|t| t.value == "final")
    }

    /// Whether the state has `type: initial`.
    pub fn is_initial(&self) -> bool {
        self.ty.as_ref().is_some_and(|t| t.value == "initial")
    }
}

/// A transition.
#[derive(Clone, Debug)]
pub struct Transition {
    /// `condition`; absent or blank means unconditional.
    pub condition: Option<Spanned<String>>,
    /// How the condition was written (block scalars shift error positions).
    pub condition_style: Style,
    /// `to`.
    pub to: Option<Spanned<String>>,
    /// The transition's map.
    pub span: Span,
}

impl Transition {
    /// Whether the transition is taken whatever the context.
    pub fn is_unconditional(&self) -> bool {
        self.condition
            .as_ref()
            .is_none_or(|c| c.value.trim().is_empty())
    }
}

/// `on_error`.
#[derive(Clone, Debug)]
pub enum OnError {
    /// Every error goes to this state.
    State(Spanned<String>),
    /// Error class name → state; `default` catches the rest.
    Map(Vec<(Spanned<String>, Spanned<String>)>),
}

impl OnError {
    /// Every target state named.
    pub fn targets(&self) -> Vec<&Spanned<String>> {
        match self {
            OnError::State(s) => vec![s],
            OnError::Map(m) => m.iter().map(|(_, t)| t).collect(),
        }
    }
}

/// `machine:`.
#[derive(Clone, Debug)]
pub enum MachineCall {
    /// `machine: child`.
    Single(Spanned<String>),
    /// `machine: [a, b]` or `machine: [{name, input}]`.
    List(Vec<MachineInput>),
}

impl MachineCall {
    /// Every machine name called.
    pub fn names(&self) -> Vec<&Spanned<String>> {
        match self {
            MachineCall::Single(s) => vec![s],
            MachineCall::List(l) => l.iter().map(|m| &m.name).collect(),
        }
    }
}

/// One machine of a `machine:` list.
#[derive(Clone, Debug)]
pub struct MachineInput {
    /// The machine's name in `machines`.
    pub name: Spanned<String>,
    /// Its own input template map.
    pub input: Option<Node>,
}

/// `execution:`.
#[derive(Clone, Debug, Default)]
pub struct Execution {
    /// The map.
    pub span: Span,
    /// `type`.
    pub ty: Option<Spanned<String>>,
    /// `backoffs` (retry), seconds.
    pub backoffs: Option<Vec<Spanned<f64>>>,
    /// `jitter` (retry), a fraction.
    pub jitter: Option<Spanned<f64>>,
    /// `retry_on_empty` (retry).
    pub retry_on_empty: Option<Spanned<bool>>,
    /// `n_samples` (parallel).
    pub n_samples: Option<Spanned<i64>>,
    /// `k_margin` (mdap_voting).
    pub k_margin: Option<Spanned<i64>>,
    /// `max_candidates` (mdap_voting).
    pub max_candidates: Option<Spanned<i64>>,
    /// `max_response_tokens` (mdap_voting).
    pub max_response_tokens: Option<Spanned<i64>>,
}

/// `persistence:`.
#[derive(Clone, Debug, Default)]
pub struct Persistence {
    /// The map.
    pub span: Span,
    /// `enabled`.
    pub enabled: Option<Spanned<bool>>,
    /// `backend`.
    pub backend: Option<Spanned<String>>,
    /// `db_path`.
    pub db_path: Option<Spanned<String>>,
    /// `checkpoint_on`.
    pub checkpoint_on: Option<Vec<Spanned<String>>>,
}

const ENVELOPE: &[&str] = &["spec", "spec_version", "data", "metadata"];
const DATA: &[&str] = &[
    "name",
    "expression_engine",
    "context",
    "agents",
    "machines",
    "states",
    "settings",
    "persistence",
    "hooks",
];
/// Fields of a state, as listed in `config.md` §3.2.
pub const STATE_FIELDS: &[&str] = &[
    "type",
    "agent",
    "execution",
    "tool_loop",
    "input",
    "output_to_context",
    "output",
    "transitions",
    "on_error",
    "action",
    "wait_for",
    "machine",
    "foreach",
    "as",
    "key",
    "mode",
    "timeout",
    "launch",
    "launch_input",
    "sampling",
];
const TRANSITION: &[&str] = &["condition", "to"];
const EXECUTION: &[&str] = &[
    "type",
    "backoffs",
    "jitter",
    "retry_on_empty",
    "n_samples",
    "k_margin",
    "max_candidates",
    "max_response_tokens",
];
const TOOL_LOOP: &[&str] = &[
    "max_turns",
    "max_tool_calls",
    "tool_timeout",
    "total_timeout",
    "max_cost",
    "allowed_tools",
    "denied_tools",
];
const PERSISTENCE: &[&str] = &["enabled", "backend", "db_path", "checkpoint_on"];
const TYPED_AGENT: &[&str] = &["type", "ref", "config"];
const MACHINE_INPUT: &[&str] = &["name", "input"];

/// Reads a machine document. Structural defects are reported; what can be read is kept.
pub fn parse_machine(root: &Node, file: FileId, diags: &mut Diagnostics) -> MachineDoc {
    let mut doc = MachineDoc {
        file,
        root: root.clone(),
        spec: None,
        spec_version: None,
        data: MachineData {
            span: root.span,
            ..MachineData::default()
        },
        metadata: None,
    };
    let Some(f) = Fields::of(root, "a machine document", ENVELOPE, diags) else {
        return doc;
    };
    doc.spec = f.string("spec", "the document", diags);
    doc.spec_version = f.string("spec_version", "the document", diags);
    doc.metadata = f.node("metadata").cloned();
    match f.node("data") {
        Some(data) => doc.data = parse_data(data, diags),
        None => diags.push(
            Diagnostic::new(
                Code::MissingData,
                root.span,
                "the machine has no `data` section",
            )
            .help("put `name`, `context`, `agents` and `states` under a top-level `data:` key"),
        ),
    }
    doc
}

fn parse_data(node: &Node, diags: &mut Diagnostics) -> MachineData {
    let mut data = MachineData {
        span: node.span,
        ..MachineData::default()
    };
    let Some(f) = Fields::of(node, "`data`", DATA, diags) else {
        return data;
    };
    data.present = true;
    data.name = f.string("name", "`data`", diags);
    data.expression_engine = f.string("expression_engine", "`data`", diags);
    data.context = f.node("context").cloned();
    if let Some(ctx) = &data.context
        && ctx.as_map().is_none()
    {
        diags.push(wrong_type(ctx, "`context`", "a map"));
    }
    if let Some(agents) = f.node("agents") {
        match agents.as_map() {
            Some(entries) => {
                data.agents = entries
                    .iter()
                    .map(|(k, v)| AgentEntry {
                        name: key(k),
                        reference: parse_agent_ref(v, diags).unwrap_or(AgentRef::Invalid(v.span)),
                    })
                    .collect()
            }
            None => diags.push(wrong_type(
                agents,
                "`agents`",
                "a map of name to agent reference",
            )),
        }
    }
    if let Some(machines) = f.node("machines") {
        match machines.as_map() {
            Some(entries) => {
                data.machines = entries
                    .iter()
                    .map(|(k, v)| {
                        let reference = match &v.value {
                            Value::Str(s) => MachineRef::Path(Spanned::new(s.clone(), v.span)),
                            Value::Map(_) => MachineRef::Inline(v.clone()),
                            _ => {
                                diags.push(
                                    Diagnostic::new(
                                        Code::InvalidMachineRef,
                                        v.span,
                                        format!(
                                            "machine `{}` must be a path or an inline flatmachine, found {}",
                                            key(k).value,
                                            v.kind_name()
                                        ),
                                    )
                                    .help("write `name: ./child.yml`"),
                                );
                                MachineRef::Invalid(v.span)
                            }
                        };
                        MachineEntry { name: key(k), reference }
                    })
                    .collect()
            }
            None => diags.push(wrong_type(machines, "`machines`", "a map of name to machine reference")),
        }
    }
    if let Some((_, states)) = f.entry("states") {
        data.states_span = Some(states.span);
        match states.as_map() {
            Some(entries) => {
                data.states = entries
                    .iter()
                    .map(|(k, v)| parse_state(k, v, diags))
                    .collect();
            }
            None => diags.push(wrong_type(
                states,
                "`states`",
                "a map of state name to state",
            )),
        }
    }
    data.settings = f.node("settings").cloned();
    data.persistence = f
        .node("persistence")
        .and_then(|p| parse_persistence(p, diags));
    data.hooks = f.node("hooks").cloned();
    data
}

/// Normalises an agent reference as `agents.py: normalize_agent_ref` does.
fn parse_agent_ref(v: &Node, diags: &mut Diagnostics) -> Option<AgentRef> {
    match &v.value {
        Value::Str(s) => Some(AgentRef::Path(Spanned::new(s.clone(), v.span))),
        // A `type` key makes a typed ref even when `spec` is present too.
        Value::Map(_) if v.get("type").is_some() => {
            let f = Fields::of(v, "a typed agent reference", TYPED_AGENT, diags)?;
            Some(AgentRef::Typed {
                ty: f.string("type", "the agent reference", diags)?,
                reference: f.string("ref", "the agent reference", diags),
                config: f.node("config").cloned(),
                span: v.span,
            })
        }
        Value::Map(_) if v.get("spec").and_then(Node::as_str) == Some("flatagent") => {
            Some(AgentRef::Inline(v.clone()))
        }
        _ => {
            diags.push(
                Diagnostic::new(
                    Code::InvalidAgentRef,
                    v.span,
                    "invalid agent reference: expected a path, an inline `spec: flatagent` document or `{type, ref, config}`",
                )
                .help("write `name: ./agent.yml`, or add `type:` naming the adapter"),
            );
            None
        }
    }
}

fn parse_state(k: &Node, v: &Node, diags: &mut Diagnostics) -> State {
    let name = key(k);
    let mut st = State {
        name: name.clone(),
        span: v.span,
        ty: None,
        agent: None,
        execution: None,
        tool_loop: None,
        input: None,
        output_to_context: None,
        output: None,
        transitions: Vec::new(),
        on_error: None,
        action: None,
        wait_for: None,
        machine: None,
        foreach: None,
        as_name: None,
        key: None,
        mode: None,
        timeout: None,
        launch: Vec::new(),
        launch_input: None,
    };
    if v.is_null() {
        return st;
    }
    let what = format!("state `{}`", name.value);
    let Some(f) = Fields::of(v, &what, STATE_FIELDS, diags) else {
        return st;
    };
    st.ty = f.string("type", &what, diags);
    st.agent = f.string("agent", &what, diags);
    st.execution = f.node("execution").and_then(|e| parse_execution(e, diags));
    st.tool_loop = f.node("tool_loop").cloned();
    if let Some(tl) = &st.tool_loop {
        match tl.value {
            Value::Map(_) => {
                Fields::of(tl, "`tool_loop`", TOOL_LOOP, diags);
            }
            Value::Bool(_) => {}
            _ => diags.push(
                wrong_type(
                    tl,
                    &format!("`tool_loop` of {what}"),
                    "`true`, `false` or a map of guardrails",
                )
                .help("write `tool_loop: true`, or a map such as `tool_loop: {max_turns: 10}`"),
            ),
        }
    }
    for (field, slot) in [
        ("input", &mut st.input),
        ("output_to_context", &mut st.output_to_context),
        ("output", &mut st.output),
        ("launch_input", &mut st.launch_input),
    ] {
        if let Some(n) = f.node(field) {
            if n.as_map().is_none() {
                diags.push(wrong_type(n, &format!("`{field}` of {what}"), "a map"));
            }
            *slot = Some(n.clone());
        }
    }
    if let Some(ts) = f.node("transitions") {
        match ts.as_seq() {
            Some(items) => {
                st.transitions = items
                    .iter()
                    .filter_map(|t| {
                        let tf = Fields::of(t, "a transition", TRANSITION, diags)?;
                        let cond = tf.node("condition");
                        Some(Transition {
                            condition: cond.and_then(|c| scalar_string(c, "`condition`", diags)),
                            condition_style: cond.map_or(Style::Plain, |c| c.style),
                            to: tf.string("to", "a transition", diags),
                            span: t.span,
                        })
                    })
                    .collect()
            }
            None => diags.push(
                wrong_type(ts, &format!("`transitions` of {what}"), "a list")
                    .help("write `transitions:` followed by `- to: next` lines"),
            ),
        }
    }
    if let Some(oe) = f.node("on_error") {
        st.on_error = match &oe.value {
            Value::Map(entries) => Some(OnError::Map(
                entries
                    .iter()
                    .filter_map(|(ek, ev)| {
                        Some((key(ek), scalar_string(ev, "an `on_error` target", diags)?))
                    })
                    .collect(),
            )),
            _ => scalar_string(oe, "`on_error`", diags).map(OnError::State),
        };
    }
    st.action = f.string("action", &what, diags);
    st.wait_for = f.node("wait_for").cloned();
    if let Some(m) = f.node("machine") {
        st.machine = parse_machine_call(m, diags);
    }
    st.foreach = f.node("foreach").cloned();
    st.as_name = f.string("as", &what, diags);
    st.key = f.node("key").cloned();
    st.mode = f.string("mode", &what, diags);
    st.timeout = f
        .node("timeout")
        .and_then(|t| number(t, "`timeout`", diags));
    if let Some(l) = f.node("launch") {
        st.launch = string_list(l, "`launch`", diags);
    }
    if let Some((k, _)) = f.entry("sampling") {
        diags.push(
            Diagnostic::new(
                Code::IgnoredField,
                k.span,
                format!("`sampling` in {what} is never read by the runtime"),
            )
            .help("remove it, or use `execution: {type: parallel}` to sample several answers"),
        );
    }
    st
}

fn parse_machine_call(m: &Node, diags: &mut Diagnostics) -> Option<MachineCall> {
    match &m.value {
        Value::Seq(items) => {
            let list = items
                .iter()
                .filter_map(|item| match &item.value {
                    Value::Map(_) => {
                        let f = Fields::of(item, "a machine input", MACHINE_INPUT, diags)?;
                        let Some(name) = f.string("name", "a machine input", diags) else {
                            diags.push(
                                Diagnostic::new(
                                    Code::MissingField,
                                    item.span,
                                    "a `machine:` list entry has no `name`",
                                )
                                .help("write `- name: child` and optionally `input: {...}`"),
                            );
                            return None;
                        };
                        Some(MachineInput {
                            name,
                            input: f.node("input").cloned(),
                        })
                    }
                    _ => scalar_string(item, "a `machine:` entry", diags)
                        .map(|name| MachineInput { name, input: None }),
                })
                .collect();
            Some(MachineCall::List(list))
        }
        _ => scalar_string(m, "`machine`", diags).map(MachineCall::Single),
    }
}

fn parse_execution(e: &Node, diags: &mut Diagnostics) -> Option<Execution> {
    let f = Fields::of(e, "`execution`", EXECUTION, diags)?;
    let what = "`execution`";
    Some(Execution {
        span: e.span,
        ty: f.string("type", what, diags),
        backoffs: f.node("backoffs").map(|b| match b.as_seq() {
            Some(items) => items
                .iter()
                .filter_map(|i| number(i, "a backoff", diags))
                .collect(),
            None => {
                diags.push(wrong_type(b, "`backoffs`", "a list of seconds"));
                Vec::new()
            }
        }),
        jitter: f.number("jitter", what, diags),
        retry_on_empty: f.boolean("retry_on_empty", what, diags),
        n_samples: f.integer("n_samples", what, diags),
        k_margin: f.integer("k_margin", what, diags),
        max_candidates: f.integer("max_candidates", what, diags),
        max_response_tokens: f.integer("max_response_tokens", what, diags),
    })
}

fn parse_persistence(p: &Node, diags: &mut Diagnostics) -> Option<Persistence> {
    let f = Fields::of(p, "`persistence`", PERSISTENCE, diags)?;
    let what = "`persistence`";
    Some(Persistence {
        span: p.span,
        enabled: f.boolean("enabled", what, diags),
        backend: f.string("backend", what, diags),
        db_path: f.string("db_path", what, diags),
        checkpoint_on: f.node("checkpoint_on").map(|c| match c.as_seq() {
            Some(_) => string_list(c, "a checkpoint event", diags),
            None => {
                diags.push(wrong_type(c, "`checkpoint_on`", "a list of event names"));
                Vec::new()
            }
        }),
    })
}

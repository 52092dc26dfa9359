//! Every check that can be made from the YAML alone, run over a loaded [`Project`].

mod budget;
mod durations;
pub mod features;
mod graph;
pub(crate) mod mdap;
mod providers;
mod signals;
pub(crate) mod templates;
#[cfg(test)]
mod test_support;
mod tools;

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::load::{LoadedAgent, LoadedMachine, Project};
use crate::model::agent::ModelRef;
use crate::model::machine::{MachineCall, State};
use crate::source::{SourceMap, Span, Spanned};
use crate::suggest;
use crate::yaml::{Node, Value};
use std::collections::BTreeSet;
use templates::{Scope, Templates, bare_path};

pub use templates::bare_path as is_bare_path;

/// The execution types of `config.md` §3.4.
pub const EXECUTION_TYPES: &[&str] = &["default", "retry", "parallel", "mdap_voting"];
/// The checkpoint events of `persistence.md`.
pub const CHECKPOINT_EVENTS: &[&str] = &[
    "machine_start",
    "state_enter",
    "execute",
    "state_exit",
    "machine_end",
    "waiting",
    "tool_call",
];
/// The persistence backends.
pub const PERSISTENCE_BACKENDS: &[&str] = &["memory", "local", "sqlite"];

/// Runs every check over the project and returns the loader's and the checks' diagnostics,
/// sorted by position.
pub fn check_project(project: &Project) -> Diagnostics {
    let mut diags = project.diags.clone();
    let templates = Templates::new();
    for machine in &project.machines {
        check_machine(project, machine, &templates, &mut diags);
    }
    for agent in &project.agents {
        check_agent(project, agent, &templates, &mut diags);
    }
    durations::check_project(project, &mut diags);
    diags.sort();
    diags
}

fn check_spec(
    spec: Option<&Spanned<String>>,
    version: Option<&Spanned<String>>,
    expected: &str,
    doc_span: Span,
    diags: &mut Diagnostics,
) {
    match spec {
        None => diags.push(
            Diagnostic::new(
                Code::WrongSpec,
                doc_span,
                format!("the document has no `spec`; expected `spec: {expected}`"),
            )
            .help(format!("add `spec: {expected}` at the top of the file")),
        ),
        Some(s) if s.value != expected => diags.push(
            Diagnostic::new(
                Code::WrongSpec,
                s.span,
                format!("expected `spec: {expected}`, found `{}`", s.value),
            )
            .help(format!("write `spec: {expected}`")),
        ),
        Some(_) => {}
    }
    let Some(v) = version else { return };
    let parts: Vec<&str> = v.value.trim().split('.').collect();
    let nums: Option<Vec<u64>> = parts.iter().map(|p| p.parse().ok()).collect();
    match nums.as_deref() {
        Some([major, minor, ..]) if (1..=3).contains(&parts.len()) => {
            if *major > 4 {
                diags.push(
                    Diagnostic::new(
                        Code::UnsupportedSpecVersion,
                        v.span,
                        format!("`spec_version: {}` has major version {major}, newer than any this compiler knows", v.value),
                    )
                    .help("this compiler implements spec 2.6; versions 0.x to 4.x are read with warnings"),
                );
            } else if (*major, *minor) != (2, 6) {
                diags.push(
                    Diagnostic::new(
                        Code::SpecVersionMismatch,
                        v.span,
                        format!("`spec_version: {}` differs from 2.6, the version this compiler implements", v.value),
                    )
                    .help("fields of other versions are reported as unknown and ignored; set `spec_version: \"2.6.0\"` once the file follows 2.6"),
                );
            }
        }
        _ => diags.push(
            Diagnostic::new(
                Code::UnsupportedSpecVersion,
                v.span,
                format!(
                    "`spec_version: {}` is not a `major.minor.patch` version",
                    v.value
                ),
            )
            .help("write `spec_version: \"2.6.0\"`"),
        ),
    }
}

fn check_machine(
    project: &Project,
    m: &LoadedMachine,
    templates: &Templates,
    diags: &mut Diagnostics,
) {
    let doc = &m.doc;
    let data = &doc.data;
    let sources = &project.sources;
    if doc.root.as_map().is_none() {
        // Not a map at all: already reported as the wrong type; anything more is noise.
        return;
    }
    check_spec(
        doc.spec.as_ref(),
        doc.spec_version.as_ref(),
        "flatmachine",
        doc.root.span,
        diags,
    );

    let cel = match &data.expression_engine {
        Some(e) if e.value == "cel" => true,
        Some(e) if e.value != "simple" => {
            diags.push(
                Diagnostic::new(
                    Code::UnknownExpressionEngine,
                    e.span,
                    format!("unknown expression engine `{}`", e.value),
                )
                .help(
                    suggest::help(&e.value, ["simple", "cel"])
                        .unwrap_or_else(|| "use `simple` or `cel`".into()),
                ),
            );
            false
        }
        _ => false,
    };

    if !data.present {
        // The missing or malformed `data` is already reported; nothing below could be right.
        return;
    }
    graph::check(data, diags);
    check_variant_names(&data.states, diags);
    check_references(m, diags);
    check_persistence(m, diags);

    let context_keys: BTreeSet<String> = data
        .context
        .as_ref()
        .and_then(Node::as_map)
        .map(|e| e.iter().filter_map(|(k, _)| k.key_str()).collect())
        .unwrap_or_default();
    if let Some(ctx) = &data.context {
        let scope = Scope {
            site: "the initial `context`",
            vars: &["input"],
            empty: &[],
            prompt: false,
        };
        templates.check_map(ctx, &scope, sources, diags);
    }

    signals::check_machine(project, m, templates, &context_keys, diags);
    mdap::check_machine(project, m, diags);
    budget::check_machine(m, diags);
    for state in &data.states {
        check_state_options(state, diags);
        tools::check_state(project, m, state, diags);
        check_state_templates(project, m, state, templates, &context_keys, diags);
        for t in &state.transitions {
            if let Some(c) = &t.condition {
                templates::check_condition(
                    &c.value,
                    c.span,
                    t.condition_style,
                    cel,
                    sources,
                    diags,
                );
            }
        }
    }
}

/// Two state names that generate the same `State` variant get numbered; say so.
fn check_variant_names(states: &[State], diags: &mut Diagnostics) {
    let (variants, renamed) =
        crate::naming::variant_names(states.iter().map(|s| s.name.value.as_str()));
    for i in renamed {
        let base = variants[i].trim_end_matches(|c: char| c.is_ascii_digit());
        let first = variants.iter().position(|v| v == base).unwrap_or(0);
        diags.push(
            Diagnostic::new(
                Code::StateNameCollision,
                states[i].name.span,
                format!(
                    "states `{}` and `{}` both map to the Rust variant `{base}`; this one is `State::{}`",
                    states[first].name.value, states[i].name.value, variants[i]
                ),
            )
            .note(states[first].name.span, format!("`{}` is `State::{base}`", states[first].name.value))
            .help("rename one of the states so their UpperCamelCase forms differ"),
        );
    }
}

fn check_references(m: &LoadedMachine, diags: &mut Diagnostics) {
    let data = &m.doc.data;
    let agent_names = || data.agents.iter().map(|a| a.name.value.as_str());
    let machine_names = || data.machines.iter().map(|a| a.name.value.as_str());
    let mut used_agents = BTreeSet::new();
    let mut used_machines = BTreeSet::new();
    let unknown_machine = |name: &Spanned<String>, field: &str| {
        Diagnostic::new(
            Code::UnknownMachine,
            name.span,
            format!(
                "`{field}` names machine `{}`, which is not in `machines`",
                name.value
            ),
        )
        .help(
            suggest::help(&name.value, machine_names()).unwrap_or_else(|| {
                if data.machines.is_empty() {
                    format!(
                        "declare it: `machines: {{{}: ./{}.yml}}`",
                        name.value, name.value
                    )
                } else {
                    format!(
                        "machines are: {}",
                        machine_names().collect::<Vec<_>>().join(", ")
                    )
                }
            }),
        )
    };
    for s in &data.states {
        if let Some(a) = &s.agent {
            used_agents.insert(a.value.clone());
            if !agent_names().any(|n| n == a.value) {
                diags.push(
                    Diagnostic::new(
                        Code::UnknownAgent,
                        a.span,
                        format!(
                            "state `{}` uses agent `{}`, which is not in `agents`",
                            s.name.value, a.value
                        ),
                    )
                    .help(
                        suggest::help(&a.value, agent_names()).unwrap_or_else(|| {
                            if data.agents.is_empty() {
                                format!("declare it: `agents: {{{}: ./{}.yml}}`", a.value, a.value)
                            } else {
                                format!(
                                    "agents are: {}",
                                    agent_names().collect::<Vec<_>>().join(", ")
                                )
                            }
                        }),
                    ),
                );
            }
        }
        if let Some(call) = &s.machine {
            for name in call.names() {
                used_machines.insert(name.value.clone());
                if !machine_names().any(|n| n == name.value) {
                    diags.push(unknown_machine(name, "machine"));
                }
            }
        }
        for name in &s.launch {
            used_machines.insert(name.value.clone());
            if !machine_names().any(|n| n == name.value) {
                diags.push(unknown_machine(name, "launch"));
            }
        }
    }
    for a in &data.agents {
        if !used_agents.contains(&a.name.value) {
            diags.push(
                Diagnostic::new(
                    Code::UnusedReference,
                    a.name.span,
                    format!("agent `{}` is declared but no state uses it", a.name.value),
                )
                .help("remove it, or use it with `agent:` in a state"),
            );
        }
    }
    for mm in &data.machines {
        if !used_machines.contains(&mm.name.value) {
            diags.push(
                Diagnostic::new(
                    Code::UnusedReference,
                    mm.name.span,
                    format!(
                        "machine `{}` is declared but no state uses it",
                        mm.name.value
                    ),
                )
                .help("remove it, or use it with `machine:` or `launch:` in a state"),
            );
        }
    }
}

fn check_persistence(m: &LoadedMachine, diags: &mut Diagnostics) {
    let Some(p) = &m.doc.data.persistence else {
        return;
    };
    if let Some(b) = &p.backend
        && !PERSISTENCE_BACKENDS.contains(&b.value.as_str())
    {
        diags.push(
            Diagnostic::new(
                Code::UnknownPersistenceBackend,
                b.span,
                format!("unknown persistence backend `{}`", b.value),
            )
            .help(
                suggest::help(&b.value, PERSISTENCE_BACKENDS.iter().copied())
                    .unwrap_or_else(|| "backends are: memory, local, sqlite".into()),
            ),
        );
    }
    for ev in p.checkpoint_on.iter().flatten() {
        if !CHECKPOINT_EVENTS.contains(&ev.value.as_str()) {
            diags.push(
                Diagnostic::new(
                    Code::UnknownField,
                    ev.span,
                    format!("unknown checkpoint event `{}`; it never fires", ev.value),
                )
                .help(
                    suggest::help(&ev.value, CHECKPOINT_EVENTS.iter().copied())
                        .unwrap_or_else(|| format!("events are: {}", CHECKPOINT_EVENTS.join(", "))),
                ),
            );
        }
    }
}

fn check_state_options(s: &State, diags: &mut Diagnostics) {
    if let Some(e) = &s.execution {
        if let Some(t) = &e.ty
            && !EXECUTION_TYPES.contains(&t.value.as_str())
        {
            diags.push(
                Diagnostic::new(
                    Code::UnknownExecutionType,
                    t.span,
                    format!("unknown execution type `{}`", t.value),
                )
                .help(
                    suggest::help(&t.value, EXECUTION_TYPES.iter().copied()).unwrap_or_else(|| {
                        format!("execution types are: {}", EXECUTION_TYPES.join(", "))
                    }),
                ),
            );
        }
        for b in e.backoffs.iter().flatten() {
            if b.value < 0.0 || !b.value.is_finite() {
                diags.push(
                    Diagnostic::new(
                        Code::NegativeBackoff,
                        b.span,
                        format!(
                            "backoff `{}` is not a non-negative number of seconds",
                            crate::pyfmt::float_repr(b.value)
                        ),
                    )
                    .help("backoffs are waits in seconds before each retry, e.g. `[2, 8, 16, 35]`"),
                );
            }
        }
        if let Some(j) = &e.jitter
            && !(0.0..=1.0).contains(&j.value)
        {
            diags.push(
                Diagnostic::new(
                    Code::JitterOutOfRange,
                    j.span,
                    format!(
                        "`jitter: {}` is outside 0..=1",
                        crate::pyfmt::float_repr(j.value)
                    ),
                )
                .help("jitter is a fraction of each backoff, e.g. `0.1` for ±10%"),
            );
        }
        for (name, v) in [
            ("n_samples", &e.n_samples),
            ("k_margin", &e.k_margin),
            ("max_candidates", &e.max_candidates),
            ("max_response_tokens", &e.max_response_tokens),
        ] {
            if let Some(v) = v
                && v.value < 1
            {
                diags.push(
                    Diagnostic::new(
                        Code::InvalidNumber,
                        v.span,
                        format!("`{name}: {}` must be at least 1", v.value),
                    )
                    .help(format!("set `{name}` to a positive integer")),
                );
            }
        }
    }
    if let Some(f) = &s.foreach
        && s.machine.is_none()
    {
        diags.push(
            Diagnostic::new(
                Code::ForeachWithoutMachine,
                f.span,
                format!(
                    "state `{}` has `foreach` but no `machine` to run for each item",
                    s.name.value
                ),
            )
            .help("add `machine: <name>` naming the machine each item runs"),
        );
    }
    if let Some(mode) = &s.mode
        && !matches!(mode.value.as_str(), "settled" | "any")
    {
        diags.push(
            Diagnostic::new(
                Code::UnknownMode,
                mode.span,
                format!("unknown mode `{}`", mode.value),
            )
            .help(
                suggest::help(&mode.value, ["settled", "any"])
                    .unwrap_or_else(|| "use `settled` or `any`".into()),
            ),
        );
    }
    if let Some(t) = &s.timeout
        && (t.value < 0.0 || !t.value.is_finite())
    {
        diags.push(
            Diagnostic::new(
                Code::InvalidNumber,
                t.span,
                format!(
                    "`timeout: {}` must be a non-negative number of seconds",
                    crate::pyfmt::float_repr(t.value)
                ),
            )
            .help("timeout is in seconds"),
        );
    }
    if let Some(o) = &s.output
        && !s.is_final()
    {
        diags.push(
            Diagnostic::new(
                Code::IgnoredField,
                o.span,
                format!(
                    "`output` of state `{}` is ignored: only final states render an output",
                    s.name.value
                ),
            )
            .help("mark the state `type: final`, or use `output_to_context` to keep values"),
        );
    }
}

fn check_state_templates(
    project: &Project,
    m: &LoadedMachine,
    s: &State,
    templates: &Templates,
    context_keys: &BTreeSet<String>,
    diags: &mut Diagnostics,
) {
    let sources = &project.sources;
    let name = &s.name.value;
    let ctx_site = format!("state `{name}`");
    let state_scope = Scope {
        site: &ctx_site,
        vars: &["context", "input"],
        empty: &[],
        prompt: false,
    };

    // Per-item templates of a foreach see the item and empty `context`/`input`.
    let item = s
        .as_name
        .as_ref()
        .map(|a| a.value.as_str())
        .unwrap_or("item");
    let item_vars = [item, "context", "input"];
    let item_site = format!("the per-item templates of foreach state `{name}`");
    let item_scope = Scope {
        site: &item_site,
        vars: &item_vars,
        empty: &["context", "input"],
        prompt: false,
    };

    if let Some(input) = &s.input {
        let scope = if s.foreach.is_some() {
            &item_scope
        } else {
            &state_scope
        };
        let reads = templates.check_map(input, scope, sources, diags);
        if s.foreach.is_none() {
            check_uncaptured_input(&reads, context_keys, name, diags);
        }
    }
    if let Some(MachineCall::List(list)) = &s.machine {
        for mi in list {
            if let Some(input) = &mi.input {
                templates.check_map(input, &state_scope, sources, diags);
            }
        }
    }
    if let Some(li) = &s.launch_input {
        templates.check_map(li, &state_scope, sources, diags);
    }
    if let Some(f) = &s.foreach {
        match &f.value {
            Value::Str(text) if Templates::is_template(text) => {
                templates.check_value(f, &state_scope, sources, diags);
                diags.push(
                    Diagnostic::new(
                        Code::ForeachNotList,
                        f.span,
                        format!("`foreach` of state `{name}` is a `{{{{ }}}}` template, which renders a string"),
                    )
                    .note(None, "flatmachines parses the rendered JSON as a list; the Python reference fails with \"foreach expression must yield a list\"")
                    .help_opt(bare_path_hint(text)),
                );
            }
            Value::Str(text) if bare_path(text).is_some() => {
                templates.check_value(f, &state_scope, sources, diags);
            }
            Value::Seq(_) => {}
            _ => diags.push(
                Diagnostic::new(
                    Code::WrongType,
                    f.span,
                    format!("`foreach` of state `{name}` must be a bare path to a list, like `context.items`"),
                )
                .help("write `foreach: context.items`"),
            ),
        }
    }
    if let Some(k) = &s.key {
        if let Value::Str(text) = &k.value
            && !Templates::is_template(text)
        {
            diags.push(
                Diagnostic::new(
                    Code::EmptyVariable,
                    k.span,
                    format!("`key: {text}` is a literal, so every item gets the same key"),
                )
                .help(format!(
                    "write `key: \"{{{{ {text} }}}}\"` to compute a key per item"
                )),
            );
        }
        templates.check_value(k, &item_scope, sources, diags);
    }
    if let Some(tl) = &s.tool_loop
        && let Some(entries) = tl.as_map()
    {
        for (_, v) in entries {
            templates.check_value(v, &state_scope, sources, diags);
        }
    }
    if let Some(otc) = &s.output_to_context {
        let site = format!("the `output_to_context` of state `{name}`");
        let scope = Scope {
            site: &site,
            vars: &["context", "output", "input"],
            empty: &[],
            prompt: false,
        };
        let mut reads: Vec<(String, Node)> = Vec::new();
        for (_, v) in otc.as_map().unwrap_or_default() {
            // Only top-level values are rendered here; nested maps are stored verbatim.
            reads.extend(
                templates
                    .check_value(v, &scope, sources, diags)
                    .into_iter()
                    .map(|p| (p, v.clone())),
            );
        }
        check_output_fields(project, m, s, &reads, diags);
    }
    if let Some(o) = &s.output
        && s.is_final()
    {
        let site = format!("the `output` of final state `{name}`");
        let scope = Scope {
            site: &site,
            vars: &["context"],
            empty: &[],
            prompt: false,
        };
        templates.check_map(o, &scope, sources, diags);
    }
}

fn bare_path_hint(text: &str) -> Option<String> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?.trim();
    bare_path(inner).map(|p| format!("write `foreach: {p}` (a bare path keeps the list)"))
}

/// The reference's static warning: inside states `input` is the context, so `input.KEY` reads a
/// context key, and the initial context must have captured it.
fn check_uncaptured_input(
    reads: &[(String, Node)],
    context_keys: &BTreeSet<String>,
    state: &str,
    diags: &mut Diagnostics,
) {
    let mut seen = BTreeSet::new();
    for (path, node) in reads {
        let mut parts = path.split('.');
        if parts.next() != Some("input") {
            continue;
        }
        let Some(k) = parts.next() else { continue };
        if context_keys.contains(k) || !seen.insert(k.to_string()) {
            continue;
        }
        diags.push(
            Diagnostic::new(
                Code::UncapturedInput,
                node.span,
                format!("state `{state}` reads `input.{k}`, but inside states `input` is the context, which has no `{k}`"),
            )
            .help(format!("capture it in the initial context (`context: {{{k}: input.{k}}}`) and read `context.{k}`")),
        );
    }
}

/// `output.X` read after an agent whose output has no field `X`.
fn check_output_fields(
    project: &Project,
    m: &LoadedMachine,
    s: &State,
    reads: &[(String, Node)],
    diags: &mut Diagnostics,
) {
    // A tool loop returns `content` and the `_tool_loop_*` fields whatever the schema says.
    if tools::runs_tool_loop(s) || s.machine.is_some() || s.wait_for.is_some() {
        return;
    }
    let Some(agent_name) = &s.agent else { return };
    let Some(idx) = m
        .doc
        .data
        .agents
        .iter()
        .position(|a| a.name.value == agent_name.value)
    else {
        return;
    };
    let Some(Some(agent_id)) = m.agents.get(idx) else {
        return;
    };
    let agent = &project.agents[agent_id.0].doc;
    let fields: Vec<&str> = match &agent.output {
        Some(schema) if !schema.fields.is_empty() => schema
            .fields
            .iter()
            .map(|(k, _)| k.value.as_str())
            .collect(),
        _ => vec!["content"],
    };
    let mut seen = BTreeSet::new();
    for (path, node) in reads {
        let mut parts = path.split('.');
        if parts.next() != Some("output") {
            continue;
        }
        let Some(field) = parts.next() else { continue };
        if fields.contains(&field) || !seen.insert(field.to_string()) {
            continue;
        }
        let mut d = Diagnostic::new(
            Code::UnknownOutputField,
            node.span,
            format!(
                "`output.{field}` is read, but agent `{}` has no output field `{field}`",
                agent_name.value
            ),
        );
        d = match &agent.output {
            Some(schema) if !schema.fields.is_empty() => d
                .note(schema.span, format!("the output schema of `{}`", agent_name.value))
                .help_opt(suggest::help(field, fields.iter().copied()).or_else(|| Some(format!("its fields are: {}", fields.join(", "))))),
            _ => d.help("an agent without an `output` schema returns `{content: <text>}`; read `output.content` or add an `output` schema"),
        };
        diags.push(d);
    }
}

fn check_agent(project: &Project, a: &LoadedAgent, templates: &Templates, diags: &mut Diagnostics) {
    let doc = &a.doc;
    check_spec(
        doc.spec.as_ref(),
        doc.spec_version.as_ref(),
        "flatagent",
        doc.root.span,
        diags,
    );
    let sources: &SourceMap = &project.sources;
    let name = doc
        .name
        .as_ref()
        .map(|n| n.value.as_str())
        .unwrap_or("unnamed-agent");
    for (field, node) in [
        ("system", &doc.system),
        ("user", &doc.user),
        ("instruction_suffix", &doc.instruction_suffix),
    ] {
        let Some(node) = node else { continue };
        let Value::Str(text) = &node.value else {
            diags.push(crate::model::read::wrong_type(
                node,
                &format!("`{field}` of agent `{name}`"),
                "a string",
            ));
            continue;
        };
        let site = format!("the `{field}` prompt of agent `{name}`");
        let scope = Scope {
            site: &site,
            vars: &["input", "tools_prompt", "tools", "model"],
            empty: &[],
            prompt: true,
        };
        templates.check(text, node, &scope, sources, diags);
    }
    tools::check_agent(doc, name, templates, sources, diags);
    providers::check_agent(doc, diags);
    let profile = match &doc.model {
        Some(ModelRef::Profile(p)) => Some(p),
        Some(ModelRef::Config { profile, .. }) => profile.as_ref(),
        None => None,
    };
    if let Some(p) = profile {
        // The agent's own profiles.yml wins entirely over the machine's (reference behaviour).
        let docs: Vec<_> = a
            .profiles
            .into_iter()
            .chain(project.machines.iter().filter_map(|m| m.profiles))
            .map(|i| &project.profiles[i])
            .collect();
        let own = docs.first();
        match own {
            Some(prof) if !prof.has(&p.value) && prof.default.is_none() => diags.push(
                Diagnostic::new(
                    Code::UnknownProfile,
                    p.span,
                    format!("model profile `{}` is not defined", p.value),
                )
                .note(
                    crate::load::file_span(project, prof.file),
                    "profiles are defined here",
                )
                .help_opt(
                    suggest::help(&p.value, prof.profiles.iter().map(|x| x.value.as_str()))
                        .or_else(|| {
                            Some(format!(
                                "profiles are: {}",
                                prof.profiles
                                    .iter()
                                    .map(|x| x.value.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ))
                        }),
                ),
            ),
            Some(_) => {}
            None => {
                if matches!(doc.model, Some(ModelRef::Profile(_))) {
                    diags.push(
                        Diagnostic::new(
                            Code::UnknownProfile,
                            p.span,
                            format!("model profile `{}` is used but no `profiles.yml` is next to the agent or its machine", p.value),
                        )
                        .help("add a `profiles.yml` with `model_profiles`, or write the model inline: `model: {provider: openai, name: gpt-4o-mini}`"),
                    );
                }
            }
        }
    }
}

//! The one lowering pass: a loaded (and normally checked) [`Project`] becomes an
//! [`ir::Bundle`], which the code generator emits as Rust data and the runtime executes.
//!
//! Lowering never fails. It runs on machines with errors too (the macros still emit a module
//! for them, to avoid a cascade of secondary errors), so whatever the checks refuse is left out
//! here rather than reported twice: a transition to an unknown state, an `on_error` target that
//! does not exist, an agent reference of no known shape.

use crate::diag::Diagnostics;
use crate::ir::{self, Json, List, Str};
use crate::load::{LoadedMachine, Project};
use crate::model::machine::{AgentRef, MachineCall, MachineRef, OnError, State};
use crate::yaml::{Node, Value};
use serde_json::{Map, Value as JsonValue};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

/// Lowers every machine of `project` (index for index: `project.machines[i]` becomes
/// `bundle.machines[i]`, the entry machine first) and every profiles document it read.
pub fn lower(project: &Project) -> ir::Bundle {
    let profiles: Vec<Option<JsonValue>> = (0..project.profiles.len())
        .map(|i| profiles_data(project, i))
        .collect();
    let profile_index = |i: Option<usize>| i.filter(|i| profiles[*i].is_some()).map(|i| i as u32);
    let machines = project
        .machines
        .iter()
        .map(|m| lower_machine(project, m, &profile_index))
        .collect();
    ir::Bundle {
        machines: Cow::Owned(machines),
        profiles: profiles
            .iter()
            .map(|p| p.as_ref().map_or(Json::Null, Json::from_value))
            .collect(),
    }
}

/// The `data` of profiles document `i` (the whole document when it has no `spec`).
fn profiles_data(project: &Project, i: usize) -> Option<JsonValue> {
    let file = project.profiles[i].file;
    let doc =
        crate::yaml::parse(project.sources.get(file), file, &mut Diagnostics::new())?.to_json();
    match doc.get("data") {
        Some(d) if doc.get("spec").is_some() => Some(d.clone()),
        _ => Some(doc),
    }
}

fn text(s: impl Into<String>) -> Str {
    Cow::Owned(s.into())
}

fn json(node: &Node) -> Json {
    Json::from_value(&node.to_json())
}

fn path_text(p: &Path) -> Str {
    text(p.to_string_lossy())
}

fn lower_machine(
    project: &Project,
    m: &LoadedMachine,
    profile_index: &dyn Fn(Option<usize>) -> Option<u32>,
) -> ir::MachineIr {
    let data = &m.doc.data;
    let engine = match data.expression_engine.as_ref().map(|e| e.value.as_str()) {
        Some("cel") => ir::Engine::Cel,
        _ => ir::Engine::Simple,
    };
    let mut index: HashMap<&str, u32> = data
        .states
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.value.as_str(), i as u32))
        .collect();
    let phantoms = unknown_targets(&data.states, &mut index);
    let mut conditions = Conditions::default();
    let states: Vec<ir::StateIr> = data
        .states
        .iter()
        .map(|s| lower_state(s, &index, &mut conditions))
        .chain(phantoms.into_iter().map(empty_state))
        .collect();
    let initial = data
        .states
        .iter()
        .position(State::is_initial)
        .or_else(|| data.states.iter().position(|s| s.name.value == "start"))
        .unwrap_or(0) as u32;
    let settings = data
        .settings
        .as_ref()
        .map_or(JsonValue::Null, Node::to_json);
    let limits = ir::Limits {
        max_steps: settings.get("max_steps").and_then(JsonValue::as_u64),
        max_concurrent_children: settings
            .get("max_concurrent_children")
            .and_then(JsonValue::as_u64)
            .filter(|n| *n > 0)
            .map(|n| n.min(u64::from(u32::MAX)) as u32),
    };
    ir::MachineIr {
        name: text(
            data.name
                .as_ref()
                .map_or("unnamed-machine", |n| n.value.as_str()),
        ),
        spec_version: text(
            m.doc
                .spec_version
                .as_ref()
                .map(|v| v.value.as_str())
                .filter(|v| !v.is_empty())
                .unwrap_or("2.6.0"),
        ),
        path: m.path.as_deref().map(path_text),
        dir: path_text(&m.dir),
        engine,
        context: data.context.as_ref().map_or(Json::EMPTY_OBJECT, json),
        settings: Json::from_value(&settings),
        limits,
        hooks: data.hooks.as_ref().map(json),
        states: states.into(),
        initial,
        conditions: conditions.texts.into(),
        agents: lower_agents(project, m, profile_index),
        profiles: profile_index(m.profiles),
        persistence: lower_persistence(project, m),
        machines: lower_children(m),
        document: text(m.doc.root.to_json().to_string()),
    }
}

/// Transition and `on_error` targets that name no state, in YAML order, each added to
/// `index` after the real states. The checks refuse them (`FM0102`, `FM0103`); a run with
/// errors allowed enters them as the reference does: as an empty state (`lenient`).
fn unknown_targets<'a>(states: &'a [State], index: &mut HashMap<&'a str, u32>) -> Vec<&'a str> {
    let mut names = Vec::new();
    for s in states {
        let transitions = s
            .transitions
            .iter()
            .filter_map(|t| t.to.as_ref().map(|to| to.value.as_str()));
        let on_error: Vec<&str> = match &s.on_error {
            None => Vec::new(),
            Some(OnError::State(t)) => vec![t.value.as_str()],
            Some(OnError::Map(m)) => m.iter().map(|(_, t)| t.value.as_str()).collect(),
        };
        for name in transitions.chain(on_error) {
            if !name.is_empty() && !index.contains_key(name) {
                index.insert(name, (states.len() + names.len()) as u32);
                names.push(name);
            }
        }
    }
    names
}

/// A state with nothing to do and no way out: what the reference runs for a name that is
/// not in `states`.
fn empty_state(name: &str) -> ir::StateIr {
    ir::StateIr {
        name: text(name),
        is_final: false,
        agent: None,
        execution: ir::Execution::Default,
        tool_loop: None,
        loop_exits: List::default(),
        input: None,
        output_to_context: List::default(),
        output: None,
        transitions: List::default(),
        on_error: None,
        action: None,
        wait_for: None,
        call: None,
        mode: ir::Mode::default(),
        timeout: None,
        launch: List::default(),
        launch_input: None,
    }
}

/// Distinct condition texts of one machine, in first-use order.
#[derive(Default)]
struct Conditions {
    texts: Vec<Str>,
}

impl Conditions {
    fn id(&mut self, src: &str) -> u32 {
        match self.texts.iter().position(|t| t == src) {
            Some(i) => i as u32,
            None => {
                self.texts.push(text(src));
                (self.texts.len() - 1) as u32
            }
        }
    }
}

fn lower_state(s: &State, index: &HashMap<&str, u32>, conditions: &mut Conditions) -> ir::StateIr {
    // The transitions the executor can take: those with a known target, up to the first
    // unconditional one (later entries can never be taken).
    let mut transitions = Vec::new();
    for t in &s.transitions {
        let Some(to) = t.to.as_ref().filter(|to| !to.value.is_empty()) else {
            continue;
        };
        let Some(&target) = index.get(to.value.as_str()) else {
            continue;
        };
        let src = t.condition.as_ref().map_or("", |c| c.value.as_str());
        let always = src.trim().is_empty();
        transitions.push(ir::Transition {
            condition: (!always).then(|| conditions.id(src)),
            target,
        });
        if always {
            break;
        }
    }
    let tool_loop = s.tool_loop.as_ref().and_then(lower_tool_loop);
    // A tool loop checks its state's conditional transitions after every tool call, all of
    // them in YAML order, including any after the unconditional one (`execution.md` §9).
    let mut loop_exits = Vec::new();
    if tool_loop.is_some() {
        for t in &s.transitions {
            let (Some(to), Some(c)) = (t.to.as_ref(), t.condition.as_ref()) else {
                continue;
            };
            if c.value.trim().is_empty() {
                continue;
            }
            if let Some(&target) = index.get(to.value.as_str()) {
                loop_exits.push(ir::Transition {
                    condition: Some(conditions.id(&c.value)),
                    target,
                });
            }
        }
    }
    let on_error = match &s.on_error {
        None => None,
        Some(OnError::State(t)) => index.get(t.value.as_str()).map(|&i| ir::OnError::State(i)),
        Some(OnError::Map(m)) => Some(ir::OnError::Map(
            m.iter()
                .filter_map(|(k, t)| Some((text(&k.value), *index.get(t.value.as_str())?)))
                .collect(),
        )),
    };
    let output_to_context: List<(Str, Json)> = s
        .output_to_context
        .as_ref()
        .and_then(Node::as_map)
        .map(|entries| {
            entries
                .iter()
                .filter_map(|(k, v)| Some((text(k.key_str()?), json(v))))
                .collect()
        })
        .unwrap_or_default();
    let (call, mode, timeout, launch_input) = lower_calls(s);
    ir::StateIr {
        name: text(&s.name.value),
        is_final: s.is_final(),
        agent: s.agent.as_ref().map(|a| text(&a.value)),
        execution: lower_execution(s),
        tool_loop,
        loop_exits: loop_exits.into(),
        input: s.input.as_ref().map(json),
        output_to_context,
        output: s
            .output
            .as_ref()
            .map(json)
            .filter(Json::is_non_empty_object),
        transitions: transitions.into(),
        on_error,
        action: s.action.as_ref().map(|a| text(&a.value)),
        wait_for: s.wait_for.as_ref().map(json),
        call,
        mode,
        timeout,
        launch: s.launch.iter().map(|l| text(&l.value)).collect(),
        launch_input,
    }
}

/// `execution:` with the reference's defaults (`execution.md` §11).
fn lower_execution(s: &State) -> ir::Execution {
    let Some(e) = &s.execution else {
        return ir::Execution::Default;
    };
    let positive = |n: &Option<crate::source::Spanned<i64>>, default: u32| {
        n.as_ref()
            .map_or(default, |n| n.value.clamp(1, i64::from(u32::MAX)) as u32)
    };
    match e.ty.as_ref().map_or("default", |t| t.value.as_str()) {
        "retry" => ir::Execution::Retry {
            backoffs: e.backoffs.as_ref().map_or_else(
                || vec![2.0, 8.0, 16.0, 35.0].into(),
                |b| b.iter().map(|x| x.value).collect(),
            ),
            jitter: e.jitter.as_ref().map_or(0.1, |j| j.value),
            retry_on_empty: e.retry_on_empty.as_ref().is_some_and(|r| r.value),
        },
        "parallel" => ir::Execution::Parallel {
            n_samples: positive(&e.n_samples, 3),
        },
        "mdap_voting" => ir::Execution::MdapVoting {
            k_margin: positive(&e.k_margin, 3),
            max_candidates: positive(&e.max_candidates, 10),
            max_response_tokens: e
                .max_response_tokens
                .as_ref()
                .map(|n| n.value.clamp(0, i64::from(u32::MAX)) as u32),
        },
        _ => ir::Execution::Default,
    }
}

/// `machine:` / `foreach:` and their options.
fn lower_calls(s: &State) -> (Option<ir::Call>, ir::Mode, Option<f64>, Option<Json>) {
    let call = match (&s.foreach, &s.machine) {
        (Some(items), Some(m)) => m.names().first().map(|name| ir::Call::Foreach {
            items: json(items),
            item: s.as_name.as_ref().map_or(text("item"), |a| text(&a.value)),
            key: s.key.as_ref().map(json),
            machine: text(&name.value),
        }),
        // `foreach` without `machine` is refused by the checks.
        (Some(_), None) => None,
        (None, Some(MachineCall::Single(name))) => Some(ir::Call::Single(text(&name.value))),
        (None, Some(MachineCall::List(list))) if !list.is_empty() => Some(ir::Call::List(
            list.iter()
                .map(|m| (text(&m.name.value), m.input.as_ref().map(json)))
                .collect(),
        )),
        (None, _) => None,
    };
    let mode = match s.mode.as_ref().map(|m| m.value.as_str()) {
        Some("any") => ir::Mode::Any,
        // Other values are refused by the checks (FM0405).
        _ => ir::Mode::Settled,
    };
    (
        call,
        mode,
        s.timeout.as_ref().map(|t| t.value),
        s.launch_input.as_ref().map(json),
    )
}

/// `data.agents`: documents the compiler loaded are embedded; other references are kept for the
/// adapter to resolve against the machine's directory.
fn lower_agents(
    project: &Project,
    m: &LoadedMachine,
    profile_index: &dyn Fn(Option<usize>) -> Option<u32>,
) -> List<ir::Agent> {
    let at_machine =
        |name: &str, ty: &str, reference: Option<Str>, config: Option<Json>| ir::Agent {
            name: text(name),
            ty: text(ty),
            reference,
            config,
            dir: path_text(&m.dir),
            profiles: None,
        };
    m.doc
        .data
        .agents
        .iter()
        .zip(&m.agents)
        .map(|(entry, resolved)| {
            let name = entry.name.value.as_str();
            match (&entry.reference, resolved) {
                (reference, Some(id)) => {
                    let a = &project.agents[id.0];
                    let mut doc = a.doc.root.to_json();
                    // `{type: flatagent, ref, config}`: the config goes over the file's
                    // top-level keys, shallowly, as the reference embeds it (`config.md` §4.2).
                    if let (
                        AgentRef::Typed {
                            config: Some(inline),
                            ..
                        },
                        JsonValue::Object(file),
                    ) = (reference, &mut doc)
                        && let JsonValue::Object(over) = inline.to_json()
                    {
                        file.extend(over);
                    }
                    ir::Agent {
                        name: text(name),
                        ty: text("flatagent"),
                        reference: None,
                        config: Some(Json::from_value(&doc)),
                        dir: path_text(&a.dir),
                        profiles: profile_index(a.profiles),
                    }
                }
                (AgentRef::Path(p), None) => {
                    at_machine(name, "flatagent", Some(text(&p.value)), None)
                }
                (AgentRef::Inline(n), None) => at_machine(name, "flatagent", None, Some(json(n))),
                // Refused by the checks before a machine can run.
                (AgentRef::Invalid(_), None) => at_machine(name, "invalid", None, None),
                (
                    AgentRef::Typed {
                        ty,
                        reference,
                        config,
                        ..
                    },
                    None,
                ) => at_machine(
                    name,
                    &ty.value,
                    reference.as_ref().map(|r| text(&r.value)),
                    config.as_ref().map(json),
                ),
            }
        })
        .collect()
}

/// `data.machines`: children the compiler loaded by index, the others by path.
fn lower_children(m: &LoadedMachine) -> List<ir::Child> {
    m.doc
        .data
        .machines
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let (path, inline) = match &entry.reference {
                MachineRef::Path(p) => (
                    Some(path_text(&crate::load::normalize(&m.dir.join(&p.value)))),
                    None,
                ),
                MachineRef::Inline(n) => (None, Some(json(n))),
                MachineRef::Invalid(_) => (None, None),
            };
            let machine = m.machines.get(i).copied().flatten().map(|id| id.0 as u32);
            ir::Child {
                name: text(&entry.name.value),
                path,
                // A loaded inline child is the lowered machine itself.
                inline: inline.filter(|_| machine.is_none()),
                machine,
            }
        })
        .collect()
}

/// `data.persistence` with defaults applied (`persistence.md` §3).
fn lower_persistence(project: &Project, m: &LoadedMachine) -> ir::Persistence {
    let p = m.doc.data.persistence.as_ref();
    ir::Persistence {
        enabled: p.and_then(|p| p.enabled.as_ref()).is_none_or(|e| e.value),
        backend: match p.and_then(|p| p.backend.as_ref()).map(|b| b.value.as_str()) {
            Some("local") => ir::Backend::Local,
            Some("sqlite") => ir::Backend::Sqlite,
            // Other names are refused by the checks (FM0406).
            _ => ir::Backend::Memory,
        },
        db_path: p
            .and_then(|p| p.db_path.as_ref())
            .map(|d| d.value.as_str())
            .filter(|d| !d.is_empty())
            .map(text),
        checkpoint_on: p
            .and_then(|p| p.checkpoint_on.as_ref())
            .map(|list| list.iter().map(|e| text(&e.value)).collect()),
        config: {
            let mut out = String::with_capacity(1024);
            write_yaml_safe_json(&mut out, &self_contained(project, m, 0), 0);
            out.push('\n');
            text(out)
        },
    }
}

/// `m`'s document with its agents and child machines embedded (`config.md` §4.2).
fn self_contained(project: &Project, m: &LoadedMachine, depth: usize) -> JsonValue {
    let mut doc = m.doc.root.to_json();
    let Some(data) = doc.get_mut("data").and_then(JsonValue::as_object_mut) else {
        return doc;
    };
    if let Some(agents) = data.get_mut("agents").and_then(JsonValue::as_object_mut) {
        for (entry, resolved) in m.doc.data.agents.iter().zip(&m.agents) {
            let (Some(id), Some(slot)) = (resolved, agents.get_mut(&entry.name.value)) else {
                continue;
            };
            let agent = project.agents[id.0].doc.root.to_json();
            match (&entry.reference, slot.as_object_mut()) {
                // `{type, ref, config}`: the file becomes the config, inline keys win.
                (AgentRef::Typed { .. }, Some(map)) => {
                    map.shift_remove("ref");
                    let mut config = match agent {
                        JsonValue::Object(a) => a,
                        _ => Map::new(),
                    };
                    if let Some(JsonValue::Object(inline)) = map.get("config") {
                        for (k, v) in inline {
                            config.insert(k.clone(), v.clone());
                        }
                    }
                    map.insert("config".into(), JsonValue::Object(config));
                }
                _ => *slot = agent,
            }
        }
    }
    // The checks refuse cycles; the depth bound guards machines lowered despite errors.
    if depth < 32
        && let Some(machines) = data.get_mut("machines").and_then(JsonValue::as_object_mut)
    {
        for (entry, resolved) in m.doc.data.machines.iter().zip(&m.machines) {
            if let (Some(id), Some(slot)) = (resolved, machines.get_mut(&entry.name.value))
                && let Some(child) = project.machines.get(id.0)
            {
                *slot = self_contained(project, child, depth + 1);
            }
        }
    }
    doc
}

/// JSON with a 2-space indent whose floats also read back as floats under YAML 1.1 rules (which
/// need a `.` and a signed exponent: `1.0e+16`, not `1e16`).
fn write_yaml_safe_json(out: &mut String, v: &JsonValue, indent: usize) {
    fn newline(out: &mut String, indent: usize) {
        out.push('\n');
        for _ in 0..indent {
            out.push(' ');
        }
    }
    match v {
        JsonValue::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, indent + 2);
                write_yaml_safe_json(out, item, indent + 2);
            }
            newline(out, indent);
            out.push(']');
        }
        JsonValue::Object(map) if !map.is_empty() => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, indent + 2);
                out.push_str(&JsonValue::String(k.clone()).to_string());
                out.push_str(": ");
                write_yaml_safe_json(out, item, indent + 2);
            }
            newline(out, indent);
            out.push('}');
        }
        JsonValue::Number(n) if n.is_f64() => {
            let text = crate::pyfmt::float_repr(n.as_f64().unwrap_or(0.0));
            match text.split_once('e') {
                Some((mantissa, exp)) if !mantissa.contains('.') => {
                    out.push_str(mantissa);
                    out.push_str(".0e");
                    out.push_str(exp);
                }
                _ => out.push_str(&text),
            }
        }
        other => out.push_str(&other.to_string()),
    }
}

/// `tool_loop:` when truthy in Python's sense (`{}`, `0` and `""` are off, as in the reference).
fn lower_tool_loop(node: &Node) -> Option<ir::ToolLoop> {
    let on = match &node.value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::Float(f) => *f != 0.0,
        Value::Str(s) => !s.is_empty(),
        Value::Seq(items) => !items.is_empty(),
        Value::Map(entries) => !entries.is_empty(),
    };
    if !on {
        return None;
    }
    let mut tl = ir::ToolLoop::DEFAULT;
    let Some(entries) = node.as_map() else {
        return Some(tl);
    };
    let guard = |v: &Node| match &v.value {
        Value::Int(i) => Some(ir::Guard::Number(*i as f64)),
        Value::Float(f) => Some(ir::Guard::Number(*f)),
        Value::Bool(b) => Some(ir::Guard::Number(if *b { 1.0 } else { 0.0 })),
        Value::Str(s) => Some(ir::Guard::Template(text(s))),
        _ => None,
    };
    let names = |v: &Node| -> List<Str> {
        v.as_seq()
            .map(|items| items.iter().filter_map(|i| i.as_str().map(text)).collect())
            .unwrap_or_default()
    };
    for (k, v) in entries {
        match k.key_str().as_deref() {
            Some("max_turns") => tl.max_turns = guard(v).unwrap_or(tl.max_turns),
            Some("max_tool_calls") => tl.max_tool_calls = guard(v).unwrap_or(tl.max_tool_calls),
            Some("tool_timeout") => tl.tool_timeout = guard(v).unwrap_or(tl.tool_timeout),
            Some("total_timeout") => tl.total_timeout = guard(v).unwrap_or(tl.total_timeout),
            Some("max_cost") => tl.max_cost = guard(v),
            Some("allowed_tools") => tl.allowed_tools = names(v),
            Some("denied_tools") => tl.denied_tools = names(v),
            _ => {}
        }
    }
    Some(tl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_targets_become_empty_states_after_the_real_ones() {
        let yaml = "spec: flatmachine\ndata:\n  name: m\n  states:\n    a:\n      type: initial\n      on_error: {KeyError: gone, default: b}\n      transitions: [{condition: context.x, to: nowhere}, {to: b}]\n    b: {type: final, transitions: [{to: nowhere}]}\n";
        let checked = crate::check_input(
            crate::load::Input::Inline {
                text: yaml.into(),
                path: Path::new("m.yml"),
                origin: (1, 1),
            },
            &crate::load::LoadOptions::default(),
        );
        assert!(checked.runs_despite_errors());
        let bundle = lower(&checked.project);
        let m = &bundle.machines[0];
        let names: Vec<&str> = m.states.iter().map(|s| &*s.name).collect();
        assert_eq!(names, ["a", "b", "nowhere", "gone"]);
        assert_eq!(m.states[0].transitions[0].target, 2);
        assert_eq!(
            m.states[0].on_error,
            Some(ir::OnError::Map(
                vec![(text("KeyError"), 3), (text("default"), 1)].into()
            ))
        );
        let empty = &m.states[2];
        assert!(empty.transitions.is_empty() && empty.agent.is_none() && !empty.is_final);
    }

    #[test]
    fn config_text_reads_back_as_yaml_floats() {
        let mut out = String::new();
        write_yaml_safe_json(
            &mut out,
            &json!({"a": [1e16, 1.5e-5, 0.25, 3.0, 7], "b": {}, "c": [], "d": "é\n"}),
            0,
        );
        assert_eq!(
            out,
            "{\n  \"a\": [\n    1.0e+16,\n    1.5e-05,\n    0.25,\n    3.0,\n    7\n  ],\n  \"b\": {},\n  \"c\": [],\n  \"d\": \"é\\n\"\n}"
        );
    }
}

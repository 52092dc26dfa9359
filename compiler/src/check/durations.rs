//! Durations in seconds — timeouts and backoffs — must be waits a run can make.
//!
//! The runtime turns each into a `Duration`, which has no room for `1e300` seconds, infinity
//! or NaN; it saturates rather than panics, but a machine asking for such a wait is a mistake
//! (a unit slip, a typo in the exponent) the compiler can point at. Nothing real waits a year,
//! so that is the ceiling: [`MAX_SECONDS`].
//!
//! Other checks already refuse negative, NaN and infinite values of the fields they own (state
//! `timeout` and backoffs, FM0407/FM0402; a `wait_for` and an MCP server `timeout`, FM0407;
//! non-positive tool-loop timeouts, FM0407). This module adds what they leave: values past the
//! ceiling there, and every bad value of the fields nothing else reads (a model's `timeout`
//! and `max_retry_after`, in agents and in profiles), so each mistake is reported once.

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::load::{LoadedAgent, LoadedMachine, Project};
use crate::model::agent::{ModelRef, ProfilesDoc};
use crate::pyfmt::float_repr;
use crate::source::Span;
use crate::yaml::{self, Node, Value};

/// The longest duration a machine may ask for: a year (365 days), in seconds.
pub(crate) const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

/// Which bad values of a field this module reports.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Owned {
    /// Finite values past the ceiling: another check refuses negative and non-finite ones.
    PastCeiling,
    /// Values past the ceiling, infinity included: another check refuses those not above 0.
    AboveCeiling,
    /// Every bad value: nothing else checks the field.
    All,
}

/// Checks every duration of every document of `project`.
pub(crate) fn check_project(project: &Project, diags: &mut Diagnostics) {
    for m in &project.machines {
        check_machine(m, diags);
    }
    for a in &project.agents {
        check_agent(a, diags);
    }
    for p in &project.profiles {
        check_profiles(project, p, diags);
    }
}

fn check_machine(m: &LoadedMachine, diags: &mut Diagnostics) {
    for s in &m.doc.data.states {
        let state = &s.name.value;
        if let Some(t) = &s.timeout {
            let what = format!("`timeout` of state `{state}`");
            check(
                t.value,
                &float_repr(t.value),
                t.span,
                &what,
                Owned::PastCeiling,
                diags,
            );
        }
        for b in s.execution.iter().flat_map(|e| e.backoffs.iter().flatten()) {
            let what = format!("a backoff of state `{state}`");
            check(
                b.value,
                &float_repr(b.value),
                b.span,
                &what,
                Owned::PastCeiling,
                diags,
            );
        }
        if let Some(t) = s.wait_for.as_ref().and_then(|w| w.get("timeout")) {
            let what = format!("the `wait_for` timeout of state `{state}`");
            check_node(t, &what, Owned::PastCeiling, diags);
        }
        if let Some(tl) = &s.tool_loop {
            for field in ["tool_timeout", "total_timeout"] {
                if let Some(v) = tl.get(field) {
                    let what = format!("`{field}` of the tool loop of state `{state}`");
                    check_node(v, &what, Owned::AboveCeiling, diags);
                }
            }
        }
    }
}

fn check_agent(a: &LoadedAgent, diags: &mut Diagnostics) {
    if let Some(ModelRef::Config { node, .. }) = &a.doc.model {
        check_model(node, "the agent's model", diags);
    }
    let servers = a
        .doc
        .mcp
        .as_ref()
        .and_then(|m| m.get("servers"))
        .and_then(Node::as_map);
    for (name, server) in servers.into_iter().flatten() {
        if let Some(t) = server.get("timeout") {
            let name = name.key_str().unwrap_or_default();
            let what = format!("`timeout` of MCP server `{name}`");
            check_node(t, &what, Owned::PastCeiling, diags);
        }
    }
}

/// The model profiles keep no tree, so the file is read again (bounded like every parse;
/// its defects were reported when it was loaded).
fn check_profiles(project: &Project, p: &ProfilesDoc, diags: &mut Diagnostics) {
    let file = project.sources.get(p.file);
    let Some(root) = yaml::parse(file, p.file, &mut Diagnostics::new()) else {
        return;
    };
    let profiles = match root.get("spec") {
        Some(_) => root.get("data").and_then(|d| d.get("model_profiles")),
        None => root.get("model_profiles"),
    };
    for (name, model) in profiles.and_then(Node::as_map).into_iter().flatten() {
        let name = name.key_str().unwrap_or_default();
        check_model(model, &format!("model profile `{name}`"), diags);
    }
}

/// `timeout` and `max_retry_after` of a model block: read at run time only, so every bad
/// number is reported here. (A string is not a number to the runtime, which ignores it.)
fn check_model(model: &Node, owner: &str, diags: &mut Diagnostics) {
    for field in ["timeout", "max_retry_after"] {
        if let Some(v) = model.get(field) {
            check_node(v, &format!("`{field}` of {owner}"), Owned::All, diags);
        }
    }
}

/// A number written as an int or a float, or as text that is a plain number (the tool-loop
/// guardrails accept `"30"`); templates and other values are for other checks.
fn check_node(v: &Node, what: &str, owned: Owned, diags: &mut Diagnostics) {
    let x = match &v.value {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Str(s) if owned == Owned::AboveCeiling => match crate::ir::pyfmt::parse_float(s) {
            Some(x) => x,
            None => return,
        },
        _ => return,
    };
    let spelled = v.key_str().unwrap_or_else(|| float_repr(x));
    check(x, &spelled, v.span, what, owned, diags);
}

fn check(x: f64, spelled: &str, span: Span, what: &str, owned: Owned, diags: &mut Diagnostics) {
    let problem = if x > MAX_SECONDS {
        if x.is_infinite() && owned == Owned::PastCeiling {
            return;
        }
        format!(
            "is longer than a year ({} seconds), the longest wait a machine may ask for",
            MAX_SECONDS as u64
        )
    } else if owned != Owned::All {
        return;
    } else if x.is_nan() {
        "is not a number".to_string()
    } else if x < 0.0 {
        "is negative".to_string()
    } else {
        return;
    };
    diags.push(
        Diagnostic::new(
            Code::InvalidDuration,
            span,
            format!("{what} is `{spelled}` seconds, which {problem}"),
        )
        .help("durations are in seconds (86400 is a day); leave a timeout out for no limit"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Input, LoadOptions, MemoryFs, load_with};
    use std::path::Path;

    /// Loads `/m/machine.yml` (with `/m/agent.yml` and `/m/profiles.yml` when given) from
    /// memory; the duration diagnostics as `code line:col`.
    fn durations(machine: &str, agent: Option<&str>, profiles: Option<&str>) -> Vec<String> {
        let mut fs = MemoryFs::new().file("/m/machine.yml", machine.as_bytes().to_vec());
        if let Some(a) = agent {
            fs = fs.file("/m/agent.yml", a.as_bytes().to_vec());
        }
        if let Some(p) = profiles {
            fs = fs.file("/m/profiles.yml", p.as_bytes().to_vec());
        }
        let project = load_with(
            Input::File(Path::new("/m/machine.yml")),
            &LoadOptions::default(),
            &fs,
        );
        let mut diags = Diagnostics::new();
        check_project(&project, &mut diags);
        diags
            .iter()
            .map(|d| {
                let s = d.span.unwrap().start;
                format!("{} {}:{}", d.code.as_str(), s.line, s.col)
            })
            .collect()
    }

    fn machine(state: &str) -> String {
        format!(
            "spec: flatmachine\ndata:\n  agents:\n    a: ./agent.yml\n  states:\n    start:\n      type: initial\n{state}      transitions: [{{to: done}}]\n    done: {{type: final}}\n"
        )
    }

    #[test]
    fn state_durations_past_a_year_are_errors() {
        let m = machine(
            "      agent: a\n      timeout: 1e+30\n      execution: {type: retry, backoffs: [1, 31536001, 2.5]}\n      wait_for: {channel: c, timeout: 99999999999}\n      tool_loop: {tool_timeout: .inf, total_timeout: \"1e300\"}\n",
        );
        // `1e+30` without a dot is a string to YAML 1.1 (PyYAML): another check's business.
        assert_eq!(
            durations(&m, None, None),
            [
                "FM0411 10:46",
                "FM0411 11:39",
                "FM0411 12:33",
                "FM0411 12:54"
            ]
        );
        let m = machine(
            "      timeout: 1.0e+30\n      execution: {backoffs: [31536000, -1, .nan]}\n      wait_for: {channel: c, timeout: .inf}\n",
        );
        // At the ceiling is fine; negative, NaN and infinite values are other checks' errors.
        assert_eq!(durations(&m, None, None), ["FM0411 8:16"]);
    }

    #[test]
    fn model_durations_are_checked_in_agents_and_profiles() {
        let m = machine("      agent: a\n");
        let agent = "spec: flatagent\ndata:\n  model: {name: x, timeout: -5, max_retry_after: 1.0e+10}\n  mcp:\n    servers:\n      s: {command: srv, timeout: 1.0e+9}\n";
        let profiles = "spec: flatprofiles\ndata:\n  model_profiles:\n    fast: {name: x, timeout: .nan}\n    slow: {name: y, timeout: 600, max_retry_after: 60}\n";
        assert_eq!(
            durations(&m, Some(agent), Some(profiles)),
            ["FM0411 3:29", "FM0411 3:50", "FM0411 6:34", "FM0411 4:30"]
        );
        let bare = "model_profiles:\n  fast: {timeout: .inf}\n";
        assert_eq!(durations(&m, None, Some(bare)), ["FM0411 2:19"]);
    }

    #[test]
    fn the_message_names_the_value_and_the_limit() {
        let m = machine("      timeout: 1.0e+30\n");
        let fs = MemoryFs::new().file("/m/machine.yml", m.into_bytes());
        let project = load_with(
            Input::File(Path::new("/m/machine.yml")),
            &LoadOptions::default(),
            &fs,
        );
        let mut diags = Diagnostics::new();
        check_project(&project, &mut diags);
        let d = diags.iter().next().unwrap();
        assert_eq!(
            d.message,
            "`timeout` of state `start` is `1e+30` seconds, which is longer than a year (31536000 seconds), the longest wait a machine may ask for"
        );
    }
}

//! `wait_for` states (`signals-and-dispatch.md` §1, `execution.md` §5 step 0): the channel
//! template, the map form `{channel, timeout}`, the fields a waiting state never runs, and the
//! persistence a parked run needs to be found again (`persistence.md` §2).

use super::templates::{Scope, Templates};
use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::load::{LoadedMachine, Project};
use crate::model::machine::State;
use crate::model::read::{Fields, wrong_type};
use crate::source::Span;
use crate::yaml::{Node, Value};
use std::collections::BTreeSet;

/// The keys of the map form `wait_for: {channel, timeout}`.
const WAIT_FOR_FIELDS: &[&str] = &["channel", "timeout"];

/// The fields of a state that never run when the state has `wait_for`: step 0 returns right
/// after consuming a signal, and a state with no signal parks.
const NEVER_RUN: &[&str] = &["action", "launch", "machine", "foreach", "agent"];

/// Every check of the `wait_for` states of machine `m`.
pub(crate) fn check_machine(
    project: &Project,
    m: &LoadedMachine,
    templates: &Templates,
    context_keys: &BTreeSet<String>,
    diags: &mut Diagnostics,
) {
    let states = &m.doc.data.states;
    for s in states {
        let Some(w) = &s.wait_for else { continue };
        check_channel_spec(project, s, w, templates, context_keys, diags);
        check_never_run(m, s, w, diags);
    }
    let waits: Vec<(&State, &Node)> = states
        .iter()
        .filter_map(|s| Some((s, s.wait_for.as_ref()?)))
        .collect();
    if !waits.is_empty() {
        check_findable(m, &waits, diags);
    }
}

/// The string form (a channel template) or the map form (`channel` and `timeout`).
fn check_channel_spec(
    project: &Project,
    s: &State,
    w: &Node,
    templates: &Templates,
    context_keys: &BTreeSet<String>,
    diags: &mut Diagnostics,
) {
    let state = &s.name.value;
    match &w.value {
        Value::Str(_) => check_channel(project, s, w, templates, context_keys, diags),
        Value::Map(_) => {
            let what = format!("the `wait_for` of state `{state}`");
            let Some(f) = Fields::of(w, &what, WAIT_FOR_FIELDS, diags) else {
                return;
            };
            match f.node("channel") {
                None => diags.push(
                    Diagnostic::new(
                        Code::MissingField,
                        w.span,
                        format!("{what} has no `channel`, so the state has nothing to wait on"),
                    )
                    .help("add the channel the signal is sent on, e.g. `channel: \"approval/{{ context.ticket }}\"`"),
                ),
                Some(c) if matches!(c.value, Value::Str(_)) => {
                    check_channel(project, s, c, templates, context_keys, diags)
                }
                Some(c) => diags.push(
                    wrong_type(c, &format!("`channel` of {what}"), "a string")
                        .help("write the channel as a string, e.g. `channel: \"approval/{{ context.ticket }}\"`"),
                ),
            }
            if let Some(t) = f.node("timeout") {
                check_timeout(t, &what, diags);
            }
        }
        _ => diags.push(
            wrong_type(w, &format!("`wait_for` of state `{state}`"), "a channel string or a map `{channel, timeout}`")
                .help("write the channel as a string, e.g. `wait_for: \"approval/{{ context.ticket }}\"`, or `wait_for: {channel: ..., timeout: 3600}`"),
        ),
    }
}

/// A channel template: not empty, parses, reads only `context` and `input` (the context).
fn check_channel(
    project: &Project,
    s: &State,
    channel: &Node,
    templates: &Templates,
    context_keys: &BTreeSet<String>,
    diags: &mut Diagnostics,
) {
    let state = &s.name.value;
    if channel.as_str().is_some_and(|c| c.trim().is_empty()) {
        diags.push(
            Diagnostic::new(
                Code::MissingField,
                channel.span,
                format!("the `wait_for` channel of state `{state}` is empty"),
            )
            .help(
                "name the channel the signal is sent on, e.g. `\"approval/{{ context.ticket }}\"`",
            ),
        );
        return;
    }
    let site = format!("the `wait_for` channel of state `{state}`");
    let scope = Scope {
        site: &site,
        vars: &["context", "input"],
        empty: &[],
        prompt: false,
    };
    let reads: Vec<(String, Node)> = templates
        .check_value(channel, &scope, &project.sources, diags)
        .into_iter()
        .map(|p| (p, channel.clone()))
        .collect();
    super::check_uncaptured_input(&reads, context_keys, state, diags);
}

/// `timeout` of the map form: a positive, finite number of seconds. Not a template: the wait's
/// deadline is fixed when the state parks.
fn check_timeout(t: &Node, what: &str, diags: &mut Diagnostics) {
    let x = match &t.value {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Str(s) if Templates::is_template(s) || super::templates::bare_path(s).is_some() => {
            diags.push(
                wrong_type(t, &format!("`timeout` of {what}"), "a number of seconds")
                    .help("a `wait_for` timeout cannot be a template; write a number, e.g. `timeout: 3600`"),
            );
            return;
        }
        _ => {
            diags.push(
                wrong_type(t, &format!("`timeout` of {what}"), "a number of seconds")
                    .help("write a number of seconds, e.g. `timeout: 3600`"),
            );
            return;
        }
    };
    if !(x > 0.0 && x.is_finite()) {
        let spelled = t.key_str().unwrap_or_default();
        diags.push(
            Diagnostic::new(
                Code::InvalidNumber,
                t.span,
                format!("`timeout: {spelled}` of {what} must be a positive number of seconds"),
            )
            .help("the run fails with `TimeoutError` when no signal comes within `timeout` seconds; leave `timeout` out to wait forever"),
        );
    }
}

/// The raw entries of state `s` in the machine document.
fn state_entries<'a>(m: &'a LoadedMachine, s: &State) -> &'a [(Node, Node)] {
    m.doc
        .root
        .get("data")
        .and_then(|d| d.get("states"))
        .and_then(|st| st.get(&s.name.value))
        .and_then(Node::as_map)
        .unwrap_or_default()
}

/// `agent`, `machine`, `foreach`, `launch`, `action` and a final `output` never run in a state
/// that waits: the signal's data is the state's output.
fn check_never_run(m: &LoadedMachine, s: &State, w: &Node, diags: &mut Diagnostics) {
    let state = &s.name.value;
    for (k, v) in state_entries(m, s) {
        let Some(field) = k.key_str() else { continue };
        if v.is_null() {
            continue;
        }
        let final_output = field == "output" && s.is_final();
        if !NEVER_RUN.contains(&field.as_str()) && !final_output {
            continue;
        }
        let (message, help) = if final_output {
            (
                format!(
                    "the `output` of final state `{state}` is never rendered: a state with `wait_for` returns the signal's data as its output"
                ),
                "wait in a state before the final one, and render the output in a final state after the wait",
            )
        } else {
            (
                format!(
                    "`{field}` of state `{state}` never runs: a state with `wait_for` ends as soon as it consumes a signal, whose data is the state's output"
                ),
                "move it to a state before or after the wait",
            )
        };
        diags.push(
            Diagnostic::new(Code::IgnoredInWaitingState, k.span, message)
                .note(w.span, format!("state `{state}` waits here"))
                .help(help),
        );
    }
}

/// A parked run is found again through its `waiting` checkpoint: persistence must be on and
/// `checkpoint_on` (when given) must list `waiting`.
fn check_findable(m: &LoadedMachine, waits: &[(&State, &Node)], diags: &mut Diagnostics) {
    let Some(p) = &m.doc.data.persistence else {
        return;
    };
    let first = waits[0].0;
    let states = waits
        .iter()
        .map(|(s, _)| format!("`{}`", s.name.value))
        .collect::<Vec<_>>()
        .join(", ");
    let with_notes = |mut d: Diagnostic| {
        for (s, w) in waits {
            d = d.note(w.span, format!("state `{}` waits here", s.name.value));
        }
        d
    };
    if let Some(e) = &p.enabled
        && !e.value
    {
        diags.push(with_notes(
            Diagnostic::new(
                Code::UnfindableWait,
                e.span,
                format!("persistence is disabled, so a run parked in `wait_for` state {states} can never be resumed: no `waiting` checkpoint is written"),
            )
            .help("remove `enabled: false` (the default memory backend keeps the checkpoint in this process), or use `backend: sqlite` or `local` so another process can resume it"),
        ));
        return;
    }
    let Some(events) = &p.checkpoint_on else {
        return;
    };
    if events.iter().any(|e| e.value == "waiting") {
        return;
    }
    let list = m
        .doc
        .root
        .get("data")
        .and_then(|d| d.get("persistence"))
        .and_then(|p| p.get("checkpoint_on"));
    // Not a list: already reported as the wrong type.
    let Some(list) = list.filter(|l| l.as_seq().is_some()) else {
        return;
    };
    let span: Span = list.span;
    diags.push(with_notes(
        Diagnostic::new(
            Code::UnfindableWait,
            span,
            format!(
                "`checkpoint_on` lacks `waiting`, so a run parked in `wait_for` state {states} can never be found again"
            ),
        )
        .help(format!(
            "add `waiting` to `checkpoint_on`: the dispatcher finds parked runs by their `waiting` checkpoint (state `{}` parks there)",
            first.name.value
        )),
    ));
}

#[cfg(test)]
mod tests {
    use crate::check::test_support::check_files;

    /// A machine whose state `wait` (its fields from line 12 on, indented by 6) waits, with
    /// extra `data` lines (indented by 2, from line 5 on).
    fn machine(data: &str, wait: &str) -> String {
        format!(
            "spec: flatmachine
spec_version: \"2.6.0\"
data:
  name: t
{data}
  context: {{ticket: \"{{{{ input.id }}}}\"}}
  states:
    start:
      type: initial
      transitions: [{{to: wait}}]
    wait:
{wait}
      transitions: [{{to: done}}]
    done:
      type: final
      output: {{ok: true}}
"
        )
    }

    fn data_codes(data: &str, wait: &str) -> Vec<String> {
        check_files(&[("machine.yml", &machine(data, wait))]).0
    }

    /// `machine` with no extra `data` lines (an empty line keeps the numbering).
    fn wait_codes(wait: &str) -> Vec<String> {
        let m = machine("", wait);
        check_files(&[("machine.yml", &m)]).0
    }

    #[test]
    fn valid_forms_have_no_diagnostics() {
        for wait in [
            "      wait_for: \"approval/{{ context.ticket }}\"",
            "      wait_for: approval/fixed",
            "      wait_for: \"approval/{{ input.ticket }}\"",
            "      wait_for: {channel: \"approval/{{ context.ticket }}\"}",
            "      wait_for: {channel: \"approval/{{ context.ticket }}\", timeout: 3600}",
            "      wait_for: {channel: approval, timeout: 0.5}",
            "      wait_for:\n        channel: \"approval/{{ context.ticket }}\"\n        timeout: 60",
        ] {
            assert_eq!(wait_codes(wait), Vec::<String>::new(), "{wait}");
        }
    }

    #[test]
    fn channel_template_errors() {
        // Syntax.
        assert_eq!(
            wait_codes("      wait_for: \"approval/{{ context.ticket \""),
            vec!["FM0301 machine.yml:12:38"]
        );
        // A variable the site does not define.
        assert_eq!(
            wait_codes("      wait_for: \"approval/{{ output.ticket }}\""),
            vec!["FM0309 machine.yml:12:17"]
        );
        // The same in the map form.
        assert_eq!(
            wait_codes("      wait_for: {channel: \"approval/{{ output.ticket }}\"}"),
            vec!["FM0309 machine.yml:12:27"]
        );
        // `input` is the context: `input.X` needs X in the initial context.
        assert_eq!(
            wait_codes("      wait_for: \"approval/{{ input.desk }}\""),
            vec!["FM0308 machine.yml:12:17"]
        );
    }

    #[test]
    fn empty_channel_is_an_error() {
        assert_eq!(
            wait_codes("      wait_for: \"\""),
            vec!["FM0010 machine.yml:12:17"]
        );
        assert_eq!(
            wait_codes("      wait_for: {channel: \"  \"}"),
            vec!["FM0010 machine.yml:12:27"]
        );
    }

    #[test]
    fn map_form_shape() {
        // No channel.
        assert_eq!(
            wait_codes("      wait_for: {timeout: 60}"),
            vec!["FM0010 machine.yml:12:17"]
        );
        // A channel that is not a string.
        assert_eq!(
            wait_codes("      wait_for: {channel: [a, b]}"),
            vec!["FM0008 machine.yml:12:27"]
        );
        // An unknown key, with a did-you-mean.
        let (codes, diags) = check_files(&[(
            "machine.yml",
            &machine("", "      wait_for: {channel: a, timout: 60}"),
        )]);
        assert_eq!(codes, vec!["FM0501 machine.yml:12:30"]);
        assert!(
            diags[0].help.as_deref().unwrap().contains("`timeout`"),
            "{:?}",
            diags[0].help
        );
        // Neither a string nor a map.
        assert_eq!(
            wait_codes("      wait_for: [approval]"),
            vec!["FM0008 machine.yml:12:17"]
        );
    }

    #[test]
    fn timeout_must_be_a_positive_number() {
        for (timeout, code) in [
            ("0", "FM0407"),
            ("-5", "FM0407"),
            ("0.0", "FM0407"),
            (".inf", "FM0407"),
            ("\"60\"", "FM0008"),
            ("\"{{ context.t }}\"", "FM0008"),
            ("context.t", "FM0008"),
            ("true", "FM0008"),
        ] {
            let wait = format!("      wait_for: {{channel: a, timeout: {timeout}}}");
            assert_eq!(
                wait_codes(&wait),
                vec![format!("{code} machine.yml:12:39")],
                "{timeout}"
            );
        }
    }

    #[test]
    fn fields_that_never_run_are_warned_at() {
        let child = "spec: flatmachine\ndata:\n  name: child\n  states:\n    start: {type: initial, transitions: [{to: done}]}\n    done: {type: final}\n";
        let (codes, diags) = check_files(&[
            (
                "machine.yml",
                &machine(
                    "  machines: {child: ./child.yml}",
                    "      wait_for: approval\n      action: notify\n      launch: child",
                ),
            ),
            ("child.yml", child),
        ]);
        assert_eq!(
            codes,
            vec!["FM0503 machine.yml:13:7", "FM0503 machine.yml:14:7"]
        );
        assert_eq!(diags[0].severity.as_str(), "warning");
        assert!(diags[0].message.contains("`action`"));
        assert!(
            diags[1]
                .help
                .as_deref()
                .unwrap()
                .contains("before or after")
        );
        // A final state that waits never renders its `output`.
        let m = "spec: flatmachine
spec_version: \"2.6.0\"
data:
  name: t
  states:
    start:
      type: initial
      transitions: [{to: last}]
    last:
      type: final
      wait_for: approval
      output: {a: 1}
";
        let (codes, diags) = check_files(&[("machine.yml", m)]);
        assert_eq!(codes, vec!["FM0503 machine.yml:12:7"]);
        assert!(diags[0].message.contains("never rendered"));
    }

    #[test]
    fn persistence_must_find_the_run_again() {
        // Disabled.
        let (codes, diags) = check_files(&[(
            "machine.yml",
            &machine(
                "  persistence: {enabled: false}",
                "      wait_for: approval",
            ),
        )]);
        assert_eq!(codes, vec!["FM0410 machine.yml:5:26"]);
        assert_eq!(diags[0].severity.as_str(), "error");
        // `checkpoint_on` without `waiting`.
        let (codes, diags) = check_files(&[(
            "machine.yml",
            &machine(
                "  persistence: {checkpoint_on: [machine_start, machine_end]}",
                "      wait_for: approval",
            ),
        )]);
        assert_eq!(codes, vec!["FM0410 machine.yml:5:32"]);
        assert!(diags[0].help.as_deref().unwrap().contains("`waiting`"));
        // An empty list too.
        assert_eq!(
            data_codes(
                "  persistence: {checkpoint_on: []}",
                "      wait_for: approval"
            ),
            vec!["FM0410 machine.yml:5:32"]
        );
        // With `waiting`, enabled, or no persistence at all: fine.
        for data in [
            "  persistence: {checkpoint_on: [waiting]}",
            "  persistence: {enabled: true, backend: sqlite}",
            "  persistence: {backend: local}",
            "",
        ] {
            assert_eq!(
                data_codes(data, "      wait_for: approval"),
                Vec::<String>::new(),
                "{data}"
            );
        }
        // No `wait_for` state: nothing to find again.
        let m = machine("  persistence: {enabled: false}", "      action: x");
        assert_eq!(check_files(&[("machine.yml", &m)]).0, Vec::<String>::new());
    }

    #[test]
    fn wait_for_without_transitions_is_a_dead_end_warning_only() {
        let m = "spec: flatmachine
spec_version: \"2.6.0\"
data:
  name: t
  states:
    start:
      type: initial
      transitions: [{condition: context.go, to: wait}, {to: done}]
    wait:
      wait_for: approval
    done:
      type: final
";
        assert_eq!(
            check_files(&[("machine.yml", m)]).0,
            vec!["FM0109 machine.yml:9:5"]
        );
    }

    /// `conformance/next/wait_for_park/drafter.yml`.
    const DRAFTER: &str = r#"spec: flatagent
spec_version: "2.6.0"

data:
  name: drafter
  model:
    provider: openai
    name: park-drafter
  system: "You draft refund decisions."
  user: "Draft a decision for ticket {{ input.ticket }}."
"#;

    /// `conformance/next/wait_for_park/machine.yml`: only the warning about `agent`.
    const WAIT_FOR_PARK: &str = r#"spec: flatmachine
spec_version: "2.6.0"

data:
  name: approval-park
  context:
    ticket: "{{ input.id }}"
    desk: "ops"

  persistence:
    enabled: true
    backend: sqlite
    db_path: ./approvals.sqlite

  agents:
    drafter: ./drafter.yml

  states:
    start:
      type: initial
      agent: drafter
      input:
        ticket: "{{ context.ticket }}"
      output_to_context:
        draft: "{{ output.content }}"
      transitions:
        - to: await_approval

    await_approval:
      wait_for: "approval/{{ context.ticket }}/{{ input.desk }}"
      agent: drafter
      input:
        ticket: "never rendered"
      output_to_context:
        approved: output.approved
      transitions:
        - condition: "context.approved"
          to: done
        - to: rejected

    done:
      type: final
      output:
        status: approved
        draft: context.draft

    rejected:
      type: final
      output:
        status: rejected
"#;

    #[test]
    fn conformance_wait_for_park_gets_only_the_agent_warning() {
        let (codes, diags) =
            check_files(&[("machine.yml", WAIT_FOR_PARK), ("drafter.yml", DRAFTER)]);
        assert_eq!(codes, vec!["FM0503 machine.yml:31:7"]);
        assert!(diags[0].message.contains("`agent`"), "{}", diags[0].message);
    }
}

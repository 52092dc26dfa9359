//! The executor's observable behaviour, with in-process adapters (no network).

use flatmachines::agent::{AgentFailure, AgentResult};
use flatmachines::hooks::MachineHooks;
use flatmachines::{Error, Machine, RunOptions, Runtime};
use flatmachines_testkit::{Call, FnAdapter};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

fn machine(yaml: &str) -> Machine {
    Machine::from_yaml(yaml, std::env::temp_dir()).unwrap_or_else(|e| panic!("{e}"))
}

/// `type: failing`: its agents always fail, with an exception (`config: {raise: ..}`) or else a
/// failed result.
fn failing() -> FnAdapter {
    FnAdapter::new("failing", |call: Call| async move {
        let raise = call
            .spec
            .config
            .as_ref()
            .and_then(|c| c.get("raise"))
            .is_some();
        if raise {
            Err(AgentFailure::new("TimeoutError", "too slow"))
        } else {
            Ok(AgentResult {
                error: Some(
                    json!({"type": "RateLimitError", "message": "slow down", "retryable": true}),
                ),
                ..AgentResult::default()
            })
        }
    })
}

const RECOVERING: &str = r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: recovering
  agents:
    flaky: {type: failing, config: {raise: true}}
    limited: {type: failing}
  states:
    start:
      type: initial
      agent: flaky
      on_error: {TimeoutError: second, default: failed}
      transitions: [{to: done}]
    second:
      agent: limited
      on_error: {RateLimitError: failed, RuntimeError: caught}
      transitions: [{to: done}]
    caught:
      type: final
      output: {error: context.last_error, kind: context.last_error_type, step: context.machine.step}
    failed:
      type: final
      output: {wrong: true}
    done:
      type: final
      output: {wrong: true}
"#;

#[tokio::test]
async fn on_error_map_matches_exact_class_names() {
    let rt = Runtime::builder().adapter(failing()).build();
    let out = rt.run(&machine(RECOVERING), json!({})).await.unwrap();
    // A failed agent result reaches on_error as RuntimeError (not its own type), like the reference.
    assert_eq!(
        out,
        json!({"error": "RateLimitError: slow down", "kind": "RuntimeError", "step": 3})
    );
}

#[tokio::test]
async fn unrecovered_errors_name_machine_state_and_cause() {
    let yaml = RECOVERING.replace("on_error: {TimeoutError: second, default: failed}", "");
    let rt = Runtime::builder().adapter(failing()).build();
    let err = rt.run(&machine(&yaml), json!({})).await.unwrap_err();
    match &err {
        Error::State {
            machine,
            state,
            kind,
            message,
        } => {
            assert_eq!(
                (
                    machine.as_str(),
                    state.as_str(),
                    kind.as_str(),
                    message.as_str()
                ),
                ("recovering", "start", "TimeoutError", "too slow")
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("machine `recovering`, state `start`")
    );
}

const LOOP: &str = r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: counter
  context: {n: 0}
  agents:
    inc: {type: echo}
  states:
    start:
      type: initial
      agent: inc
      input: {n: "{{ context.n | int + 1 }}"}
      output_to_context: {n: "output.n"}
      transitions:
        - condition: context.n == '3'
          to: done
        - to: start
    done:
      type: final
      output: {n: context.n, calls: context.machine.total_api_calls}
"#;

#[tokio::test]
async fn loops_until_a_condition_matches() {
    let out = Runtime::new().run(&machine(LOOP), json!({})).await.unwrap();
    // `{{ }}` renders a string, so the counter is "3" and the condition compares strings.
    assert_eq!(out, json!({"n": "3", "calls": 0}));
}

#[tokio::test]
async fn max_steps_ends_the_run_quietly() {
    let yaml = LOOP.replace("context.n == '3'", "context.n == 'never'");
    let out = Runtime::new()
        .run_with(
            &machine(&yaml),
            json!({}),
            RunOptions {
                max_steps: Some(5),
                ..RunOptions::default()
            },
        )
        .await;
    // The reference ends a run that hits max_steps normally, with `{}`.
    assert_eq!(out.unwrap(), json!({}));
}

/// Records events and redirects the first transition into `done`.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

#[flatmachines::async_trait]
impl MachineHooks for Recorder {
    async fn on_machine_start(&self, context: &mut Value) {
        context["started"] = json!(true);
        self.0.lock().unwrap().push("start".into());
    }
    async fn on_state_enter(&self, state: &str, _context: &mut Value) {
        // A hook may await: yield to prove the executor polls it to completion.
        tokio::task::yield_now().await;
        self.0.lock().unwrap().push(format!("enter {state}"));
    }
    async fn on_transition(&self, from: &str, to: &str, _context: &mut Value) -> Option<String> {
        self.0.lock().unwrap().push(format!("{from}->{to}"));
        Some("done".into())
    }
    async fn on_machine_end(&self, _context: &Value, output: &mut Value) {
        output["ended"] = json!(true);
    }
}

#[tokio::test]
async fn hooks_observe_and_steer() {
    let hooks = Arc::new(Recorder::default());
    let rt = Runtime::builder().hooks(hooks.clone()).build();
    let out = rt.run(&machine(LOOP), json!({})).await.unwrap();
    assert_eq!(out, json!({"n": "1", "calls": 0, "ended": true}));
    assert_eq!(
        *hooks.0.lock().unwrap(),
        ["start", "enter start", "start->start", "enter done"]
    );
}

const ACTION: &str = r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: actions
  hooks: [{name: stamp, args: {value: 7}}, metrics]
  context: {}
  states:
    start:
      type: initial
      action: stamp_it
      transitions: [{to: done}]
    done:
      type: final
      output: {stamped: context.stamped}
"#;

/// Writes `args.value` into the context on every action.
struct Stamp(Value);

#[flatmachines::async_trait]
impl MachineHooks for Stamp {
    async fn on_action(&self, _action: &str, context: &mut Value) {
        context["stamped"] = self.0.clone();
    }
}

#[tokio::test]
async fn data_hooks_resolve_through_the_registry() {
    let rt = Runtime::builder()
        .register_hooks("stamp", |args| {
            let v = args.get("value").cloned().ok_or("needs `value`")?;
            Ok(Arc::new(Stamp(v)))
        })
        .build();
    let out = rt.run(&machine(ACTION), json!({})).await.unwrap();
    assert_eq!(out, json!({"stamped": 7}));
}

#[tokio::test]
async fn unknown_data_hooks_name_is_a_typed_error() {
    let err = Runtime::new()
        .run(&machine(ACTION), json!({}))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, flatmachines::Error::Hooks { .. }), "{text}");
    assert!(
        text.contains("machine `actions`") && text.contains("`stamp`"),
        "{text}"
    );
}

#[tokio::test]
async fn explicit_hooks_bypass_data_hooks() {
    let metrics = flatmachines::hooks::MetricsHooks::new();
    let rt = Runtime::builder().hooks(metrics.clone()).build();
    // `stamp` is not registered, but the explicit hooks win, so it is never resolved.
    let out = rt.run(&machine(ACTION), json!({})).await.unwrap();
    assert_eq!(out, json!({"stamped": null}));
    let m = metrics.metrics();
    assert_eq!(m.total_states_executed, 2);
    assert_eq!(m.transition_counts.get("start->done"), Some(&1));
}

#[tokio::test]
async fn executors_are_built_once_per_machine_and_runtime() {
    // Replaces the built-in `echo` adapter, counting the executors it builds.
    let counting = FnAdapter::echo("echo");
    let rt = Runtime::builder().adapter(counting.clone()).build();
    let m = machine(LOOP);
    for _ in 0..3 {
        assert_eq!(
            rt.run(&m, json!({})).await.unwrap(),
            json!({"n": "3", "calls": 0})
        );
    }
    let built = || counting.executors_built();
    assert_eq!(built(), 1);
    // Another runtime may have other adapters: it gets its own executor.
    let other = Runtime::builder().adapter(counting.clone()).build();
    other.run(&m, json!({})).await.unwrap();
    assert_eq!(built(), 2);
    // So does another machine.
    rt.run(&machine(LOOP), json!({})).await.unwrap();
    assert_eq!(built(), 3);
}

#[tokio::test]
async fn a_final_state_without_output_returns_its_agent_output() {
    let m = machine(
        r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: last-word
  agents:
    say: {type: echo}
  states:
    start:
      type: initial
      transitions: [{to: done}]
    done:
      type: final
      agent: say
      input: {word: "bye"}
"#,
    );
    let out = Runtime::new().run(&m, json!({})).await.unwrap();
    assert_eq!(out, json!({"word": "bye"}));
}

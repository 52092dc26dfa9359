//! Budgets: `settings.max_cost` and `RunOptions::max_cost` refuse the agent call that would
//! start with `context.machine.total_cost` at or above them, as a `BudgetExceeded` failure
//! that `on_error` handles; unhandled, the run ends with `Error::BudgetExceeded`.

use flatmachines::{Error, Machine, RunOptions, Runtime};
use flatmachines_testkit::FnAdapter;
use serde_json::json;

fn machine(yaml: &str) -> Machine {
    Machine::from_yaml(yaml, std::env::temp_dir()).unwrap_or_else(|e| panic!("{e}"))
}

/// Three agent calls in a row; each costs what the adapter reports. `{settings}` and
/// `{on_error}` are filled in per test.
const THREE_CALLS: &str = r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: spender
  settings: {settings}
  agents:
    model: {type: paid}
  states:
    one:
      type: initial
      agent: model
      input: {n: 1}
      {on_error}
      transitions: [{to: two}]
    two:
      agent: model
      input: {n: 2}
      {on_error}
      transitions: [{to: three}]
    three:
      agent: model
      input: {n: 3}
      {on_error}
      transitions: [{to: done}]
    done:
      type: final
      output: {calls: "{{ context.machine.total_api_calls }}", spent: "{{ context.machine.total_cost }}"}
    over:
      type: final
      output:
        kind: "{{ context.last_error_type }}"
        error: "{{ context.last_error }}"
        state: "{{ context.machine.current_state }}"
        calls: "{{ context.machine.total_api_calls }}"
        spent: "{{ context.machine.total_cost }}"
"#;

fn spender(settings: &str, on_error: &str) -> Machine {
    machine(
        &THREE_CALLS
            .replace("{settings}", settings)
            .replace("{on_error}", on_error),
    )
}

/// `type: paid`: echoes its input; each call reports one API call costing 0.25 USD.
fn paid() -> FnAdapter {
    FnAdapter::echo("paid").priced(0.25)
}

#[tokio::test]
async fn the_budget_refuses_the_call_after_it_is_reached_through_on_error() {
    let adapter = paid();
    let rt = Runtime::builder().adapter(adapter.clone()).build();
    let m = spender("{max_cost: 0.5}", "on_error: {BudgetExceeded: over}");
    let out = rt.run(&m, json!({})).await.unwrap();
    // 0 → 0.25 → 0.5: the third call would start at the budget, so it is refused.
    assert_eq!(
        out,
        json!({
            "kind": "BudgetExceeded",
            "error": "budget of 0.5 USD (max_cost) reached: 0.5 USD spent before this agent call",
            "state": "over",
            "calls": "2",
            "spent": "0.5",
        })
    );
    assert_eq!(adapter.calls(), 2);
}

#[tokio::test]
async fn under_budget_every_call_runs() {
    let adapter = paid();
    let rt = Runtime::builder().adapter(adapter.clone()).build();
    let m = spender("{max_cost: 0.75001}", "on_error: {BudgetExceeded: over}");
    let out = rt.run(&m, json!({})).await.unwrap();
    assert_eq!(out, json!({"calls": "3", "spent": "0.75"}));
    assert_eq!(adapter.calls(), 3);
}

#[tokio::test]
async fn without_on_error_the_run_fails_with_a_typed_error() {
    let adapter = paid();
    let rt = Runtime::builder().adapter(adapter.clone()).build();
    let m = spender("{max_cost: 0.3}", "");
    let err = rt.run(&m, json!({})).await.unwrap_err();
    match &err {
        Error::BudgetExceeded {
            machine,
            state,
            budget,
            spent,
        } => {
            assert_eq!((machine.as_str(), state.as_str()), ("spender", "three"));
            assert_eq!((*budget, *spent), (0.3, 0.5));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.kind(), Some("BudgetExceeded"));
    assert_eq!(
        err.to_string(),
        "machine `spender`, state `three`: BudgetExceeded: budget of 0.3 USD (max_cost) reached: \
         0.5 USD spent"
    );
    // 0 → 0.25 → 0.5: the second call started under the budget; the third is refused.
    assert_eq!(adapter.calls(), 2);
}

#[tokio::test]
async fn an_on_error_default_catches_it_too() {
    let rt = Runtime::builder().adapter(paid()).build();
    let m = spender("{max_cost: 0}", "on_error: over");
    let out = rt.run(&m, json!({})).await.unwrap();
    assert_eq!(out["kind"], "BudgetExceeded");
    assert_eq!(out["calls"], "0");
}

#[tokio::test]
async fn the_run_option_replaces_the_setting() {
    let adapter = paid();
    let rt = Runtime::builder().adapter(adapter.clone()).build();
    let m = spender("{max_cost: 0.5}", "on_error: {BudgetExceeded: over}");
    // Raised: all three calls run.
    let out = rt
        .run_with(&m, json!({}), RunOptions::default().with_max_cost(10.0))
        .await
        .unwrap();
    assert_eq!(out, json!({"calls": "3", "spent": "0.75"}));
    // Lowered: only the first.
    let out = rt
        .run_with(&m, json!({}), RunOptions::default().with_max_cost(0.2))
        .await
        .unwrap();
    assert_eq!(out["calls"], "1");
    // A machine without a setting gets one from the option alone.
    let m = spender("{}", "on_error: {BudgetExceeded: over}");
    let out = rt
        .run_with(
            &m,
            json!({}),
            RunOptions {
                max_cost: Some(0.25),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(out["kind"], "BudgetExceeded");
    assert_eq!(out["calls"], "1");
}

#[tokio::test]
async fn states_without_agent_calls_are_not_stopped() {
    let yaml = r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: free
  settings: {max_cost: 0}
  states:
    start: {type: initial, transitions: [{to: done}]}
    done: {type: final, output: {ok: true}}
"#;
    let out = Runtime::new().run(&machine(yaml), json!({})).await.unwrap();
    assert_eq!(out, json!({"ok": true}));
}

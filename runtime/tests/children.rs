//! Child machines (`parallel-and-launch.md`): `machine:`, `machine: [..]`, `foreach:`,
//! `launch:`, result shapes, error entries, modes and timeouts, lineage, the result backend, the
//! outbox across a crash, invokers, and the compile-time checks of child machines.

use flatmachines::hooks::MachineHooks;
use flatmachines::invoker::{
    InlineInvoker, InvokeError, Invoker, LaunchContext, LaunchRequest, Queue, QueueInvoker,
    QueueJob,
};
use flatmachines::persistence::{CheckpointBackend, MemoryBackend};
use flatmachines::results::{InMemoryResultBackend, ResultBackend, result_uri};
use flatmachines::{Error, Machine, RunOptions, Runtime};
use flatmachines_testkit::{FnAdapter, TempDir};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A scratch folder for machine files, removed at the end of the test.
fn scratch() -> TempDir {
    TempDir::with_prefix("fm-children-")
}

/// Writes `text` to `dir/name` and loads it as a machine.
fn load(dir: &TempDir, name: &str, text: &str) -> Machine {
    let path = dir.write(name, text);
    Machine::from_file(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// `type: slow`: sleeps `input.ms` milliseconds, then fails with `input.fail` (class
/// `input.kind`, default `ValueError`) if given, else returns the input as output. It counts
/// its calls and the most calls in flight at once.
fn slow() -> FnAdapter {
    FnAdapter::slow("slow")
}

/// A child with one `slow` agent state: input `{v, ms, fail, kind}`; output
/// `{v, id, parent}` (its own and its parent's execution ids).
const WORKER: &str = r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: worker
  context:
    v: input.v
    ms: input.ms
    fail: input.fail
    kind: input.kind
  agents:
    w: {type: slow}
  states:
    start:
      type: initial
      agent: w
      input: {v: context.v, ms: context.ms, fail: context.fail, kind: context.kind}
      output_to_context: {v: output.v}
      transitions: [{to: done}]
    done:
      type: final
      output:
        v: context.v
        id: context.machine.execution_id
        parent: context.machine.parent_execution_id
"#;

/// A child without agents whose output is its whole input.
const ECHO: &str = r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: echo-child
  context:
    got: input
  states:
    start:
      type: initial
      transitions: [{to: done}]
    done:
      type: final
      output: {got: context.got}
"#;

fn parent(states: &str, extra: &str) -> String {
    format!(
        r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: parent
  context:
    items: input.items
    p: input.p
{extra}
  machines:
    worker: ./worker.yml
    other: ./worker.yml
    echo: ./echo.yml
  states:
{states}
    done:
      type: final
      output:
        r: context.r
        id: context.machine.execution_id
"#
    )
}

struct Setup {
    _dir: TempDir,
    machine: Machine,
    slow: FnAdapter,
    results: Arc<InMemoryResultBackend>,
    rt: Runtime,
}

fn setup(states: &str) -> Setup {
    setup_with(states, "")
}

fn setup_with(states: &str, extra: &str) -> Setup {
    let dir = scratch();
    dir.write("worker.yml", WORKER);
    dir.write("echo.yml", ECHO);
    let machine = load(&dir, "machine.yml", &parent(states, extra));
    let slow = slow();
    let results = Arc::new(InMemoryResultBackend::new());
    let rt = Runtime::builder()
        .adapter(slow.clone())
        .result_backend(results.clone())
        .build();
    Setup {
        _dir: dir,
        machine,
        slow,
        results,
        rt,
    }
}

async fn run(s: &Setup, input: Value) -> Value {
    s.rt.run(&s.machine, input)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

// --- machine: <name> ---------------------------------------------------------------------------

#[tokio::test]
async fn single_child_result_is_the_output_with_lineage_and_a_stored_result() {
    let s = setup(
        r#"
    start:
      type: initial
      machine: worker
      input: {v: "{{ context.p }}!", ms: 0}
      output_to_context: {r: output}
      transitions: [{to: done}]"#,
    );
    let out = run(&s, json!({"p": "hi"})).await;
    let r = &out["r"];
    assert_eq!(r["v"], "hi!");
    // The parent generated the child's id; the child knows its parent.
    assert_eq!(r["parent"], out["id"]);
    let child = r["id"].as_str().unwrap();
    assert!(is_uuid(child) && child != out["id"].as_str().unwrap());
    // The result is in the backend, at `flatagents://<child id>/result`.
    let stored = s
        .results
        .read(&result_uri(child), false, None)
        .await
        .unwrap();
    assert_eq!(stored.as_ref(), Some(r));
}

#[tokio::test]
async fn single_child_failure_reaches_on_error_with_the_childs_class() {
    let s = setup(
        r#"
    start:
      type: initial
      machine: worker
      input: {fail: "child failed", kind: KeyError}
      on_error: {KeyError: caught, default: done}
      transitions: [{to: done}]
    caught:
      type: final
      output: {error: context.last_error, kind: context.last_error_type}"#,
    );
    let out = run(&s, json!({})).await;
    assert_eq!(out, json!({"error": "child failed", "kind": "KeyError"}));
    // The child's error entry is in the result backend.
    assert_eq!(s.results.len(), 1);
}

#[tokio::test]
async fn unrecovered_child_failure_fails_the_parent() {
    let s = setup(
        r#"
    start:
      type: initial
      machine: worker
      input: {fail: "boom"}
      transitions: [{to: done}]"#,
    );
    let err = s.rt.run(&s.machine, json!({})).await.unwrap_err();
    assert_eq!(err.kind(), Some("ValueError"));
    assert!(err.to_string().contains("boom"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn single_child_timeout_fails_with_timeout_error_and_the_child_finishes() {
    let s = setup(
        r#"
    start:
      type: initial
      machine: worker
      input: {v: 1, ms: 5000}
      timeout: 1
      on_error: caught
      transitions: [{to: done}]
    caught:
      type: final
      output: {kind: context.last_error_type}"#,
    );
    let t0 = tokio::time::Instant::now();
    let out = run(&s, json!({})).await;
    assert_eq!(out, json!({"kind": "TimeoutError"}));
    // The child kept running and the run awaited it before returning.
    assert!(t0.elapsed() >= Duration::from_millis(5000));
    assert_eq!(s.results.len(), 1);
}

// --- machine: [a, b] ---------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn parallel_settled_is_keyed_by_name_in_list_order_with_error_entries() {
    let s = setup(
        r#"
    start:
      type: initial
      machine: [other, worker]
      input: {v: "{{ context.p }}", ms: 50}
      output_to_context: {r: output}
      transitions: [{to: done}]"#,
    );
    let out = run(&s, json!({"p": "x"})).await;
    let keys: Vec<&String> = out["r"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["other", "worker"]);
    assert_eq!(out["r"]["other"]["v"], "x");
    // Both ran at once.
    assert_eq!(s.slow.max_in_flight(), 2);

    let s = setup(
        r#"
    start:
      type: initial
      machine:
        - name: worker
          input: {v: ok}
        - name: other
          input: {fail: child failed}
      output_to_context: {r: output}
      transitions: [{to: done}]"#,
    );
    let out = run(&s, json!({})).await;
    assert_eq!(
        out["r"]["other"],
        json!({"_error": "child failed", "_error_type": "ValueError"})
    );
    assert_eq!(out["r"]["worker"]["v"], "ok");
}

#[tokio::test]
async fn machine_input_entries_get_their_own_input() {
    // The reference ignores per-entry inputs (every child gets the state's); here they win,
    // and entries without one get the state's.
    let s = setup(
        r#"
    start:
      type: initial
      machine:
        - name: echo
          input: {own: "{{ context.p }}-echo", n: 1}
        - name: worker
      input: {v: shared}
      output_to_context: {r: output}
      transitions: [{to: done}]"#,
    );
    let out = run(&s, json!({"p": "P"})).await;
    assert_eq!(out["r"]["echo"]["got"], json!({"own": "P-echo", "n": 1}));
    assert_eq!(out["r"]["worker"]["v"], "shared");
}

#[tokio::test]
async fn a_repeated_name_runs_one_child() {
    let s = setup(
        r#"
    start:
      type: initial
      machine: [worker, worker]
      input: {v: 1}
      output_to_context: {r: output}
      transitions: [{to: done}]"#,
    );
    let out = run(&s, json!({})).await;
    assert_eq!(out["r"].as_object().unwrap().len(), 1);
    assert_eq!(s.slow.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn any_reports_the_first_finished_and_awaits_the_rest_before_returning() {
    let s = setup(
        r#"
    start:
      type: initial
      machine:
        - name: worker
          input: {v: slow, ms: 3000}
        - name: other
          input: {v: fast, ms: 10}
      mode: any
      output_to_context: {r: output}
      transitions: [{to: done}]"#,
    );
    let t0 = tokio::time::Instant::now();
    let out = run(&s, json!({})).await;
    let r = out["r"].as_object().unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r["other"]["v"], "fast");
    assert!(t0.elapsed() >= Duration::from_millis(3000));
    assert_eq!(s.results.len(), 2, "the slow child's result is written too");
}

#[tokio::test(start_paused = true)]
async fn any_with_nothing_done_by_the_timeout_gives_an_empty_map() {
    let s = setup(
        r#"
    start:
      type: initial
      machine: [worker, other]
      input: {ms: 1000}
      mode: any
      timeout: 0.05
      output_to_context: {r: output}
      transitions: [{to: done}]"#,
    );
    let out = run(&s, json!({})).await;
    assert_eq!(out["r"], json!({}));
}

#[tokio::test(start_paused = true)]
async fn any_with_timeout_zero_still_reports_children_that_do_not_wait() {
    let s = setup(
        r#"
    start:
      type: initial
      machine:
        - name: worker
          input: {v: slow, ms: 100}
        - name: other
          input: {v: instant, ms: 0}
      mode: any
      timeout: 0
      output_to_context: {r: output}
      transitions: [{to: done}]"#,
    );
    let out = run(&s, json!({})).await;
    assert_eq!(out["r"]["other"]["v"], "instant");
    assert!(out["r"].get("worker").is_none());
}

#[tokio::test(start_paused = true)]
async fn settled_timeout_gives_timeout_entries_for_unfinished_children() {
    // The reference ignores `timeout` in settled mode; here it bounds the wait.
    let s = setup(
        r#"
    start:
      type: initial
      machine:
        - name: worker
          input: {v: fast, ms: 100}
        - name: other
          input: {v: slow, ms: 5000}
      timeout: 1
      output_to_context: {r: output}
      transitions: [{to: done}]"#,
    );
    let t0 = tokio::time::Instant::now();
    let out = run(&s, json!({})).await;
    assert_eq!(out["r"]["worker"]["v"], "fast");
    assert_eq!(out["r"]["other"]["_error_type"], "TimeoutError");
    assert!(out["r"]["other"]["_error"].as_str().unwrap().contains("1s"));
    assert!(t0.elapsed() >= Duration::from_millis(5000));
}

// --- foreach -----------------------------------------------------------------------------------

#[tokio::test]
async fn foreach_with_as_and_key_is_a_map_of_rendered_keys() {
    let s = setup(
        r#"
    start:
      type: initial
      foreach: context.items
      as: it
      key: "{{ it.id }}"
      machine: echo
      input: {n: "{{ it.n }}", whole: "{{ it }}", ctx: "{{ context.p }}"}
      output_to_context: {r: output}
      transitions: [{to: done}]"#,
    );
    let out = run(
        &s,
        json!({"items": [{"id": "a", "n": 1}, {"id": "b", "n": 2}], "p": "hidden"}),
    )
    .await;
    assert_eq!(
        out["r"],
        json!({
            "a": {"got": {"n": "1", "whole": "{\"id\": \"a\", \"n\": 1}", "ctx": ""}},
            "b": {"got": {"n": "2", "whole": "{\"id\": \"b\", \"n\": 2}", "ctx": ""}},
        })
    );
}

#[tokio::test(start_paused = true)]
async fn foreach_without_key_is_a_list_in_item_order() {
    let s = setup(
        r#"
    start:
      type: initial
      foreach: context.items
      machine: worker
      input: {v: "{{ item.v }}", ms: "{{ item.ms }}"}
      output_to_context: {r: output}
      transitions: [{to: done}]"#,
    );
    // Later items finish first.
    let out = run(
        &s,
        json!({"items": [{"v": 0, "ms": 300}, {"v": 1, "ms": 200}, {"v": 2, "ms": 100}]}),
    )
    .await;
    let vs: Vec<&Value> = out["r"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["v"])
        .collect();
    assert_eq!(vs, ["0", "1", "2"]);
    assert_eq!(s.slow.max_in_flight(), 3);
}

#[tokio::test]
async fn foreach_over_an_empty_list_gives_an_empty_map_to_output_to_context() {
    let s = setup(
        r#"
    start:
      type: initial
      foreach: context.items
      machine: worker
      output_to_context: {r: output}
      transitions: [{to: done}]"#,
    );
    let out = run(&s, json!({"items": []})).await;
    assert_eq!(out["r"], json!({}));
}

#[tokio::test]
async fn foreach_over_a_non_list_is_a_value_error() {
    let s = setup(
        r#"
    start:
      type: initial
      foreach: context.items
      machine: worker
      on_error: caught
      transitions: [{to: done}]
    caught:
      type: final
      output: {e: context.last_error, k: context.last_error_type}"#,
    );
    let out = run(&s, json!({"items": {"a": 1}})).await;
    assert_eq!(
        out,
        json!({"e": "foreach expression must yield a list, got <class 'dict'>", "k": "ValueError"})
    );
    let out = run(&s, json!({"items": "abc"})).await;
    assert_eq!(
        out["e"],
        "foreach expression must yield a list, got <class 'str'>"
    );
}

#[tokio::test]
async fn foreach_over_a_template_reads_the_rendered_list() {
    // The reference fails (a `{{ }}` template renders a string); FM0307 warns, and the
    // runtime reads the JSON list back.
    let s = setup(
        r#"
    start:
      type: initial
      foreach: "{{ context.items }}"
      machine: echo
      input: {x: "{{ item }}"}
      output_to_context: {r: output}
      transitions: [{to: done}]"#,
    );
    let out = run(&s, json!({"items": ["a", "b"]})).await;
    assert_eq!(out["r"], json!([{"got": {"x": "a"}}, {"got": {"x": "b"}}]));
}

#[tokio::test]
async fn foreach_duplicate_keys_run_the_last_item_in_the_first_position() {
    let s = setup(
        r#"
    start:
      type: initial
      foreach: context.items
      key: "{{ item.id }}"
      machine: worker
      input: {v: "{{ item.n }}"}
      output_to_context: {r: output}
      transitions: [{to: done}]"#,
    );
    let out = run(
        &s,
        json!({"items": [{"id": "a", "n": 1}, {"id": "b", "n": 2}, {"id": "a", "n": 3}]}),
    )
    .await;
    let r = out["r"].as_object().unwrap();
    assert_eq!(r.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(r["a"]["v"], "3");
    assert_eq!(s.slow.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn foreach_any_gives_one_entry() {
    let states = |key: &str| {
        format!(
            r#"
    start:
      type: initial
      foreach: context.items
      {key}
      machine: worker
      mode: any
      input: {{v: "{{{{ item.v }}}}", ms: "{{{{ item.ms }}}}"}}
      output_to_context: {{r: output}}
      transitions: [{{to: done}}]"#
        )
    };
    let items =
        json!({"items": [{"v": "a", "ms": 500}, {"v": "b", "ms": 20}, {"v": "c", "ms": 900}]});
    let s = setup(&states(""));
    let out = run(&s, items.clone()).await;
    let list = out["r"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["v"], "b");
    let s = setup(&states(r#"key: "k{{ item.v }}""#));
    let out = run(&s, items).await;
    assert_eq!(
        out["r"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["kb"]
    );
}

#[tokio::test(start_paused = true)]
async fn foreach_settled_timeout_keeps_list_positions() {
    let s = setup(
        r#"
    start:
      type: initial
      foreach: context.items
      machine: worker
      timeout: 1
      input: {v: "{{ item.v }}", ms: "{{ item.ms }}"}
      output_to_context: {r: output}
      transitions: [{to: done}]"#,
    );
    let out = run(
        &s,
        json!({"items": [{"v": "a", "ms": 3000}, {"v": "b", "ms": 10}]}),
    )
    .await;
    assert_eq!(out["r"][0]["_error_type"], "TimeoutError");
    assert_eq!(out["r"][1]["v"], "b");
}

#[tokio::test(start_paused = true)]
async fn max_concurrent_children_bounds_how_many_run_at_once() {
    let states = r#"
    start:
      type: initial
      foreach: context.items
      machine: worker
      input: {v: "{{ item }}", ms: 10}
      output_to_context: {r: output}
      transitions: [{to: done}]"#;
    let items = json!({"items": (0..20).collect::<Vec<_>>()});
    let s = setup_with(states, "  settings: {max_concurrent_children: 3}");
    let out = run(&s, items.clone()).await;
    assert_eq!(out["r"].as_array().unwrap().len(), 20);
    assert_eq!(s.slow.max_in_flight(), 3);
    // Default: unbounded, like the reference.
    let s = setup(states);
    run(&s, items).await;
    assert_eq!(s.slow.max_in_flight(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreach_over_ten_thousand_items_with_bounded_concurrency() {
    let s = setup_with(
        r#"
    start:
      type: initial
      foreach: context.items
      machine: worker
      input: {v: "{{ item }}"}
      output_to_context: {r: output}
      transitions: [{to: done}]"#,
        "  settings: {max_concurrent_children: 64}",
    );
    let n = 10_000;
    let out = run(&s, json!({"items": (0..n).collect::<Vec<_>>()})).await;
    let list = out["r"].as_array().unwrap();
    assert_eq!(list.len(), n);
    assert!(
        list.iter()
            .enumerate()
            .all(|(i, r)| r["v"].as_str().and_then(|v| v.parse().ok()) == Some(i))
    );
    assert_eq!(s.slow.calls(), n);
    assert!(s.slow.max_in_flight() <= 64);
    assert_eq!(s.results.len(), n);
}

// --- nesting, hooks ----------------------------------------------------------------------------

#[tokio::test]
async fn grandchildren_run_and_record_their_lineage() {
    let dir = scratch();
    dir.write("worker.yml", WORKER);
    dir.write(
        "middle.yml",
        r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: middle
  context: {items: input.items}
  machines: {w: ./worker.yml}
  states:
    start:
      type: initial
      foreach: context.items
      machine: w
      input: {v: "{{ item }}"}
      output_to_context: {r: output}
      transitions: [{to: done}]
    done:
      type: final
      output: {r: context.r, id: context.machine.execution_id}
"#,
    );
    let m = load(
        &dir,
        "machine.yml",
        r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: top
  machines: {middle: ./middle.yml}
  states:
    start:
      type: initial
      machine: middle
      input: {items: [1, 2]}
      output_to_context: {r: output}
      transitions: [{to: done}]
    done:
      type: final
      output: {r: context.r}
"#,
    );
    let rt = Runtime::builder().adapter(slow()).build();
    let out = rt.run(&m, json!({})).await.unwrap();
    let middle = &out["r"];
    for g in middle["r"].as_array().unwrap() {
        assert_eq!(g["parent"], middle["id"]);
    }
    assert_eq!(middle["r"][1]["v"], "2");
}

#[derive(Clone, Default)]
struct CountingHooks(Arc<Mutex<Vec<String>>>);

#[flatmachines::async_trait]
impl MachineHooks for CountingHooks {
    async fn on_state_enter(&self, state: &str, _context: &mut Value) {
        self.0.lock().unwrap().push(state.to_string());
    }
}

#[tokio::test]
async fn children_do_not_get_the_runtimes_explicit_hooks() {
    let hooks = CountingHooks::default();
    let dir = scratch();
    dir.write("worker.yml", WORKER);
    dir.write("echo.yml", ECHO);
    let m = load(
        &dir,
        "machine.yml",
        &parent(
            r#"
    start:
      type: initial
      machine: echo
      transitions: [{to: done}]"#,
            "",
        ),
    );
    let rt = Runtime::builder().hooks(hooks.clone()).build();
    rt.run(&m, json!({})).await.unwrap();
    // The parent's two states only; the child's `start`/`done` are not seen.
    assert_eq!(*hooks.0.lock().unwrap(), ["start", "done"]);
}

// --- launch ------------------------------------------------------------------------------------

const LAUNCHER: &str = r#"
    start:
      type: initial
      launch: [worker, worker]
      launch_input: {v: "{{ context.p }}", ms: 20}
      output_to_context: {r: ignored}
      transitions: [{to: done}]"#;

async fn latest_snapshot(backend: &MemoryBackend, id: &str) -> Value {
    let key = backend
        .load(&format!("{id}/latest"))
        .await
        .unwrap()
        .expect("a latest pointer");
    let bytes = backend
        .load(std::str::from_utf8(&key).unwrap())
        .await
        .unwrap()
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(start_paused = true)]
async fn launch_is_fire_and_forget_with_launched_intents_kept() {
    let mut s = setup(LAUNCHER);
    let backend = Arc::new(MemoryBackend::new());
    s.rt = Runtime::builder()
        .adapter(s.slow.clone())
        .result_backend(s.results.clone())
        .checkpoint_backend(backend.clone())
        .build();
    let out =
        s.rt.run_with(
            &s.machine,
            json!({"p": "go"}),
            RunOptions {
                execution_id: Some("launcher-1".into()),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();
    // `output_to_context` is not applied for a launch-only state.
    assert_eq!(out["r"], Value::Null);
    // Both launches ran (duplicates launch twice) before the run returned.
    assert_eq!(s.slow.calls(), 2);
    assert_eq!(s.results.len(), 2);
    let snap = latest_snapshot(&backend, "launcher-1").await;
    assert_eq!(snap["event"], "machine_end");
    let pending = snap["pending_launches"].as_array().unwrap();
    assert_eq!(pending.len(), 2);
    for intent in pending {
        assert_eq!(intent["machine"], "worker");
        assert_eq!(intent["input"], json!({"v": "go", "ms": 20}));
        assert_eq!(intent["launched"], true);
        let id = intent["execution_id"].as_str().unwrap();
        let result = s.results.read(&result_uri(id), false, None).await.unwrap();
        assert_eq!(result.unwrap()["parent"], "launcher-1");
    }
}

/// Collects queue jobs.
#[derive(Clone, Default)]
struct Jobs(Arc<Mutex<Vec<QueueJob>>>);

#[flatmachines::async_trait]
impl QueueInvoker for Jobs {
    async fn enqueue(&self, job: QueueJob) -> Result<(), InvokeError> {
        self.0.lock().unwrap().push(job);
        Ok(())
    }
}

#[tokio::test]
async fn queue_invokers_receive_the_launch() {
    let s = setup(LAUNCHER);
    let jobs = Jobs::default();
    let rt = Runtime::builder()
        .adapter(s.slow.clone())
        .invoker(Queue(jobs.clone()))
        .build();
    let out = rt.run(&s.machine, json!({"p": "q"})).await.unwrap();
    let jobs = jobs.0.lock().unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0].machine_name, "worker");
    assert_eq!(jobs[0].input, json!({"v": "q", "ms": 20}));
    assert_eq!(jobs[0].parent_execution_id, out["id"].as_str().unwrap());
    assert!(
        jobs[0]
            .config_path
            .as_ref()
            .unwrap()
            .ends_with("worker.yml")
    );
    assert_eq!(jobs[0].document.as_ref().unwrap()["data"]["name"], "worker");
    assert_ne!(jobs[0].execution_id, jobs[1].execution_id);
    // Nothing ran here.
    assert_eq!(s.slow.calls(), 0);
}

/// Refuses every launch: the process "dies" after the intent was checkpointed.
struct CrashBeforeLaunch;

#[flatmachines::async_trait]
impl Invoker for CrashBeforeLaunch {
    async fn launch(&self, _cx: &LaunchContext<'_>, _r: LaunchRequest) -> Result<(), InvokeError> {
        Err(InvokeError::new("SystemExit", "crashed before the launch"))
    }
}

/// Launches, then "dies" before the launch is marked in a checkpoint.
struct CrashAfterLaunch;

#[flatmachines::async_trait]
impl Invoker for CrashAfterLaunch {
    async fn launch(&self, cx: &LaunchContext<'_>, r: LaunchRequest) -> Result<(), InvokeError> {
        InlineInvoker.launch(cx, r).await?;
        Err(InvokeError::new("SystemExit", "crashed after the launch"))
    }
}

const ONE_LAUNCH: &str = r#"
    start:
      type: initial
      launch: worker
      launch_input: {v: "{{ context.p }}", ms: 10}
      transitions: [{to: done}]"#;

fn runtime(
    slow: &FnAdapter,
    backend: &Arc<MemoryBackend>,
    results: &Arc<InMemoryResultBackend>,
    invoker: impl Invoker + 'static,
) -> Runtime {
    Runtime::builder()
        .adapter(slow.clone())
        .checkpoint_backend(backend.clone())
        .result_backend(results.clone())
        .invoker(invoker)
        .build()
}

#[tokio::test(start_paused = true)]
async fn a_crash_between_intent_and_launch_launches_once_on_resume() {
    let s = setup(ONE_LAUNCH);
    let backend = Arc::new(MemoryBackend::new());
    let id = "outbox-1".to_string();
    let opts = RunOptions {
        execution_id: Some(id.clone()),
        ..RunOptions::default()
    };
    let crashing = runtime(&s.slow, &backend, &s.results, CrashBeforeLaunch);
    let err = crashing
        .run_with(&s.machine, json!({"p": "x"}), opts)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::State { .. }), "{err}");
    // The intent reached a checkpoint before the launch was attempted.
    let snap = latest_snapshot(&backend, &id).await;
    let pending = snap["pending_launches"].as_array().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["launched"], false);
    let child = pending[0]["execution_id"].as_str().unwrap().to_string();
    assert_eq!(s.slow.calls(), 0);

    // A new process (fresh result backend) resumes: the launch happens once, under the id
    // recorded in the outbox, and the re-run state does not launch again.
    let results = Arc::new(InMemoryResultBackend::new());
    let rt = runtime(&s.slow, &backend, &results, InlineInvoker);
    let out = rt
        .run_with(
            &s.machine,
            json!({}),
            RunOptions {
                resume_from: Some(id.clone()),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(out["id"], id.as_str());
    assert_eq!(s.slow.calls(), 1);
    let result = results
        .read(&result_uri(&child), false, None)
        .await
        .unwrap();
    assert_eq!(result.unwrap()["v"], "x");
    let snap = latest_snapshot(&backend, &id).await;
    assert_eq!(
        snap["pending_launches"],
        json!([{"execution_id": child, "machine": "worker", "input": {"v": "x", "ms": 10}, "launched": true}])
    );
}

#[tokio::test(start_paused = true)]
async fn a_launch_that_happened_is_not_repeated_on_resume() {
    for shared_results in [true, false] {
        let s = setup(ONE_LAUNCH);
        let backend = Arc::new(MemoryBackend::new());
        let id = "outbox-2".to_string();
        let crashing = runtime(&s.slow, &backend, &s.results, CrashAfterLaunch);
        crashing
            .run_with(
                &s.machine,
                json!({"p": "y"}),
                RunOptions {
                    execution_id: Some(id.clone()),
                    ..RunOptions::default()
                },
            )
            .await
            .unwrap_err();
        // The child ran; the checkpoint still says "not launched".
        assert_eq!(s.slow.calls(), 1);
        let snap = latest_snapshot(&backend, &id).await;
        assert_eq!(snap["pending_launches"][0]["launched"], false);

        // Resume: the result backend (if it survived) or the child's own checkpoints show the
        // launch happened; it is neither restarted nor launched again by the re-run state.
        let results = if shared_results {
            s.results.clone()
        } else {
            Arc::new(InMemoryResultBackend::new())
        };
        let rt = runtime(&s.slow, &backend, &results, InlineInvoker);
        rt.run_with(
            &s.machine,
            json!({}),
            RunOptions {
                resume_from: Some(id.clone()),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(s.slow.calls(), 1, "shared results: {shared_results}");
        let snap = latest_snapshot(&backend, &id).await;
        let pending = snap["pending_launches"].as_array().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0]["launched"], true);
        let child = pending[0]["execution_id"].as_str().unwrap();
        assert!(results.exists(&result_uri(child)).await.unwrap());
    }
}

#[tokio::test(start_paused = true)]
async fn a_crash_later_in_the_launching_state_does_not_repeat_the_launch() {
    let s = setup_with(
        r#"
    start:
      type: initial
      launch: worker
      launch_input: {v: "{{ context.p }}", ms: 10}
      agent: f
      transitions: [{to: done}]"#,
        "  agents: {f: {type: flaky}}",
    );
    let backend = Arc::new(MemoryBackend::new());
    // `type: flaky`: fails on its first call only (a crash of the process, as far as the run
    // can tell), then returns its input.
    let flaky = FnAdapter::echo("flaky").fail_first(1, "SystemExit", "the process died");
    let rt = Runtime::builder()
        .adapter(s.slow.clone())
        .adapter(flaky.clone())
        .checkpoint_backend(backend.clone())
        .result_backend(s.results.clone())
        .build();
    let id = "outbox-3".to_string();
    rt.run_with(
        &s.machine,
        json!({"p": "z"}),
        RunOptions {
            execution_id: Some(id.clone()),
            ..RunOptions::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(s.slow.calls(), 1);
    let out = rt
        .run_with(
            &s.machine,
            json!({}),
            RunOptions {
                resume_from: Some(id.clone()),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(out["id"], id.as_str());
    // The agent ran twice (failed, then succeeded); the launched child once.
    assert_eq!(flaky.calls(), 2);
    assert_eq!(s.slow.calls(), 1);
    let snap = latest_snapshot(&backend, &id).await;
    assert_eq!(snap["pending_launches"].as_array().unwrap().len(), 1);
}

#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subprocess_invoker_runs_the_cli_and_reads_its_output() {
    use flatmachines::invoker::SubprocessInvoker;
    let dir = scratch();
    dir.write("echo.yml", ECHO);
    dir.write(
        "broken.yml",
        r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: broken
  agents:
    a: {type: no_such_adapter}
  states:
    start: {type: initial, agent: a, transitions: [{to: done}]}
    done: {type: final, output: {x: 1}}
"#,
    );
    let m = load(
        &dir,
        "machine.yml",
        r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: spawner
  machines:
    echo: ./echo.yml
    broken: ./broken.yml
    inline:
      spec: flatmachine
      spec_version: "2.6.0"
      data:
        name: inline-child
        context: {n: input.n}
        states:
          start: {type: initial, transitions: [{to: done}]}
          done: {type: final, output: {n: context.n, parent: context.machine.parent_execution_id}}
  states:
    start:
      type: initial
      launch: [echo, broken, inline]
      launch_input: {n: 7}
      transitions: [{to: done}]
    done:
      type: final
      output: {id: context.machine.execution_id}
"#,
    );
    let results = Arc::new(InMemoryResultBackend::new());
    let backend = Arc::new(MemoryBackend::new());
    let rt = Runtime::builder()
        .result_backend(results.clone())
        .checkpoint_backend(backend.clone())
        .invoker(SubprocessInvoker::new().program(env!("CARGO_BIN_EXE_flatmachines")))
        .build();
    let out = rt.run(&m, json!({})).await.unwrap();
    let id = out["id"].as_str().unwrap();
    let snap = latest_snapshot(&backend, id).await;
    let pending = snap["pending_launches"].as_array().unwrap();
    let result_of = |i: usize| {
        let child = pending[i]["execution_id"].as_str().unwrap().to_string();
        let results = results.clone();
        async move {
            results
                .read(&result_uri(&child), true, Some(Duration::from_secs(60)))
                .await
                .unwrap()
                .unwrap()
        }
    };
    assert_eq!(result_of(0).await, json!({"got": {"n": 7}}));
    let broken = result_of(1).await;
    assert_eq!(broken["_error_type"], "KeyError", "{broken}");
    assert_eq!(result_of(2).await, json!({"n": 7, "parent": id}));
    // The temporary config of the inline child is removed.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".flatmachine-"))
        .collect();
    assert!(left.is_empty());
}

// --- compile-time checks -----------------------------------------------------------------------

fn codes(path: &Path) -> Vec<(String, String)> {
    flatmachines::compiler::check_file(path)
        .to_json()
        .into_iter()
        .map(|d| (d.code, d.message))
        .collect()
}

#[test]
fn child_machine_files_are_loaded_and_checked() {
    let dir = scratch();
    dir.write(
        "child.yml",
        r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: child
  states:
    start: {type: initial, transitions: [{to: dnoe}]}
    done: {type: final}
"#,
    );
    let path = dir.write(
        "machine.yml",
        parent(
            r#"
    start:
      type: initial
      machine: kid
      transitions: [{to: done}]"#,
            "",
        )
        .replace(
            "    worker: ./worker.yml\n    other: ./worker.yml\n    echo: ./echo.yml",
            "    kid: ./child.yml",
        ),
    );
    let found = codes(&path);
    assert!(
        found
            .iter()
            .any(|(c, m)| *c == "FM0102" && m.contains("dnoe")),
        "{found:?}"
    );
    let m = Machine::from_file(&path).unwrap_err();
    assert!(m.to_string().contains("child.yml"), "{m}");
}

#[test]
fn machine_reference_cycles_are_reported() {
    let dir = scratch();
    let doc = |name: &str, other: &str| {
        format!(
            r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: {name}
  machines: {{next: ./{other}.yml}}
  states:
    start: {{type: initial, machine: next, transitions: [{{to: done}}]}}
    done: {{type: final}}
"#
        )
    };
    dir.write("b.yml", doc("b", "a"));
    let path = dir.write("a.yml", doc("a", "b"));
    let found = codes(&path);
    assert!(found.iter().any(|(c, _)| *c == "FM0009"), "{found:?}");
    assert!(Machine::from_file(&path).is_err());
}

#[test]
fn foreach_item_variables_are_checked_in_input_and_key() {
    let dir = scratch();
    dir.write("worker.yml", WORKER);
    dir.write("echo.yml", ECHO);
    let path = dir.write(
        "machine.yml",
        parent(
            r#"
    start:
      type: initial
      foreach: context.items
      as: city
      key: "{{ item.code }}"
      machine: echo
      input: {name: "{{ cty.name }}", other: "{{ context.p }}"}
      transitions: [{to: done}]"#,
            "",
        ),
    );
    let found = codes(&path);
    // `item` (the default name) is not defined once `as: city` renames it, nor is `cty`.
    assert!(
        found
            .iter()
            .any(|(c, m)| *c == "FM0309" && m.contains("item")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|(c, m)| *c == "FM0309" && m.contains("cty")),
        "{found:?}"
    );
    // `context` is always empty in per-item templates.
    assert!(found.iter().any(|(c, _)| *c == "FM0306"), "{found:?}");
}

//! Cancellation with `CancelHandle`: an agent call in flight is aborted at once, a run between
//! states stops before the next one, and either way the on-disk checkpoint resumes the run
//! without running a completed state again.

use flatmachines::agent::AgentResult;
use flatmachines::hooks::MachineHooks;
use flatmachines::persistence::local::{LocalFileBackend, LocalFileLock};
use flatmachines::{CancelHandle, Error, Machine, RunOptions, Runtime};
use flatmachines_testkit::{Call, FnAdapter, TempDir};
use serde_json::{Value, json};
use std::sync::Arc;

fn machine(yaml: &str) -> Machine {
    Machine::from_yaml(yaml, std::env::temp_dir()).unwrap_or_else(|e| panic!("{e}"))
}

/// `f`, failing the test instead of hanging it when a broken cancellation never lets `f` end.
/// (A guard, not a timing assertion: the bound is far above any run here.)
async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(std::time::Duration::from_secs(60), f)
        .await
        .expect("still waiting after 60 s")
}

const PIPELINE: &str = r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: pipeline
  agents:
    outline: {type: step}
    draft: {type: slow_step}
  states:
    start:
      type: initial
      agent: outline
      output_to_context: {outline: "{{ output.n }}"}
      transitions: [{to: draft}]
    draft:
      agent: draft
      output_to_context: {draft: "{{ output.n }}"}
      transitions: [{to: done}]
    done:
      type: final
      output: {outline: "{{ context.outline }}", draft: "{{ context.draft }}"}
"#;

/// `type: step`: answers `{n: call number}` at once.
fn step() -> FnAdapter {
    FnAdapter::new("step", |call: Call| async move {
        Ok(AgentResult::with_output(json!({"n": call.number})))
    })
}

/// `type: slow_step`: its first call says it started and never returns (a model that takes
/// its time); later calls answer `{n: call number}` at once.
fn slow_step(started: Arc<tokio::sync::Notify>) -> FnAdapter {
    FnAdapter::new("slow_step", move |call: Call| {
        let started = started.clone();
        async move {
            if call.number == 1 {
                started.notify_one();
                std::future::pending::<()>().await;
            }
            Ok(AgentResult::with_output(json!({"n": call.number})))
        }
    })
}

/// A runtime keeping checkpoints and locks in files under `dir`.
fn on_disk(dir: &TempDir, adapters: [FnAdapter; 2]) -> Runtime {
    let [a, b] = adapters;
    Runtime::builder()
        .adapter(a)
        .adapter(b)
        .checkpoint_backend(Arc::new(
            LocalFileBackend::new(dir.join("checkpoints")).unwrap(),
        ))
        .lock(Arc::new(LocalFileLock::new(dir.join("locks")).unwrap()))
        .build()
}

fn resume(id: &str) -> RunOptions {
    RunOptions {
        resume_from: Some(id.to_string()),
        ..RunOptions::default()
    }
}

#[tokio::test]
async fn cancel_aborts_the_call_in_flight_and_the_checkpoint_resumes_there() {
    let dir = TempDir::new();
    let started = Arc::new(tokio::sync::Notify::new());
    let (outline, draft) = (step(), slow_step(started.clone()));
    let rt = on_disk(&dir, [outline.clone(), draft.clone()]);
    let m = machine(PIPELINE);
    let cancel = CancelHandle::new();
    let options = RunOptions {
        execution_id: Some("cancel-1".into()),
        ..RunOptions::default()
    }
    .with_cancel(cancel.clone());
    let run = rt.run_with(&m, json!({}), options);
    let canceller = async {
        started.notified().await;
        assert_eq!(draft.in_flight(), 1);
        cancel.cancel();
    };
    let (result, ()) = bounded(async { tokio::join!(run, canceller) }).await;
    match result {
        Err(Error::Stopped {
            execution_id,
            state,
            machine,
        }) => {
            assert_eq!(
                (execution_id.as_str(), state.as_str(), machine.as_str()),
                ("cancel-1", "draft", "pipeline")
            );
        }
        other => panic!("{other:?}"),
    }
    // The call was dropped, not left running.
    assert_eq!(draft.in_flight(), 0);
    assert!(cancel.is_cancelled());

    let out = rt
        .run_with(&m, json!({}), resume("cancel-1"))
        .await
        .unwrap();
    // `start` ran once; `draft` ran again from its start (its second call).
    assert_eq!(out, json!({"outline": "1", "draft": "2"}));
    assert_eq!((outline.calls(), draft.calls()), (1, 2));
}

/// Cancels the handle when `state` exits.
struct CancelAfter {
    state: &'static str,
    cancel: CancelHandle,
}

#[flatmachines::async_trait]
impl MachineHooks for CancelAfter {
    async fn on_state_exit(&self, state: &str, _context: &mut Value, _output: Option<&Value>) {
        if state == self.state {
            self.cancel.cancel();
        }
    }
}

#[tokio::test]
async fn cancel_between_states_stops_before_the_next_one() {
    let dir = TempDir::new();
    let started = Arc::new(tokio::sync::Notify::new());
    let (outline, draft) = (step(), slow_step(started));
    let cancel = CancelHandle::new();
    let rt = Runtime::builder()
        .adapter(outline.clone())
        .adapter(draft.clone())
        .hooks(CancelAfter {
            state: "start",
            cancel: cancel.clone(),
        })
        .checkpoint_backend(Arc::new(
            LocalFileBackend::new(dir.join("checkpoints")).unwrap(),
        ))
        .build();
    let m = machine(PIPELINE);
    let err = rt
        .run_with(
            &m,
            json!({}),
            RunOptions {
                execution_id: Some("cancel-2".into()),
                cancel: Some(cancel),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Stopped { state, .. } if state == "draft"),
        "{err}"
    );
    // Stopped before `draft`'s body: its agent was never called.
    assert_eq!((outline.calls(), draft.calls()), (1, 0));

    // The latest checkpoint is `draft`'s `execute`, on disk.
    let latest = rt
        .latest_checkpoint(&m, "cancel-2")
        .await
        .unwrap()
        .expect("a checkpoint");
    assert_eq!(latest.snapshot.current_state, "draft");
    assert_eq!(latest.snapshot.event.as_deref(), Some("execute"));
}

#[tokio::test]
async fn a_run_started_with_a_cancelled_handle_runs_no_state() {
    let (outline, draft) = (step(), slow_step(Arc::default()));
    let rt = Runtime::builder()
        .adapter(outline.clone())
        .adapter(draft)
        .build();
    let cancel = CancelHandle::new();
    cancel.cancel();
    let err = rt
        .run_with(
            &machine(PIPELINE),
            json!({}),
            RunOptions::default().with_cancel(cancel),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Stopped { state, .. } if state == "start"),
        "{err}"
    );
    assert_eq!(outline.calls(), 0);
}

#[tokio::test]
async fn cancel_from_another_thread_wakes_the_run() {
    let started = Arc::new(tokio::sync::Notify::new());
    let draft = slow_step(started.clone());
    let rt = Runtime::builder()
        .adapter(step())
        .adapter(draft.clone())
        .build();
    let cancel = CancelHandle::new();
    let remote = cancel.clone();
    let m = machine(PIPELINE);
    let run = rt.run_with(&m, json!({}), RunOptions::default().with_cancel(cancel));
    let canceller = async {
        started.notified().await;
        // A plain OS thread, as a signal watcher or a UI would be.
        std::thread::spawn(move || remote.cancel()).join().unwrap();
    };
    let (result, ()) = bounded(async { tokio::join!(run, canceller) }).await;
    assert!(matches!(result, Err(Error::Stopped { .. })), "{result:?}");
    assert_eq!(draft.in_flight(), 0);
}

#[tokio::test]
async fn cancelled_future_completes_for_waiters_before_and_after_the_cancel() {
    let cancel = CancelHandle::new();
    assert!(!cancel.is_cancelled());
    let waiter = {
        let cancel = cancel.clone();
        tokio::spawn(async move { cancel.cancelled().await })
    };
    tokio::task::yield_now().await;
    cancel.cancel();
    bounded(waiter).await.unwrap();
    // Already cancelled: completes at once.
    bounded(cancel.cancelled()).await;
    assert!(format!("{cancel:?}").contains("cancelled: true"));
}

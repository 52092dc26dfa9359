//! `wait_for` states with the runtime's signal backend (`signals-and-dispatch.md` §1): a run
//! parks on its channel, and a resume after a signal consumes it.

use flatmachines::persistence::MemoryBackend;
use flatmachines::{Machine, RunOptions, Runtime};
use serde_json::json;
use std::sync::Arc;

const MACHINE: &str = r#"spec: flatmachine
spec_version: "2.6.0"
data:
  name: approval
  context: {ticket: "{{ input.ticket }}"}
  states:
    start:
      type: initial
      transitions: [{to: wait}]
    wait:
      wait_for: "approval/{{ context.ticket }}"
      output_to_context:
        approved: output.approved
        value: output.value
      transitions:
        - condition: "context.approved"
          to: done
        - to: rejected
    done:
      type: final
      output: {status: approved, ticket: context.ticket}
    rejected:
      type: final
      output: {status: rejected, value: context.value}
"#;

fn machine() -> Machine {
    Machine::from_yaml(MACHINE, ".").unwrap()
}

fn runtime(store: &Arc<MemoryBackend>) -> Runtime {
    Runtime::builder().checkpoint_backend(store.clone()).build()
}

#[tokio::test]
async fn a_run_parks_and_a_resume_consumes_the_signal() {
    let store = Arc::new(MemoryBackend::new());
    let rt = runtime(&store);
    let m = machine();
    let opts = RunOptions {
        execution_id: Some("t-1".into()),
        ..RunOptions::default()
    };
    let parked = rt
        .run_with(&m, json!({"ticket": "T1"}), opts)
        .await
        .unwrap();
    assert_eq!(parked, json!({"_waiting": true, "_channel": "approval/T1"}));
    // Still waiting: a resume without a signal parks again.
    let resume = || RunOptions {
        resume_from: Some("t-1".into()),
        ..RunOptions::default()
    };
    let again = rt.run_with(&m, json!({}), resume()).await.unwrap();
    assert_eq!(again, parked);
    // A signal on another channel changes nothing.
    rt.signals()
        .send("approval/T2", json!({"approved": true}))
        .await
        .unwrap();
    assert_eq!(rt.run_with(&m, json!({}), resume()).await.unwrap(), parked);
    rt.signals()
        .send("approval/T1", json!({"approved": true, "by": "ada"}))
        .await
        .unwrap();
    let done = rt.run_with(&m, json!({}), resume()).await.unwrap();
    assert_eq!(done, json!({"status": "approved", "ticket": "T1"}));
    // The signal was consumed once.
    assert!(rt.signals().peek("approval/T1").await.unwrap().is_empty());
    assert_eq!(rt.signals().channels().await.unwrap(), ["approval/T2"]);
}

#[tokio::test]
async fn a_pending_signal_is_consumed_without_parking_and_non_maps_are_values() {
    let store = Arc::new(MemoryBackend::new());
    let rt = runtime(&store);
    rt.signals().send("approval/T3", json!("no")).await.unwrap();
    let out = rt.run(&machine(), json!({"ticket": "T3"})).await.unwrap();
    assert_eq!(out, json!({"status": "rejected", "value": "no"}));
}

#[tokio::test]
async fn the_waiting_checkpoint_names_the_channel() {
    let store = Arc::new(MemoryBackend::new());
    let rt = runtime(&store);
    let opts = RunOptions {
        execution_id: Some("t-4".into()),
        ..RunOptions::default()
    };
    rt.run_with(&machine(), json!({"ticket": "T4"}), opts)
        .await
        .unwrap();
    use flatmachines::persistence::CheckpointBackend;
    let latest = store.load("t-4/latest").await.unwrap().unwrap();
    let key = String::from_utf8(latest).unwrap();
    assert!(key.ends_with("_waiting.json"), "{key}");
    let snapshot: serde_json::Value =
        serde_json::from_slice(&store.load(&key).await.unwrap().unwrap()).unwrap();
    assert_eq!(snapshot["waiting_channel"], "approval/T4");
    assert_eq!(snapshot["event"], "waiting");
    assert_eq!(snapshot["current_state"], "wait");
}

const TIMED: &str = r#"spec: flatmachine
spec_version: "2.6.0"
data:
  name: timed
  states:
    start:
      type: initial
      wait_for: {channel: "reply", timeout: 0.2}
      on_error: timed_out
      output_to_context: {reply: output.value}
      transitions: [{to: done}]
    done:
      type: final
      output: {reply: context.reply}
    timed_out:
      type: final
      output: {error: context.last_error_type, message: context.last_error}
"#;

/// Resumes executions of one machine in this process.
struct InProcess {
    rt: Runtime,
    machine: Machine,
}

#[flatmachines::async_trait]
impl flatmachines::signals::Resumer for InProcess {
    async fn resume(&self, id: &str) -> Result<serde_json::Value, flatmachines::Error> {
        let opts = RunOptions {
            resume_from: Some(id.to_string()),
            ..RunOptions::default()
        };
        self.rt.run_with(&self.machine, json!({}), opts).await
    }
}

#[tokio::test]
async fn a_wait_with_a_timeout_fails_with_timeout_error_once_it_has_passed() {
    let store = Arc::new(MemoryBackend::new());
    let rt = runtime(&store);
    let m = Machine::from_yaml(TIMED, ".").unwrap();
    let opts = RunOptions {
        execution_id: Some("w-1".into()),
        ..RunOptions::default()
    };
    let parked = rt.run_with(&m, json!({}), opts).await.unwrap();
    assert_eq!(parked, json!({"_waiting": true, "_channel": "reply"}));
    let dispatcher = flatmachines::signals::Dispatcher::new(rt.signals().clone(), store.clone())
        .with_resumer(Arc::new(InProcess {
            rt: rt.clone(),
            machine: m.clone(),
        }));
    // Before the deadline the dispatcher leaves it alone.
    assert!(dispatcher.dispatch_all().await.unwrap().is_empty());
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    let resumed = dispatcher.dispatch_all().await.unwrap();
    assert_eq!(resumed.get("reply"), Some(&vec!["w-1".to_string()]));
    let resume = RunOptions {
        resume_from: Some("w-1".into()),
        ..RunOptions::default()
    };
    let out = rt.run_with(&m, json!({}), resume).await.unwrap();
    assert_eq!(
        out,
        json!({"error": "TimeoutError", "message": "no signal on 'reply' within 0.2s"})
    );
}

#[tokio::test]
async fn a_signal_before_the_deadline_wins_and_clears_it() {
    let store = Arc::new(MemoryBackend::new());
    let rt = runtime(&store);
    let m = Machine::from_yaml(TIMED, ".").unwrap();
    let opts = RunOptions {
        execution_id: Some("w-2".into()),
        ..RunOptions::default()
    };
    rt.run_with(&m, json!({}), opts).await.unwrap();
    rt.signals().send("reply", json!("yes")).await.unwrap();
    let resume = RunOptions {
        resume_from: Some("w-2".into()),
        ..RunOptions::default()
    };
    let out = rt.run_with(&m, json!({}), resume).await.unwrap();
    assert_eq!(out, json!({"reply": "yes"}));
}

#[tokio::test]
async fn one_signal_wakes_every_waiter_of_its_channel() {
    let store = Arc::new(MemoryBackend::new());
    let rt = runtime(&store);
    let m = machine();
    for id in ["b-1", "b-2"] {
        let opts = RunOptions {
            execution_id: Some(id.into()),
            ..RunOptions::default()
        };
        rt.run_with(&m, json!({"ticket": "ALL"}), opts)
            .await
            .unwrap();
    }
    rt.signals()
        .send("approval/ALL", json!({"approved": true}))
        .await
        .unwrap();
    let dispatcher = flatmachines::signals::Dispatcher::new(rt.signals().clone(), store.clone())
        .with_resumer(Arc::new(InProcess {
            rt: rt.clone(),
            machine: m.clone(),
        }));
    let resumed = dispatcher.dispatch_all().await.unwrap();
    assert_eq!(
        resumed.get("approval/ALL"),
        Some(&vec!["b-1".to_string(), "b-2".to_string()])
    );
    // Both consumed a copy: nothing is left.
    assert!(rt.signals().channels().await.unwrap().is_empty());
}

/// A memory store that refuses `state_exit` snapshots: the run then stops right after its
/// `wait_for` state took a signal, as a crash there would leave it.
struct RefuseStateExit(Arc<MemoryBackend>);

#[flatmachines::async_trait]
impl flatmachines::persistence::CheckpointBackend for RefuseStateExit {
    async fn save(
        &self,
        key: &str,
        value: &[u8],
    ) -> Result<(), flatmachines::persistence::PersistenceError> {
        if key.ends_with("_state_exit.json") {
            return Err(flatmachines::persistence::PersistenceError::InvalidKey(
                format!("{key} (refused by the test)"),
            ));
        }
        self.0.save(key, value).await
    }
    async fn load(
        &self,
        key: &str,
    ) -> Result<Option<Vec<u8>>, flatmachines::persistence::PersistenceError> {
        self.0.load(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), flatmachines::persistence::PersistenceError> {
        self.0.delete(key).await
    }
    async fn list_execution_ids(
        &self,
        filter: &flatmachines::persistence::ListFilter,
    ) -> Result<Vec<String>, flatmachines::persistence::PersistenceError> {
        self.0.list_execution_ids(filter).await
    }
    async fn delete_execution(
        &self,
        id: &str,
    ) -> Result<(), flatmachines::persistence::PersistenceError> {
        self.0.delete_execution(id).await
    }
}

#[tokio::test]
async fn a_run_that_stops_right_after_taking_a_signal_gets_it_back_on_resume() {
    use flatmachines::signals::{MemorySignalBackend, SignalBackend};
    let store = Arc::new(MemoryBackend::new());
    let signals: Arc<MemorySignalBackend> = Arc::new(MemorySignalBackend::new());
    let rt = |backend: Arc<dyn flatmachines::persistence::CheckpointBackend>| {
        Runtime::builder()
            .checkpoint_backend(backend)
            .signal_backend(signals.clone())
            .build()
    };
    let m = machine();
    let opts = |resume: bool| RunOptions {
        execution_id: Some("c-1".into()),
        resume_from: resume.then(|| "c-1".to_string()),
        ..RunOptions::default()
    };
    rt(store.clone())
        .run_with(&m, json!({"ticket": "C1"}), opts(false))
        .await
        .unwrap();
    signals
        .send("approval/C1", json!({"approved": true}))
        .await
        .unwrap();
    rt(Arc::new(RefuseStateExit(store.clone())))
        .run_with(&m, json!({}), opts(true))
        .await
        .expect_err("the state_exit snapshot is refused");
    // The signal is taken: no other consumer can have it...
    assert!(signals.peek("approval/C1").await.unwrap().is_empty());
    assert_eq!(signals.consume("approval/C1").await.unwrap(), None);
    // ...and the run that took it gets it back.
    let out = rt(store.clone())
        .run_with(&m, json!({}), opts(true))
        .await
        .unwrap();
    assert_eq!(out, json!({"status": "approved", "ticket": "C1"}));
}

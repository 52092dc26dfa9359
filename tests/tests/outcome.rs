//! The typed API of a machine that can park: `execute_typed` returns an `Outcome` (decided at
//! compile time from its `wait_for` state), and `resume_typed` continues it after a signal.

use flatmachines::persistence::MemoryBackend;
use flatmachines::{Outcome, Runtime};
use serde_json::json;
use std::sync::Arc;

flatmachines::include_machine!("../fixtures/compiled/approval.yml");

#[tokio::test]
async fn a_parked_run_is_waiting_and_resumes_to_a_typed_output() {
    // Checkpoints a later call can resume from (a run's own memory store ends with the run).
    let rt = Runtime::builder()
        .checkpoint_backend(Arc::new(MemoryBackend::new()))
        .build();
    let input = typed_approval::Input {
        ticket: Some("T-7".into()),
        ..Default::default()
    };
    let outcome = typed_approval::execute_typed(&rt, input).await.unwrap();
    let Outcome::Waiting {
        execution_id,
        channel,
    } = outcome
    else {
        panic!("the run should wait: {outcome:?}");
    };
    assert_eq!(channel, "approval/T-7");
    // Still no signal: still waiting, on the same execution.
    let again = typed_approval::resume_typed(&rt, &execution_id)
        .await
        .unwrap();
    assert_eq!(
        again,
        Outcome::Waiting {
            execution_id: execution_id.clone(),
            channel: channel.clone()
        }
    );
    rt.signals()
        .send(&channel, json!({"approved": true}))
        .await
        .unwrap();
    let done = typed_approval::resume_typed(&rt, &execution_id)
        .await
        .unwrap()
        .finished()
        .expect("finished");
    assert_eq!(done.status, "approved");
    assert_eq!(done.ticket, "T-7");
}

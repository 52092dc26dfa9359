//! Contexts nested deeper than `serde_json`'s default limit (128) are checkpointed and resume,
//! through a real SQLite file and the local-file backend: a run parks on a channel with a deep
//! context and a new runtime (as a new process would) resumes it from the store alone. Snapshots
//! the Python SDK writes (up to its own ~1,000-level limit) resume too, and a context deeper
//! than `MAX_SNAPSHOT_DEPTH` fails the run with a typed error instead of leaving a checkpoint
//! that could never be read.

#![cfg(all(feature = "loader", feature = "sqlite"))]

use flatmachines::persistence::{
    CheckpointBackend, LocalFileBackend, MAX_SNAPSHOT_DEPTH, PersistenceError, SqliteBackend,
};
use flatmachines::signals::{MemorySignalBackend, SignalBackend};
use flatmachines::{Error, Machine, RunOptions, Runtime};
use flatmachines_testkit::TempDir;
use serde_json::{Value, json};
use std::sync::Arc;

const MACHINE: &str = r#"spec: flatmachine
spec_version: "2.6.0"
data:
  name: deep
  context:
    deep: input.deep
  persistence: {enabled: true, backend: memory}
  states:
    start:
      type: initial
      transitions: [{to: wait}]
    wait:
      wait_for: "go/deep"
      output_to_context: {reply: output.reply}
      transitions: [{to: done}]
    done:
      type: final
      output: {deep: context.deep, reply: context.reply}
"#;

/// `{"a": [{"a": [ ... "leaf" ... ]}]}`: `levels` nested arrays and objects.
fn nested(levels: usize) -> Value {
    let mut v = json!("leaf");
    for i in 0..levels {
        v = if i % 2 == 0 {
            json!([v])
        } else {
            json!({"a": v})
        };
    }
    v
}

fn machine() -> Machine {
    Machine::from_yaml(MACHINE, std::env::current_dir().unwrap()).unwrap()
}

fn runtime(backend: Arc<dyn CheckpointBackend>, signals: Arc<dyn SignalBackend>) -> Runtime {
    Runtime::builder()
        .checkpoint_backend(backend)
        .signal_backend(signals)
        .build()
}

/// Parks a run whose context holds `levels` nested levels, then resumes it in another runtime
/// opened on the same store.
async fn park_and_resume(open: impl Fn() -> Arc<dyn CheckpointBackend>, levels: usize) {
    let deep = nested(levels);
    let signals: Arc<dyn SignalBackend> = Arc::new(MemorySignalBackend::new());
    let first = runtime(open(), signals.clone());
    let options = RunOptions {
        execution_id: Some(format!("deep-{levels}")),
        ..Default::default()
    };
    let parked = first
        .run_with(&machine(), json!({"deep": deep}), options)
        .await
        .unwrap();
    assert_eq!(parked["_waiting"], json!(true), "{parked}");
    drop(first);

    signals
        .send("go/deep", json!({"reply": "ok"}))
        .await
        .unwrap();
    let second = runtime(open(), signals);
    let options = RunOptions {
        resume_from: Some(format!("deep-{levels}")),
        ..Default::default()
    };
    let out = second
        .run_with(&machine(), Value::Null, options)
        .await
        .unwrap();
    assert_eq!(out["reply"], json!("ok"));
    assert!(out["deep"] == deep, "the deep context came back changed");
}

#[tokio::test]
async fn deep_contexts_resume_from_sqlite() {
    let dir = TempDir::new();
    let db = dir.join("deep.sqlite");
    for levels in [200, 900] {
        park_and_resume(|| Arc::new(SqliteBackend::open(&db).unwrap()), levels).await;
    }
}

#[tokio::test]
async fn deep_contexts_resume_from_local_files() {
    let dir = TempDir::new();
    let base = dir.join("checkpoints");
    for levels in [200, 900] {
        park_and_resume(|| Arc::new(LocalFileBackend::new(&base).unwrap()), levels).await;
    }
}

/// A `waiting` snapshot as the Python SDK writes it (`json.dumps(asdict(snapshot))`), with a
/// context of `levels` levels.
fn python_snapshot(id: &str, levels: usize) -> Vec<u8> {
    let mut context = String::from("\"leaf\"");
    for i in 0..levels {
        context = if i % 2 == 0 {
            format!("[{context}]")
        } else {
            format!("{{\"a\": {context}}}")
        };
    }
    format!(
        concat!(
            r#"{{"execution_id": "{id}", "machine_name": "deep", "spec_version": "2.6.0", "#,
            r#""current_state": "wait", "context": {{"deep": {context}, "machine": {{}}}}, "#,
            r#""step": 2, "created_at": "2026-01-05T09:30:12.123456+00:00", "#,
            r#""event": "waiting", "output": null, "total_api_calls": 0, "total_cost": 0.0, "#,
            r#""parent_execution_id": null, "pending_launches": null, "#,
            r#""waiting_channel": "go/deep", "tool_loop_state": null, "config_hash": null}}"#
        ),
        id = id,
        context = context
    )
    .into_bytes()
}

#[tokio::test]
async fn deep_python_snapshots_resume() {
    let dir = TempDir::new();
    let sqlite: Arc<dyn CheckpointBackend> =
        Arc::new(SqliteBackend::open(dir.join("py.sqlite")).unwrap());
    let local: Arc<dyn CheckpointBackend> =
        Arc::new(LocalFileBackend::new(dir.join("py-files")).unwrap());
    for backend in [sqlite, local] {
        // 998 levels in the context: the deepest document Python's default recursion limit
        // lets `json.dumps` write (the snapshot object and `context` add two).
        for levels in [200, 900, MAX_SNAPSHOT_DEPTH - 2] {
            let id = format!("py-{levels}");
            let key = format!("{id}/step_000002_waiting.json");
            backend
                .save_checkpoint(&id, &key, &python_snapshot(&id, levels))
                .await
                .unwrap();
            let signals: Arc<dyn SignalBackend> = Arc::new(MemorySignalBackend::new());
            signals
                .send("go/deep", json!({"reply": "py"}))
                .await
                .unwrap();
            let rt = runtime(backend.clone(), signals);
            let options = RunOptions {
                resume_from: Some(id),
                ..Default::default()
            };
            let out = rt.run_with(&machine(), Value::Null, options).await.unwrap();
            assert!(out["deep"] == nested(levels), "{levels} levels changed");
            assert_eq!(out["reply"], json!("py"));
        }
    }
}

#[tokio::test]
async fn a_snapshot_deeper_than_the_limit_is_named_not_mistaken() {
    let dir = TempDir::new();
    // Local files: SQLite itself refuses to index a waiting snapshot this deep (its JSON
    // functions stop at 1,000 levels too).
    let backend: Arc<dyn CheckpointBackend> =
        Arc::new(LocalFileBackend::new(dir.join("too-deep")).unwrap());
    let id = "too-deep";
    backend
        .save_checkpoint(
            id,
            "too-deep/step_000002_waiting.json",
            &python_snapshot(id, MAX_SNAPSHOT_DEPTH),
        )
        .await
        .unwrap();
    let rt = runtime(backend, Arc::new(MemorySignalBackend::new()));
    let options = RunOptions {
        resume_from: Some(id.into()),
        ..Default::default()
    };
    let err = rt
        .run_with(&machine(), Value::Null, options)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("deeper than {MAX_SNAPSHOT_DEPTH} levels")),
        "{text}"
    );
}

#[tokio::test]
async fn a_context_too_deep_to_read_back_is_not_written() {
    let dir = TempDir::new();
    let db = dir.join("refused.sqlite");
    let backend = Arc::new(SqliteBackend::open(&db).unwrap());
    let rt = runtime(backend.clone(), Arc::new(MemorySignalBackend::new()));
    // The context nests one level more than a snapshot may hold (the snapshot object and the
    // `deep` key add two).
    let options = RunOptions {
        execution_id: Some("refused".into()),
        ..Default::default()
    };
    let err = rt
        .run_with(
            &machine(),
            json!({"deep": nested(MAX_SNAPSHOT_DEPTH - 1)}),
            options,
        )
        .await
        .unwrap_err();
    match &err {
        Error::Persistence {
            machine,
            source:
                PersistenceError::TooDeep {
                    state,
                    field,
                    limit,
                },
            ..
        } => {
            assert_eq!(machine, "deep");
            assert_eq!(state, "start");
            assert_eq!(*field, "context");
            assert_eq!(*limit, MAX_SNAPSHOT_DEPTH);
        }
        other => panic!("{other}"),
    }
    let text = err.to_string();
    assert!(text.contains("machine `deep`") && text.contains("state `start`"));
    // Nothing unreadable was left behind.
    assert_eq!(backend.load("refused/latest").await.unwrap(), None);

    // One level less is written and resumes.
    park_and_resume(
        || Arc::new(SqliteBackend::open(&db).unwrap()),
        MAX_SNAPSHOT_DEPTH - 2,
    )
    .await;
}

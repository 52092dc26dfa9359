//! Checkpoints, resume and the snapshot wire format, checked against snapshots the Python
//! reference wrote (`tests/fixtures/persistence`, made by its `generate.py`).

use flatmachines::agent::AgentResult;
use flatmachines::async_trait;
use flatmachines::persistence::{
    BatchEntry, CheckpointBackend, ConfigStore, ExecutionLock, ListFilter, MachineSnapshot,
    MemoryBackend, MemoryConfigStore, PersistenceError, config_hash,
};
use flatmachines::unstable::snapshot::{latest_key, snapshot_key};
use flatmachines::{Error, Machine, RunOptions, Runtime};
use flatmachines_testkit::{Call, FnAdapter, TempDir};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/persistence")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn machine_file(name: &str) -> Machine {
    Machine::from_file(fixtures().join("machines").join(name)).unwrap_or_else(|e| panic!("{e}"))
}

fn machine(yaml: &str) -> Machine {
    Machine::from_yaml(yaml, std::env::temp_dir()).unwrap_or_else(|e| panic!("{e}"))
}

// --- the fixture adapters (generate.py defines the same ones) ---------------------------------

/// `priced`: `{draft: "<doc> v<round>", score: 0.5 + round * 0.25}`, one API call, cost 0.0125.
fn priced() -> FnAdapter {
    FnAdapter::new("priced", |call: Call| async move {
        let input = call.input;
        let r: i64 = input["round"].as_str().unwrap().parse().unwrap();
        Ok(AgentResult::with_output(json!({
            "draft": format!("{} v{r}", input["doc"].as_str().unwrap()),
            "score": 0.5 + r as f64 * 0.25,
        })))
    })
    .priced(0.0125)
}

/// [`priced`] whose `n`-th call (1-based) fails instead, like a process dying mid-call.
fn priced_failing_at(n: usize) -> FnAdapter {
    priced().fail_at(n, "ConnectionError", "simulated crash")
}

/// Resumes execution `id` of `m` on `rt` (the input is not needed).
async fn resume(
    rt: &Runtime,
    m: &Machine,
    id: impl Into<String>,
) -> Result<Value, flatmachines::Error> {
    rt.run_with(
        m,
        Value::Null,
        RunOptions {
            resume_from: Some(id.into()),
            ..RunOptions::default()
        },
    )
    .await
}

fn runtime_with(backend: &MemoryBackend, adapter: FnAdapter) -> Runtime {
    Runtime::builder()
        .adapter(adapter)
        .checkpoint_backend(Arc::new(backend.clone()))
        .build()
}

// --- helpers over stored snapshots ------------------------------------------------------------

/// Every key of `id` in `backend`, as `(key without the id, bytes)`, sorted.
async fn stored(backend: &MemoryBackend, id: &str, names: &[String]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for name in names {
        if let Some(bytes) = backend.load(&format!("{id}/{name}")).await.unwrap() {
            out.push((name.clone(), bytes));
        }
    }
    out.sort();
    out
}

/// File names in a fixture folder, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every possible snapshot name of a run of `steps` steps.
fn candidate_names(steps: u64) -> Vec<String> {
    let mut names = vec!["latest".to_string()];
    for step in 0..=steps {
        for ev in [
            "machine_start",
            "state_enter",
            "execute",
            "state_exit",
            "machine_end",
        ] {
            names.push(
                snapshot_key("x", step, ev)
                    .trim_start_matches("x/")
                    .to_string(),
            );
        }
    }
    names
}

/// The snapshot text with the execution id and the write time blanked, so snapshots of two
/// runs compare byte for byte.
fn normalized(bytes: &[u8], id: &str) -> String {
    let text = String::from_utf8(bytes.to_vec())
        .unwrap()
        .replace(id, "<ID>");
    match text.find("\"created_at\": \"") {
        Some(start) => {
            let value = start + "\"created_at\": \"".len();
            let end = value + text[value..].find('"').unwrap();
            format!("{}<T>{}", &text[..value], &text[end..])
        }
        None => text,
    }
}

async fn load_dir(backend: &MemoryBackend, id: &str, dir: &Path) {
    for name in names_in(dir) {
        let bytes = std::fs::read(dir.join(&name)).unwrap();
        backend.save(&format!("{id}/{name}"), &bytes).await.unwrap();
    }
}

/// Compares every snapshot the reference wrote in `dir` with ours of the same name.
fn assert_same_snapshots(dir: &Path, ref_id: &str, ours: &[(String, Vec<u8>)], our_id: &str) {
    let theirs = names_in(dir);
    let mine: Vec<&String> = ours.iter().map(|(n, _)| n).collect();
    assert_eq!(
        mine,
        theirs.iter().collect::<Vec<_>>(),
        "same snapshot keys"
    );
    for (name, bytes) in ours {
        let reference = std::fs::read(dir.join(name)).unwrap();
        assert_eq!(
            normalized(bytes, our_id),
            normalized(&reference, ref_id),
            "{name} differs from the reference's"
        );
    }
}

// --- the wire format against the reference ---------------------------------------------------

#[test]
fn every_reference_snapshot_decodes_and_re_encodes_byte_identically() {
    let mut seen = 0;
    let mut stack = vec![fixtures().join("reference")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("step_")
            {
                let bytes = std::fs::read(&path).unwrap();
                let snapshot = MachineSnapshot::from_json(&bytes)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert_eq!(
                    String::from_utf8(snapshot.to_json()).unwrap(),
                    String::from_utf8(bytes).unwrap(),
                    "{}",
                    path.display()
                );
                assert!(path.ends_with(snapshot.key().split_once('/').unwrap().1));
                seen += 1;
            }
        }
    }
    assert!(seen > 50, "only {seen} reference snapshots found");
}

#[tokio::test]
async fn a_run_writes_the_same_snapshots_as_the_reference() {
    let reference = fixtures().join("reference/memory");
    let run = read_json(&reference.join("run.json"));
    let backend = MemoryBackend::new();
    let rt = runtime_with(&backend, priced());
    let out = rt
        .run_with(
            &machine_file("review.yml"),
            run["input"].clone(),
            RunOptions {
                execution_id: Some("ours".into()),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(out, run["output"]);
    let ours = stored(&backend, "ours", &candidate_names(12)).await;
    assert_same_snapshots(
        &reference.join("snapshots"),
        run["execution_id"].as_str().unwrap(),
        &ours,
        "ours",
    );
}

#[tokio::test]
async fn a_reference_crash_resumes_here_like_in_the_reference() {
    let dir = fixtures().join("reference/crash");
    let run = read_json(&dir.join("run.json"));
    let id = run["execution_id"].as_str().unwrap();
    let backend = MemoryBackend::new();
    load_dir(&backend, id, &dir.join("at_crash")).await;
    let rt = runtime_with(&backend, priced());
    let out = resume(&rt, &machine_file("review.yml"), id).await.unwrap();
    assert_eq!(out, run["resumed_output"]);
    // Every snapshot written after the resume is the one the reference wrote.
    let ours = stored(&backend, id, &candidate_names(12)).await;
    assert_same_snapshots(&dir.join("after_resume"), id, &ours, id);
}

#[tokio::test]
async fn resuming_a_finished_reference_run_returns_its_output() {
    let dir = fixtures().join("reference/memory");
    let run = read_json(&dir.join("run.json"));
    let id = run["execution_id"].as_str().unwrap();
    let backend = MemoryBackend::new();
    load_dir(&backend, id, &dir.join("snapshots")).await;
    let adapter = priced();
    let rt = runtime_with(&backend, adapter.clone());
    let out = resume(&rt, &machine_file("review.yml"), id).await.unwrap();
    assert_eq!(out, run["output"]);
    assert_eq!(adapter.calls(), 0, "nothing ran");
}

// --- snapshots written here, resumed in the reference -----------------------------------------

/// Run of `review.yml` that crashes in the second `write` (an agent error that nothing
/// recovers), leaving its snapshots in `backend`.
async fn crashed_run(
    backend: &MemoryBackend,
    id: &str,
    store: Option<&MemoryConfigStore>,
) -> Error {
    let mut rt = Runtime::builder()
        .adapter(priced_failing_at(2))
        .checkpoint_backend(Arc::new(backend.clone()));
    if let Some(store) = store {
        rt = rt.config_store(Arc::new(store.clone()));
    }
    rt.build()
        .run_with(
            &machine_file("review.yml"),
            json!({"doc": "Café ✓ 😀"}),
            RunOptions {
                execution_id: Some(id.into()),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap_err()
}

/// `rust/written/` holds the snapshots of [`crashed_run`]; `generate.py rust` resumed them in the
/// reference and recorded the outcome. Set `FLATMACHINES_WRITE_FIXTURES=1` to rewrite them
/// (then run the generator again). Without it, this checks that what we write today is still
/// what the reference resumed.
#[tokio::test]
async fn snapshots_written_here_resume_in_the_reference() {
    let dir = fixtures().join("rust");
    let written = dir.join("written");
    let backend = MemoryBackend::new();
    let id = "0b7c3f1e-5a2d-4c8e-9f10-2d3b4a5c6d7e";
    let store = MemoryConfigStore::new();
    let err = crashed_run(&backend, id, Some(&store)).await;
    assert!(
        err.to_string().contains("simulated crash"),
        "unexpected error: {err}"
    );
    let ours = stored(&backend, id, &candidate_names(12)).await;
    let uninterrupted = read_json(&fixtures().join("reference/memory/run.json"))["output"].clone();
    if std::env::var_os("FLATMACHINES_WRITE_FIXTURES").is_some() {
        let snapshots = written.join("snapshots");
        let _ = std::fs::remove_dir_all(&snapshots);
        std::fs::create_dir_all(&snapshots).unwrap();
        for (name, bytes) in &ours {
            std::fs::write(snapshots.join(name), bytes).unwrap();
        }
        // The config our config store got: the reference resumes with it (`generate.py rust`).
        let hash = MachineSnapshot::from_json(&ours[1].1)
            .unwrap()
            .config_hash
            .unwrap();
        let raw = store.get(&hash).await.unwrap().unwrap();
        std::fs::write(written.join("config.json"), raw).unwrap();
        let info =
            json!({"execution_id": id, "error": err.to_string(), "expected_output": uninterrupted});
        std::fs::write(
            written.join("run.json"),
            serde_json::to_string_pretty(&info).unwrap() + "\n",
        )
        .unwrap();
        return;
    }
    assert_same_snapshots(&written.join("snapshots"), id, &ours, id);
    let hash = MachineSnapshot::from_json(&ours[1].1)
        .unwrap()
        .config_hash
        .unwrap();
    assert_eq!(
        store.get(&hash).await.unwrap().unwrap(),
        std::fs::read_to_string(written.join("config.json")).unwrap(),
        "the stored config is the one the reference resumed with"
    );
    let latest = String::from_utf8(ours.iter().find(|(n, _)| n == "latest").unwrap().1.clone());
    assert_eq!(latest.unwrap(), format!("{id}/step_000004_execute.json"));
    let verdict = read_json(&dir.join("resumed_in_reference.json"));
    assert_eq!(verdict["execution_id"], id);
    assert_eq!(verdict["resumed"], true, "{verdict}");
    assert_eq!(verdict["output"], uninterrupted);
    assert_eq!(verdict["matches_uninterrupted"], true);
    assert_eq!(verdict["final_event"], "machine_end");
    assert_eq!(verdict["config_from"], "rust/written/config.json");
    // It continued from our step 4 instead of starting afresh.
    let written: Vec<&str> = verdict["keys_written_by_reference"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(written.first(), Some(&"latest"));
    assert_eq!(written.get(1), Some(&"step_000005_execute.json"));
    assert!(written.contains(&"step_000009_machine_end.json"));
    assert!(
        !written
            .iter()
            .any(|k| k.starts_with("step_00000") && k < &"step_000005")
    );
}

// --- behaviour of checkpoints here ------------------------------------------------------------

const THREE_STATES: &str = r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: three
  context: {n: "0"}
  agents:
    counter: {type: echo}
  states:
    begin:
      type: initial
      agent: counter
      input: {n: "{{ context.n | int + 1 }}"}
      output_to_context: {n: output.n}
      transitions: [{to: finish}]
    finish:
      type: final
      output: {n: context.n}
"#;

fn with_persistence(block: &str) -> Machine {
    machine(&THREE_STATES.replace(
        "  context: {n: \"0\"}\n",
        &format!("  context: {{n: \"0\"}}\n  persistence: {block}\n"),
    ))
}

async fn run_keys(m: &Machine, backend: &MemoryBackend) -> Vec<String> {
    let rt = Runtime::builder()
        .checkpoint_backend(Arc::new(backend.clone()))
        .build();
    let out = rt
        .run_with(
            m,
            json!({}),
            RunOptions {
                execution_id: Some("e".into()),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(out, json!({"n": "1"}));
    stored(backend, "e", &candidate_names(3))
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

#[tokio::test]
async fn checkpoint_on_selects_events() {
    let all = run_keys(
        &with_persistence("{backend: memory}"),
        &MemoryBackend::new(),
    )
    .await;
    assert_eq!(
        all,
        [
            "latest",
            "step_000000_machine_start.json",
            "step_000001_execute.json",
            "step_000001_state_enter.json",
            "step_000001_state_exit.json",
            "step_000002_execute.json",
            "step_000002_machine_end.json",
            "step_000002_state_enter.json",
            "step_000002_state_exit.json",
        ]
    );
    let some = run_keys(
        &with_persistence("{checkpoint_on: [state_exit, machine_end]}"),
        &MemoryBackend::new(),
    )
    .await;
    assert_eq!(
        some,
        [
            "latest",
            "step_000001_state_exit.json",
            "step_000002_machine_end.json",
            "step_000002_state_exit.json",
        ]
    );
    let none = MemoryBackend::new();
    assert!(
        run_keys(&with_persistence("{checkpoint_on: []}"), &none)
            .await
            .is_empty()
    );
    assert!(
        none.list_execution_ids(&ListFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn enabled_false_writes_nothing_even_into_a_runtime_backend() {
    let backend = MemoryBackend::new();
    let keys = run_keys(&with_persistence("{enabled: false}"), &backend).await;
    assert!(keys.is_empty(), "{keys:?}");
    assert!(
        backend
            .list_execution_ids(&ListFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn machine_start_records_the_real_initial_state_and_resumes_into_it() {
    let backend = MemoryBackend::new();
    let m = with_persistence("{checkpoint_on: [machine_start]}");
    run_keys(&m, &backend).await;
    let bytes = backend
        .load("e/step_000000_machine_start.json")
        .await
        .unwrap()
        .unwrap();
    let snap = MachineSnapshot::from_json(&bytes).unwrap();
    assert_eq!(snap.current_state, "begin");
    assert_eq!(snap.step, 0);
    assert_eq!(snap.context["machine"]["current_state"], "begin");
    // A reference snapshot stores "start"; both resume into the real initial state.
    for stored_state in ["begin", "start"] {
        let mut s = snap.clone();
        s.current_state = stored_state.into();
        let b = MemoryBackend::new();
        b.save_checkpoint("e", &s.key(), &s.to_json())
            .await
            .unwrap();
        let rt = Runtime::builder()
            .checkpoint_backend(Arc::new(b.clone()))
            .build();
        let out = resume(&rt, &m, "e").await.unwrap();
        assert_eq!(out, json!({"n": "1"}), "resumed from `{stored_state}`");
    }
}

#[tokio::test]
async fn resume_restores_counters_and_rebuilds_context_machine() {
    let backend = MemoryBackend::new();
    let m = with_persistence("{backend: memory}");
    let snap = MachineSnapshot {
        execution_id: "r".into(),
        machine_name: "three".into(),
        spec_version: "2.6.0".into(),
        current_state: "finish".into(),
        context: json!({"n": "41", "machine": {"execution_id": "stale", "step": 99}, "last_error": "x"}),
        step: 7,
        created_at: "2026-01-05T09:30:12.123456+00:00".into(),
        event: Some("state_exit".into()),
        output: None,
        total_api_calls: Some(5),
        total_cost: Some(0.5),
        parent_execution_id: None,
        pending_launches: None,
        waiting_channel: None,
        tool_loop_state: None,
        config_hash: None,
    };
    backend
        .save_checkpoint("r", &snap.key(), &snap.to_json())
        .await
        .unwrap();
    // Unknown keys of another SDK's snapshot are ignored.
    let mut v: Value = serde_json::from_slice(&snap.to_json()).unwrap();
    v["written_by"] = json!("another-sdk");
    backend
        .save(&snap.key(), &serde_json::to_vec(&v).unwrap())
        .await
        .unwrap();
    let rt = Runtime::builder()
        .checkpoint_backend(Arc::new(backend.clone()))
        .build();
    let out = rt
        .run_with(
            &m,
            json!({"ignored": true}),
            RunOptions {
                resume_from: Some("r".into()),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(out, json!({"n": "41"}));
    let end = MachineSnapshot::from_json(
        &backend
            .load("r/step_000008_machine_end.json")
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(end.step, 8);
    assert_eq!(end.total_api_calls, Some(5));
    assert_eq!(end.total_cost, Some(0.5));
    assert_eq!(end.output, Some(json!({"n": "41"})));
    assert_eq!(
        end.context,
        json!({"n": "41", "machine": {
            "execution_id": "r", "machine_name": "three", "parent_execution_id": null,
            "spec_version": "2.6.0", "step": 8, "current_state": "finish",
            "total_api_calls": 5, "total_cost": 0.5}, "last_error": "x"})
    );
}

#[tokio::test]
async fn resume_errors_are_typed() {
    let m = with_persistence("{backend: memory}");
    let backend = MemoryBackend::new();
    let rt = Runtime::builder()
        .checkpoint_backend(Arc::new(backend.clone()))
        .build();
    let resume = |id: &str| RunOptions {
        resume_from: Some(id.into()),
        ..RunOptions::default()
    };
    let err = rt
        .run_with(&m, Value::Null, resume("nope"))
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::NotFound { execution_id, .. } if execution_id == "nope"));
    assert_eq!(
        err.to_string(),
        "machine `three`: no checkpoint found for execution nope"
    );

    // A torn latest snapshot: an error naming it, never a fresh start.
    backend
        .save(
            "torn/step_000003_execute.json",
            b"{\"execution_id\": \"torn\", \"mach",
        )
        .await
        .unwrap();
    backend
        .save("torn/latest", b"torn/step_000003_execute.json")
        .await
        .unwrap();
    let err = rt
        .run_with(&m, Value::Null, resume("torn"))
        .await
        .unwrap_err();
    match &err {
        Error::Persistence {
            source: PersistenceError::Corrupt { location, .. },
            ..
        } => assert_eq!(location, "torn/step_000003_execute.json"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("torn/step_000003_execute.json: corrupt checkpoint data"),
        "{err}"
    );
    assert!(
        backend
            .load("torn/step_000001_state_enter.json")
            .await
            .unwrap()
            .is_none(),
        "nothing ran"
    );

    // A pointer to a missing snapshot, and a snapshot missing a required key.
    backend
        .save("gone/latest", b"gone/step_000001_execute.json")
        .await
        .unwrap();
    let err = rt
        .run_with(&m, Value::Null, resume("gone"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("gone/step_000001_execute.json"),
        "{err}"
    );
    backend
        .save_checkpoint(
            "half",
            "half/step_000001_execute.json",
            br#"{"execution_id": "half", "machine_name": "three", "spec_version": "2.6.0", "context": {}, "step": 1}"#,
        )
        .await
        .unwrap();
    let err = rt
        .run_with(&m, Value::Null, resume("half"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("missing required key `current_state`"),
        "{err}"
    );

    // A state the machine does not have.
    let mut snap = MachineSnapshot::from_json(
        br#"{"execution_id": "x", "machine_name": "three", "spec_version": "2.6.0", "current_state": "renamed", "context": {}, "step": 1, "event": "execute"}"#,
    )
    .unwrap();
    snap.execution_id = "moved".into();
    backend
        .save_checkpoint("moved", &snap.key(), &snap.to_json())
        .await
        .unwrap();
    let err = rt
        .run_with(&m, Value::Null, resume("moved"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Resume { .. }), "{err:?}");
    assert!(err.to_string().contains("`renamed`"), "{err}");
}

#[tokio::test]
async fn a_memory_machine_resumes_within_the_process() {
    let backend = MemoryBackend::new();
    let id = "in-process";
    crashed_run(&backend, id, None).await;
    let adapter = priced();
    let rt = runtime_with(&backend, adapter.clone());
    let out = resume(&rt, &machine_file("review.yml"), id).await.unwrap();
    assert_eq!(
        out,
        read_json(&fixtures().join("reference/memory/run.json"))["output"]
    );
    assert_eq!(adapter.calls(), 2, "rounds 1 and 2 ran again");
    // Without a runtime backend every run has its own memory: nothing to resume.
    let fresh = Runtime::builder().adapter(priced()).build();
    let err = resume(&fresh, &machine_file("review.yml"), id)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}

// --- locks --------------------------------------------------------------------------------------

/// A lock that refuses ids in `held` and records what it was asked.
#[derive(Default)]
struct Recording {
    held: Vec<String>,
    log: Mutex<Vec<String>>,
}

#[async_trait]
impl ExecutionLock for Recording {
    async fn acquire(&self, key: &str) -> Result<bool, PersistenceError> {
        self.log.lock().unwrap().push(format!("acquire {key}"));
        Ok(!self.held.iter().any(|h| h == key))
    }
    async fn release(&self, key: &str) {
        self.log.lock().unwrap().push(format!("release {key}"));
    }
}

#[tokio::test]
async fn the_lock_is_held_for_the_run_and_released_on_error() {
    let lock = Arc::new(Recording {
        held: vec!["busy".into()],
        ..Recording::default()
    });
    let backend = MemoryBackend::new();
    let rt = Runtime::builder()
        .adapter(priced_failing_at(1))
        .checkpoint_backend(Arc::new(backend.clone()))
        .lock(lock.clone())
        .build();
    let m = machine_file("review.yml");
    let opts = |id: &str| RunOptions {
        execution_id: Some(id.into()),
        ..RunOptions::default()
    };
    let err = rt
        .run_with(&m, json!({"doc": "d"}), opts("busy"))
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::Locked { execution_id, .. } if execution_id == "busy"));
    assert_eq!(
        err.to_string(),
        "machine `fixture-review`: execution busy is running elsewhere (its lock is held)"
    );
    assert!(
        backend.load(&latest_key("busy")).await.unwrap().is_none(),
        "a refused run writes nothing"
    );
    let err = rt
        .run_with(&m, json!({"doc": "d"}), opts("fails"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::State { .. }), "{err:?}");
    assert_eq!(
        *lock.log.lock().unwrap(),
        ["acquire busy", "acquire fails", "release fails"]
    );
}

// --- config store ---------------------------------------------------------------------------------

#[tokio::test]
async fn the_config_store_gets_a_self_contained_config_that_loads_back() {
    let dir = TempDir::new();
    std::fs::write(
        dir.path().join("writer.yml"),
        "spec: flatagent\nspec_version: \"2.6.0\"\ndata:\n  name: writer\n  model: {provider: openai, name: m}\n  user: \"Write about {{ input.topic }}\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("machine.yml"),
        r#"spec: flatmachine
spec_version: "2.6.0"
data:
  name: with-files
  context: {n: "0", big: 1.0e+16, small: 1.5e-05}
  agents:
    writer: ./writer.yml
    counter: {type: echo}
  states:
    start:
      type: initial
      agent: counter
      input: {n: "{{ context.n | int + 1 }}"}
      output_to_context: {n: output.n}
      transitions: [{to: done}]
    done:
      type: final
      output: {n: context.n, big: context.big, small: context.small}
"#,
    )
    .unwrap();
    let m = Machine::from_file(dir.path().join("machine.yml")).unwrap();
    let backend = MemoryBackend::new();
    let store = Arc::new(MemoryConfigStore::new());
    let rt = Runtime::builder()
        .checkpoint_backend(Arc::new(backend.clone()))
        .config_store(store.clone())
        .build();
    let opts = RunOptions {
        execution_id: Some("c".into()),
        ..RunOptions::default()
    };
    let out = rt.run_with(&m, json!({}), opts).await.unwrap();
    let hashes: Vec<Option<String>> = {
        let mut v = Vec::new();
        for (_, bytes) in stored(&backend, "c", &candidate_names(3)).await {
            if let Ok(s) = MachineSnapshot::from_json(&bytes) {
                v.push(s.config_hash);
            }
        }
        v
    };
    assert_eq!(hashes.len(), 8);
    let hash = hashes[0]
        .clone()
        .expect("config_hash set from the first checkpoint");
    assert!(hashes.iter().all(|h| h.as_deref() == Some(hash.as_str())));
    let raw = store.get(&hash).await.unwrap().expect("config stored");
    assert_eq!(config_hash(&raw), hash);
    let doc: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        doc["data"]["agents"]["writer"]["data"]["name"], "writer",
        "agent embedded"
    );
    assert_eq!(doc["data"]["agents"]["counter"], json!({"type": "echo"}));
    // The stored text is a machine on its own: it runs anywhere, with the same output.
    let elsewhere = TempDir::new();
    let again = Machine::from_yaml(&raw, elsewhere.path()).unwrap();
    let out2 = Runtime::new().run(&again, json!({})).await.unwrap();
    assert_eq!(out, out2);
    assert_eq!(out2, json!({"n": "1", "big": 1e16, "small": 1.5e-5}));
}

// --- local files ----------------------------------------------------------------------------------

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn a_reference_local_crash_resumes_here() {
    let dir = fixtures().join("reference/local");
    let run = read_json(&dir.join("run.json"));
    let id = run["execution_id"].as_str().unwrap();
    let tmp = TempDir::new();
    copy_tree(&dir.join("checkpoints"), tmp.path());
    let backend = Arc::new(flatmachines::persistence::LocalFileBackend::new(tmp.path()).unwrap());
    let rt = Runtime::builder()
        .adapter(priced())
        .checkpoint_backend(backend.clone())
        .build();
    let out = resume(&rt, &machine_file("review_local.yml"), id)
        .await
        .unwrap();
    assert_eq!(out, run["resumed_output"]);
    let latest = std::fs::read_to_string(tmp.path().join(id).join("latest")).unwrap();
    assert_eq!(latest, format!("{id}/step_000009_machine_end.json"));
}

#[tokio::test]
async fn local_files_have_the_reference_layout() {
    let dir = fixtures().join("reference/local");
    let run = read_json(&dir.join("run.json"));
    let ref_id = run["execution_id"].as_str().unwrap();
    let tmp = TempDir::new();
    let backend = Arc::new(flatmachines::persistence::LocalFileBackend::new(tmp.path()).unwrap());
    let rt = Runtime::builder()
        .adapter(priced_failing_at(2))
        .checkpoint_backend(backend)
        .build();
    let id = "local-run";
    rt.run_with(
        &machine_file("review_local.yml"),
        run["input"].clone(),
        RunOptions {
            execution_id: Some(id.into()),
            ..RunOptions::default()
        },
    )
    .await
    .unwrap_err();
    // The reference crashed at step 4's `state_enter`, ours in its agent call (after `execute`):
    // every file the reference wrote is here, byte for byte apart from ids and times.
    let ours = names_in(&tmp.path().join(id));
    for name in names_in(&dir.join("checkpoints").join(ref_id)) {
        assert!(ours.contains(&name), "{name} missing");
        if name == "latest" {
            continue;
        }
        assert_eq!(
            normalized(&std::fs::read(tmp.path().join(id).join(&name)).unwrap(), id),
            normalized(
                &std::fs::read(dir.join("checkpoints").join(ref_id).join(&name)).unwrap(),
                ref_id
            ),
            "{name}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(tmp.path().join(id).join("latest")).unwrap(),
        format!("{id}/step_000004_execute.json")
    );
}

// --- SQLite -----------------------------------------------------------------------------------------

#[tokio::test]
async fn a_reference_sqlite_crash_resumes_here_from_its_config_store() {
    use flatmachines::persistence::sqlite::{SqliteBackend, SqliteLeaseLock};
    use flatmachines::unstable::snapshot::load_latest;
    let dir = fixtures().join("reference/sqlite");
    let run = read_json(&dir.join("run.json"));
    let id = run["execution_id"].as_str().unwrap();
    let tmp = TempDir::new();
    let db = tmp.path().join("counter.sqlite");
    std::fs::copy(dir.join("counter.sqlite"), &db).unwrap();
    let backend = SqliteBackend::open(&db).unwrap();
    let latest = load_latest(&backend, id).await.unwrap().unwrap();
    assert_eq!(latest.key, format!("{id}/step_000003_state_enter.json"));
    // The reference stored its YAML dump of the config; it loads here as the machine.
    let hash = latest.snapshot.config_hash.clone().unwrap();
    let raw = backend
        .sqlite_config_store()
        .get(&hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(config_hash(&raw), hash);
    let m = Machine::from_yaml(&raw, tmp.path()).unwrap();
    let rt = Runtime::builder()
        .checkpoint_backend(Arc::new(backend.clone()))
        .lock(Arc::new(SqliteLeaseLock::open(&db).unwrap()))
        .build();
    let out = resume(&rt, &m, id).await.unwrap();
    assert_eq!(out, run["resumed_output"]);
    let end = load_latest(&backend, id).await.unwrap().unwrap();
    assert_eq!(end.snapshot.event.as_deref(), Some("machine_end"));
    // Our own config (a different text than the reference's YAML) went into the store too.
    let ours = end.snapshot.config_hash.unwrap();
    assert_ne!(ours, hash);
    let ours_raw = backend
        .sqlite_config_store()
        .get(&ours)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&ours_raw).unwrap()["data"]["name"],
        "fixture-counter"
    );
}

#[tokio::test]
async fn the_yaml_sqlite_backend_uses_db_path_and_stores_configs() {
    let tmp = TempDir::new();
    let db = tmp.path().join("nested/runs.sqlite");
    let m = with_persistence(&format!("{{backend: sqlite, db_path: '{}'}}", db.display()));
    let rt = Runtime::new();
    let out = rt
        .run_with(
            &m,
            json!({}),
            RunOptions {
                execution_id: Some("s1".into()),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(out, json!({"n": "1"}));
    let backend = flatmachines::persistence::sqlite::SqliteBackend::open(&db).unwrap();
    let latest = flatmachines::unstable::snapshot::load_latest(&backend, "s1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.key, "s1/step_000002_machine_end.json");
    let hash = latest.snapshot.config_hash.unwrap();
    assert!(
        backend
            .sqlite_config_store()
            .get(&hash)
            .await
            .unwrap()
            .is_some()
    );
    // Resuming the finished run from the database returns its output without running.
    let again = resume(&rt, &m, "s1").await.unwrap();
    assert_eq!(again, json!({"n": "1"}));
}

// --- batched checkpoints (runs without hooks) -------------------------------------------------

/// A loop of `steps` agent states and a final state with an output.
const LOOP: &str = r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: batch-loop
  context: {n: 0, limit: "{{ input.steps }}"}
  persistence: {backend: memory, checkpoint_on: EVENTS}
  agents:
    counter: {type: echo}
  states:
    start:
      type: initial
      transitions: [{to: tick}]
    tick:
      agent: counter
      input: {n: "{{ context.n | int + 1 }}"}
      output_to_context: {n: output.n}
      transitions:
        - {condition: "context.n == context.limit", to: done}
        - {to: tick}
    done:
      type: final
      output: {n: context.n}
"#;

/// Hooks that change nothing; installing them turns batching off.
struct NoHooks;

impl flatmachines::hooks::MachineHooks for NoHooks {}

/// A memory backend that records every snapshot it is asked to save, in order, and how many
/// calls carried them.
#[derive(Default)]
struct RecordingBackend {
    inner: MemoryBackend,
    saved: Mutex<Vec<(String, Vec<u8>)>>,
    calls: AtomicUsize,
}

#[async_trait]
impl CheckpointBackend for RecordingBackend {
    async fn save(&self, key: &str, value: &[u8]) -> Result<(), PersistenceError> {
        self.inner.save(key, value).await
    }
    async fn load(&self, key: &str) -> Result<Option<Vec<u8>>, PersistenceError> {
        self.inner.load(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), PersistenceError> {
        self.inner.delete(key).await
    }
    async fn list_execution_ids(&self, f: &ListFilter) -> Result<Vec<String>, PersistenceError> {
        self.inner.list_execution_ids(f).await
    }
    async fn delete_execution(&self, id: &str) -> Result<(), PersistenceError> {
        self.inner.delete_execution(id).await
    }
    async fn save_checkpoint(
        &self,
        id: &str,
        key: &str,
        snapshot: &[u8],
    ) -> Result<(), PersistenceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        (self.saved.lock().unwrap()).push((key.to_string(), snapshot.to_vec()));
        self.inner.save_checkpoint(id, key, snapshot).await
    }
    async fn save_checkpoints(
        &self,
        id: &str,
        batch: &[BatchEntry<'_>],
    ) -> Result<(), PersistenceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        (self.saved.lock().unwrap()).extend(
            batch
                .iter()
                .map(|e| (e.key.to_string(), e.snapshot.to_vec())),
        );
        self.inner.save_checkpoints(id, batch).await
    }
}

/// Runs `m` (`steps` ticks, stopped after `max_steps`) into `backend`, with or without hooks.
async fn run_into(
    m: &Machine,
    backend: Arc<dyn CheckpointBackend>,
    hooks: bool,
    id: &str,
    steps: u64,
    max_steps: u64,
) -> Value {
    let mut rt = Runtime::builder().checkpoint_backend(backend);
    if hooks {
        rt = rt.hooks(NoHooks);
    }
    rt.build()
        .run_with(
            m,
            json!({"steps": steps}),
            RunOptions {
                execution_id: Some(id.into()),
                max_steps: Some(max_steps),
                ..RunOptions::default()
            },
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn batched_checkpoints_write_the_same_snapshots_in_the_same_order() {
    let all = "[machine_start, state_enter, execute, state_exit, machine_end]";
    for (events, max_steps) in [
        (all, 100),
        // Stopped by max_steps: the last `state_exit` is still pending when the loop ends.
        (all, 4),
        ("[state_exit]", 4),
        ("[state_enter]", 100),
        ("[execute, machine_end]", 100),
        ("[state_enter, state_exit]", 100),
    ] {
        let m = machine(&LOOP.replace("EVENTS", events));
        let mut runs = Vec::new();
        for (hooks, id) in [(true, "separate"), (false, "batched")] {
            let backend = Arc::new(RecordingBackend::default());
            let out = run_into(&m, backend.clone(), hooks, id, 5, max_steps).await;
            let saved: Vec<(String, String)> = backend
                .saved
                .lock()
                .unwrap()
                .iter()
                .map(|(k, s)| (k.replace(id, "<ID>"), normalized(s, id)))
                .collect();
            let latest = backend.load(&latest_key(id)).await.unwrap();
            let latest = latest.map(|l| String::from_utf8(l).unwrap().replace(id, "<ID>"));
            // What the store holds, read back key by key.
            let mut stored = Vec::new();
            for (key, _) in &saved {
                let key = key.replace("<ID>", id);
                let bytes = backend.load(&key).await.unwrap().unwrap();
                stored.push(normalized(&bytes, id));
            }
            runs.push((
                out,
                saved,
                latest,
                stored,
                backend.calls.load(Ordering::SeqCst),
            ));
        }
        let (separate, batched) = (&runs[0], &runs[1]);
        assert_eq!(separate.0, batched.0, "{events}: output");
        assert!(!separate.1.is_empty(), "{events}: snapshots written");
        assert_eq!(separate.1, batched.1, "{events}: snapshots, in order");
        assert_eq!(separate.2, batched.2, "{events}: latest pointer");
        assert_eq!(separate.3, batched.3, "{events}: stored bytes");
        assert!(separate.4 >= batched.4, "{events}: calls");
        if events == all && max_steps == 100 {
            // machine_start, then one call per step (state_exit of the previous step with
            // state_enter and execute of this one), then the final state_exit with machine_end.
            assert_eq!((separate.4, batched.4), (3 * 7 + 2, 1 + 7 + 1));
        }
    }
}

#[tokio::test]
async fn batched_checkpoints_write_the_same_sqlite_rows() {
    let tmp = TempDir::new();
    let m = machine(&LOOP.replace(
        "EVENTS",
        "[machine_start, state_enter, execute, state_exit, machine_end]",
    ));
    let mut tables = Vec::new();
    for (hooks, id) in [(true, "separate"), (false, "batched")] {
        let path = tmp.path().join(format!("{id}.sqlite"));
        let backend = Arc::new(flatmachines::persistence::SqliteBackend::open(&path).unwrap());
        let out = run_into(&m, backend.clone(), hooks, id, 5, 100).await;
        assert_eq!(out, json!({"n": "5"}));
        drop(backend);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let mut rows: Vec<String> = conn
            .prepare(
                "SELECT checkpoint_key, execution_id, machine_name, event, current_state,
                        waiting_channel, snapshot_json
                 FROM machine_checkpoints ORDER BY rowid",
            )
            .unwrap()
            .query_map([], |r| {
                let snapshot: Vec<u8> = r.get(6)?;
                Ok(format!(
                    "{} {} {:?} {:?} {:?} {:?} {}",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    normalized(&snapshot, id),
                )
                .replace(id, "<ID>"))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let latest: String = conn
            .query_row("SELECT latest_key FROM machine_latest", [], |r| r.get(0))
            .unwrap();
        rows.push(latest.replace(id, "<ID>"));
        tables.push(rows);
    }
    assert_eq!(tables[0].len(), 1 + 7 * 3 + 1 + 1);
    assert_eq!(tables[0], tables[1]);
}

//! Cost of one `save_checkpoint` (snapshot plus latest pointer) of a ~1 KiB snapshot, per
//! built-in backend. A machine step writes three (`state_enter`, `execute`, `state_exit`).
//!
//! Every sample starts from an empty store and writes distinct keys, as a run does, so the
//! figures include the map inserts / new rows / new files; the store is dropped outside the
//! timed section so disk use stays bounded.

use criterion::{Criterion, criterion_group, criterion_main};
use flatmachines::persistence::{
    CheckpointBackend, LocalFileBackend, MemoryBackend, SqliteBackend,
};
use serde_json::json;
use std::time::{Duration, Instant};

const EXECUTION_ID: &str = "9b1d6e0a-2f7c-4c1e-9a57-5d4f0f3e21aa";

fn snapshot() -> Vec<u8> {
    let machine = json!({
        "execution_id": EXECUTION_ID, "machine_name": "review", "parent_execution_id": null,
        "spec_version": "2.6.0", "step": 3, "current_state": "write",
        "total_api_calls": 2, "total_cost": 0.0134
    });
    let doc = json!({
        "execution_id": EXECUTION_ID, "machine_name": "review", "spec_version": "2.6.0",
        "current_state": "write",
        "context": {
            "topic": "checkpoint backends", "score": 7, "draft": "x".repeat(420),
            "feedback": ["tighten the intro", "cite the spec"], "machine": machine
        },
        "step": 3, "created_at": "2026-01-05T09:30:12.123456+00:00", "event": "state_enter",
        "output": null, "total_api_calls": 2, "total_cost": 0.0134, "parent_execution_id": null,
        "pending_launches": null, "waiting_channel": null, "tool_loop_state": null,
        "config_hash": "0e50d73c44a5aaa60e2576f1f2ef0f0a2e09a69ec5d9fd8a991531811a8b860a"
    });
    let bytes = serde_json::to_vec(&doc).unwrap();
    assert!((900..=1200).contains(&bytes.len()), "{} bytes", bytes.len());
    bytes
}

/// Times `iters` checkpoints with distinct keys into a store made by `make` (not timed).
fn run<B: CheckpointBackend>(
    rt: &tokio::runtime::Runtime,
    snapshot: &[u8],
    iters: u64,
    make: impl FnOnce() -> B,
) -> Duration {
    let backend = make();
    let keys: Vec<String> = (0..iters)
        .map(|i| format!("{EXECUTION_ID}/step_{i:06}_state_enter.json"))
        .collect();
    rt.block_on(async {
        let start = Instant::now();
        for key in &keys {
            backend
                .save_checkpoint(EXECUTION_ID, key, snapshot)
                .await
                .unwrap();
        }
        start.elapsed()
    })
}

fn backends(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let snapshot = snapshot();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut group = c.benchmark_group("save_checkpoint_1KiB");

    group.bench_function("memory", |b| {
        b.iter_custom(|iters| run(&rt, &snapshot, iters, MemoryBackend::new))
    });

    let mut n = 0;
    let mut fresh = |name: &str| {
        n += 1;
        dir.path().join(format!("{name}-{n}"))
    };
    group.sample_size(20);
    group.bench_function("sqlite", |b| {
        b.iter_custom(|iters| {
            let path = fresh("db").with_extension("sqlite");
            let t = run(&rt, &snapshot, iters, || {
                SqliteBackend::open(&path).unwrap()
            });
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
            t
        })
    });

    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("local_fsync", |b| {
        b.iter_custom(|iters| {
            let base = fresh("local");
            let t = run(&rt, &snapshot, iters, || {
                LocalFileBackend::new(&base).unwrap()
            });
            let _ = std::fs::remove_dir_all(&base);
            t
        })
    });
    group.finish();
}

criterion_group!(benches, backends);
criterion_main!(benches);

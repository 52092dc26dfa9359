//! Checkpointing overhead: the benchmark loop machines of `shared/bench` (copies in
//! `benches/machines`), 10,000 `tick` steps through the `echo` adapter with each persistence
//! setting. Per-step time is the run's time divided by N + 2 (criterion's throughput line).
//!
//! - `loop_persistence_disabled`: `enabled: false` (no snapshot at all here);
//! - `loop_memory`: three snapshots per step into the in-memory backend, loaded from YAML and
//!   compiled into the bench;
//! - `loop_local`: the same into files under `./.checkpoints`, with a file lock;
//! - `loop_sqlite`: the same into `./bench-loop.sqlite`, with a lease lock.
//!
//! Every run starts in a fresh, empty working directory (the rules of `shared/bench`); making
//! and removing it is not timed.

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use flatmachines::persistence::MachineSnapshot;
use flatmachines::{Machine, RunOptions, Runtime};
use serde_json::json;
use std::hint::black_box;
use std::time::{Duration, Instant};

const STEPS: u64 = 10_000;

// `loop_memory` compiled into the bench as well (conditions compiled to Rust, files embedded).
flatmachines::include_machine!("machines/loop_memory.yml");

fn bench_machine(c: &mut Criterion, name: &str) {
    let path = format!("{}/benches/machines/{name}.yml", env!("CARGO_MANIFEST_DIR"));
    let machine = Machine::from_file(&path).expect("benchmark machine checks");
    let compiled = (name == "loop_memory")
        .then(|| bench_loop_memory::machine().expect("compiled machine builds"));
    let rt = Runtime::new();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let home = std::env::current_dir().unwrap();
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(STEPS + 2));
    let variants = [
        ("10000_steps", Some(&machine)),
        ("10000_steps_compiled", compiled.as_ref()),
    ];
    for (label, machine) in variants {
        let Some(machine) = machine else { continue };
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().unwrap();
                    std::env::set_current_dir(dir.path()).unwrap();
                    let start = Instant::now();
                    let out = tokio
                        .block_on(rt.run_with(
                            machine,
                            json!({"steps": STEPS}),
                            RunOptions {
                                max_steps: Some(STEPS + 10),
                                ..RunOptions::default()
                            },
                        ))
                        .unwrap();
                    total += start.elapsed();
                    assert_eq!(out, json!({"n": STEPS.to_string()}));
                    std::env::set_current_dir(&home).unwrap();
                    drop(dir);
                }
                total
            })
        });
    }
    group.finish();
}

fn persistence(c: &mut Criterion) {
    for name in [
        "loop_persistence_disabled",
        "loop_memory",
        "loop_local",
        "loop_sqlite",
    ] {
        bench_machine(c, name);
    }
}

/// One snapshot of the loop machine's context, encoded into a reused buffer (the executor's
/// share of a checkpoint; the rest is the backend's).
fn snapshot_encode(c: &mut Criterion) {
    let snapshot = MachineSnapshot {
        execution_id: "9b1d6e0a-2f7c-4c1e-9a57-5d4f0f3e21aa".into(),
        machine_name: "bench-loop-memory".into(),
        spec_version: "2.6.0".into(),
        current_state: "tick".into(),
        context: json!({"n": "4711", "limit": "10000", "machine": {
            "execution_id": "9b1d6e0a-2f7c-4c1e-9a57-5d4f0f3e21aa", "machine_name": "bench-loop-memory",
            "parent_execution_id": null, "spec_version": "2.6.0", "step": 4712,
            "current_state": "tick", "total_api_calls": 0, "total_cost": 0.0}}),
        step: 4712,
        created_at: "2026-01-05T09:30:12.123456+00:00".into(),
        event: Some("state_enter".into()),
        output: None,
        total_api_calls: Some(0),
        total_cost: Some(0.0),
        parent_execution_id: None,
        pending_launches: None,
        waiting_channel: None,
        tool_loop_state: None,
        config_hash: None,
    };
    let mut buf = Vec::with_capacity(1024);
    c.bench_function("snapshot_encode", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&snapshot).write_json(&mut buf);
            black_box(buf.len())
        })
    });
}

criterion_group!(benches, persistence, snapshot_encode);
criterion_main!(benches);

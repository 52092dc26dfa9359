//! Cost of child machines: `foreach_fanout.yml` of `shared/bench` (a copy is in
//! `benches/machines`, with `foreach_child.yml`) over 1,000 and 10,000 items. Each item is one
//! child execution (an `echo` agent state, then a final state); per-child time is the total
//! divided by the number of items. Before the criterion groups, one 10,000-item run prints the
//! process's peak RSS (`VmHWM`).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flatmachines::{Machine, Runtime};
use serde_json::{Value, json};

fn fanout_machine() -> Machine {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/machines/foreach_fanout.yml"
    );
    Machine::from_file(path).expect("benchmark machine checks")
}

fn input(n: usize) -> Value {
    json!({"items": (0..n).collect::<Vec<_>>()})
}

async fn run_once(rt: &Runtime, machine: &Machine, input: Value, n: usize) -> Value {
    let out = rt.run(machine, input).await.unwrap();
    assert_eq!(
        out,
        json!({"count": n.to_string(), "first": "0", "last": (n - 1).to_string()})
    );
    out
}

/// Peak resident set size of this process, from `/proc/self/status` (Linux).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn fanout(c: &mut Criterion) {
    let machine = fanout_machine();
    let rt = Runtime::new();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // Peak RSS of one 10,000-child run, before criterion keeps anything around.
    let before = peak_rss_kib();
    tokio.block_on(run_once(&rt, &machine, input(10_000), 10_000));
    if let (Some(b), Some(a)) = (before, peak_rss_kib()) {
        eprintln!(
            "fanout: peak RSS {:.1} MiB after one 10,000-child run ({:.1} MiB before)",
            a as f64 / 1024.0,
            b as f64 / 1024.0
        );
    }

    let mut group = c.benchmark_group("foreach_fanout");
    group.sample_size(10);
    for n in [1_000usize, 10_000] {
        group.throughput(Throughput::Elements(n as u64));
        // A runtime per run: results are never deleted from a runtime's result backend.
        group.bench_function(format!("{n}_children"), |b| {
            b.to_async(&tokio).iter_batched(
                || (Runtime::new(), input(n)),
                |(rt, items)| {
                    let machine = &machine;
                    async move { run_once(&rt, machine, items, n).await }
                },
                criterion::BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);

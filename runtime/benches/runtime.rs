//! Orchestration overhead of the runtime (no LLM, no network):
//! - `loop_no_checkpoints`: the benchmark machine of `shared/bench` (a copy is in
//!   `benches/machines`), 10,000 `tick` steps through the `echo` adapter; per-step time is the
//!   total divided by N + 2;
//! - one template render and one condition evaluation.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flatmachines::condition::{Condition, Engine};
use flatmachines::template::{Templates, Vars};
use flatmachines::{Machine, RunOptions, Runtime};
use serde_json::json;
use std::hint::black_box;

const STEPS: u64 = 10_000;

fn loop_machine(c: &mut Criterion) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/machines/loop_no_checkpoints.yml"
    );
    let machine = Machine::from_file(path).expect("benchmark machine checks");
    let rt = Runtime::new();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let run = || async {
        let out = rt
            .run_with(
                &machine,
                json!({"steps": STEPS}),
                RunOptions {
                    max_steps: Some(STEPS + 10),
                    ..RunOptions::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(out, json!({"n": STEPS.to_string()}));
        out
    };
    let mut group = c.benchmark_group("loop_no_checkpoints");
    group.sample_size(10);
    group.throughput(Throughput::Elements(STEPS + 2));
    group.bench_function("10000_steps", |b| b.to_async(&tokio).iter(run));
    group.finish();
}

fn render_and_evaluate(c: &mut Criterion) {
    let templates = Templates::new();
    let context =
        json!({"n": "41", "limit": "10000", "product": "flatmachines", "machine": {"step": 3}});
    let vars = Vars::new()
        .with("context", &context)
        .with("input", &context);
    let template = json!("{{ context.n | int + 1 }}");
    c.bench_function("template_render", |b| {
        b.iter(|| templates.render_value(black_box(&template), &vars).unwrap())
    });
    let bare = json!("context.product");
    c.bench_function("bare_path_render", |b| {
        b.iter(|| templates.render_value(black_box(&bare), &vars).unwrap())
    });
    let cond = Condition::compile("context.n == context.limit", Engine::Simple).unwrap();
    c.bench_function("condition_evaluate", |b| {
        b.iter(|| cond.evaluate(black_box(&context)).unwrap())
    });
}

criterion_group!(benches, loop_machine, render_and_evaluate);
criterion_main!(benches);

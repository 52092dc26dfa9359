//! Orchestration overhead of the runtime (no LLM, no network):
//! - `loop_no_checkpoints`: the benchmark machine of `shared/bench` (a copy is in
//!   `benches/machines`), 10,000 `tick` steps through the `echo` adapter; per-step time is the
//!   total divided by N + 2;
//! - one template render (`template_render`: through the engine, as `Templates::render_value`
//!   does; `template_render_prepared`: the same template prepared, as the executor renders it;
//!   `template_render_text`: a prepared template the engine must render) and one condition
//!   evaluation;
//! - `condition/*`: four conditions of growing size, each compiled to Rust by the macro and
//!   interpreted.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flatmachines::unstable::condition::{Condition, Engine};
use flatmachines::unstable::template::{Templates, Vars};
use flatmachines::{Machine, RunOptions, Runtime};
use serde_json::json;
use std::hint::black_box;

const STEPS: u64 = 10_000;

// The same machine compiled into the bench: conditions compiled to Rust, files embedded.
flatmachines::include_machine!("machines/loop_no_checkpoints.yml");

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
    let run = |m: &Machine| {
        let m = m.clone();
        let rt = &rt;
        async move {
            let out = rt
                .run_with(
                    &m,
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
        }
    };
    let compiled = bench_loop_no_checkpoints::machine().expect("compiled machine builds");
    let mut group = c.benchmark_group("loop_no_checkpoints");
    group.sample_size(10);
    group.throughput(Throughput::Elements(STEPS + 2));
    group.bench_function("10000_steps", |b| b.to_async(&tokio).iter(|| run(&machine)));
    group.bench_function("10000_steps_compiled", |b| {
        b.to_async(&tokio).iter(|| run(&compiled))
    });
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
    // What the executor renders: the same template prepared when the machine is loaded.
    let prepared = flatmachines::unstable::template::Prepared::value(&template);
    c.bench_function("template_render_prepared", |b| {
        b.iter(|| {
            templates
                .render_prepared(black_box(&prepared), &vars)
                .unwrap()
        })
    });
    let prose = json!("Write about {{ context.product }} at step {{ context.machine.step }}.");
    let prose_prepared = flatmachines::unstable::template::Prepared::value(&prose);
    c.bench_function("template_render_text", |b| {
        b.iter(|| {
            templates
                .render_prepared(black_box(&prose_prepared), &vars)
                .unwrap()
        })
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

// The conditions of `compiled_vs_interpreted`, compiled to Rust by the macro.
flatmachines::flatmachine!(
    r#"
spec: flatmachine
data:
  name: bench-conditions
  states:
    start:
      type: initial
      transitions:
        - condition: context.n == context.limit
          to: done
        - condition: context.score >= 8 and context.round < 4
          to: done
        - condition: context.name == 'bob' or context.other.b[2] > 2
          to: done
        - condition: 1 < context.round + 1 < context.score
          to: done
        - to: done
    done: {type: final}
"#
);

/// One condition evaluation, compiled (the generated function) and interpreted (the tree walk),
/// for conditions of growing size.
fn compiled_vs_interpreted(c: &mut Criterion) {
    let context = json!({"n": "41", "limit": "10000", "score": 9, "round": 2, "name": "bob",
                         "other": {"a": 1, "b": [1, 2, 3]}, "machine": {"step": 3}});
    let mut group = c.benchmark_group("condition");
    for (i, native) in bench_conditions::conditions::ALL.iter().enumerate() {
        let interpreted = Condition::compile(native.source(), Engine::Simple).unwrap();
        assert_eq!(
            native.evaluate(&context).unwrap(),
            interpreted.evaluate(&context).unwrap()
        );
        group.bench_function(format!("{i}_interpreted"), |b| {
            b.iter(|| interpreted.evaluate(black_box(&context)).unwrap())
        });
        group.bench_function(format!("{i}_compiled"), |b| {
            b.iter(|| native.evaluate(black_box(&context)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    loop_machine,
    render_and_evaluate,
    compiled_vs_interpreted
);
criterion_main!(benches);

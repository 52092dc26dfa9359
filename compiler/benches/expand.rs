//! What `include_machine!` costs at expansion, for generated machines of growing size.
//!
//! `expand/*` repeats exactly what the macro does: load the machine from a file on disk, check
//! it, canonicalize the files it read (for rebuild tracking), generate the module's tokens and
//! turn error diagnostics into `compile_error!`. `expand_pretty/*` adds `codegen::pretty`, which
//! the macro does not call but `build.rs` users and snapshot tests do. `phase/*` splits the
//! pipeline into load, check, codegen and pretty, to see which one dominates.
//!
//! Run with `cargo bench -p flatmachines-compiler --features codegen --bench expand`.
//! See `docs/performance.md`.

use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use flatmachines_compiler::codegen::{self, Options, SourceText};
use flatmachines_compiler::load::{self, Input, LoadOptions};
use flatmachines_compiler::{check, check_input};
use proc_macro2::TokenStream;
use quote::quote;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Machine sizes, in states (initial and final included).
const SIZES: &[usize] = &[10, 50, 100, 500, 1000];

/// Agents declared inline; states call them in turn.
const AGENTS: usize = 4;

/// The name of state `i` of a machine with `n` states.
fn state_name(i: usize, n: usize) -> String {
    match i {
        0 => "start".to_string(),
        i if i == n - 1 => "done".to_string(),
        i => format!("step_{i:04}"),
    }
}

/// A realistic machine of `n` states (`n >= 3`): one initial, one final, every other state
/// calls an agent with a two-value templated `input`, writes its output to the context (a bare
/// path and a template) and leaves through two conditional transitions (a skip ahead and a
/// retry of the previous step) and one unconditional transition to the next state, so every
/// state is reachable and every state can reach the final one.
fn machine_yaml(n: usize) -> String {
    assert!(n >= 3, "a generated machine needs at least 3 states");
    let mut y = String::new();
    let _ = write!(
        y,
        "spec: flatmachine\n\
         spec_version: \"2.6.0\"\n\
         data:\n  \
           name: generated-{n}\n  \
           context:\n    \
             topic: input.topic\n    \
             draft: \"\"\n    \
             summary: \"\"\n    \
             score: 0\n    \
             round: 0\n  \
           agents:\n"
    );
    for a in 0..AGENTS {
        let _ = writeln!(y, "    agent_{a}: {{type: echo}}");
    }
    y.push_str("  states:\n");
    for i in 0..n - 1 {
        let name = state_name(i, n);
        let next = state_name(i + 1, n);
        let skip = state_name((i + 2).min(n - 1), n);
        let back = state_name(i.saturating_sub(1), n);
        let _ = writeln!(y, "    {name}:");
        if i == 0 {
            y.push_str("      type: initial\n");
        }
        let _ = write!(
            y,
            "      agent: agent_{agent}\n      \
             input:\n        \
               topic: \"{{{{ context.topic }}}}\"\n        \
               draft: \"{{{{ context.draft }}}} (round {{{{ context.round }}}}, step {i})\"\n      \
             output_to_context:\n        \
               draft: output.draft\n        \
               summary: \"{{{{ output.summary }}}} after {name}\"\n      \
             transitions:\n        \
               - condition: \"context.score >= 8\"\n          \
                 to: {skip}\n        \
               - condition: \"context.round < 3 and context.draft == ''\"\n          \
                 to: {back}\n        \
               - to: {next}\n",
            agent = i % AGENTS,
        );
    }
    y.push_str(
        "    done:\n      \
           type: final\n      \
           output:\n        \
             draft: context.draft\n        \
             summary: \"{{ context.summary }}\"\n",
    );
    y
}

fn load_options() -> LoadOptions {
    LoadOptions {
        display_base: std::env::current_dir().ok(),
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Exactly what `include_machine!(path)` does once it has found the file.
fn expand(path: &Path) -> TokenStream {
    let path = absolute(path);
    let (checked, loaded) = codegen::check_recorded(Input::File(&path), &load_options());
    let options = Options {
        source: SourceText::File(path),
        loaded,
        remap: Vec::new(),
    };
    let module = codegen::generate(&checked.project, &options);
    let errors = checked
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| {
            let message = d.render(&checked.project.sources);
            quote!(compile_error!(#message);)
        });
    quote!(#(#errors)* #module)
}

/// A directory under the system temp dir holding one machine file per size, removed at the end.
/// With `FLATMACHINES_BENCH_DIR=<dir>`, the files go to `<dir>` and are kept (to reuse them
/// outside the bench, e.g. in a crate calling `include_machine!`).
struct Machines {
    dir: PathBuf,
    keep: bool,
}

impl Machines {
    fn new() -> Self {
        let (dir, keep) = match std::env::var_os("FLATMACHINES_BENCH_DIR") {
            Some(dir) => (PathBuf::from(dir), true),
            None => (
                std::env::temp_dir().join(format!("flatmachines-bench-{}", std::process::id())),
                false,
            ),
        };
        std::fs::create_dir_all(&dir).expect("create the bench temp dir");
        Machines { dir, keep }
    }

    /// Writes the machine of `n` states and checks that it has no error.
    fn write(&self, n: usize) -> PathBuf {
        let path = self.dir.join(format!("machine_{n}.yml"));
        std::fs::write(&path, machine_yaml(n)).expect("write the machine file");
        let checked = check_input(Input::File(&path), &load_options());
        assert!(
            !checked.has_errors(),
            "the generated {n}-state machine has errors:\n{}",
            checked.render()
        );
        assert_eq!(
            checked.project.root().map(|m| m.doc.data.states.len()),
            Some(n)
        );
        let warnings = checked.diagnostics.warning_count();
        if warnings > 0 {
            eprintln!("note: the generated {n}-state machine has {warnings} warnings");
        }
        path
    }
}

impl Drop for Machines {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Flat sampling (the same iteration count in every sample) so that the largest machines need
/// a few dozen iterations rather than the 55+ of linear sampling; with [`config`], the whole
/// bench runs in well under a minute.
fn configure(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group.sampling_mode(SamplingMode::Flat);
}

/// Short runs and no plots (plotting every benchmark costs more than measuring it).
fn config() -> Criterion {
    Criterion::default()
        .without_plots()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(1))
}

fn bench_expand(c: &mut Criterion) {
    let machines = Machines::new();
    let files: Vec<(usize, PathBuf)> = SIZES.iter().map(|&n| (n, machines.write(n))).collect();

    let mut group = c.benchmark_group("expand");
    configure(&mut group);
    for (n, path) in &files {
        group.bench_with_input(BenchmarkId::from_parameter(n), path, |b, path| {
            b.iter(|| expand(black_box(path)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("expand_pretty");
    configure(&mut group);
    for (n, path) in &files {
        group.bench_with_input(BenchmarkId::from_parameter(n), path, |b, path| {
            b.iter(|| codegen::pretty(&expand(black_box(path))))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("phase");
    configure(&mut group);
    for (n, path) in &files {
        let abs = absolute(path);
        let (checked, loaded) = codegen::check_recorded(Input::File(&abs), &load_options());
        let options = Options {
            source: SourceText::File(abs),
            loaded,
            remap: Vec::new(),
        };
        let tokens = codegen::generate(&checked.project, &options);
        group.bench_with_input(BenchmarkId::new("load", n), path, |b, path| {
            b.iter(|| load::load(Input::File(black_box(path)), &load_options()))
        });
        group.bench_with_input(BenchmarkId::new("check", n), &checked, |b, checked| {
            b.iter(|| check::check_project(black_box(&checked.project)))
        });
        group.bench_with_input(BenchmarkId::new("codegen", n), &checked, |b, checked| {
            b.iter(|| codegen::generate(black_box(&checked.project), &options))
        });
        group.bench_with_input(BenchmarkId::new("pretty", n), &tokens, |b, tokens| {
            b.iter(|| codegen::pretty(black_box(tokens)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_expand
}
criterion_main!(benches);

//! Wall time of checking every machine document (`spec: flatmachine`) of the shared corpus,
//! `../shared/corpus/` next to the workspace. Skipped, with a notice, when the corpus is absent.
//!
//! Run with `cargo bench -p flatmachines-compiler --bench corpus`. See `docs/performance.md`.

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use flatmachines_compiler::check_input;
use flatmachines_compiler::load::{Input, LoadOptions};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every `.yml`/`.yaml` file under `dir` whose top-level `spec` is `flatmachine`, sorted.
fn machine_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yml" | "yaml")
            ) && std::fs::read_to_string(&path).is_ok_and(|text| {
                text.lines().any(|line| {
                    line.strip_prefix("spec:")
                        .is_some_and(|v| v.trim().trim_matches(['"', '\'']) == "flatmachine")
                })
            }) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn bench_corpus(c: &mut Criterion) {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus");
    if !corpus.is_dir() {
        eprintln!(
            "corpus bench skipped: no corpus at {} (expected `shared/corpus/` next to the workspace)",
            corpus.display()
        );
        return;
    }
    let files = machine_files(&corpus);
    if files.is_empty() {
        eprintln!(
            "corpus bench skipped: no `spec: flatmachine` file under {}",
            corpus.display()
        );
        return;
    }
    let options = LoadOptions {
        display_base: std::env::current_dir().ok(),
    };
    let (errors, warnings) = files.iter().fold((0, 0), |(e, w), f| {
        let checked = check_input(Input::File(f), &options);
        (
            e + checked.diagnostics.error_count(),
            w + checked.diagnostics.warning_count(),
        )
    });
    eprintln!(
        "corpus: {} machine files, {errors} errors, {warnings} warnings",
        files.len()
    );

    let mut group = c.benchmark_group("corpus");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    group.bench_function(format!("check_all_{}_machines", files.len()), |b| {
        b.iter(|| {
            for file in &files {
                black_box(check_input(Input::File(black_box(file)), &options));
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = bench_corpus
}
criterion_main!(benches);

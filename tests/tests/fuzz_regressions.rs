//! Replays what the fuzzers found (`tests/fuzz/regressions/<target>/`, one file per input that
//! once crashed, hung or blew up) and the fuzzers' seed corpora (`tests/fuzz/seeds/<target>/`)
//! through the fuzz targets' own entry points (`tests/fuzz/src/lib.rs`, included here): no
//! input may panic, and each must finish quickly with a bounded result. See `docs/fuzzing.md`.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Longest a single input may take (the CI fuzz run's `-timeout` is 10 s).
const SLOW: Duration = Duration::from_secs(10);

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"))
        .collect();
    files.sort();
    files
}

fn replay(folder: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(folder);
    let mut replayed = 0;
    for target in harness::TARGETS {
        for file in inputs(&root.join(target)) {
            let data = std::fs::read(&file).expect("read a fuzz input");
            let start = Instant::now();
            let result = std::panic::catch_unwind(|| harness::run(target, &data));
            let took = start.elapsed();
            let shown = file.strip_prefix(&root).unwrap_or(&file).display();
            let size = result.unwrap_or_else(|_| panic!("{target} panics on {folder}/{shown}"));
            assert!(
                size < 1 << 26,
                "{target} on {folder}/{shown}: an unbounded result ({size})"
            );
            assert!(took < SLOW, "{target} on {folder}/{shown} took {took:?}");
            replayed += 1;
        }
    }
    replayed
}

#[test]
fn crashes_found_by_fuzzing_stay_fixed() {
    replay("regressions");
}

#[test]
fn seed_corpora_run_cleanly() {
    assert!(replay("seeds") > 100, "the seed corpora are missing");
}

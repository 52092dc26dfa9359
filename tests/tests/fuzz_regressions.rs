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

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `target` on `file`: `Err` with the reason when it panics, is slow or unbounded.
fn replay_one(target: &str, file: &Path) -> Result<(), String> {
    let data = std::fs::read(file).expect("read a fuzz input");
    let start = Instant::now();
    let size = std::panic::catch_unwind(|| harness::run(target, &data))
        .map_err(|_| "panics".to_string())?;
    let took = start.elapsed();
    if size >= 1 << 26 {
        return Err(format!("gives an unbounded result ({size})"));
    }
    if took >= SLOW {
        return Err(format!("takes {took:?}"));
    }
    Ok(())
}

/// Replays `folder/<target>/*`; returns how many inputs ran.
fn replay(folder: &str) -> usize {
    let root = fuzz_dir().join(folder);
    let mut replayed = 0;
    let mut failures = Vec::new();
    for target in harness::TARGETS {
        for file in inputs(&root.join(target)) {
            let name = format!("{target}/{}", file.file_name().unwrap().to_string_lossy());
            if let Err(why) = replay_one(target, &file) {
                failures.push(format!("{target} on {folder}/{name} {why}"));
            }
            replayed += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
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

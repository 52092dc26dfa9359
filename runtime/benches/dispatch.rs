//! Dispatch with many parked executions in one SQLite file (`signals-and-dispatch.md` §4):
//! 10,000 executions wait, each on its own channel; then the time of `dispatch_all` (what
//! `flatmachines dispatch --once` runs) with 1 and with 1,000 pending signals, of finding the
//! waiters of one channel, and of the scan for expired waits. Every sample starts from a copy of
//! the same prepared database; the resumes are real runs (config store, lock, checkpoints).

use criterion::{Criterion, criterion_group, criterion_main};
use flatmachines::persistence::sqlite::{SqliteBackend, SqliteLeaseLock};
use flatmachines::signals::{Dispatcher, SignalBackend, SqliteSignalBackend};
use flatmachines::{ConfigStoreResumer, Machine, RunOptions, Runtime};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PARKED: usize = 10_000;

const MACHINE: &str = r#"spec: flatmachine
spec_version: "2.6.0"
data:
  name: parked
  context: {n: "{{ input.n }}"}
  states:
    start:
      type: initial
      transitions: [{to: wait}]
    wait:
      wait_for: "approval/{{ context.n }}"
      output_to_context: {ok: output.ok}
      transitions: [{to: done}]
    done:
      type: final
      output: {n: context.n, ok: context.ok}
"#;

struct Db {
    dir: PathBuf,
}

impl Db {
    fn file(&self) -> PathBuf {
        self.dir.join("parked.sqlite")
    }
}

/// A database with `PARKED` executions parked on `approval/<i>`.
fn prepare(tokio: &tokio::runtime::Runtime) -> Db {
    let dir = std::env::temp_dir().join(format!("fm-dispatch-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = Db { dir };
    let backend = Arc::new(SqliteBackend::open(db.file()).unwrap());
    let rt = Runtime::builder()
        .checkpoint_backend(backend.clone())
        .lock(Arc::new(SqliteLeaseLock::open(db.file()).unwrap()))
        .config_store(Arc::new(backend.sqlite_config_store()))
        .signal_backend(Arc::new(SqliteSignalBackend::open(db.file()).unwrap()))
        .build();
    let machine = Machine::from_yaml(MACHINE, &db.dir).unwrap();
    let started = Instant::now();
    tokio.block_on(async {
        for i in 0..PARKED {
            let opts = RunOptions {
                execution_id: Some(format!("e{i:05}")),
                ..RunOptions::default()
            };
            let out = rt.run_with(&machine, json!({"n": i}), opts).await.unwrap();
            assert_eq!(out["_waiting"], true);
        }
    });
    eprintln!(
        "prepared {PARKED} parked executions in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(rt);
    report_size(&db.file());
    db
}

/// What each sample copies.
fn report_size(file: &Path) {
    let wal = PathBuf::from(format!("{}-wal", file.display()));
    eprintln!(
        "database {} MB, WAL {} MB",
        std::fs::metadata(file).map_or(0, |m| m.len()) / 1_000_000,
        std::fs::metadata(&wal).map_or(0, |m| m.len()) / 1_000_000
    );
}

fn remove(file: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
}

/// A fresh copy of the prepared database (the file and its WAL).
fn copy(db: &Db, n: usize) -> PathBuf {
    let to = db.dir.join(format!("copy-{n}.sqlite"));
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", db.file().display()));
        let dest = PathBuf::from(format!("{}{suffix}", to.display()));
        let _ = std::fs::remove_file(&dest);
        if from.exists() {
            std::fs::copy(&from, &dest).unwrap();
        }
    }
    to
}

fn dispatcher(file: &Path) -> (Dispatcher, Arc<SqliteSignalBackend>) {
    let signals = Arc::new(SqliteSignalBackend::open(file).unwrap());
    let backend = SqliteBackend::open(file).unwrap();
    let store = Arc::new(backend.sqlite_config_store());
    let checkpoints = Arc::new(backend);
    let rt = Runtime::builder()
        .checkpoint_backend(checkpoints.clone())
        .lock(Arc::new(SqliteLeaseLock::open(file).unwrap()))
        .signal_backend(signals.clone())
        .build();
    let resumer = ConfigStoreResumer::new(rt, checkpoints.clone(), store);
    (
        Dispatcher::new(signals.clone(), checkpoints).with_resumer(Arc::new(resumer)),
        signals,
    )
}

fn dispatch(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = prepare(&tokio);
    let mut group = c.benchmark_group("dispatch_10000_parked");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    let mut n = 0;
    for signals_sent in [1usize, 1000] {
        group.bench_function(format!("dispatch_all_{signals_sent}_signals"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    let file = copy(&db, n);
                    let (d, signals) = dispatcher(&file);
                    tokio.block_on(async {
                        for i in 0..signals_sent {
                            signals
                                .send(&format!("approval/{}", i * 7 % PARKED), json!({"ok": true}))
                                .await
                                .unwrap();
                        }
                    });
                    let t = Instant::now();
                    let resumed = tokio.block_on(d.dispatch_all()).unwrap();
                    total += t.elapsed();
                    assert_eq!(resumed.values().map(Vec::len).sum::<usize>(), signals_sent);
                    drop((d, signals));
                    remove(&file);
                }
                total
            })
        });
    }
    let file = copy(&db, 0);
    let (d, _) = dispatcher(&file);
    group.bench_function("waiters_of_one_channel", |b| {
        b.iter(|| {
            let w = tokio.block_on(d.waiters("approval/4242")).unwrap();
            assert_eq!(w, ["e04242"]);
        })
    });
    group.bench_function("expired_wait_scan", |b| {
        b.iter(|| {
            let r = tokio.block_on(d.dispatch_expired()).unwrap();
            assert!(r.is_empty());
        })
    });
    group.finish();
    drop(d);
    remove(&file);
    let _ = std::fs::remove_dir_all(&db.dir);
}

criterion_group!(benches, dispatch);
criterion_main!(benches);

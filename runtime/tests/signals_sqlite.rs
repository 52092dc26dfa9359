//! `SqliteSignalBackend::consume` is atomic across processes: consumers in separate processes
//! (this test binary run again, with `SIGNALS_SQLITE_ROLE` set) never get the same signal.
//!
//! Each test is also its own child: run with the role variable set, the test function plays
//! that role (consumer or producer) on the database the parent names and prints what it did on
//! stdout, one `CONSUMED <id>` / `SENT <id>` line per signal.

use flatmachines::signals::{SignalBackend, SqliteSignalBackend};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROLE: &str = "SIGNALS_SQLITE_ROLE";
const DB: &str = "SIGNALS_SQLITE_DB";
const DIR: &str = "SIGNALS_SQLITE_DIR";
const INDEX: &str = "SIGNALS_SQLITE_INDEX";
const COUNT: &str = "SIGNALS_SQLITE_COUNT";
const CHANNEL: &str = "jobs";
const CONSUMERS: usize = 6;
/// How long a child waits for the start signal or the producer before giving up.
const PATIENCE: Duration = Duration::from_secs(120);

/// This test again as a child process, in `role`.
fn command(test: &str, role: &str, db: &Path, dir: &Path, index: usize, count: usize) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(DB, db)
        .env(DIR, dir)
        .env(INDEX, index.to_string())
        .env(COUNT, count.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

/// Waits for `child` and returns the ids after `tag` on its stdout.
fn collect(child: Child, tag: &str) -> Vec<String> {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "child failed: {}\n{stdout}",
        out.status
    );
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(tag))
        .map(str::to_string)
        .collect()
}

/// Blocks until `path` exists.
fn wait_for_file(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < PATIENCE,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The child side: announce readiness, wait for everyone, then play the role.
async fn child(role: &str) {
    let db = PathBuf::from(std::env::var(DB).unwrap());
    let dir = PathBuf::from(std::env::var(DIR).unwrap());
    let index = std::env::var(INDEX).unwrap();
    let count: usize = std::env::var(COUNT).unwrap().parse().unwrap();
    let backend = SqliteSignalBackend::open(&db).unwrap();
    // libtest has printed `test name ... ` without a newline.
    println!();
    std::fs::write(dir.join(format!("ready-{role}-{index}")), b"").unwrap();
    wait_for_file(&dir.join("go"));
    match role {
        "consumer" => {
            let producer_done = dir.join("produced");
            let racing = std::env::var_os("SIGNALS_SQLITE_RACING").is_some();
            let start = Instant::now();
            loop {
                match backend.consume(CHANNEL).await.unwrap() {
                    Some(s) => println!("CONSUMED {}", s.id),
                    // Without a producer, an empty channel means done. With one, it is only
                    // done once the producer has finished and the channel is empty after that.
                    None if !racing => break,
                    None if producer_done.exists() => {
                        while let Some(s) = backend.consume(CHANNEL).await.unwrap() {
                            println!("CONSUMED {}", s.id);
                        }
                        break;
                    }
                    None => {
                        assert!(start.elapsed() < PATIENCE, "the producer never finished");
                        tokio::task::yield_now().await;
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            }
        }
        "producer" => {
            for i in 0..count {
                let id = backend.send(CHANNEL, json!({"n": i})).await.unwrap();
                println!("SENT {id}");
                if i % 16 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            std::fs::write(dir.join("produced"), b"").unwrap();
        }
        other => panic!("unknown role {other}"),
    }
}

/// Waits until every child has announced itself, then lets them all start at once.
fn start_together(dir: &Path, children: usize) {
    let start = Instant::now();
    loop {
        let ready = std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("ready-")
            })
            .count();
        if ready == children {
            break;
        }
        assert!(start.elapsed() < PATIENCE, "only {ready} children started");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::write(dir.join("go"), b"").unwrap();
}

/// Every id once, and how many each consumer got.
fn check_exactly_once(sent: &BTreeSet<String>, per_consumer: &[Vec<String>]) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for id in per_consumer.iter().flatten() {
        *seen.entry(id).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "consumed more than once: {twice:?}");
    let consumed: BTreeSet<String> = seen.keys().map(|s| s.to_string()).collect();
    assert_eq!(&consumed, sent, "consumed ids differ from sent ids");
    let counts: Vec<usize> = per_consumer.iter().map(Vec::len).collect();
    eprintln!("signals per consumer: {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn consumers_in_separate_processes_get_each_signal_once() {
    if let Ok(role) = std::env::var(ROLE) {
        return child(&role).await;
    }
    const N: usize = 200;
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db/flatmachines.sqlite");
    let backend = SqliteSignalBackend::open(&db).unwrap();
    let mut sent = BTreeSet::new();
    for i in 0..N {
        sent.insert(backend.send(CHANNEL, json!(i)).await.unwrap());
    }
    assert_eq!(sent.len(), N);
    let children: Vec<Child> = (0..CONSUMERS)
        .map(|i| {
            command(
                "consumers_in_separate_processes_get_each_signal_once",
                "consumer",
                &db,
                tmp.path(),
                i,
                0,
            )
            .spawn()
            .unwrap()
        })
        .collect();
    start_together(tmp.path(), CONSUMERS);
    let per_consumer: Vec<Vec<String>> = children
        .into_iter()
        .map(|c| collect(c, "CONSUMED "))
        .collect();
    check_exactly_once(&sent, &per_consumer);
    assert!(backend.peek(CHANNEL).await.unwrap().is_empty());
    assert!(backend.channels().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn consumers_racing_a_producer_process_get_each_signal_once() {
    if let Ok(role) = std::env::var(ROLE) {
        return child(&role).await;
    }
    const N: usize = 300;
    let test = "consumers_racing_a_producer_process_get_each_signal_once";
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("flatmachines.sqlite");
    let backend = SqliteSignalBackend::open(&db).unwrap();
    let producer = command(test, "producer", &db, tmp.path(), 0, N)
        .spawn()
        .unwrap();
    let consumers: Vec<Child> = (0..CONSUMERS)
        .map(|i| {
            let mut cmd = command(test, "consumer", &db, tmp.path(), i, 0);
            cmd.env("SIGNALS_SQLITE_RACING", "1");
            cmd.spawn().unwrap()
        })
        .collect();
    start_together(tmp.path(), CONSUMERS + 1);
    let sent: Vec<String> = collect(producer, "SENT ");
    assert_eq!(sent.len(), N);
    let sent: BTreeSet<String> = sent.into_iter().collect();
    let per_consumer: Vec<Vec<String>> = consumers
        .into_iter()
        .map(|c| collect(c, "CONSUMED "))
        .collect();
    check_exactly_once(&sent, &per_consumer);
    assert!(backend.peek(CHANNEL).await.unwrap().is_empty());
    assert!(backend.channels().await.unwrap().is_empty());
}

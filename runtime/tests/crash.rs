//! Crash recovery with real processes: `flatmachines run` is killed with SIGKILL while an agent
//! call is in flight, then resumed with `--resume-from` in a new process, for the SQLite and the
//! local-file backends. The agents talk to the project's scripted OpenAI-compatible server.

#![cfg(unix)]

use flatmachines_testkit::{FakeLlm, TempDir};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

#[path = "common/pipeline.rs"]
mod pipeline;

use pipeline::*;

/// The output of a run that is never interrupted.
fn uninterrupted(persistence: &str) -> Value {
    let dir = TempDir::new();
    write_machine(dir.path(), persistence);
    let llm = FakeLlm::start(script(0, 0)).unwrap();
    let out = flatmachines(
        dir.path(),
        &llm,
        &["-c", "machine.yml", "-i", r#"{"topic": "tide pools"}"#],
    )
    .output()
    .unwrap();
    output_json(&out)
}

/// Starts a run and SIGKILLs it while the `draft` call is being answered.
fn start_and_kill(dir: &Path, llm: &FakeLlm, id: &str) {
    let mut child: Child = flatmachines(
        dir,
        llm,
        &[
            "-c",
            "machine.yml",
            "-i",
            r#"{"topic": "tide pools"}"#,
            "-e",
            id,
        ],
    )
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while calls(llm, "pipeline-draft") == 0 {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "the run ended ({status}) before the draft call: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(Instant::now() < deadline, "no draft call within 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed: {status}");
}

fn crash_and_resume(persistence: &str, resume_args: &[&str]) {
    let expected = uninterrupted(persistence);
    let dir = TempDir::new();
    write_machine(dir.path(), persistence);
    let llm = FakeLlm::start(script(1, 30_000)).unwrap();
    let id = "pipeline-1";
    start_and_kill(dir.path(), &llm, id);
    assert_eq!(calls(&llm, "pipeline-outline"), 1);

    // At once, in a new process: the dead run's lock must not stand in the way.
    let started = Instant::now();
    let mut args = vec!["--resume-from", id];
    args.extend_from_slice(resume_args);
    let out = flatmachines(dir.path(), &llm, &args).output().unwrap();
    let resumed = output_json(&out);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the resume waited {:?}",
        started.elapsed()
    );
    assert_eq!(resumed, expected);
    // The outline finished before the crash: its result came from the checkpoint, not a new
    // call. The interrupted draft ran again (at-least-once), the polish once.
    assert_eq!(
        calls(&llm, "pipeline-outline"),
        1,
        "completed call repeated"
    );
    assert_eq!(calls(&llm, "pipeline-draft"), 2);
    assert_eq!(calls(&llm, "pipeline-polish"), 1);
    assert_eq!(resumed["outline"], "1. tides\n2. pools");

    // Resuming the finished execution returns its output and calls nothing.
    let out = flatmachines(dir.path(), &llm, &args).output().unwrap();
    assert_eq!(output_json(&out), expected);
    assert_eq!(llm.log().len(), 4);
}

#[test]
fn sqlite_run_killed_mid_call_resumes_from_the_database_alone() {
    // No --config: the machine comes from the database's config store.
    crash_and_resume(SQLITE, &["--db", "runs.sqlite"]);
}

#[test]
fn local_run_killed_mid_call_resumes() {
    crash_and_resume(LOCAL, &["-c", "machine.yml"]);
}

/// Two resumers of one execution at once: one runs it, the other is refused with the locked
/// error while the first holds the lock.
fn two_resumers(persistence: &str, resume_args: &[&str]) {
    let dir = TempDir::new();
    write_machine(dir.path(), persistence);
    // Killed call, then a slow retry that keeps the winner busy.
    let llm = FakeLlm::start(script(2, 4_000)).unwrap();
    let id = "pipeline-2";
    start_and_kill(dir.path(), &llm, id);
    let mut args = vec!["--resume-from", id];
    args.extend_from_slice(resume_args);
    let a = flatmachines(dir.path(), &llm, &args).spawn().unwrap();
    let b = flatmachines(dir.path(), &llm, &args).spawn().unwrap();
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let winners: Vec<&Output> = outs.iter().filter(|o| o.status.success()).collect();
    let losers: Vec<&Output> = outs.iter().filter(|o| !o.status.success()).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one resumer runs; stderr: {:?}",
        outs.iter()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .collect::<Vec<_>>()
    );
    let stderr = String::from_utf8_lossy(&losers[0].stderr);
    assert_eq!(
        stderr.trim(),
        format!(
            "error: machine `pipeline`: execution {id} is running elsewhere (its lock is held)"
        ),
        "one line naming the cause"
    );
    assert_eq!(losers[0].status.code(), Some(1));
    assert_eq!(output_json(winners[0]), uninterrupted(persistence));
    assert_eq!(
        calls(&llm, "pipeline-draft"),
        2,
        "only the winner called the agent"
    );
}

#[test]
fn sqlite_two_resumers_one_runs() {
    two_resumers(SQLITE, &["--db", "runs.sqlite"]);
}

#[test]
fn local_two_resumers_one_runs() {
    two_resumers(LOCAL, &["-c", "machine.yml"]);
}

#[test]
fn resume_failures_exit_non_zero_with_one_line() {
    let dir = TempDir::new();
    write_machine(dir.path(), SQLITE);
    let llm = FakeLlm::start(script(0, 0)).unwrap();
    let run = |args: &[&str]| {
        let out = flatmachines(dir.path(), &llm, args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    };
    assert_eq!(
        run(&["--resume-from", "nope", "--db", "missing.sqlite"]),
        "error: no --config given and no checkpoint database at missing.sqlite (set --db or FLATMACHINES_DB_PATH)"
    );
    assert_eq!(
        run(&["--resume-from", "nope", "-c", "machine.yml"]),
        "error: machine `pipeline`: no checkpoint found for execution nope"
    );
    let finished = flatmachines(
        dir.path(),
        &llm,
        &["-c", "machine.yml", "-i", r#"{"topic": "t"}"#, "-e", "done"],
    )
    .output()
    .unwrap();
    output_json(&finished);
    assert!(
        run(&["--resume-from", "nope", "--db", "runs.sqlite"])
            .starts_with("error: no checkpoint found for execution nope in ")
    );
    // A torn latest snapshot is reported, naming it; nothing starts afresh.
    tear_latest(dir.path());
    let line = run(&["--resume-from", "done", "-c", "machine.yml"]);
    assert!(
        line.starts_with("error: machine `pipeline`, execution done: ")
            && line.contains("done/step_000005_machine_end.json")
            && line.contains("corrupt checkpoint data"),
        "{line}"
    );
}

/// Tears the latest snapshot of execution `done` in `runs.sqlite` (a save of half a document
/// under its key).
fn tear_latest(dir: &Path) {
    use flatmachines::persistence::CheckpointBackend;
    use flatmachines::persistence::sqlite::SqliteBackend;
    let backend = SqliteBackend::open(dir.join("runs.sqlite")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(backend.save(
        "done/step_000005_machine_end.json",
        b"{\"execution_id\": \"do",
    ))
    .unwrap();
}

//! SIGINT and SIGTERM during `flatmachines run` with the real binary: the run aborts the agent
//! call in flight (it does not wait for the slow reply), stops with the checkpoint taken before
//! that state, exits 130 / 143 saying how to resume, and `run --resume-from` then completes it,
//! running the interrupted state again and no finished state. The agents talk to the project's
//! scripted OpenAI-compatible server.

#![cfg(all(unix, feature = "cli"))]

use flatmachines_testkit::{FakeLlm, TempDir};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[path = "common/pipeline.rs"]
mod pipeline;

use pipeline::*;

/// The first draft reply takes far longer than any run here, so that the signal arrives while
/// it is in flight and only an aborted call lets the run end in time.
fn slow_script() -> Value {
    script(1, 600_000)
}

/// Starts a run, sends `signal` while the draft call is in flight, and checks how it ended.
fn interrupt_and_resume(persistence: &str, signal: libc::c_int, name: &str, code: i32) {
    let dir = TempDir::new();
    write_machine(dir.path(), persistence);
    let llm = FakeLlm::start(slow_script()).unwrap();
    let id = "sig-1";
    let child = flatmachines(
        dir.path(),
        &llm,
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
    while calls(&llm, "pipeline-draft") == 0 {
        assert!(Instant::now() < deadline, "no draft call within 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on the child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains(&format!("interrupted by {name}")),
        "{stderr}"
    );
    assert!(
        stderr.contains("a resume continues at state `draft`"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("--resume-from {id}")), "{stderr}");
    // The draft in flight was abandoned; nothing after it started.
    assert_eq!(calls(&llm, "pipeline-outline"), 1);
    assert_eq!(calls(&llm, "pipeline-draft"), 1);
    assert_eq!(calls(&llm, "pipeline-polish"), 0);

    let resumed = flatmachines(
        dir.path(),
        &llm,
        &["-c", "machine.yml", "--resume-from", id],
    )
    .output()
    .unwrap();
    assert_eq!(
        output_json(&resumed),
        json!({
            "outline": "1. tides\n2. pools",
            "draft": "Tide pools shelter small life.",
            "final": "Tide pools shelter small, hardy life.",
        })
    );
    // No completed state ran twice; the interrupted draft ran again.
    assert_eq!(calls(&llm, "pipeline-outline"), 1);
    assert_eq!(calls(&llm, "pipeline-draft"), 2);
    assert_eq!(calls(&llm, "pipeline-polish"), 1);
}

#[test]
fn sigint_stops_at_a_safe_point_and_resumes_from_sqlite() {
    interrupt_and_resume(
        "{backend: sqlite, db_path: ./runs.sqlite}",
        libc::SIGINT,
        "SIGINT",
        130,
    );
}

#[test]
fn sigterm_stops_at_a_safe_point_and_resumes_from_local_files() {
    interrupt_and_resume("{backend: local}", libc::SIGTERM, "SIGTERM", 143);
}

#[test]
fn without_kept_checkpoints_the_message_says_it_cannot_resume() {
    let dir = TempDir::new();
    write_machine(dir.path(), "{enabled: false}");
    let llm = FakeLlm::start(slow_script()).unwrap();
    let child = flatmachines(
        dir.path(),
        &llm,
        &["-c", "machine.yml", "-i", r#"{"topic": "tide pools"}"#],
    )
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while calls(&llm, "pipeline-draft") == 0 {
        assert!(Instant::now() < deadline, "no draft call within 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on the child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("cannot be resumed"), "{stderr}");
    assert_eq!(calls(&llm, "pipeline-polish"), 0);
}

//! SIGINT and SIGTERM during `flatmachines run` with the real binary: the run finishes the
//! state in flight, stops before the next one with a checkpoint, exits 130 / 143 saying how to
//! resume, and `run --resume-from` then completes it without running a finished state again.
//! The agents talk to the project's scripted OpenAI-compatible server.

#![cfg(all(unix, feature = "cli"))]

use flatmachines_testkit::{FakeLlm, TempDir};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_flatmachines");

const AGENT: &str = r#"spec: flatagent
spec_version: "2.6.0"
data:
  name: NAME
  model: {provider: openai, name: MODEL}
  user: "PROMPT"
"#;

/// Three agent states in a row; `PERSISTENCE` is replaced by the backend's block.
const MACHINE: &str = r#"spec: flatmachine
spec_version: "2.6.0"
data:
  name: signal-pipeline
  context:
    topic: "{{ input.topic }}"
  persistence: PERSISTENCE
  agents:
    outliner: ./outliner.yml
    drafter: ./drafter.yml
    polisher: ./polisher.yml
  states:
    start:
      type: initial
      transitions: [{to: outline}]
    outline:
      agent: outliner
      input: {topic: "{{ context.topic }}"}
      output_to_context: {outline: "{{ output.content }}"}
      transitions: [{to: draft}]
    draft:
      agent: drafter
      input: {outline: "{{ context.outline }}"}
      output_to_context: {draft: "{{ output.content }}"}
      transitions: [{to: polish}]
    polish:
      agent: polisher
      input: {draft: "{{ context.draft }}"}
      output_to_context: {final: "{{ output.content }}"}
      transitions: [{to: done}]
    done:
      type: final
      output:
        outline: context.outline
        draft: context.draft
        final: context.final
"#;

fn write_machine(dir: &Path, persistence: &str) {
    for (file, name, model, prompt) in [
        (
            "outliner.yml",
            "outliner",
            "sig-outline",
            "Outline {{ input.topic }}.",
        ),
        (
            "drafter.yml",
            "drafter",
            "sig-draft",
            "Draft from {{ input.outline }}",
        ),
        (
            "polisher.yml",
            "polisher",
            "sig-polish",
            "Polish {{ input.draft }}",
        ),
    ] {
        let text = AGENT
            .replace("NAME", name)
            .replace("MODEL", model)
            .replace("PROMPT", prompt);
        std::fs::write(dir.join(file), text).unwrap();
    }
    std::fs::write(
        dir.join("machine.yml"),
        MACHINE.replace("PERSISTENCE", persistence),
    )
    .unwrap();
}

/// The first draft reply takes a while, so that the signal arrives while it is in flight.
fn script() -> Value {
    let draft = "Tide pools shelter small life.";
    json!({"models": {
        "sig-outline": {"default": "1. tides\n2. pools"},
        "sig-draft": {
            "responses": [{"$content": draft, "$delay_ms": 3000}],
            "default": draft,
        },
        "sig-polish": {"default": "Tide pools shelter small, hardy life."},
    }})
}

fn flatmachines(dir: &Path, llm: &FakeLlm, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env("OPENAI_BASE_URL", llm.base_url())
        .env("OPENAI_API_KEY", "test")
        .env("FLATAGENTS_LOG_LEVEL", "warning")
        .env_remove("FLATMACHINES_DB_PATH")
        .arg("run")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn calls(llm: &FakeLlm, model: &str) -> usize {
    llm.log().iter().filter(|r| r["model"] == model).count()
}

fn output_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Starts a run, sends `signal` while the draft call is in flight, and checks how it ended.
fn interrupt_and_resume(persistence: &str, signal: libc::c_int, name: &str, code: i32) {
    let dir = TempDir::new();
    write_machine(dir.path(), persistence);
    let llm = FakeLlm::start(script()).unwrap();
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
    while calls(&llm, "sig-draft") == 0 {
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
    assert!(stderr.contains("before state `polish`"), "{stderr}");
    assert!(stderr.contains(&format!("--resume-from {id}")), "{stderr}");
    // The draft in flight was finished; nothing after it started.
    assert_eq!(calls(&llm, "sig-outline"), 1);
    assert_eq!(calls(&llm, "sig-draft"), 1);
    assert_eq!(calls(&llm, "sig-polish"), 0);

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
    // No completed state ran twice.
    assert_eq!(calls(&llm, "sig-outline"), 1);
    assert_eq!(calls(&llm, "sig-draft"), 1);
    assert_eq!(calls(&llm, "sig-polish"), 1);
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
    let llm = FakeLlm::start(script()).unwrap();
    let child = flatmachines(
        dir.path(),
        &llm,
        &["-c", "machine.yml", "-i", r#"{"topic": "tide pools"}"#],
    )
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while calls(&llm, "sig-draft") == 0 {
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
    assert_eq!(calls(&llm, "sig-polish"), 0);
}

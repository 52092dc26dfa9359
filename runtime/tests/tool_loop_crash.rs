//! Crash safety of tool loops with a real process: a run is killed with SIGKILL while its second
//! tool call is in flight, then resumed in a new process from its SQLite checkpoints. The tool
//! call whose result was checkpointed must not run again; the one in flight runs again (that is
//! the at-least-once part, documented in `docs/tools.md`); the rest run once.
//!
//! The child process is this test binary itself, re-run with `FM_TOOL_CRASH_DIR` set: it then
//! plays the machine's runner instead of the test.

#![cfg(unix)]

use flatmachines::agent::FlatAgentAdapter;
use flatmachines::tools::{Tool, Toolbox};
use flatmachines::{Machine, RunOptions, Runtime};
use flatmachines_testkit::{FakeLlm, TempDir};
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TEST: &str = "killed_between_tool_calls_resumes_without_running_recorded_calls_again";
const EXECUTION: &str = "tool-crash-1";

const AGENT: &str = r#"spec: flatagent
spec_version: "2.6.0"
data:
  name: worker
  model: {provider: openai, name: worker-model}
  user: "Do {{ input.job }}"
"#;

const MACHINE: &str = r#"spec: flatmachine
spec_version: "2.6.0"
data:
  name: crash-tools
  context: {job: "{{ input.job }}"}
  persistence: {enabled: true, backend: sqlite, db_path: ./state.db}
  agents: {worker: ./worker.yml}
  states:
    start:
      type: initial
      agent: worker
      tool_loop: true
      input: {job: "{{ context.job }}"}
      output_to_context: {answer: output.content, calls: output._tool_calls_count}
      transitions: [{to: done}]
    done:
      type: final
      output: {answer: context.answer, calls: context.calls}
"#;

/// Appends `line` to `calls.log` in `dir` and syncs it, so the parent sees it at once.
fn record(dir: &Path, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("calls.log"))
        .unwrap();
    writeln!(f, "{line}").unwrap();
    f.sync_all().unwrap();
}

/// The runner: `FM_PHASE=run` starts the machine, `FM_PHASE=resume` resumes it.
async fn child(dir: &Path) {
    let resume = std::env::var("FM_PHASE").as_deref() == Ok("resume");
    let base_url = std::env::var("FM_BASE_URL").unwrap();
    let d = dir.to_path_buf();
    let note = Tool::from_fn(
        "note",
        "Records a word",
        json!({"type": "object"}),
        move |args| {
            let d = d.clone();
            async move {
                let word = args["word"].as_str().unwrap_or("").to_string();
                record(&d, &format!("note {word}"));
                format!("noted {word}")
            }
        },
    );
    let d = dir.to_path_buf();
    let slow = Tool::from_fn(
        "slow",
        "Takes a while",
        json!({"type": "object"}),
        move |_| {
            let d = d.clone();
            async move {
                record(&d, "slow start");
                if !resume {
                    // The parent kills the process during this sleep.
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                record(&d, "slow end");
                "slow done"
            }
        },
    );
    let rt = Runtime::builder()
        .adapter(FlatAgentAdapter::with_base_url(base_url))
        .tools(Toolbox::new().tool(note).tool(slow))
        .build();
    let machine = Machine::from_file(dir.join("machine.yml")).unwrap();
    let opts = RunOptions {
        execution_id: Some(EXECUTION.into()),
        resume_from: resume.then(|| EXECUTION.to_string()),
        ..RunOptions::default()
    };
    let out = rt
        .run_with(&machine, json!({"job": "chores"}), opts)
        .await
        .unwrap();
    println!("OUTPUT {out}");
}

fn run_child(dir: &Path, base_url: &str, phase: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env("FM_TOOL_CRASH_DIR", dir)
        // `db_path` is relative to the working directory, as in the reference.
        .current_dir(dir)
        .env("FM_BASE_URL", base_url)
        .env("FM_PHASE", phase)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn calls_log(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("calls.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn killed_between_tool_calls_resumes_without_running_recorded_calls_again() {
    if let Ok(dir) = std::env::var("FM_TOOL_CRASH_DIR") {
        child(Path::new(&dir)).await;
        return;
    }
    let dir = TempDir::new();
    dir.write("worker.yml", AGENT);
    dir.write("machine.yml", MACHINE);
    let server = FakeLlm::start(json!({"models": {"worker-model": [
        {"$tool_calls": [
            {"id": "n1", "name": "note", "arguments": {"word": "first"}},
            {"id": "s1", "name": "slow", "arguments": {}},
            {"id": "n2", "name": "note", "arguments": {"word": "last"}}
        ]},
        "All done."
    ]}}))
    .unwrap();

    let mut first = run_child(dir.path(), &server.base_url(), "run");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !calls_log(dir.path()).contains(&"slow start".to_string()) {
        assert!(Instant::now() < deadline, "the slow tool never started");
        if let Some(status) = first.try_wait().unwrap() {
            let out = first.wait_with_output().unwrap();
            panic!(
                "the first run exited early ({status}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // SIGKILL: no destructor, no flush, nothing graceful.
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(calls_log(dir.path()), ["note first", "slow start"]);

    let second = run_child(dir.path(), &server.base_url(), "resume")
        .wait_with_output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        second.status.success(),
        "resume failed: {stdout}\n{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let output = stdout
        .lines()
        .find_map(|l| l.split_once("OUTPUT ").map(|(_, rest)| rest))
        .unwrap_or_else(|| {
            panic!(
                "the resumed run printed no output: {stdout}\n{}",
                String::from_utf8_lossy(&second.stderr)
            )
        });
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(output).unwrap(),
        json!({"answer": "All done.", "calls": 3})
    );
    // `note first` was checkpointed: it does not run again. The call in flight (`slow`) runs
    // again; `note last` runs once.
    assert_eq!(
        calls_log(dir.path()),
        [
            "note first",
            "slow start",
            "slow start",
            "slow end",
            "note last"
        ]
    );
    // The model was not asked again for the batch it had already sent.
    let log = server.log();
    assert_eq!(log.len(), 2, "{log:#?}");
    let roles: Vec<&str> = log[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "tool", "tool", "tool"]
    );
}

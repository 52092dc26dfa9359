//! Humans in the loop across processes, with the real `flatmachines` binary: a run parks on a
//! channel and its process exits; `signal send` in another process stores a signal;
//! `dispatch --once` in a third resumes the run from the SQLite database alone.

#![cfg(unix)]

use flatmachines_testkit::TempDir;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_flatmachines");

const MACHINE: &str = r#"spec: flatmachine
spec_version: "2.6.0"
data:
  name: approval-flow
  context: {ticket: "{{ input.ticket }}"}
  persistence: {enabled: true, backend: sqlite, db_path: ./flow.sqlite}
  states:
    start:
      type: initial
      transitions: [{to: wait}]
    wait:
      wait_for: "approval/{{ context.ticket }}"
      output_to_context: {approved: output.approved, by: output.by}
      transitions:
        - condition: "context.approved"
          to: done
        - to: rejected
    done:
      type: final
      output: {status: approved, ticket: context.ticket, by: context.by}
    rejected:
      type: final
      output: {status: rejected, ticket: context.ticket}
"#;

fn cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("FLATAGENTS_LOG_LEVEL", "warning")
        .env_remove("FLATMACHINES_DB_PATH")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> (String, String) {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

fn json_of(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim()).unwrap()
}

fn park(dir: &TempDir, id: &str, ticket: &str) {
    let input = json!({"ticket": ticket}).to_string();
    let (stdout, _) = ok(&cli(
        dir.path(),
        &[
            "run",
            "--config",
            "machine.yml",
            "--input",
            &input,
            "--execution-id",
            id,
        ],
    ));
    assert_eq!(
        json_of(&stdout),
        json!({"_waiting": true, "_channel": format!("approval/{ticket}")})
    );
}

#[test]
fn park_send_and_dispatch_in_separate_processes() {
    let dir = TempDir::new();
    dir.write("machine.yml", MACHINE);
    park(&dir, "e1", "T1");
    park(&dir, "e2", "T2");
    let db = ["--db", "flow.sqlite"];

    // Nothing pending: nobody is resumed.
    let (_, stderr) = ok(&cli(
        dir.path(),
        &[&["dispatch", "--once"][..], &db].concat(),
    ));
    assert!(
        stderr.contains("Dispatch complete: 0 channel(s), 0 machine(s) resumed"),
        "{stderr}"
    );

    let (id, _) = ok(&cli(
        dir.path(),
        &[
            &[
                "signal",
                "send",
                "approval/T1",
                "--data",
                r#"{"approved": true, "by": "ada"}"#,
            ][..],
            &db,
        ]
        .concat(),
    ));
    assert_eq!(id.trim().len(), 36, "a UUID: {id}");
    let (listing, _) = ok(&cli(dir.path(), &[&["signal", "list"][..], &db].concat()));
    assert!(listing.contains("approval/T1"), "{listing}");
    assert!(listing.contains("e1  on approval/T1"), "{listing}");
    assert!(listing.contains("e2  on approval/T2"), "{listing}");

    let (_, stderr) = ok(&cli(
        dir.path(),
        &[&["dispatch", "--once"][..], &db].concat(),
    ));
    assert!(
        stderr.contains("Dispatch complete: 1 channel(s), 1 machine(s) resumed"),
        "{stderr}"
    );
    assert!(stderr.contains("approval/T1: e1"), "{stderr}");

    // e1 finished: resuming it returns its stored output; e2 still waits.
    let (stdout, _) = ok(&cli(
        dir.path(),
        &[&["run", "--resume-from", "e1"][..], &db].concat(),
    ));
    assert_eq!(
        json_of(&stdout),
        json!({"status": "approved", "ticket": "T1", "by": "ada"})
    );
    let (listing, _) = ok(&cli(dir.path(), &[&["signal", "list"][..], &db].concat()));
    assert!(!listing.contains("e1  on"), "{listing}");
    assert!(listing.contains("e2  on approval/T2"), "{listing}");
    // The signal was consumed.
    let pending = listing
        .split("waiting executions:")
        .next()
        .unwrap()
        .to_string();
    assert!(!pending.contains("approval/T1"), "{listing}");

    // A non-map payload reaches the state as `value`; a falsy approval rejects.
    ok(&cli(
        dir.path(),
        &[
            &["signal", "send", "approval/T2", "--data", "false"][..],
            &db,
        ]
        .concat(),
    ));
    ok(&cli(
        dir.path(),
        &[&["dispatch", "--once"][..], &db].concat(),
    ));
    let (stdout, _) = ok(&cli(
        dir.path(),
        &[&["run", "--resume-from", "e2"][..], &db].concat(),
    ));
    assert_eq!(
        json_of(&stdout),
        json!({"status": "rejected", "ticket": "T2"})
    );
}

#[test]
fn two_dispatchers_racing_on_one_signal_resume_the_run_once() {
    let dir = TempDir::new();
    dir.write("machine.yml", MACHINE);
    park(&dir, "r1", "R1");
    let db = ["--db", "flow.sqlite"];
    ok(&cli(
        dir.path(),
        &[
            &[
                "signal",
                "send",
                "approval/R1",
                "--data",
                r#"{"approved": true, "by": "bo"}"#,
            ][..],
            &db,
        ]
        .concat(),
    ));
    let spawn = || {
        Command::new(BIN)
            .args([&["dispatch", "--once"][..], &db].concat())
            .current_dir(dir.path())
            .env("FLATAGENTS_LOG_LEVEL", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success());
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    // The state after the wait ran once: one of the two resumes consumed the signal and
    // finished the run; the other found it finished, locked or without a signal.
    let (stdout, _) = ok(&cli(
        dir.path(),
        &[&["run", "--resume-from", "r1"][..], &db].concat(),
    ));
    assert_eq!(
        json_of(&stdout),
        json!({"status": "approved", "ticket": "R1", "by": "bo"}),
        "{logs}"
    );
    let (listing, _) = ok(&cli(dir.path(), &[&["signal", "list"][..], &db].concat()));
    assert!(!listing.contains("approval/R1"), "no stray copy: {listing}");
}

#[test]
fn dispatch_resumes_a_wait_whose_timeout_has_passed() {
    let dir = TempDir::new();
    dir.write(
        "machine.yml",
        MACHINE
            .replace(
                r#"wait_for: "approval/{{ context.ticket }}""#,
                r#"wait_for: {channel: "approval/{{ context.ticket }}", timeout: 0.3}
      on_error: rejected"#,
            )
            .as_str(),
    );
    park(&dir, "x1", "X1");
    park(&dir, "x2", "X2");
    let db = ["--db", "flow.sqlite"];
    // Before the deadline: nothing to do.
    let (_, stderr) = ok(&cli(
        dir.path(),
        &[&["dispatch", "--once"][..], &db].concat(),
    ));
    assert!(stderr.contains("0 machine(s) resumed"), "{stderr}");
    // x2 gets its answer in time... but the dispatcher only runs after both deadlines.
    ok(&cli(
        dir.path(),
        &[
            &[
                "signal",
                "send",
                "approval/X2",
                "--data",
                r#"{"approved": true}"#,
            ][..],
            &db,
        ]
        .concat(),
    ));
    std::thread::sleep(std::time::Duration::from_millis(400));
    let (_, stderr) = ok(&cli(
        dir.path(),
        &[&["dispatch", "--once"][..], &db].concat(),
    ));
    assert!(stderr.contains("2 machine(s) resumed"), "{stderr}");
    let (stdout, _) = ok(&cli(
        dir.path(),
        &[&["run", "--resume-from", "x1"][..], &db].concat(),
    ));
    assert_eq!(
        json_of(&stdout),
        json!({"status": "rejected", "ticket": "X1"})
    );
    // A signal that is there wins over a passed deadline.
    let (stdout, _) = ok(&cli(
        dir.path(),
        &[&["run", "--resume-from", "x2"][..], &db].concat(),
    ));
    assert_eq!(
        json_of(&stdout),
        json!({"status": "approved", "ticket": "X2", "by": null})
    );
}

#[test]
fn a_listening_dispatcher_resumes_on_a_socket_trigger() {
    let dir = TempDir::new();
    dir.write("machine.yml", MACHINE);
    park(&dir, "l1", "L1");
    let socket = dir.join("trigger.sock");
    let socket_arg = socket.display().to_string();
    let mut listener = Command::new(BIN)
        .args([
            "dispatch",
            "--listen",
            "--db",
            "flow.sqlite",
            "--socket-path",
            &socket_arg,
        ])
        .current_dir(dir.path())
        .env("FLATAGENTS_LOG_LEVEL", "warning")
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !socket.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the listener never bound"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let sent = std::time::Instant::now();
    ok(&cli(
        dir.path(),
        &[
            "signal",
            "send",
            "approval/L1",
            "--data",
            r#"{"approved": true, "by": "lee"}"#,
            "--db",
            "flow.sqlite",
            "--trigger",
            "socket",
            "--trigger-path",
            &socket_arg,
        ],
    ));
    // The listener resumes the run: poll (without resuming anything) until it no longer waits.
    loop {
        let (listing, _) = ok(&cli(dir.path(), &["signal", "list", "--db", "flow.sqlite"]));
        if !listing.contains("l1  on") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the listener did not resume the run"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    eprintln!(
        "signal send → run no longer waiting, seen by polling: {:.1} ms",
        sent.elapsed().as_secs_f64() * 1000.0
    );
    listener.kill().unwrap();
    listener.wait().unwrap();
    let (stdout, _) = ok(&cli(
        dir.path(),
        &["run", "--resume-from", "l1", "--db", "flow.sqlite"],
    ));
    let finished = json_of(&stdout);
    assert_eq!(
        finished,
        json!({"status": "approved", "ticket": "L1", "by": "lee"})
    );
}

#[test]
fn a_dispatcher_killed_during_a_resume_is_finished_by_the_next_once() {
    use flatmachines_testkit::FakeLlm;
    let dir = TempDir::new();
    dir.write(
        "shipper.yml",
        r#"spec: flatagent
spec_version: "2.6.0"
data:
  name: shipper
  model: {provider: openai, name: shipper}
  user: "Ship {{ input.ticket }}"
"#,
    );
    dir.write(
        "machine.yml",
        MACHINE
            .replace(
                "        - condition: \"context.approved\"\n          to: done",
                "        - condition: \"context.approved\"\n          to: ship",
            )
            .replace(
                "    done:\n",
                "    ship:\n      agent: shipper\n      input: {ticket: \"{{ context.ticket }}\"}\n      output_to_context: {shipped: output.content}\n      transitions: [{to: done}]\n    done:\n",
            )
            .replace(
                "  states:\n",
                "  agents: {shipper: ./shipper.yml}\n  states:\n",
            )
            .replace(
                "output: {status: approved, ticket: context.ticket, by: context.by}",
                "output: {status: approved, ticket: context.ticket, by: context.by, shipped: context.shipped}",
            )
            .as_str(),
    );
    park(&dir, "k1", "K1");
    let db = ["--db", "flow.sqlite"];
    ok(&cli(
        dir.path(),
        &[
            &[
                "signal",
                "send",
                "approval/K1",
                "--data",
                r#"{"approved": true, "by": "kim"}"#,
            ][..],
            &db,
        ]
        .concat(),
    ));
    // The first dispatcher's agent call hangs; it is killed while waiting for it.
    let llm = FakeLlm::start(json!({"models": {"shipper": [
        {"$content": "shipped (first try)", "$delay_ms": 30000},
        "shipped"
    ]}}))
    .unwrap();
    let mut first = Command::new(BIN)
        .args([&["dispatch", "--once"][..], &db].concat())
        .current_dir(dir.path())
        .env("OPENAI_BASE_URL", llm.base_url())
        .env("FLATAGENTS_LOG_LEVEL", "warning")
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while llm.log().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent was never called"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    // The run is no longer waiting: only the dispatcher's marker can find it again.
    let (listing, _) = ok(&cli(dir.path(), &[&["signal", "list"][..], &db].concat()));
    assert!(listing.contains("__flatmachines/resuming"), "{listing}");
    assert!(!listing.contains("k1  on"), "{listing}");

    let second = Command::new(BIN)
        .args([&["dispatch", "--once"][..], &db].concat())
        .current_dir(dir.path())
        .env("OPENAI_BASE_URL", llm.base_url())
        .env("FLATAGENTS_LOG_LEVEL", "warning")
        .output()
        .unwrap();
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let (stdout, _) = ok(&cli(
        dir.path(),
        &[&["run", "--resume-from", "k1"][..], &db].concat(),
    ));
    // The approval was not lost or taken twice; the agent call in flight ran again (the one
    // at-least-once step), and the run finished.
    assert_eq!(
        json_of(&stdout),
        json!({"status": "approved", "ticket": "K1", "by": "kim", "shipped": "shipped"})
    );
    assert_eq!(llm.log().len(), 2);
    let (listing, _) = ok(&cli(dir.path(), &[&["signal", "list"][..], &db].concat()));
    assert!(!listing.contains("__flatmachines/resuming"), "{listing}");
    // A third dispatch has nothing left to do.
    let (_, stderr) = ok(&cli(
        dir.path(),
        &[&["dispatch", "--once"][..], &db].concat(),
    ));
    assert!(stderr.contains("0 machine(s) resumed"), "{stderr}");
}

//! `flatmachines run --allow-errors`: machines with compile-time errors run as the Python
//! reference runs them. Each case in `tests/fixtures/lenient` was recorded with the reference
//! (`case.json` holds its output, or `error: true` and the text its error printed).

#![cfg(unix)]

use flatmachines_testkit::TempDir;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_flatmachines");

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/lenient");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.json").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 7, "cases in {}", root.display());
    dirs
}

fn run(dir: &Path, machine: &str, extra: &[&str]) -> Output {
    Command::new(BIN)
        .arg("run")
        .args(extra)
        .args(["--config", machine, "--input", "{}"])
        .current_dir(dir)
        .env("FLATAGENTS_LOG_LEVEL", "error")
        // Nothing here may reach a model: an agent call fails fast instead of hanging.
        .env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        .env("OPENAI_API_KEY", "unused")
        .output()
        .unwrap()
}

fn copy_case(case: &Path) -> TempDir {
    let tmp = TempDir::new();
    for entry in std::fs::read_dir(case).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, tmp.join(p.file_name().unwrap())).unwrap();
    }
    tmp
}

#[test]
fn each_recorded_defect_behaves_as_in_the_reference() {
    for case in cases() {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let spec: Value =
            serde_json::from_str(&std::fs::read_to_string(case.join("case.json")).unwrap())
                .unwrap();
        let tmp = copy_case(&case);
        let out = run(tmp.path(), "machine.yml", &["--allow-errors"]);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        // The defects are reported first, as warnings.
        assert!(stderr.contains("warning[FM"), "{name}: {stderr}");
        assert!(!stderr.contains("error[FM"), "{name}: {stderr}");
        assert!(
            stderr.contains("run anyway because of `--allow-errors`"),
            "{name}: {stderr}"
        );
        let expect = &spec["expect"];
        if expect["error"] == Value::Bool(true) {
            assert!(!out.status.success(), "{name} should fail: {stdout}");
            let wanted = spec["stderr_contains"].as_str().unwrap();
            assert!(
                stderr.contains(wanted),
                "{name}: `{wanted}` not in {stderr}"
            );
        } else {
            assert!(out.status.success(), "{name}: {stdout}\n{stderr}");
            let got: Value = serde_json::from_str(stdout.trim()).unwrap();
            assert_eq!(got, expect["output"], "{name}");
        }
    }
}

#[test]
fn without_the_flag_each_defective_machine_is_refused() {
    for case in cases() {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let tmp = copy_case(&case);
        let out = run(tmp.path(), "machine.yml", &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} ran without --allow-errors");
        assert!(out.stdout.is_empty(), "{name}");
        assert!(stderr.contains("error[FM"), "{name}: {stderr}");
        assert!(
            stderr.contains("does not pass the checks"),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn errors_no_run_can_get_past_are_refused_even_with_the_flag() {
    let tmp = TempDir::new();
    // Two initial states: the reference refuses this machine at construction too.
    tmp.write(
        "two.yml",
        "spec: flatmachine\ndata:\n  name: two\n  states:\n    a: {type: initial, transitions: [{to: c}]}\n    b: {type: initial, transitions: [{to: c}]}\n    c: {type: final}\n",
    );
    // Not YAML at all.
    tmp.write("broken.yml", "spec: flatmachine\ndata: [unclosed\n");
    for file in ["two.yml", "broken.yml"] {
        let out = run(tmp.path(), file, &["--allow-errors"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file} ran");
        assert!(out.stdout.is_empty(), "{file}");
        assert!(stderr.contains("error[FM"), "{file}: {stderr}");
    }
}

#[test]
fn a_machine_without_errors_runs_the_same_with_the_flag() {
    let tmp = TempDir::new();
    tmp.write(
        "ok.yml",
        "spec: flatmachine\ndata:\n  name: ok\n  context: {n: 2}\n  states:\n    a: {type: initial, transitions: [{to: b}]}\n    b: {type: final, output: {n: context.n}}\n",
    );
    let out = run(tmp.path(), "ok.yml", &["--allow-errors"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "{\n  \"n\": 2\n}"
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning[FM"));
}

#[test]
fn an_agent_file_that_is_a_fifo_fails_its_state_instead_of_blocking() {
    let tmp = TempDir::new();
    let fifo = tmp.join("pipe.yml");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    tmp.write(
        "machine.yml",
        "spec: flatmachine\ndata:\n  name: fifo\n  agents: {a: ./pipe.yml}\n  states:\n    start:\n      type: initial\n      agent: a\n      on_error: done\n      transitions: [{to: done}]\n    done:\n      type: final\n      output: {kind: \"{{ context.last_error_type }}\"}\n",
    );
    let mut child = Command::new(BIN)
        .args(["run", "--allow-errors", "--config", "machine.yml"])
        .current_dir(tmp.path())
        .env("FLATAGENTS_LOG_LEVEL", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Only a hang takes this long.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("`run --allow-errors` blocked on a FIFO agent file");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("not a regular file"), "{stderr}");
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got, serde_json::json!({"kind": "FileNotFoundError"}));
}

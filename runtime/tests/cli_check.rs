//! The `flatmachines` command as a user runs it: `check` (exit codes, text and JSON output)
//! and `run --timing`.

use std::path::PathBuf;
use std::process::Command;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(rel)
}

fn check(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flatmachines"))
        .arg("check")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run flatmachines");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn valid_machine_exits_zero() {
    let path = fixture("conformance/linear_basic/machine.yml");
    let (code, stdout, stderr) = check(&[path.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!stdout.contains("error["), "{stdout}");
    assert!(stderr.contains("0 errors"), "{stderr}");
}

#[test]
fn defective_machine_exits_one_with_rustc_style_text() {
    let path = fixture("defective/graph.yml");
    let (code, stdout, _) = check(&[path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stdout.contains("error[FM0102]: transition target `reveiw` is not a state"),
        "{stdout}"
    );
    assert!(stdout.contains("graph.yml:9:15"), "{stdout}");
    assert!(
        stdout.contains("= help: did you mean `review`?"),
        "{stdout}"
    );
}

#[test]
fn json_format_lists_every_diagnostic() {
    let path = fixture("defective/graph.yml");
    let (code, stdout, _) = check(&["--format", "json", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    let diags: Vec<serde_json::Value> = serde_json::from_str(&stdout).expect("a JSON array");
    let first = diags
        .iter()
        .find(|d| d["code"] == "FM0102")
        .expect("FM0102");
    assert_eq!(first["severity"], "error");
    assert_eq!(first["line"], 9);
    assert_eq!(first["column"], 15);
    assert_eq!(first["help"], "did you mean `review`?");
    assert!(
        first["file"]
            .as_str()
            .unwrap()
            .ends_with("defective/graph.yml")
    );
    for d in &diags {
        for key in [
            "code", "severity", "message", "help", "file", "line", "column",
        ] {
            assert!(d.get(key).is_some(), "missing {key} in {d}");
        }
    }
    assert!(diags.iter().any(|d| d["severity"] == "warning"));
}

#[test]
fn warnings_only_exit_zero_unless_denied() {
    let path = fixture("valid/collisions.yml");
    let (code, _, stderr) = check(&[path.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("0 errors"), "{stderr}");
    let (code, _, _) = check(&["--deny-warnings", path.to_str().unwrap()]);
    assert_eq!(code, 1);
}

#[test]
fn missing_file_is_an_error_not_a_panic() {
    let (code, stdout, stderr) = check(&["does/not/exist.yml"]);
    assert_eq!(code, 1);
    assert!(stdout.contains("error[FM0003]"), "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn several_files_are_checked_together() {
    let a = fixture("conformance/linear_basic/machine.yml");
    let b = fixture("defective/options.yml");
    let (code, stdout, stderr) = check(&[a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stdout.contains("FM0401"), "{stdout}");
    assert!(stderr.contains("checked 2 files"), "{stderr}");
}

/// `run --timing` prints the run's duration to stderr and leaves stdout to the output.
#[test]
fn run_with_timing_reports_the_run_time_on_stderr() {
    let machine =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/machines/loop_no_checkpoints.yml");
    let dir = flatmachines_testkit::TempDir::new();
    let out = Command::new(env!("CARGO_BIN_EXE_flatmachines"))
        .args([
            "run",
            "--timing",
            "--max-steps",
            "60",
            "--input",
            r#"{"steps": 50}"#,
        ])
        .arg("--config")
        .arg(&machine)
        .current_dir(dir.path())
        .output()
        .expect("run flatmachines");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    let output: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(output, serde_json::json!({"n": "50"}));
    let line = stderr
        .lines()
        .find(|l| l.starts_with("run took "))
        .unwrap_or_else(|| panic!("no timing line in {stderr:?}"));
    let ms: f64 = line
        .trim_start_matches("run took ")
        .trim_end_matches(" ms")
        .parse()
        .unwrap();
    assert!(ms > 0.0, "{line}");
}

//! `flatmachines run --input` with the real binary: JSON text, `@FILE` and `-` (standard
//! input); integers past 64 bits and non-object inputs are errors that say so, never a silent
//! rounding or an empty input. And `--execution-id` of an execution that already has
//! checkpoints never starts a second history over the first (SQLite and local files).

#![cfg(all(unix, feature = "cli"))]

use flatmachines_testkit::TempDir;
use serde_json::{Value, json};
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_flatmachines");

/// Echoes two input fields.
const ECHO: &str = r#"spec: flatmachine
spec_version: "2.6.0"
data:
  name: echo-input
  context:
    n: input.n
    text: input.text
  persistence: {enabled: false}
  states:
    start: {type: initial, transitions: [{to: done}]}
    done: {type: final, output: {n: context.n, text: context.text}}
"#;

fn cli(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("FLATAGENTS_LOG_LEVEL", "warning")
        .env_remove("FLATMACHINES_DB_PATH")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        pipe.write_all(bytes).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // The runtime's parser: outputs may nest past serde_json's 128 levels.
    flatmachines::unstable::snapshot::parse_json(&out.stdout).unwrap()
}

/// Asserts that the run failed with exit code 1 and `needle` in its error.
fn fails_with(out: &Output, needle: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.contains(needle), "`{needle}` not in: {stderr}");
    stderr
}

fn echo_dir() -> TempDir {
    let dir = TempDir::new();
    dir.write("echo.yml", ECHO);
    dir
}

fn run_echo(dir: &TempDir, input: &str, stdin: Option<&[u8]>) -> Output {
    cli(dir.path(), &["run", "-c", "echo.yml", "-i", input], stdin)
}

#[test]
fn integers_are_exact_up_to_64_bits_and_refused_beyond() {
    let dir = echo_dir();
    for n in ["18446744073709551615", "-9223372036854775808", "0", "-1"] {
        let out = ok(&run_echo(&dir, &format!(r#"{{"n": {n}}}"#), None));
        assert_eq!(out["n"].to_string(), n);
    }
    for n in [
        "18446744073709551616",
        "-9223372036854775809",
        "123456789012345678901234567890",
    ] {
        let input = format!(r#"{{"text": "1e999 and {n} in a string", "n": [{n}]}}"#);
        let stderr = fails_with(&run_echo(&dir, &input, None), "does not fit in 64 bits");
        assert!(stderr.contains(n), "{stderr}");
    }
    // Floats stay floats; big numbers inside strings are text.
    let out = ok(&run_echo(
        &dir,
        r#"{"n": 1.5e3, "text": "123456789012345678901234567890"}"#,
        None,
    ));
    assert_eq!(
        out,
        json!({"n": 1500.0, "text": "123456789012345678901234567890"})
    );
}

#[test]
fn the_input_must_be_an_object() {
    let dir = echo_dir();
    for (input, kind) in [
        ("[1, 2]", "an array"),
        ("5", "a number"),
        ("null", "null"),
        (r#""text""#, "a string"),
        ("true", "a boolean"),
    ] {
        fails_with(&run_echo(&dir, input, None), "must be a JSON object");
        fails_with(&run_echo(&dir, input, None), &format!("not {kind}"));
    }
    fails_with(&run_echo(&dir, "{\"n\": ", None), "is not valid JSON");
}

#[test]
fn input_from_a_file_and_from_standard_input() {
    let dir = echo_dir();
    // Far more than fits comfortably on a command line.
    let text = "x".repeat(4 * 1024 * 1024);
    let input = serde_json::to_vec(&json!({"n": 7, "text": text})).unwrap();
    dir.write("input.json", &input);
    let out = ok(&run_echo(&dir, "@input.json", None));
    assert_eq!(out["n"], json!(7));
    assert!(out["text"] == json!(text));

    let out = ok(&run_echo(&dir, "-", Some(&input)));
    assert_eq!(out["n"], json!(7));
    assert!(out["text"] == json!(text));

    // The same checks apply to what is read.
    dir.write("list.json", "[1]");
    fails_with(&run_echo(&dir, "@list.json", None), "list.json");
    fails_with(&run_echo(&dir, "@list.json", None), "not an array");
    fails_with(
        &run_echo(&dir, "-", Some(b"{\"n\": 99999999999999999999}")),
        "standard input",
    );
    fails_with(&run_echo(&dir, "@missing.json", None), "missing.json");
}

#[test]
fn inputs_nested_past_128_levels_are_read() {
    let dir = echo_dir();
    let mut deep = json!("leaf");
    for _ in 0..300 {
        deep = json!([deep]);
    }
    let input = serde_json::to_string(&json!({"n": deep})).unwrap();
    // Too long for serde_json's default parser, not for the runtime.
    assert!(serde_json::from_str::<Value>(&input).is_err());
    dir.write("deep.json", &input);
    let out = ok(&run_echo(&dir, "@deep.json", None));
    assert!(out["n"] == deep);
}

/// Parks on a channel after one state; or, with `wait: false`, finishes.
const PARKS: &str = r#"spec: flatmachine
spec_version: "2.6.0"
data:
  name: reused-id
  context: {topic: input.topic}
  persistence: PERSISTENCE
  states:
    start:
      type: initial
      transitions:
        - condition: "context.topic == 'wait'"
          to: wait
        - to: done
    wait:
      wait_for: "reused/{{ context.topic }}"
      transitions: [{to: done}]
    done:
      type: final
      output: {topic: context.topic}
"#;

/// Every stored checkpoint key of the execution, so a refused run can be shown to have
/// written nothing.
fn history(dir: &Path, persistence: &str, id: &str) -> Vec<String> {
    if persistence.contains("sqlite") {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            use flatmachines::persistence::{CheckpointBackend, SqliteBackend};
            let backend = SqliteBackend::open(dir.join("runs.sqlite")).unwrap();
            let mut keys = Vec::new();
            for step in 0..10 {
                for event in [
                    "machine_start",
                    "state_enter",
                    "execute",
                    "state_exit",
                    "waiting",
                    "machine_end",
                ] {
                    let key = format!("{id}/step_{step:06}_{event}.json");
                    if let Some(bytes) = backend.load(&key).await.unwrap() {
                        keys.push(format!("{key} {}", bytes.len()));
                    }
                }
            }
            keys
        })
    } else {
        let mut keys: Vec<String> = std::fs::read_dir(dir.join(".checkpoints").join(id))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                format!(
                    "{} {}",
                    e.file_name().to_string_lossy(),
                    e.metadata().unwrap().len()
                )
            })
            .collect();
        keys.sort();
        keys
    }
}

fn reused_ids(persistence: &str) {
    let dir = TempDir::new();
    dir.write("m.yml", PARKS.replace("PERSISTENCE", persistence));
    let run = |input: &str, id: &str| {
        cli(
            dir.path(),
            &["run", "-c", "m.yml", "-i", input, "-e", id],
            None,
        )
    };
    // A parked execution: a second fresh run under its id is refused, and writes nothing.
    let parked = ok(&run(r#"{"topic": "wait"}"#, "parked-1"));
    assert_eq!(parked["_waiting"], json!(true));
    let before = history(dir.path(), persistence, "parked-1");
    assert!(!before.is_empty());
    let stderr = fails_with(
        &run(r#"{"topic": "other"}"#, "parked-1"),
        "already has checkpoints",
    );
    assert!(stderr.contains("--resume-from parked-1"), "{stderr}");
    assert!(stderr.contains("state `wait`"), "{stderr}");
    assert_eq!(history(dir.path(), persistence, "parked-1"), before);

    // A finished execution: its stored output again, nothing run.
    let first = ok(&run(r#"{"topic": "tides"}"#, "done-1"));
    assert_eq!(first, json!({"topic": "tides"}));
    let before = history(dir.path(), persistence, "done-1");
    let again = run(r#"{"topic": "something else"}"#, "done-1");
    assert_eq!(ok(&again), first);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already finished"));
    assert_eq!(history(dir.path(), persistence, "done-1"), before);

    // A new id runs as usual.
    assert_eq!(
        ok(&run(r#"{"topic": "new"}"#, "fresh-1")),
        json!({"topic": "new"})
    );
}

#[test]
fn reused_execution_ids_with_sqlite() {
    reused_ids("{backend: sqlite, db_path: ./runs.sqlite}");
}

#[test]
fn reused_execution_ids_with_local_files() {
    reused_ids("{backend: local}");
}

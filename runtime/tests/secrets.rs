//! Credentials stay secret: a machine run end to end by the CLI (SQLite persistence, then a
//! local checkpoint directory, logs at `trace`, a request the server refuses while echoing the
//! key it got) leaves no API key in stdout, stderr or any file it wrote, and the `Debug` output
//! of the runtime and agent objects shows none either.
//!
//! Two keys: one in `OPENAI_API_KEY`, one written in an agent's model block (`api_key:`, the
//! key the reference hands to litellm). The second is in the machine's YAML, so it is also in
//! the config store's copy of that YAML (`.checkpoints/_configs/`), which resuming from the
//! store alone needs; `docs/agents.md` says so. It must be nowhere else.

#![cfg(all(unix, feature = "cli"))]

use flatmachines::agent::{AdapterContext, AgentSpec, FlatAgentAdapter};
use flatmachines::{Machine, Runtime};
use flatmachines_testkit::{RawHttp, TempDir};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

const BIN: &str = env!("CARGO_BIN_EXE_flatmachines");

/// In `OPENAI_API_KEY`.
const ENV_KEY: &str = "sk-SENTINEL-5f3a9c";
/// In the `refused` agent's model block.
const YAML_KEY: &str = "sk-SENTINEL-yaml-77d1e0";

const MACHINE: &str = r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: secrets
  persistence: PERSISTENCE
  agents:
    answering: ./answering.yml
    refused: ./refused.yml
  states:
    start:
      type: initial
      agent: answering
      output_to_context: {first: output.content}
      transitions: [{to: fail}]
    fail:
      agent: refused
      execution: {type: retry, backoffs: [0.01]}
      on_error: caught
      transitions: [{to: done}]
    caught:
      type: final
      output: {first: context.first, error: context.last_error, kind: context.last_error_type}
    done:
      type: final
      output: {first: context.first}
"#;

const ANSWERING: &str = r#"
spec: flatagent
spec_version: "2.6.0"
data:
  model: {provider: openai, name: answering}
  user: "hello"
"#;

/// `KEY_LINE` is an `api_key:` line or nothing.
const REFUSED: &str = r#"
spec: flatagent
spec_version: "2.6.0"
data:
  model:
    provider: openai
    name: refused
KEY_LINE
  user: "again"
"#;

/// A server that answers model `answering` and refuses model `refused` with a 401 whose message
/// quotes the key it received, as some servers do. It records the keys it got.
fn server(keys: Arc<Mutex<Vec<(String, String)>>>) -> RawHttp {
    RawHttp::start(move |mut c| {
        let Ok(request) = c.read_request() else {
            return;
        };
        let text = String::from_utf8_lossy(&request).to_string();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let key = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("authorization")
                    .then(|| v.trim().trim_start_matches("Bearer ").to_string())
            })
            .unwrap_or_default();
        let model = serde_json::from_str::<Value>(body).unwrap_or_default()["model"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        keys.lock().unwrap().push((model.clone(), key.clone()));
        let _ = if model == "answering" {
            c.reply(
                200,
                &[],
                r#"{"choices": [{"message": {"content": "fine"}, "finish_reason": "stop"}]}"#,
            )
        } else {
            let body = json!({"error": {
                "message": format!("Incorrect API key provided: {key}. Check your key."),
                "type": "invalid_request_error",
            }});
            c.reply(401, &[], &body.to_string())
        };
    })
    .unwrap()
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Writes the machine with `persistence` and the refused agent with `key_line`, runs it with
/// the CLI and returns its output.
fn run_cli(dir: &TempDir, server: &RawHttp, persistence: &str, key_line: &str) -> Output {
    dir.write("machine.yml", MACHINE.replace("PERSISTENCE", persistence));
    dir.write("answering.yml", ANSWERING);
    dir.write("refused.yml", REFUSED.replace("KEY_LINE", key_line));
    Command::new(BIN)
        .current_dir(dir.path())
        .env("OPENAI_BASE_URL", server.base_url())
        .env("OPENAI_API_KEY", ENV_KEY)
        .env("FLATAGENTS_LOG_LEVEL", "trace")
        .env("RUST_BACKTRACE", "1")
        .env_remove("FLATMACHINES_DB_PATH")
        .args(["run", "-c", "machine.yml", "-e", "secret-run"])
        .output()
        .unwrap()
}

/// The run failed its `refused` call with the provider's 401 class and got through
/// `on_error`, and the server's echo of the key was scrubbed from the message.
fn check_output(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["first"], "fine", "{v}");
    // The class is in the message; `last_error_type` is `RuntimeError`, as in the reference.
    assert!(error_text(&v).starts_with("AuthenticationError: "), "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("Incorrect API key provided: [redacted]"),
        "{error}"
    );
    // The logs really are at trace level (so the search covers them).
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("TRACE"),
        "no trace logs"
    );
    v
}

fn error_text(v: &Value) -> &str {
    v["error"].as_str().unwrap_or_default()
}

/// Fails when `secret` is in stdout, stderr, or a file under `dir` not in `allowed`.
fn assert_absent(secret: &str, out: &Output, dir: &Path, allowed: &dyn Fn(&Path) -> bool) {
    assert!(!contains(&out.stdout, secret), "{secret} in stdout");
    assert!(!contains(&out.stderr, secret), "{secret} in stderr");
    let written = files(dir);
    assert!(!written.is_empty());
    for f in written {
        if allowed(&f) {
            continue;
        }
        let bytes = std::fs::read(&f).unwrap();
        assert!(!contains(&bytes, secret), "{secret} in {}", f.display());
    }
}

#[test]
fn the_env_key_is_nowhere_after_a_sqlite_run() {
    let keys = Arc::new(Mutex::new(Vec::new()));
    let server = server(keys.clone());
    let dir = TempDir::with_prefix("fm-secrets-");
    let out = run_cli(
        &dir,
        &server,
        "{enabled: true, backend: sqlite, db_path: ./state.sqlite}",
        "",
    );
    check_output(&out);
    // Both calls carried the key (so the test looks for something that was there).
    let keys = keys.lock().unwrap().clone();
    assert!(keys.len() >= 2, "{keys:?}");
    assert!(keys.iter().all(|(_, k)| k == ENV_KEY), "{keys:?}");
    assert!(dir.path().join("state.sqlite").exists());
    assert_absent(ENV_KEY, &out, dir.path(), &|_| false);
}

#[test]
fn keys_from_env_and_yaml_stay_out_of_checkpoints_logs_and_errors() {
    let keys = Arc::new(Mutex::new(Vec::new()));
    let server = server(keys.clone());
    let dir = TempDir::with_prefix("fm-secrets-");
    let out = run_cli(
        &dir,
        &server,
        "{enabled: true, backend: local}",
        &format!("    api_key: {YAML_KEY}"),
    );
    check_output(&out);
    let keys = keys.lock().unwrap().clone();
    assert!(
        keys.contains(&("answering".into(), ENV_KEY.into())),
        "{keys:?}"
    );
    assert!(
        keys.contains(&("refused".into(), YAML_KEY.into())),
        "{keys:?}"
    );
    let checkpoints = dir.path().join(".checkpoints");
    assert!(checkpoints.is_dir());
    assert_absent(ENV_KEY, &out, dir.path(), &|_| false);
    // The YAML key: in the file the user wrote it in, and in the config store's copy of the
    // machine; nowhere else (checkpoints, logs, the error, the output).
    let configs = checkpoints.join("_configs");
    let allowed = |f: &Path| f.ends_with("refused.yml") || f.starts_with(&configs);
    assert_absent(YAML_KEY, &out, dir.path(), &allowed);
}

#[tokio::test]
async fn debug_output_shows_no_key() {
    let dir = TempDir::with_prefix("fm-secrets-");
    dir.write(
        "machine.yml",
        MACHINE.replace("PERSISTENCE", "{enabled: false}"),
    );
    dir.write("answering.yml", ANSWERING);
    dir.write(
        "refused.yml",
        REFUSED.replace("KEY_LINE", &format!("    api_key: {YAML_KEY}")),
    );
    let spec = AgentSpec {
        ty: "flatagent".into(),
        reference: None,
        config: Some(json!({"spec": "flatagent", "data": {
            "model": {"provider": "openai", "name": "refused", "api_key": YAML_KEY},
            "user": "again",
        }})),
        dir: dir.path().to_path_buf(),
        profiles: Some(json!({"model_profiles": {"p": {"api_key": YAML_KEY}}})),
    };
    let ctx = AdapterContext {
        config_dir: dir.path().to_path_buf(),
        settings: json!({"openai_api_key": YAML_KEY}),
        machine_name: "secrets".into(),
        profiles: spec.profiles.clone(),
    };
    let rt = Runtime::builder()
        .adapter(FlatAgentAdapter::with_base_url("http://127.0.0.1:9/v1"))
        .build();
    let machine = Machine::from_file(dir.path().join("machine.yml")).unwrap();
    let shown = format!("{spec:?}\n{ctx:?}\n{rt:?}\n{:?}", FlatAgentAdapter::new());
    assert!(!shown.contains(YAML_KEY), "{shown}");
    assert!(!shown.contains(ENV_KEY), "{shown}");
    assert!(shown.contains("[redacted]"), "{shown}");
    // A machine's `Debug` is a summary: neither a key written in its YAML (held in its agent
    // configs and its config-store text) nor the environment's shows.
    let shown = format!("{machine:?}");
    assert!(!shown.contains(YAML_KEY), "{shown}");
    assert!(!shown.contains(ENV_KEY), "{shown}");
    assert!(shown.contains("secrets"), "{shown}");
}

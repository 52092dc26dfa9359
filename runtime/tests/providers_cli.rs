//! `flatmachines run` finds each provider's endpoint and key in the environment variables
//! litellm reads (`<PROVIDER>_BASE_URL`, `<PROVIDER>_API_BASE`, `<PROVIDER>_API_KEY`): a real
//! process with its own environment, against scripted servers on 127.0.0.1.

use flatmachines_testkit::{Response, ScriptedServer, TempDir};
use serde_json::{Value, json};
use std::process::Command;

const MACHINE: &str = r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: env-providers
  agents:
    claude:
      spec: flatagent
      spec_version: "2.6.0"
      data:
        model: {provider: anthropic, name: claude-haiku-4-5}
        user: "hello claude"
    gem:
      spec: flatagent
      spec_version: "2.6.0"
      data:
        model: {name: gemini/gemini-2.5-flash}
        user: "hello gemini"
  states:
    start:
      type: initial
      agent: claude
      output_to_context: {a: output.content}
      transitions: [{to: second}]
    second:
      agent: gem
      output_to_context: {b: output.content}
      transitions: [{to: done}]
    done:
      type: final
      output: {a: context.a, b: context.b}
"#;

#[test]
fn provider_endpoints_and_keys_come_from_the_environment() {
    let anthropic = ScriptedServer::start([Response::ok(json!({
        "id": "m", "model": "claude-haiku-4-5", "stop_reason": "end_turn",
        "content": [{"type": "text", "text": "from anthropic"}],
        "usage": {"input_tokens": 1, "output_tokens": 1}}))])
    .unwrap();
    let gemini = ScriptedServer::start([Response::ok(json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "from gemini"}]},
                        "finishReason": "STOP"}]}))])
    .unwrap();
    let dir = TempDir::with_prefix("fm-env-providers-");
    let config = dir.write("machine.yml", MACHINE);
    let out = Command::new(env!("CARGO_BIN_EXE_flatmachines"))
        .args(["run", "--config"])
        .arg(&config)
        .args(["--input", "{}"])
        .current_dir(dir.path())
        .env("ANTHROPIC_BASE_URL", anthropic.base_url())
        .env("ANTHROPIC_API_KEY", "sk-ant-env")
        // litellm's spelling of the override, the second one read.
        .env_remove("GEMINI_BASE_URL")
        .env("GEMINI_API_BASE", gemini.base_url())
        .env_remove("GOOGLE_API_KEY")
        .env("GEMINI_API_KEY", "g-env")
        .env("FLATAGENTS_LOG_LEVEL", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let output: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(output, json!({"a": "from anthropic", "b": "from gemini"}));
    let a = &anthropic.requests()[0];
    assert_eq!(a.path, "/v1/messages");
    assert_eq!(a.header("x-api-key"), Some("sk-ant-env"));
    let g = &gemini.requests()[0];
    assert_eq!(g.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(g.header("x-goog-api-key"), Some("g-env"));
}

//! The three-state pipeline the real-process tests run (`crash.rs`, `cli_signals.rs`): its
//! machine and agent files, the scripted replies, and the `flatmachines run` command against
//! the project's scripted OpenAI-compatible server.

#![allow(dead_code)]

use flatmachines_testkit::FakeLlm;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Output, Stdio};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_flatmachines");

pub(crate) const AGENT: &str = r#"spec: flatagent
spec_version: "2.6.0"
data:
  name: NAME
  model: {provider: openai, name: MODEL}
  user: "PROMPT"
"#;

/// Three agent states in a row; `PERSISTENCE` is replaced by the backend's block.
pub(crate) const MACHINE: &str = r#"spec: flatmachine
spec_version: "2.6.0"
data:
  name: pipeline
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

pub(crate) const SQLITE: &str = "{backend: sqlite, db_path: ./runs.sqlite}";
pub(crate) const LOCAL: &str = "{backend: local}";

/// Writes the machine and its agents into `dir`.
pub(crate) fn write_machine(dir: &Path, persistence: &str) {
    for (file, name, model, prompt) in [
        (
            "outliner.yml",
            "outliner",
            "pipeline-outline",
            "Outline {{ input.topic }}.",
        ),
        (
            "drafter.yml",
            "drafter",
            "pipeline-draft",
            "Draft from {{ input.outline }}",
        ),
        (
            "polisher.yml",
            "polisher",
            "pipeline-polish",
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

/// The replies; the first `slow` draft replies take `delay_ms`.
pub(crate) fn script(slow: usize, delay_ms: u64) -> Value {
    let draft = "Tide pools shelter small life.";
    json!({"models": {
        "pipeline-outline": {"default": "1. tides\n2. pools"},
        "pipeline-draft": {
            "responses": vec![json!({"$content": draft, "$delay_ms": delay_ms}); slow],
            "default": draft,
        },
        "pipeline-polish": {"default": "Tide pools shelter small, hardy life."},
    }})
}

pub(crate) fn flatmachines(dir: &Path, llm: &FakeLlm, args: &[&str]) -> Command {
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

pub(crate) fn output_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Requests per model in the server's log.
pub(crate) fn calls(llm: &FakeLlm, model: &str) -> usize {
    llm.log().iter().filter(|r| r["model"] == model).count()
}

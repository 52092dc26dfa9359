//! `flatmachines run --stream` with the real binary: the run's events as JSON lines on stderr,
//! the output alone on stdout. The agents talk to the project's scripted OpenAI-compatible
//! server.

#![cfg(feature = "cli")]

use flatmachines_testkit::{FakeLlm, TempDir};
use serde_json::{Value, json};

#[path = "common/pipeline.rs"]
mod pipeline;

use pipeline::*;

#[test]
fn events_go_to_stderr_as_json_lines_and_the_output_alone_to_stdout() {
    let dir = TempDir::new();
    write_machine(dir.path(), "{enabled: false}");
    let llm = FakeLlm::start(script(0, 0)).unwrap();
    let out = flatmachines(
        dir.path(),
        &llm,
        &[
            "-c",
            "machine.yml",
            "-i",
            r#"{"topic": "tide pools"}"#,
            "-e",
            "stream-1",
            "--stream",
        ],
    )
    .output()
    .unwrap();
    let output = output_json(&out);
    assert_eq!(
        output,
        json!({
            "outline": "1. tides\n2. pools",
            "draft": "Tide pools shelter small life.",
            "final": "Tide pools shelter small, hardy life.",
        })
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Log lines may share stderr; the events are the lines that are JSON objects.
    let events: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("event").is_some())
        .collect();
    let summary: Vec<String> = events
        .iter()
        .filter(|e| e["event"] != "agent_stream")
        .map(|e| {
            format!(
                "{} {}",
                e["event"].as_str().unwrap(),
                e["state"].as_str().or(e["agent"].as_str()).unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            "started ",
            "state_entered start",
            "state_exited start",
            "state_entered outline",
            "agent_result outline",
            "state_exited outline",
            "state_entered draft",
            "agent_result draft",
            "state_exited draft",
            "state_entered polish",
            "agent_result polish",
            "state_exited polish",
            "state_entered done",
            "state_exited done",
            "output ",
        ],
        "{stderr}"
    );
    assert_eq!(events[0]["execution_id"], "stream-1");
    assert_eq!(events.last().unwrap()["output"], output);
    assert_eq!(events[4]["agent"], "outliner");
}

#[test]
fn without_stream_stderr_has_no_events() {
    let dir = TempDir::new();
    write_machine(dir.path(), "{enabled: false}");
    let llm = FakeLlm::start(script(0, 0)).unwrap();
    let out = flatmachines(
        dir.path(),
        &llm,
        &["-c", "machine.yml", "-i", r#"{"topic": "tide pools"}"#],
    )
    .output()
    .unwrap();
    output_json(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(r#""event":"#), "{stderr}");
}

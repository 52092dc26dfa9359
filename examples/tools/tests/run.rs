//! The example runs offline: its Rust tool and its MCP server (the example's own binary, started
//! by the runtime from the agent's `data.mcp`) both answer, and the scripted model's final text
//! is the output.

use std::process::Command;

#[test]
fn the_example_runs_offline_with_a_rust_tool_and_an_mcp_server() {
    let out = Command::new(env!("CARGO_BIN_EXE_example-tools"))
        .env_remove("OPENAI_BASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json_end = stdout
        .find("\nsystem prompt: ")
        .expect("the prompt follows the output");
    assert!(
        stdout.contains("- lookup_note: Read the project's note on a topic."),
        "the MCP tools are listed in the system prompt: {stdout}"
    );
    let output: serde_json::Value = serde_json::from_str(&stdout[..json_end]).unwrap();
    assert_eq!(output["tool_calls"], 2);
    assert_eq!(output["turns"], 2);
    assert!(
        stdout.contains(r#"tool "call_1": "The next release ships machine-driven tool loops.""#),
        "{stdout}"
    );
    assert!(stdout.contains(r#"tool "call_2": "4""#), "{stdout}");
}

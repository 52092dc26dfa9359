//! One MCP tool call over stdio, from `McpServers::execute` to the tool's answer: the `echo` tool
//! of the test kit's `mcp-echo` server (rmcp on both sides), started once before the loop. The
//! figure is the round trip the tool loop pays per MCP call on top of the tool's own work.
//!
//! The server comes from `MCP_ECHO_BIN` when set, else the bench builds it first with
//! `cargo build --release -p flatmachines-testkit --features mcp-echo --bin mcp-echo`.

use criterion::{Criterion, criterion_group, criterion_main};
use flatmachines::tools::{McpServers, ToolProvider};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The `mcp-echo` executable: `MCP_ECHO_BIN`, or the one cargo reports after building it.
fn echo_server() -> PathBuf {
    if let Some(path) = std::env::var_os("MCP_ECHO_BIN") {
        return PathBuf::from(path);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "flatmachines-testkit",
            "--features",
            "mcp-echo",
            "--bin",
            "mcp-echo",
            "--message-format=json",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo build for mcp-echo");
    assert!(out.status.success(), "cargo build of mcp-echo failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .next_back()
        .expect("cargo reported no mcp-echo executable")
}

fn bench(c: &mut Criterion) {
    let server = echo_server();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mcp = json!({"servers": {"echo": {"command": server}}});
    let servers = rt
        .block_on(McpServers::start(&mcp, std::path::Path::new(".")))
        .expect("start mcp-echo");
    let args = json!({"text": "The quick brown fox jumps over the lazy dog."});
    let answer = rt
        .block_on(servers.execute("echo", "call_0", &args))
        .unwrap();
    assert_eq!(answer.content, args["text"]);

    c.bench_function("mcp/stdio_tool_call", |b| {
        b.to_async(&rt).iter(|| async {
            let result = servers.execute("echo", "call_1", &args).await.unwrap();
            std::hint::black_box(result);
        })
    });

    rt.block_on(servers.shutdown());
}

criterion_group!(benches, bench);
criterion_main!(benches);

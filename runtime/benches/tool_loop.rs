//! Overhead of one tool-loop turn, without an LLM or a real tool: a scripted executor asks for
//! one call of a no-op Rust tool on each of `TURNS` turns, then answers with text. Per-turn
//! time is a run's time divided by `TURNS`. Two variants: checkpoints off, and the default
//! in-memory checkpoints (one `tool_call` snapshot per call, carrying the whole chain).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flatmachines::agent::{
    AdapterContext, AgentAdapter, AgentExecutor, AgentFailure, AgentResult, AgentSpec, ToolTurn,
};
use flatmachines::tools::Tool;
use flatmachines::{Machine, Runtime};
use serde_json::{Value, json};
use std::sync::Arc;

const TURNS: usize = 20;

/// Asks for the no-op tool until the chain holds `TURNS` assistant messages.
struct Looper;

#[flatmachines::async_trait]
impl AgentExecutor for Looper {
    async fn execute(&self, _: Value, _: &Value) -> Result<AgentResult, AgentFailure> {
        Ok(AgentResult::default())
    }
    fn supports_tool_loop(&self) -> bool {
        true
    }
    async fn execute_with_tools(
        &self,
        _input: Value,
        turn: ToolTurn<'_>,
        _: &Value,
    ) -> Result<AgentResult, AgentFailure> {
        let done = turn
            .messages
            .map_or(0, |m| m.iter().filter(|m| m["role"] == "assistant").count());
        if done + 1 >= TURNS {
            return Ok(AgentResult {
                content: Some("done".into()),
                finish_reason: Some("stop".into()),
                usage: Some(json!({"api_calls": 1})),
                ..AgentResult::default()
            });
        }
        Ok(AgentResult {
            content: None,
            finish_reason: Some("tool_use".into()),
            tool_calls: Some(json!([{"id": format!("c{done}"), "name": "noop", "arguments": {}}])),
            usage: Some(json!({"api_calls": 1})),
            rendered_user_prompt: Some("go".into()),
            ..AgentResult::default()
        })
    }
}

struct LooperAdapter;

impl AgentAdapter for LooperAdapter {
    fn type_name(&self) -> &str {
        "looper"
    }
    fn create_executor(
        &self,
        _: &str,
        _: &AgentSpec,
        _: &AdapterContext,
    ) -> Result<Arc<dyn AgentExecutor>, AgentFailure> {
        Ok(Arc::new(Looper))
    }
}

fn machine(persistence: &str) -> Machine {
    let yaml = format!(
        r#"spec: flatmachine
spec_version: "2.6.0"
data:
  name: bench-tool-loop
  persistence: {persistence}
  agents:
    looper: {{type: looper}}
  states:
    start:
      type: initial
      agent: looper
      tool_loop: {{max_turns: 1000, max_tool_calls: 1000}}
      output_to_context: {{answer: output.content}}
      transitions: [{{to: done}}]
    done:
      type: final
      output: {{answer: context.answer}}
"#
    );
    Machine::from_yaml(&yaml, ".").expect("bench machine checks")
}

fn tool_loop(c: &mut Criterion) {
    let noop = Tool::from_fn(
        "noop",
        "Does nothing",
        json!({"type": "object"}),
        |_| async { "ok" },
    );
    let rt = Runtime::builder()
        .adapter(LooperAdapter)
        .tools(noop)
        .build();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("tool_loop");
    group.throughput(Throughput::Elements(TURNS as u64));
    for (name, persistence) in [
        ("20_turns_no_checkpoints", "{enabled: false}"),
        (
            "20_turns_memory_checkpoints",
            "{enabled: true, backend: memory}",
        ),
    ] {
        let m = machine(persistence);
        group.bench_function(name, |b| {
            b.to_async(&tokio).iter(|| async {
                let out = rt.run(&m, json!({})).await.unwrap();
                assert_eq!(out, json!({"answer": "done"}));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, tool_loop);
criterion_main!(benches);

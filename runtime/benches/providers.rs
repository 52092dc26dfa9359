//! Cost of the provider layer per model call, against a scripted server on 127.0.0.1 that
//! answers every request with the same reply (connections kept alive):
//!
//! * `floor` — a bare reqwest POST of the same body and a read of the reply: what any client
//!   pays for the round trip;
//! * `openai`, `anthropic`, `gemini` — one `flatagent` executor call (prompt rendering, the
//!   provider's request body, the exchange, reading the reply, usage, cost, rate limits);
//! * `openai_stream` — the same call streamed (SSE parsing, the accumulator, stream events
//!   into a sink).
//!
//! After the criterion groups it prints, for streamed calls, the time from the server writing
//! the first byte of the stream to the sink receiving the first event, and to the first
//! `on_agent_stream_event` call of a running machine's hooks (median and 90th percentile over
//! 300 calls each).

use criterion::{Criterion, criterion_group, criterion_main};
use flatmachines::agent::{
    AdapterContext, AgentAdapter, AgentExecutor, AgentSpec, FlatAgentAdapter, stream,
};
use flatmachines_testkit::{Response, ScriptedServer};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn executor(server: &ScriptedServer, mut model: Value) -> Arc<dyn AgentExecutor> {
    model["base_url"] = json!(server.base_url());
    model["api_key"] = json!("bench-key");
    let spec = AgentSpec {
        ty: "flatagent".into(),
        reference: None,
        config: Some(json!({"spec": "flatagent", "data": {
            "model": model,
            "system": "You are a terse assistant.",
            "user": "Summarise {{ input.topic }} in one line.",
        }})),
        dir: Default::default(),
        profiles: None,
    };
    let ctx = AdapterContext {
        config_dir: Default::default(),
        settings: json!({}),
        machine_name: "bench".into(),
        profiles: None,
    };
    FlatAgentAdapter::new()
        .create_executor("a", &spec, &ctx)
        .unwrap()
}

fn openai_reply() -> Value {
    json!({"id": "c", "model": "gpt-4o-mini", "choices": [{"index": 0, "finish_reason": "stop",
           "message": {"role": "assistant", "content": "Tide pools hold small worlds."}}],
           "usage": {"prompt_tokens": 30, "completion_tokens": 8, "total_tokens": 38}})
}

fn openai_stream() -> Response {
    let words = ["Tide ", "pools ", "hold ", "small ", "worlds."];
    let mut events = vec![json!({"id": "c", "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})];
    events.extend(
        words
            .iter()
            .map(|w| json!({"choices": [{"index": 0, "delta": {"content": w}}]})),
    );
    events.push(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}));
    events.push(json!({"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 8}}));
    Response::sse(events)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let input = json!({"topic": "tide pools"});
    let mut g = c.benchmark_group("provider_call");

    let openai = ScriptedServer::always(Response::ok(openai_reply())).unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", openai.base_url());
    let body = json!({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Summarise tide pools in one line."}]});
    g.bench_function("floor", |b| {
        b.iter(|| {
            rt.block_on(async {
                let r = client
                    .post(&url)
                    .bearer_auth("bench-key")
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                r.bytes().await.unwrap()
            })
        })
    });
    let ex = executor(
        &openai,
        json!({"provider": "openai", "name": "gpt-4o-mini"}),
    );
    g.bench_function("openai", |b| {
        b.iter(|| {
            rt.block_on(ex.execute(input.clone(), &Value::Null))
                .unwrap()
        })
    });

    let anthropic = ScriptedServer::always(Response::ok(json!({
        "id": "m", "model": "claude-haiku-4-5", "stop_reason": "end_turn",
        "content": [{"type": "text", "text": "Tide pools hold small worlds."}],
        "usage": {"input_tokens": 30, "output_tokens": 8}})))
    .unwrap();
    let ex = executor(
        &anthropic,
        json!({"provider": "anthropic", "name": "claude-haiku-4-5"}),
    );
    g.bench_function("anthropic", |b| {
        b.iter(|| {
            rt.block_on(ex.execute(input.clone(), &Value::Null))
                .unwrap()
        })
    });

    let gemini = ScriptedServer::always(Response::ok(json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Tide pools hold small worlds."}]},
                        "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 8}})))
    .unwrap();
    let ex = executor(&gemini, json!({"name": "gemini/gemini-2.5-flash"}));
    g.bench_function("gemini", |b| {
        b.iter(|| {
            rt.block_on(ex.execute(input.clone(), &Value::Null))
                .unwrap()
        })
    });

    let streaming = ScriptedServer::always(openai_stream()).unwrap();
    let ex = executor(
        &streaming,
        json!({"provider": "openai", "name": "gpt-4o-mini", "stream": true}),
    );
    let sink: stream::StreamSink = Arc::new(|e| {
        std::hint::black_box(e);
    });
    g.bench_function("openai_stream", |b| {
        b.iter(|| {
            rt.block_on(stream::scope(
                sink.clone(),
                ex.execute(input.clone(), &Value::Null),
            ))
            .unwrap()
        })
    });
    g.finish();

    // First byte on the socket → first event in the sink.
    let first: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let f = first.clone();
    let sink: stream::StreamSink = Arc::new(move |_| {
        let mut slot = f.lock().unwrap();
        if slot.is_none() {
            *slot = Some(Instant::now());
        }
    });
    let mut gaps: Vec<Duration> = Vec::new();
    for _ in 0..300 {
        *first.lock().unwrap() = None;
        rt.block_on(stream::scope(
            sink.clone(),
            ex.execute(input.clone(), &Value::Null),
        ))
        .unwrap();
        let sent = streaming.requests().last().and_then(|r| r.first_byte_at);
        let got = *first.lock().unwrap();
        if let (Some(sent), Some(got)) = (sent, got) {
            gaps.push(got.saturating_duration_since(sent));
        }
    }
    report("stream first byte -> first sink event", gaps);

    // First byte on the socket → the first `on_agent_stream_event` of a machine's hooks.
    let machine = flatmachines::Machine::from_yaml(
        &format!(
            r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: stream-bench
  agents:
    a:
      spec: flatagent
      spec_version: "2.6.0"
      data:
        model: {{provider: openai, name: gpt-4o-mini, stream: true, base_url: "{}"}}
        user: "Summarise tide pools in one line."
  states:
    start:
      type: initial
      agent: a
      transitions: [{{to: done}}]
    done:
      type: final
"#,
            streaming.base_url()
        ),
        std::path::Path::new("."),
    )
    .unwrap();
    let hooks = FirstEvent::default();
    let first = hooks.0.clone();
    let runtime = flatmachines::Runtime::builder().hooks(hooks).build();
    let mut gaps: Vec<Duration> = Vec::new();
    for _ in 0..300 {
        *first.lock().unwrap() = None;
        rt.block_on(runtime.run(&machine, json!({}))).unwrap();
        let sent = streaming.requests().last().and_then(|r| r.first_byte_at);
        let got = *first.lock().unwrap();
        if let (Some(sent), Some(got)) = (sent, got) {
            gaps.push(got.saturating_duration_since(sent));
        }
    }
    report("stream first byte -> first on_agent_stream_event", gaps);
}

/// Hooks that note when the first stream event of a run arrives.
#[derive(Default)]
struct FirstEvent(Arc<Mutex<Option<Instant>>>);

#[flatmachines::async_trait]
impl flatmachines::hooks::MachineHooks for FirstEvent {
    fn on_agent_stream_event(&self, _state: &str, _event: &Value, _context: &Value) {
        let mut slot = self.0.lock().unwrap();
        if slot.is_none() {
            *slot = Some(Instant::now());
        }
    }
}

fn report(what: &str, mut gaps: Vec<Duration>) {
    gaps.sort();
    if !gaps.is_empty() {
        println!(
            "{what}: median {:?}, p90 {:?} ({} calls)",
            gaps[gaps.len() / 2],
            gaps[gaps.len() * 9 / 10],
            gaps.len()
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

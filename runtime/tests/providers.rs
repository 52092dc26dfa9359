//! The `flatagent` adapter against each provider's wire format, served by a scripted server on
//! 127.0.0.1: the request is asserted field by field, replies carry usage (and so cost), the
//! error statuses map to the same typed errors for every provider, and streamed replies add up
//! to the same result as whole ones while their events reach the call's stream sink.

#![cfg(feature = "http")]

use flatmachines::agent::{
    AdapterContext, AgentAdapter, AgentExecutor, AgentFailure, AgentResult, AgentSpec,
    FlatAgentAdapter, ToolTurn, stream,
};
use flatmachines_testkit::{Response, ScriptedServer};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// An executor for an inline agent whose model block is `model` (with `base_url` pointing at
/// `server`) and whose output schema asks for JSON when `json_output`.
fn executor(
    server: &ScriptedServer,
    mut model: Value,
    json_output: bool,
) -> Arc<dyn AgentExecutor> {
    model["base_url"] = json!(server.base_url());
    let mut data = json!({
        "model": model,
        "system": "You are terse.",
        "user": "Say hi to {{ input.who }}.",
    });
    if json_output {
        data["output"] = json!({"greeting": {"type": "str"}});
    }
    create(
        "greeter",
        json!({"spec": "flatagent", "spec_version": "2.6.0", "data": data}),
    )
    .unwrap()
}

/// The `flatagent` executor for agent `name` with the inline document `doc`.
fn create(name: &str, doc: Value) -> Result<Arc<dyn AgentExecutor>, AgentFailure> {
    let spec = AgentSpec {
        ty: "flatagent".into(),
        reference: None,
        config: Some(doc),
        dir: Default::default(),
        profiles: None,
    };
    let ctx = AdapterContext {
        config_dir: Default::default(),
        settings: json!({}),
        machine_name: "m".into(),
        profiles: None,
    };
    FlatAgentAdapter::new().create_executor(name, &spec, &ctx)
}

async fn call(ex: &Arc<dyn AgentExecutor>) -> AgentResult {
    ex.execute(json!({"who": "Ada"}), &json!({})).await.unwrap()
}

/// Runs `ex` with a sink and returns the result and the events it received.
async fn call_streaming(ex: &Arc<dyn AgentExecutor>) -> (AgentResult, Vec<Value>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let sink: stream::StreamSink = Arc::new(move |e| s.lock().unwrap().push(e));
    let r = stream::scope(sink, call(ex)).await;
    let events = seen.lock().unwrap().clone();
    (r, events)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1e-9)
}

/// The error statuses every provider maps the same way: class, code, retryable.
async fn assert_error_statuses(model: Value, body: Value) {
    let server = ScriptedServer::start([
        Response::status(400, body.clone()),
        Response::status(401, body.clone()),
        Response::status(429, body.clone())
            .header("retry-after", "3")
            .header("x-ratelimit-remaining-requests", "0"),
        Response::status(500, body.clone()),
    ])
    .unwrap();
    let ex = executor(&server, model, false);
    let want = [
        ("BadRequestError", "invalid_request", false),
        ("AuthenticationError", "auth_error", false),
        ("RateLimitError", "rate_limit", true),
        ("InternalServerError", "server_error", true),
    ];
    for (class, code, retryable) in want {
        let r = call(&ex).await;
        let e = r.error.clone().expect("an error result");
        assert_eq!(e["type"], class, "{e}");
        assert_eq!(e["code"], code, "{e}");
        assert_eq!(e["retryable"], retryable, "{e}");
        assert_eq!(e["message"], "scripted failure", "{e}");
        assert_eq!(r.finish_reason.as_deref(), Some("error"));
        if code == "rate_limit" {
            let rl = r.rate_limit.unwrap();
            assert_eq!(rl["limited"], true);
            assert_eq!(rl["retry_after"], 3);
            assert_eq!(rl["windows"][0]["remaining"], 0);
        }
    }
}

#[tokio::test]
async fn anthropic_messages_api() {
    let reply = json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "{\"greeting\": \"Hi Ada\"}"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 20, "output_tokens": 6, "cache_read_input_tokens": 100,
                  "cache_creation_input_tokens": 10}
    });
    let server = ScriptedServer::start([Response::ok(reply)
        .header("anthropic-ratelimit-requests-remaining", "49")
        .header("anthropic-ratelimit-requests-limit", "50")
        .header("request-id", "req_9")])
    .unwrap();
    let model = json!({"provider": "anthropic", "name": "claude-sonnet-4-5", "api_key": "sk-ant-test",
                       "temperature": 0.3, "seed": 1, "max_tokens": 100, "top_k": 5});
    let r = call(&executor(&server, model, true)).await;
    assert_eq!(r.error, None);
    assert_eq!(r.output, Some(json!({"greeting": "Hi Ada"})));
    assert_eq!(r.finish_reason.as_deref(), Some("stop"));
    let req = &server.requests()[0];
    assert_eq!(
        (req.method.as_str(), req.path.as_str()),
        ("POST", "/v1/messages")
    );
    assert_eq!(req.header("x-api-key"), Some("sk-ant-test"));
    assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(req.header("authorization"), None);
    // `seed` is not a Messages API parameter (litellm drops it); JSON mode has no counterpart.
    assert_eq!(
        req.body,
        json!({"model": "claude-sonnet-4-5", "system": "You are terse.", "max_tokens": 100,
               "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hi to Ada."}]}],
               "temperature": 0.3, "top_k": 5})
    );
    // litellm's normalisation: the prompt count includes the cached tokens.
    assert_eq!(
        r.usage,
        Some(
            json!({"input_tokens": 130, "output_tokens": 6, "total_tokens": 136,
                    "cache_read_tokens": 100, "cache_write_tokens": 10, "api_calls": 1})
        )
    );
    // The price table's claude-sonnet-4-5-20250929: 3e-6 in, 1.5e-5 out, 3e-7 cache read,
    // 3.75e-6 cache write.
    let total = 20.0 * 3e-6 + 100.0 * 3e-7 + 10.0 * 3.75e-6 + 6.0 * 1.5e-5;
    let cost = r.cost.clone().unwrap();
    assert!(close(cost["total"].as_f64().unwrap(), total), "{cost}");
    assert!(close(r.machine_cost(), total));
    let rl = r.rate_limit.unwrap();
    assert_eq!(
        rl["windows"][0],
        json!({"name": "requests", "resource": "requests",
                                        "remaining": 49, "limit": 50})
    );
    assert_eq!(r.provider_data.as_ref().unwrap()["request_id"], "req_9");
    assert_eq!(
        r.provider_data.as_ref().unwrap()["model"],
        "anthropic/claude-sonnet-4-5"
    );
}

#[tokio::test]
async fn anthropic_errors() {
    assert_error_statuses(
        json!({"provider": "anthropic", "name": "claude-x"}),
        json!({"type": "error", "error": {"type": "api_error", "message": "scripted failure"}}),
    )
    .await;
}

#[tokio::test]
async fn anthropic_streams_add_up_to_the_whole_reply() {
    let events = [
        json!({"type": "message_start", "message": {"id": "msg_02", "model": "claude-haiku-4-5",
               "usage": {"input_tokens": 12, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi "}}),
        json!({"type": "ping"}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Ada"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}}),
        json!({"type": "message_stop"}),
    ];
    let server = ScriptedServer::start([Response::sse_named(events)]).unwrap();
    let model = json!({"provider": "anthropic", "name": "claude-haiku-4-5", "stream": true});
    let (r, seen) = call_streaming(&executor(&server, model, false)).await;
    assert_eq!(r.error, None, "{:?}", r.error);
    assert_eq!(r.content.as_deref(), Some("Hi Ada"));
    assert_eq!(server.requests()[0].body["stream"], true);
    let texts: Vec<&str> = seen
        .iter()
        .filter(|e| e["type"] == "text_delta")
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["Hi ", "Ada"]);
    assert_eq!(seen.first().unwrap()["type"], "message_start");
    assert_eq!(
        seen.last().unwrap(),
        &json!({"type": "message_end", "finish_reason": "stop"})
    );
    assert_eq!(r.usage.unwrap()["output_tokens"], 3);
    // claude-haiku-4-5: 1e-6 in, 5e-6 out.
    assert!(close(
        r.cost.unwrap()["total"].as_f64().unwrap(),
        12.0 * 1e-6 + 3.0 * 5e-6
    ));
}

#[tokio::test]
async fn gemini_generate_content() {
    let reply = json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Hi Ada"}]},
                        "finishReason": "MAX_TOKENS"}],
        "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 2, "thoughtsTokenCount": 5,
                          "totalTokenCount": 15},
        "modelVersion": "gemini-2.5-flash", "responseId": "r-1"
    });
    let server = ScriptedServer::start([Response::ok(reply)]).unwrap();
    let model = json!({"name": "gemini/gemini-2.5-flash", "api_key": "g-key", "max_tokens": 7,
                       "temperature": 0});
    let r = call(&executor(&server, model, true)).await;
    let req = &server.requests()[0];
    assert_eq!(req.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(req.header("x-goog-api-key"), Some("g-key"));
    assert_eq!(
        req.body,
        json!({"contents": [{"role": "user", "parts": [{"text": "Say hi to Ada."}]}],
               "systemInstruction": {"parts": [{"text": "You are terse."}]},
               "generationConfig": {"maxOutputTokens": 7, "temperature": 0,
                                    "responseMimeType": "application/json"}})
    );
    assert_eq!(r.finish_reason.as_deref(), Some("length"));
    // Not JSON although JSON was asked for: the reference's `_raw` fallback.
    assert_eq!(r.output, Some(json!({"_raw": "Hi Ada"})));
    assert_eq!(r.usage.clone().unwrap()["output_tokens"], 7);
    // gemini-2.5-flash: 3e-7 in, 2.5e-6 out (thinking tokens are output).
    assert!(close(r.machine_cost(), 8.0 * 3e-7 + 7.0 * 2.5e-6));
}

#[tokio::test]
async fn gemini_errors_and_retry_info() {
    assert_error_statuses(
        json!({"provider": "gemini", "name": "gemini-2.5-flash"}),
        json!({"error": {"code": 400, "message": "scripted failure", "status": "INVALID_ARGUMENT"}}),
    )
    .await;
    let server = ScriptedServer::start([Response::status(
        429,
        json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED",
                         "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                      "retryDelay": "17s"}]}}),
    )])
    .unwrap();
    let r = call(&executor(
        &server,
        json!({"name": "gemini/gemini-2.5-pro"}),
        false,
    ))
    .await;
    assert_eq!(r.rate_limit.unwrap()["retry_after"], 17);
}

#[tokio::test]
async fn gemini_streams_and_tool_calls() {
    let chunks = [
        json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Look"}]}}],
               "modelVersion": "gemini-2.5-flash"}),
        json!({"candidates": [{"content": {"role": "model", "parts": [
               {"functionCall": {"name": "lookup", "args": {"q": "Ada"}}}]}, "finishReason": "STOP"}],
               "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2}}),
    ];
    let server = ScriptedServer::start([Response::sse(chunks)]).unwrap();
    let ex = executor(
        &server,
        json!({"provider": "gemini", "name": "gemini-2.5-flash", "stream": true}),
        false,
    );
    let tools = [
        json!({"type": "function", "function": {"name": "lookup", "description": "d",
                        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}),
    ];
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let sink: stream::StreamSink = Arc::new(move |e| s.lock().unwrap().push(e));
    let r = stream::scope(
        sink,
        ex.execute_with_tools(
            json!({"who": "Ada"}),
            ToolTurn::new(&tools, None),
            &json!({}),
        ),
    )
    .await
    .unwrap();
    let req = &server.requests()[0];
    assert_eq!(
        req.path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    assert_eq!(
        req.body["tools"][0]["functionDeclarations"][0]["name"],
        "lookup"
    );
    assert_eq!(r.finish_reason.as_deref(), Some("tool_use"));
    assert_eq!(
        r.tool_calls,
        Some(json!([{"id": "call_0", "name": "lookup", "arguments": {"q": "Ada"}}]))
    );
    assert_eq!(r.content.as_deref(), Some("Look"));
    let seen = seen.lock().unwrap();
    assert!(
        seen.iter()
            .any(|e| e["type"] == "tool_call_delta" && e["name"] == "lookup"),
        "{seen:?}"
    );
}

#[tokio::test]
async fn ollama_native_chat() {
    let reply = json!({"model": "llama3.2", "created_at": "2026-01-01T00:00:00Z",
                       "message": {"role": "assistant", "content": "Hi Ada"},
                       "done": true, "done_reason": "stop", "prompt_eval_count": 9, "eval_count": 3});
    let server = ScriptedServer::start([Response::ok(reply)]).unwrap();
    let model =
        json!({"provider": "ollama", "name": "llama3.2", "temperature": 0.5, "num_ctx": 2048});
    let r = call(&executor(&server, model, false)).await;
    let req = &server.requests()[0];
    assert_eq!(req.path, "/api/chat");
    assert_eq!(req.header("authorization"), None);
    assert_eq!(
        req.body,
        json!({"model": "llama3.2", "stream": false,
               "messages": [{"role": "system", "content": "You are terse."},
                            {"role": "user", "content": "Say hi to Ada."}],
               "options": {"temperature": 0.5, "num_ctx": 2048}})
    );
    assert_eq!(r.content.as_deref(), Some("Hi Ada"));
    // Not in the price table: the reference's estimate.
    assert!(close(r.machine_cost(), 9.0 * 1e-6 + 3.0 * 2e-6));
    let lines = [
        "{\"model\":\"llama3.2\",\"message\":{\"role\":\"assistant\",\"content\":\"Hi \"},\"done\":false}\n",
        "{\"model\":\"llama3.2\",\"message\":{\"role\":\"assistant\",\"content\":\"Ada\"},\"done\":false}\n",
        "{\"model\":\"llama3.2\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":9,\"eval_count\":3}\n",
    ];
    let server = ScriptedServer::start([Response::Stream(
        "application/x-ndjson".into(),
        lines.iter().map(|l| l.to_string()).collect(),
    )])
    .unwrap();
    let ex = executor(
        &server,
        json!({"provider": "ollama", "name": "llama3.2", "stream": true}),
        false,
    );
    let (s, seen) = call_streaming(&ex).await;
    assert_eq!(s.content, r.content);
    assert_eq!(s.usage, r.usage);
    assert_eq!(seen.iter().filter(|e| e["type"] == "text_delta").count(), 2);
    assert_error_statuses(
        json!({"provider": "ollama", "name": "llama3.2"}),
        json!({"error": "scripted failure"}),
    )
    .await;
}

#[tokio::test]
async fn azure_openai_deployments() {
    let reply = json!({"id": "c1", "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi Ada"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}});
    let server = ScriptedServer::start([Response::ok(reply)]).unwrap();
    let model = json!({"provider": "azure", "name": "my-gpt4o", "api_key": "az-key",
                       "api_version": "2024-10-21", "input_cost_per_token": 1e-3,
                       "output_cost_per_token": 2e-3});
    let r = call(&executor(&server, model, false)).await;
    let req = &server.requests()[0];
    assert_eq!(
        req.path,
        "/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(req.header("api-key"), Some("az-key"));
    assert_eq!(req.header("authorization"), None);
    // Custom prices in the model block are not request parameters.
    assert_eq!(req.body.get("input_cost_per_token"), None);
    assert!(close(r.machine_cost(), 10.0 * 1e-3 + 2.0 * 2e-3));
}

#[tokio::test]
async fn openai_compatible_hosted_providers_and_openai_streams() {
    let chunks = [
        json!({"id": "c", "model": "llama-3.3-70b-versatile", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]}),
        json!({"choices": [{"index": 0, "delta": {"content": " Ada"}, "finish_reason": "stop"}]}),
        json!({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}),
    ];
    let mut stream = Response::sse(chunks);
    if let Response::Stream(_, c) = &mut stream {
        c.push("data: [DONE]\n\n".into());
    }
    let server = ScriptedServer::start([stream]).unwrap();
    let model = json!({"provider": "groq", "name": "llama-3.3-70b-versatile", "api_key": "gsk",
                       "stream": true, "reasoning_format": "hidden", "_skip_mcp_handler": true});
    let (r, seen) = call_streaming(&executor(&server, model, false)).await;
    let req = &server.requests()[0];
    assert_eq!(req.path, "/chat/completions");
    assert_eq!(req.header("authorization"), Some("Bearer gsk"));
    // Unknown model keys are forwarded as the reference forwards them; litellm's private
    // flags are not.
    assert_eq!(
        req.body,
        json!({"model": "llama-3.3-70b-versatile", "stream": true,
               "stream_options": {"include_usage": true}, "reasoning_format": "hidden",
               "messages": [{"role": "system", "content": "You are terse."},
                            {"role": "user", "content": "Say hi to Ada."}]})
    );
    assert_eq!(r.content.as_deref(), Some("Hi Ada"));
    assert_eq!(r.usage.unwrap()["input_tokens"], 5);
    assert_eq!(
        seen.iter().filter(|e| e["type"] == "text_delta").count(),
        2,
        "{seen:?}"
    );
    assert_error_statuses(
        json!({"provider": "openrouter", "name": "anthropic/claude-3.5-sonnet"}),
        json!({"error": {"message": "scripted failure", "code": 400}}),
    )
    .await;
}

#[tokio::test]
async fn unknown_providers_are_refused_when_the_executor_is_built() {
    let server = ScriptedServer::start([]).unwrap();
    let doc = json!({"spec": "flatagent", "data": {"model": {"provider": "nope", "name": "m",
                                                             "base_url": server.base_url()}}});
    let err = create("a", doc).err().unwrap();
    assert_eq!(err.kind, "ValueError");
    assert!(
        err.message.contains("unknown model provider 'nope'"),
        "{}",
        err.message
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn a_stream_cut_short_or_broken_is_a_typed_error() {
    let server = ScriptedServer::start([
        Response::Stream("text/event-stream".into(), vec![
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{}}}\n\n".into(),
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n".into(),
        ]),
        Response::Stream("text/event-stream".into(), vec!["data: not json\n\n".into()]),
    ])
    .unwrap();
    let ex = executor(
        &server,
        json!({"provider": "anthropic", "name": "claude-x", "stream": true}),
        false,
    );
    let r = call(&ex).await;
    let e = r.error.unwrap();
    assert_eq!(
        (e["type"].as_str(), e["message"].as_str()),
        (Some("APIError"), Some("Overloaded"))
    );
    assert_eq!(e["retryable"], true);
    let r = call(&ex).await;
    assert!(
        r.error.unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("not JSON")
    );
}

/// A machine whose agent is a typed ref: the ref'd file with the ref's `config` over its
/// top-level keys (here `data` wholesale), calling Anthropic; the call's cost reaches
/// `context.machine.total_cost`.
#[cfg(feature = "loader")]
#[tokio::test]
async fn typed_refs_merge_their_config_and_costs_reach_the_machine() {
    use flatmachines::{Machine, Runtime};
    use flatmachines_testkit::TempDir;
    let reply = json!({"id": "m1", "model": "claude-haiku-4-5", "stop_reason": "end_turn",
        "content": [{"type": "text", "text": "merged"}],
        "usage": {"input_tokens": 100, "output_tokens": 10}});
    let server = ScriptedServer::start([Response::ok(reply.clone()), Response::ok(reply)]).unwrap();
    let dir = TempDir::with_prefix("fm-typed-ref-");
    dir.write(
        "agents/a.yml",
        "spec: flatagent\nspec_version: \"2.6.0\"\nmetadata: {from: file}\ndata:\n  model: {provider: openai, name: file-model}\n  user: from the file\n",
    );
    let machine = Machine::from_file(dir.write(
        "machine.yml",
        r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: typed-ref
  agents:
    a:
      type: flatagent
      ref: ./agents/a.yml
      config:
        data:
          model: {provider: anthropic, name: claude-haiku-4-5}
          user: "from the config, {{ input.n }}"
  states:
    start:
      type: initial
      agent: a
      input: {n: 1}
      output_to_context: {first: output.content}
      transitions: [{to: again}]
    again:
      agent: a
      input: {n: 2}
      output_to_context: {second: output.content}
      transitions: [{to: done}]
    done:
      type: final
      output:
        text: "{{ context.second }}"
        cost: context.machine.total_cost
        calls: context.machine.total_api_calls
"#,
    ))
    .unwrap();
    let rt = Runtime::builder()
        .adapter(FlatAgentAdapter::new().with_provider_base_url("anthropic", server.base_url()))
        .build();
    let out = rt.run(&machine, json!({})).await.unwrap();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].path, "/v1/messages");
    assert_eq!(
        reqs[1].body["messages"][0]["content"][0]["text"],
        "from the config, 2"
    );
    assert_eq!(out["text"], "merged");
    assert_eq!(out["calls"], 2);
    // claude-haiku-4-5: 100 × 1e-6 + 10 × 5e-6 per call, summed in call order.
    let per_call = 100.0 * 1e-6 + 10.0 * 5e-6;
    assert_eq!(out["cost"].as_f64().unwrap(), per_call + per_call);
}

/// A provider the compiler refuses (FM0414) still runs under `--allow-errors` semantics: the
/// state fails with `ValueError` when the executor is built, and `on_error` recovers.
#[cfg(feature = "loader")]
#[tokio::test]
async fn an_unknown_provider_fails_its_state_through_on_error() {
    use flatmachines::{Machine, Runtime};
    use flatmachines_testkit::TempDir;
    let dir = TempDir::with_prefix("fm-bad-provider-");
    let path = dir.write(
        "machine.yml",
        r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: bad-provider
  agents:
    a:
      spec: flatagent
      spec_version: "2.6.0"
      data:
        model: {provider: antropic, name: claude-haiku-4-5}
        user: hi
  states:
    start:
      type: initial
      agent: a
      on_error: recovered
      transitions: [{to: done}]
    recovered:
      type: final
      output: {error: "{{ context.last_error }}", kind: "{{ context.last_error_type }}"}
    done:
      type: final
      output: {ok: true}
"#,
    );
    let err = Machine::from_file(&path).unwrap_err().to_string();
    assert!(err.contains("FM0414"), "{err}");
    let (machine, _warnings) = Machine::from_file_allowing_errors(&path).unwrap();
    let out = Runtime::new().run(&machine, json!({})).await.unwrap();
    assert_eq!(out["kind"], "ValueError", "{out}");
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .contains("unknown model provider 'antropic'"),
        "{out}"
    );
}

/// A tool loop through the Anthropic Messages API: the first reply asks for a tool with a
/// `tool_use` block, the machine runs the Rust tool, and the second request carries the chain
/// in Anthropic's shape (the call as `tool_use`, its result as `tool_result` in a user
/// message) with the tools as `input_schema` definitions.
#[cfg(feature = "loader")]
#[tokio::test]
async fn a_tool_loop_speaks_anthropic_blocks() {
    use flatmachines::tools::{Tool, Toolbox};
    use flatmachines::{Machine, Runtime};
    let server = ScriptedServer::start([
        Response::ok(json!({"id": "m1", "model": "claude-haiku-4-5", "stop_reason": "tool_use",
            "content": [{"type": "text", "text": "Adding."},
                        {"type": "tool_use", "id": "toolu_1", "name": "add", "input": {"a": 2, "b": 3}}],
            "usage": {"input_tokens": 50, "output_tokens": 10}})),
        Response::ok(json!({"id": "m2", "model": "claude-haiku-4-5", "stop_reason": "end_turn",
            "content": [{"type": "text", "text": "It is 5."}],
            "usage": {"input_tokens": 80, "output_tokens": 5}})),
    ])
    .unwrap();
    let machine = Machine::from_yaml(
        r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: anthropic-tools
  agents:
    calc:
      spec: flatagent
      spec_version: "2.6.0"
      data:
        model: {provider: anthropic, name: claude-haiku-4-5}
        system: "Use tools."
        user: "What is 2 + 3?"
  states:
    start:
      type: initial
      agent: calc
      tool_loop: true
      output_to_context: {answer: output.content}
      transitions: [{to: done}]
    done:
      type: final
      output: {answer: context.answer}
"#,
        std::path::Path::new("."),
    )
    .unwrap();
    let add = Tool::from_fn(
        "add",
        "Adds two integers",
        json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}),
        |args: Value| async move {
            (args["a"].as_i64().unwrap_or(0) + args["b"].as_i64().unwrap_or(0)).to_string()
        },
    );
    let rt = Runtime::builder()
        .adapter(FlatAgentAdapter::new().with_provider_base_url("anthropic", server.base_url()))
        .tools(Toolbox::new().tool(add))
        .build();
    let out = rt.run(&machine, json!({})).await.unwrap();
    assert_eq!(out, json!({"answer": "It is 5."}));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[0].body["tools"],
        json!([{"name": "add", "description": "Adds two integers", "input_schema":
                {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}}])
    );
    assert_eq!(
        reqs[1].body["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "What is 2 + 3?"}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Adding."},
                {"type": "tool_use", "id": "toolu_1", "name": "add", "input": {"a": 2, "b": 3}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "5"}]}
        ])
    );
    assert_eq!(reqs[1].body["system"], "Use tools.");
}

#[tokio::test]
async fn the_oauth_backends_are_refused_by_name() {
    let doc = json!({"spec": "flatagent", "data": {"model":
        {"provider": "openai-codex", "backend": "codex", "name": "gpt-5.3-codex"}}});
    let err = create("coder", doc).err().unwrap();
    assert_eq!(err.kind, "NotImplementedError");
    assert!(err.message.contains("`codex` backend"), "{}", err.message);
}

/// `settings.max_cost` is checked before every tool-loop turn: the model block's prices make
/// each turn cost 0.01 USD, so with a 0.015 budget the third turn is refused and `on_error`
/// takes over with what was spent.
#[cfg(feature = "loader")]
#[tokio::test]
async fn the_budget_stops_a_tool_loop_between_turns() {
    use flatmachines::tools::{Tool, Toolbox};
    use flatmachines::{Machine, Runtime};
    let ask = |id: &str| {
        Response::ok(
            json!({"id": id, "model": "m", "choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": id, "type": "function", "function": {"name": "noop", "arguments": "{}"}}]}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 0, "total_tokens": 10}}),
        )
    };
    let server = ScriptedServer::start([ask("c1"), ask("c2"), ask("c3")]).unwrap();
    let machine = Machine::from_yaml(
        &format!(
            r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: loop-budget
  settings: {{max_cost: 0.015}}
  agents:
    worker:
      spec: flatagent
      spec_version: "2.6.0"
      data:
        model: {{provider: openai, name: m, base_url: "{}", input_cost_per_token: 0.001,
                 output_cost_per_token: 0.001}}
        user: work
  states:
    start:
      type: initial
      agent: worker
      tool_loop: {{max_turns: 10}}
      on_error: {{BudgetExceeded: over}}
      transitions: [{{to: done}}]
    over:
      type: final
      output:
        kind: "{{{{ context.last_error_type }}}}"
        calls: context.machine.total_api_calls
        spent: context.machine.total_cost
    done:
      type: final
      output: {{kind: none}}
"#,
            server.base_url()
        ),
        std::path::Path::new("."),
    )
    .unwrap();
    let noop = Tool::from_fn(
        "noop",
        "Does nothing",
        json!({"type": "object"}),
        |_| async { "ok" },
    );
    let rt = Runtime::builder().tools(Toolbox::new().tool(noop)).build();
    let out = rt.run(&machine, json!({})).await.unwrap();
    assert_eq!(out["kind"], "BudgetExceeded", "{out}");
    // Two turns ran (0.01 each); the third would have started at 0.02 ≥ 0.015.
    assert_eq!(out["calls"], 2, "{out}");
    assert!(
        (out["spent"].as_f64().unwrap() - 0.02).abs() < 1e-12,
        "{out}"
    );
    assert_eq!(server.requests().len(), 2);
}

//! The `flatagent` adapter against hostile OpenAI-compatible servers, over real HTTP on
//! 127.0.0.1: garbage JSON, replies without choices or content, endless, oversized and
//! dripping bodies, silence, resets, and `Retry-After` values no `Duration` can hold. Each gives
//! a typed error with a `retryable` flag (what `execution: {type: retry}` reads), never a hang or
//! a panic; huge timeouts written in a machine saturate.

// Needs the adapter (`http`) and machine files read at run time (`loader`).
#![cfg(all(feature = "http", feature = "loader"))]

use flatmachines::agent::{
    AdapterContext, AgentAdapter, AgentExecutor, AgentResult, AgentSpec, FlatAgentAdapter,
};
use flatmachines::{Machine, Runtime};
use flatmachines_testkit::{Conn, FakeLlm, RawHttp, TempDir};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A flatagent executor with `model` (plus `name: m`) that talks to `base`.
fn agent(base: &str, model: Value) -> Arc<dyn AgentExecutor> {
    let mut model = model;
    model["name"] = json!("m");
    let spec = AgentSpec {
        ty: "flatagent".into(),
        reference: None,
        config: Some(json!({"spec": "flatagent", "data": {"model": model, "user": "hi"}})),
        dir: PathBuf::new(),
        profiles: None,
    };
    let ctx = AdapterContext {
        config_dir: PathBuf::new(),
        settings: json!({}),
        machine_name: "hostile".into(),
        profiles: None,
    };
    FlatAgentAdapter::with_base_url(base)
        .create_executor("a", &spec, &ctx)
        .unwrap()
}

/// One call; fails the test if it raises or does not return within a minute (a hang).
async fn call(executor: &Arc<dyn AgentExecutor>) -> AgentResult {
    tokio::time::timeout(
        Duration::from_secs(60),
        executor.execute(json!({}), &json!({})),
    )
    .await
    .expect("the call hung")
    .expect("the call raised instead of returning a failed result")
}

/// The result's `error`, which must be set, with its `type` and `retryable` checked.
fn error_of(r: &AgentResult, ty: &str, retryable: bool) -> Value {
    let e = r
        .error
        .clone()
        .unwrap_or_else(|| panic!("expected {ty}, got success {r:?}"));
    assert_eq!(e["type"], ty, "{e}");
    assert_eq!(e["retryable"], retryable, "{e}");
    assert_eq!(r.finish_reason.as_deref(), Some("error"));
    assert!(r.retryable() == retryable);
    e
}

/// A server answering every request with `status`, `headers` and `body`.
fn answering(
    status: u16,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
) -> RawHttp {
    RawHttp::start(move |mut c: Conn| {
        if c.read_request().is_ok() {
            let _ = c.reply(status, headers, body);
        }
    })
    .unwrap()
}

#[tokio::test]
async fn garbage_json_is_a_retryable_validation_error() {
    let server = answering(200, &[], "{\"choices\": [oops");
    let r = call(&agent(&server.base_url(), json!({}))).await;
    let e = error_of(&r, "APIResponseValidationError", true);
    assert_eq!(e["status_code"], 200);
    assert!(e["message"].as_str().unwrap().contains("not JSON"), "{e}");
}

#[tokio::test]
async fn replies_without_choices_or_content_are_errors() {
    let replies = [
        r#"{"id": "x", "object": "chat.completion"}"#,
        r#"{"choices": []}"#,
        r#"{"choices": "none"}"#,
        r#"{"choices": [{"index": 0, "finish_reason": "stop"}]}"#,
    ];
    for body in replies {
        let server = answering(200, &[], body);
        let r = call(&agent(&server.base_url(), json!({}))).await;
        let e = error_of(&r, "APIResponseValidationError", true);
        assert!(
            e["message"].as_str().unwrap().contains("no choices"),
            "{body}: {e}"
        );
    }
    // `content: null` and no tool calls: not an empty success.
    let server = answering(
        200,
        &[],
        r#"{"choices": [{"message": {"role": "assistant", "content": null}, "finish_reason": "stop"}]}"#,
    );
    let r = call(&agent(&server.base_url(), json!({}))).await;
    let e = error_of(&r, "APIResponseValidationError", true);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("neither content nor tool calls"),
        "{e}"
    );
    // Filtered: the provider would filter again.
    let server = answering(
        200,
        &[],
        r#"{"choices": [{"message": {"content": null, "tool_calls": []}, "finish_reason": "content_filter"}]}"#,
    );
    let r = call(&agent(&server.base_url(), json!({}))).await;
    let e = error_of(&r, "APIResponseValidationError", false);
    assert_eq!(e["code"], "content_filter");
    // Empty text is an answer (the model said nothing), and tool calls without text are too.
    let server = answering(200, &[], r#"{"choices": [{"message": {"content": ""}}]}"#);
    let r = call(&agent(&server.base_url(), json!({}))).await;
    assert!(r.error.is_none(), "{r:?}");
    assert_eq!(r.content.as_deref(), Some(""));
    let server = answering(
        200,
        &[],
        r#"{"choices": [{"message": {"content": null, "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}]}, "finish_reason": "tool_calls"}]}"#,
    );
    let r = call(&agent(&server.base_url(), json!({}))).await;
    assert!(r.error.is_none(), "{r:?}");
    assert_eq!(r.tool_calls.unwrap()[0]["name"], "f");
}

#[tokio::test]
async fn bodies_over_the_cap_are_refused_and_the_cap_is_named() {
    // Announced too long: refused before reading.
    let server = RawHttp::start(|mut c| {
        if c.read_request().is_ok() {
            let _ = c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n{\"choices\":");
            c.stall();
        }
    })
    .unwrap();
    let r = call(&agent(
        &server.base_url(),
        json!({"max_response_bytes": 4096}),
    ))
    .await;
    let e = error_of(&r, "ResponseTooLargeError", false);
    assert!(e["message"].as_str().unwrap().contains("4096"), "{e}");
    assert_eq!(e["status_code"], 200);

    // Endless and chunked: cut at the default 16 MiB.
    let server = RawHttp::start(|mut c| {
        if c.read_request().is_ok() {
            let _ = c.endless(&[b' '; 65536], Duration::ZERO);
        }
    })
    .unwrap();
    let r = call(&agent(&server.base_url(), json!({}))).await;
    let e = error_of(&r, "ResponseTooLargeError", false);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains(&(16 * 1024 * 1024).to_string()),
        "{e}"
    );

    // Error bodies are read under the same cap.
    let server = RawHttp::start(|mut c| {
        if c.read_request().is_ok() {
            let body = "x".repeat(10_000);
            let _ = c.reply(500, &[], &body);
        }
    })
    .unwrap();
    let r = call(&agent(
        &server.base_url(),
        json!({"max_response_bytes": 1000}),
    ))
    .await;
    let e = error_of(&r, "ResponseTooLargeError", false);
    assert_eq!(e["status_code"], 500);
}

#[tokio::test]
async fn silence_and_slow_bodies_time_out() {
    // Never answers.
    let server = RawHttp::start(|mut c| {
        if c.read_request().is_ok() {
            c.stall();
        }
    })
    .unwrap();
    let r = call(&agent(&server.base_url(), json!({"timeout": 0.3}))).await;
    let e = error_of(&r, "Timeout", true);
    assert_eq!(e["code"], "timeout");
    assert!(e["message"].as_str().unwrap().contains("0.3s"), "{e}");

    // Headers at once, then one byte of an endless body every 20 ms: the timeout covers the
    // body, not only the wait for the headers.
    let server = RawHttp::start(|mut c| {
        if c.read_request().is_ok() {
            let _ = c.endless(b" ", Duration::from_millis(20));
        }
    })
    .unwrap();
    let r = call(&agent(&server.base_url(), json!({"timeout": 0.3}))).await;
    error_of(&r, "Timeout", true);
}

#[tokio::test]
async fn resets_and_broken_connections_are_retryable_connection_errors() {
    // Reset with the request unread.
    let server = RawHttp::start(Conn::reset).unwrap();
    let r = call(&agent(&server.base_url(), json!({}))).await;
    let e = error_of(&r, "APIConnectionError", true);
    // The URL (whose user info or query could hold a credential) is not in the message.
    assert!(!e["message"].as_str().unwrap().contains("127.0.0.1"), "{e}");

    // Closed in the middle of a declared body.
    let server = RawHttp::start(|mut c| {
        if c.read_request().is_ok() {
            let _ = c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"choi");
        }
    })
    .unwrap();
    let r = call(&agent(&server.base_url(), json!({}))).await;
    error_of(&r, "APIConnectionError", true);

    // Nobody listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = call(&agent(&format!("http://127.0.0.1:{port}/v1"), json!({}))).await;
    error_of(&r, "APIConnectionError", true);
}

#[tokio::test]
async fn retry_after_is_capped_and_never_panics() {
    let cases: [(&'static str, Option<f64>); 6] = [
        ("1e30", Some(60.0)),
        ("100000", Some(60.0)),
        ("2.5", Some(2.5)),
        ("inf", None),
        ("-5", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
    ];
    for (header, expected) in cases {
        let server = RawHttp::start(move |mut c| {
            if c.read_request().is_ok() {
                let _ = c.reply(
                    429,
                    &[("Retry-After", header)],
                    r#"{"error": {"message": "slow down"}}"#,
                );
            }
        })
        .unwrap();
        let r = call(&agent(&server.base_url(), json!({}))).await;
        let e = error_of(&r, "RateLimitError", true);
        assert_eq!(e["status_code"], 429);
        let rl = r.rate_limit.expect("429 reports a rate limit");
        assert_eq!(rl["limited"], true);
        assert_eq!(
            rl.get("retry_after").and_then(Value::as_f64),
            expected,
            "{header}"
        );
    }
    // The cap is the model's when it sets one.
    let server = answering(429, &[("Retry-After", "1e30")], "{}");
    let r = call(&agent(&server.base_url(), json!({"max_retry_after": 2}))).await;
    assert_eq!(r.rate_limit.unwrap()["retry_after"], 2.0);
}

/// A machine whose one agent state retries (`backoffs`) and reports the agent's output.
const RETRYING: &str = r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: retrying
  agents:
    a: ./agent.yml
  states:
    start:
      type: initial
      agent: a
      execution: {type: retry, backoffs: [0.01, 0.01], jitter: 0}
      output_to_context: {answer: output.content}
      transitions: [{to: done}]
    done:
      type: final
      output: {answer: context.answer}
"#;

const RETRYING_AGENT: &str = r#"
spec: flatagent
spec_version: "2.6.0"
data:
  model: {provider: openai, name: m, max_retry_after: 0.01}
  user: "hi"
"#;

/// An agent whose request timeout no `Duration` holds.
const HUGE_TIMEOUT_AGENT: &str = r#"
spec: flatagent
spec_version: "2.6.0"
data:
  model: {provider: openai, name: m, timeout: 1.0e+30}
  user: "hi"
"#;

#[tokio::test]
async fn the_retry_strategy_gets_past_hostile_replies() {
    // 429 with an absurd Retry-After, then garbage, then an answer.
    let server = RawHttp::start(|mut c| {
        if c.read_request().is_err() {
            return;
        }
        let _ = match c.index {
            0 => c.reply(429, &[("Retry-After", "1e30")], "{}"),
            1 => c.reply(200, &[], "<html>gateway</html>"),
            _ => c.reply(
                200,
                &[],
                r#"{"choices": [{"message": {"content": "finally"}, "finish_reason": "stop"}]}"#,
            ),
        };
    })
    .unwrap();
    let dir = TempDir::with_prefix("fm-hostile-");
    dir.write("agent.yml", RETRYING_AGENT);
    let machine = Machine::from_file(dir.write("machine.yml", RETRYING)).unwrap();
    let rt = Runtime::builder()
        .adapter(FlatAgentAdapter::with_base_url(server.base_url()))
        .build();
    let out = tokio::time::timeout(Duration::from_secs(60), rt.run(&machine, json!({})))
        .await
        .expect("the run hung")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out, json!({"answer": "finally"}));
    assert_eq!(server.connections(), 3);
}

/// A parent waiting for a child with a timeout no `Duration` holds.
const PARENT: &str = r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: parent
  machines:
    child: ./child.yml
  states:
    start:
      type: initial
      machine: child
      input: {v: 1}
      timeout: 1.0e+30
      output_to_context: {got: output.got}
      transitions: [{to: done}]
    done:
      type: final
      output: {got: context.got}
"#;

const CHILD: &str = r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: child
  agents:
    a: ./agent.yml
  states:
    start:
      type: initial
      agent: a
      output_to_context: {got: output.content}
      transitions: [{to: done}]
    done:
      type: final
      output: {got: context.got}
"#;

#[tokio::test]
async fn huge_timeouts_saturate() {
    let llm = FakeLlm::start(json!({"models": {"m": {"default": "fine"}}})).unwrap();
    let dir = TempDir::with_prefix("fm-hostile-");
    dir.write("agent.yml", HUGE_TIMEOUT_AGENT);
    dir.write("child.yml", CHILD);
    // The checks refuse such durations (FM0411). Where `--allow-errors` lets them through,
    // the runtime must saturate rather than panic; where it does not, the refusal is the
    // protection.
    match Machine::from_file_allowing_errors(dir.write("machine.yml", PARENT)) {
        Ok((machine, _warnings)) => {
            let rt = Runtime::builder()
                .adapter(FlatAgentAdapter::with_base_url(llm.base_url()))
                .build();
            let out = tokio::time::timeout(Duration::from_secs(60), rt.run(&machine, json!({})))
                .await
                .expect("the run hung")
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(out, json!({"got": "fine"}));
        }
        Err(e) => assert!(e.to_string().contains("FM0411"), "{e}"),
    }
    // And straight on the agent: `1e30` seconds for the request.
    let r = call(&agent(&llm.base_url(), json!({"timeout": 1e30}))).await;
    assert_eq!(r.content.as_deref(), Some("fine"), "{r:?}");
}

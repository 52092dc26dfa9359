//! A scripted OpenAI-compatible chat-completions server on 127.0.0.1, for tests.
//!
//! It speaks the script format of `shared/tools/fake-llm` (the conformance cases carry such
//! scripts): per model a list of `responses` used once each, `match` rules on the last user
//! message, a model `default` and a global `default`; entries are text, JSON objects (sent as
//! their JSON text), or control objects with `$status`, `$message`, `$type`, `$content`,
//! `$usage`, `$finish_reason`, `$tool_calls`, `$delay_ms`, `$headers`. Every request is logged like fake-llm's
//! request log (`model`, `messages`, `params`) so tests compare what was sent.

use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Request fields fake-llm records under `params`.
const LOGGED_PARAMS: &[&str] = &[
    "temperature",
    "max_tokens",
    "max_completion_tokens",
    "top_p",
    "top_k",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "stop",
    "n",
    "stream",
    "response_format",
    "tools",
    "tool_choice",
];

#[derive(Default)]
struct State {
    script: Value,
    cursors: HashMap<String, usize>,
    log: Vec<Value>,
}

/// A running server. It stops when dropped.
pub struct FakeLlm {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeLlm {
    /// Starts a server answering from `script` on a free port of 127.0.0.1.
    pub fn start(script: Value) -> std::io::Result<FakeLlm> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let state = Arc::new(Mutex::new(State {
            script,
            ..State::default()
        }));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        thread::spawn(move || {
            while !sp.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let st = st.clone();
                        thread::spawn(move || {
                            let _ = serve(stream, &st);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Ok(FakeLlm { port, state, stop })
    }

    /// `http://127.0.0.1:<port>/v1`, the value for `OPENAI_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// The requests received so far, in arrival order.
    pub fn log(&self) -> Vec<Value> {
        self.state.lock().unwrap().log.clone()
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let (status, headers, payload, delay) = if path.ends_with("/chat/completions") {
        let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        answer(&req, &path, state)
    } else if path.ends_with("/health") {
        (200, Vec::new(), json!({"ok": true}), 0)
    } else {
        (
            404,
            Vec::new(),
            json!({"error": {"message": "not found"}}),
            0,
        )
    };
    if delay > 0 {
        thread::sleep(Duration::from_millis(delay));
    }
    let text = payload.to_string();
    let mut out = stream;
    let reason = if status == 200 { "OK" } else { "Error" };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        text.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Chooses the reply and logs the request.
fn answer(
    req: &Value,
    path: &str,
    state: &Mutex<State>,
) -> (u16, Vec<(String, String)>, Value, u64) {
    let mut st = state.lock().unwrap();
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let messages = req.get("messages").cloned().unwrap_or(json!([]));
    let last_user = messages
        .as_array()
        .and_then(|m| m.iter().rev().find(|x| x["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string();
    let models = st
        .script
        .get("models")
        .cloned()
        .unwrap_or_else(|| st.script.clone());
    let key = if models.get(&model).is_some() {
        model.clone()
    } else {
        model
            .split_once('/')
            .map(|(_, m)| m.to_string())
            .unwrap_or(model.clone())
    };
    let spec = models.get(&key).cloned();
    let (responses, rules, model_default) = match &spec {
        Some(Value::Array(a)) => (a.clone(), Vec::new(), None),
        Some(Value::Object(o)) => (
            o.get("responses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            o.get("match")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            o.get("default").cloned(),
        ),
        _ => (Vec::new(), Vec::new(), None),
    };
    let mut from = String::new();
    let mut entry = None;
    for (i, rule) in rules.iter().enumerate() {
        if rule["contains"]
            .as_str()
            .is_some_and(|c| last_user.contains(c))
        {
            entry = rule.get("response").cloned();
            from = format!("match[{i}]");
            break;
        }
    }
    if entry.is_none() {
        let cursor = st.cursors.entry(key.clone()).or_insert(0);
        if let Some(r) = responses.get(*cursor) {
            entry = Some(r.clone());
            from = format!("responses[{cursor}]");
            *cursor += 1;
        }
    }
    if entry.is_none() && model_default.is_some() {
        entry = model_default;
        from = "model-default".into();
    }
    if entry.is_none() && st.script.get("default").is_some() {
        entry = st.script.get("default").cloned();
        from = "global-default".into();
    }
    let params: Map<String, Value> = LOGGED_PARAMS
        .iter()
        .filter_map(|k| req.get(*k).map(|v| ((*k).to_string(), v.clone())))
        .collect();
    let (status, headers, payload, delay, content) = match entry {
        None => {
            from = "exhausted".into();
            let msg = format!("fake-llm: script exhausted for model '{model}'");
            (500, Vec::new(), error_body(500, &msg, None), 0, None)
        }
        Some(e) => reply(&e, &model, &messages),
    };
    let mut served = json!({"from": from, "status": status});
    if let Some(c) = content {
        served["content"] = json!(c);
    }
    let seq = st.log.len() + 1;
    st.log.push(json!({
        "seq": seq, "path": path, "model": model,
        "messages": messages, "params": params, "served": served,
    }));
    (status, headers, payload, delay)
}

fn error_body(status: u16, message: &str, ty: Option<&str>) -> Value {
    let ty = ty.unwrap_or(match status {
        429 => "rate_limit_error",
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        _ => "server_error",
    });
    json!({"error": {"message": message, "type": ty, "param": null, "code": status.to_string()}})
}

fn words(s: &str) -> usize {
    s.split_whitespace().count()
}

type Reply = (u16, Vec<(String, String)>, Value, u64, Option<String>);

fn reply(entry: &Value, model: &str, messages: &Value) -> Reply {
    let control = entry
        .as_object()
        .filter(|o| o.keys().any(|k| k.starts_with('$')));
    let text_of = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        // Python's json.dumps spacing, which fake-llm uses.
        other => python_json(other),
    };
    let (status, content, usage, finish, delay, headers, message, ty) = match control {
        None => (
            200,
            Some(text_of(entry)),
            None,
            None,
            0,
            Vec::new(),
            None,
            None,
        ),
        Some(c) => (
            c.get("$status").and_then(Value::as_u64).unwrap_or(200) as u16,
            // A reply that only calls tools has `content: null`, as fake-llm sends it.
            match c.get("$content") {
                Some(Value::Null) => None,
                Some(v) => Some(text_of(v)),
                None if c.contains_key("$tool_calls") => None,
                None => Some(String::new()),
            },
            c.get("$usage").cloned(),
            c.get("$finish_reason")
                .and_then(Value::as_str)
                .map(str::to_string),
            c.get("$delay_ms").and_then(Value::as_u64).unwrap_or(0),
            c.get("$headers")
                .and_then(Value::as_object)
                .map(|h| h.iter().map(|(k, v)| (k.clone(), text_of(v))).collect())
                .unwrap_or_default(),
            c.get("$message")
                .and_then(Value::as_str)
                .map(str::to_string),
            c.get("$type").and_then(Value::as_str).map(str::to_string),
        ),
    };
    if status != 200 {
        let msg = message.unwrap_or_else(|| format!("fake-llm scripted error {status}"));
        return (
            status,
            headers,
            error_body(status, &msg, ty.as_deref()),
            delay,
            None,
        );
    }
    let prompt: usize = messages
        .as_array()
        .map(|m| {
            m.iter()
                .map(|x| words(x["content"].as_str().unwrap_or("")))
                .sum()
        })
        .unwrap_or(0);
    let p = usage
        .as_ref()
        .and_then(|u| u["prompt_tokens"].as_u64())
        .unwrap_or(prompt as u64);
    let c = usage
        .as_ref()
        .and_then(|u| u["completion_tokens"].as_u64())
        .unwrap_or(words(content.as_deref().unwrap_or("")).max(1) as u64);
    let mut msg = json!({"role": "assistant", "content": content});
    let mut finish = finish;
    if let Some(calls) = control
        .and_then(|c| c.get("$tool_calls"))
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
    {
        let calls: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, tc)| {
                let args = match tc.get("arguments") {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => python_json(v),
                    None => "{}".to_string(),
                };
                json!({
                    "id": tc.get("id").and_then(Value::as_str).map_or_else(|| format!("call_{i}"), str::to_string),
                    "type": "function",
                    "function": {"name": tc.get("name"), "arguments": args},
                })
            })
            .collect();
        msg["tool_calls"] = Value::Array(calls);
        finish.get_or_insert_with(|| "tool_calls".into());
    }
    let body = json!({
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1_700_000_000u64,
        "model": model, "system_fingerprint": "fake-llm",
        "choices": [{"index": 0, "message": msg,
                     "finish_reason": finish.unwrap_or_else(|| "stop".into()), "logprobs": null}],
        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
    });
    (200, headers, body, delay, content)
}

/// `json.dumps(v, ensure_ascii=False)`: `, ` and `: ` separators, key order kept.
pub fn python_json(v: &Value) -> String {
    match v {
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), python_json(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(python_json).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends one HTTP/1.1 POST to the server and returns the status code and the JSON body.
    fn post(server: &FakeLlm, path: &str, body: &Value) -> (u16, Value) {
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        let body = body.to_string();
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, payload) = response.split_once("\r\n\r\n").unwrap();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, serde_json::from_str(payload).unwrap())
    }

    #[test]
    fn answers_chat_completions_in_order_and_logs_requests() {
        let server = FakeLlm::start(json!({"models": {"m": {"responses": [
            "hello there",
            {"verdict": "ok"},
            {"$status": 429, "$message": "slow down"}
        ]}}}))
        .unwrap();
        assert!(server.base_url().starts_with("http://127.0.0.1:"));
        let request = |text: &str| {
            json!({"model": "m", "temperature": 0.5,
                   "messages": [{"role": "system", "content": "be brief"},
                                {"role": "user", "content": text}]})
        };
        let (status, body) = post(&server, "/v1/chat/completions", &request("say hi"));
        assert_eq!(status, 200);
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["choices"][0]["message"]["role"], "assistant");
        assert_eq!(body["choices"][0]["message"]["content"], "hello there");
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            body["usage"],
            json!({"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6})
        );
        let (_, body) = post(&server, "/v1/chat/completions", &request("judge"));
        assert_eq!(
            body["choices"][0]["message"]["content"],
            r#"{"verdict": "ok"}"#
        );
        let (status, body) = post(&server, "/v1/chat/completions", &request("again"));
        assert_eq!(status, 429);
        assert_eq!(body["error"]["type"], "rate_limit_error");
        let (status, _) = post(&server, "/v1/chat/completions", &request("more"));
        assert_eq!(status, 500, "the script is exhausted");
        let log = server.log();
        assert_eq!(log.len(), 4);
        assert_eq!(log[0]["model"], "m");
        assert_eq!(log[0]["params"], json!({"temperature": 0.5}));
        assert_eq!(log[0]["messages"][1]["content"], "say hi");
        assert_eq!(log[3]["served"]["from"], "exhausted");
    }
}

//! Google Gemini `generateContent` (`POST /v1beta/models/{model}:generateContent`, and
//! `:streamGenerateContent?alt=sse` when streaming).
//!
//! Mapping from the chat shape: the system prompt is `systemInstruction`; the assistant is
//! the `model` role; tool calls are `functionCall` parts and their results `functionResponse`
//! parts (which carry the tool's name, looked up from the call id); sampling parameters live
//! in `generationConfig` under their camel-case names; JSON mode is
//! `responseMimeType: application/json`. Gemini gives calls no ids (or optional ones):
//! `call_<n>` is made up where it gives none.

use super::{
    ChatReply, ChatRequest, Tokens, content_text, openai::usage_event, parse_event, push_merged,
    stop_list,
};
use crate::agent::stream;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// Model parameters that are `generationConfig` fields, by their chat-completions name.
const GENERATION: &[(&str, &str)] = &[
    ("temperature", "temperature"),
    ("max_tokens", "maxOutputTokens"),
    ("max_completion_tokens", "maxOutputTokens"),
    ("top_p", "topP"),
    ("top_k", "topK"),
    ("seed", "seed"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
    ("n", "candidateCount"),
];

/// Parameters with no Gemini counterpart.
const DROPPED: &[&str] = &[
    "stream_options",
    "parallel_tool_calls",
    "user",
    "response_format",
    "logprobs",
    "top_logprobs",
    "reasoning_effort",
];

/// The path after the base URL.
pub(crate) fn path(model: &str, stream: bool) -> String {
    let model = model.strip_prefix("models/").unwrap_or(model);
    if stream {
        format!("/v1beta/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("/v1beta/models/{model}:generateContent")
    }
}

/// JSON Schema keys the Gemini API refuses in function parameters.
fn clean_schema(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "$schema" | "additionalProperties"))
                .map(|(k, v)| (k.clone(), clean_schema(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(clean_schema).collect()),
        other => other.clone(),
    }
}

/// The request body.
pub(crate) fn body(req: &ChatRequest<'_>) -> Value {
    let mut system = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    let mut names: HashMap<String, Value> = HashMap::new();
    let mut push = |role: &str, part: Value| push_merged(&mut contents, role, "parts", part);
    for m in req.messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let text = content_text(m.get("content"));
        match role {
            "system" | "developer" => system.push(text),
            "assistant" => {
                if !text.is_empty() {
                    push("model", json!({"text": text}));
                }
                for call in m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let name = call.pointer("/function/name").cloned().unwrap_or_default();
                    if let Some(id) = call.get("id").and_then(Value::as_str) {
                        names.insert(id.to_string(), name.clone());
                    }
                    let args = super::parse_arguments(call.pointer("/function/arguments"));
                    push(
                        "model",
                        json!({"functionCall": {"name": name, "args": args}}),
                    );
                }
            }
            "tool" => {
                let name = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .and_then(|id| names.get(id).cloned())
                    .or_else(|| m.get("name").cloned())
                    .unwrap_or_default();
                push(
                    "user",
                    json!({"functionResponse": {"name": name, "response": {"content": text}}}),
                );
            }
            _ => push("user", json!({"text": text})),
        }
    }
    let mut config = Map::new();
    let mut body = Map::new();
    for (k, v) in req.params {
        if let Some((_, g)) = GENERATION.iter().find(|(c, _)| c == k) {
            config.insert((*g).to_string(), v.clone());
        } else if k == "stop" {
            config.insert("stopSequences".into(), stop_list(v));
        } else if k == "tool_choice" {
            let mode = match v {
                Value::String(s) if s == "required" => json!({"mode": "ANY"}),
                Value::String(s) if s == "none" => json!({"mode": "NONE"}),
                Value::Object(o) => match o.get("function").and_then(|f| f.get("name")) {
                    Some(n) => json!({"mode": "ANY", "allowedFunctionNames": [n]}),
                    None => json!({"mode": "AUTO"}),
                },
                _ => json!({"mode": "AUTO"}),
            };
            body.insert("toolConfig".into(), json!({"functionCallingConfig": mode}));
        } else if matches!(k.as_str(), "safety_settings" | "safetySettings") {
            body.insert("safetySettings".into(), v.clone());
        } else if !DROPPED.contains(&k.as_str()) {
            // Gemini-specific generation options (`thinkingConfig`, `responseSchema`, …).
            config.insert(k.clone(), v.clone());
        }
    }
    if req.json_mode && req.tools.is_empty() {
        config.insert("responseMimeType".into(), json!("application/json"));
    }
    body.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        body.insert(
            "systemInstruction".into(),
            json!({"parts": [{"text": system.join("\n\n")}]}),
        );
    }
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    if !req.tools.is_empty() {
        let decls: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let f = t.get("function").unwrap_or(t);
                let mut d = json!({"name": f.get("name")});
                if let Some(desc) = f.get("description") {
                    d["description"] = desc.clone();
                }
                if let Some(p) = f.get("parameters") {
                    d["parameters"] = clean_schema(p);
                }
                d
            })
            .collect();
        body.insert("tools".into(), json!([{"functionDeclarations": decls}]));
    }
    Value::Object(body)
}

fn finish(reason: Option<&str>, has_calls: bool) -> &'static str {
    match reason {
        _ if has_calls => "tool_use",
        Some("MAX_TOKENS") => "length",
        Some(
            "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY",
        ) => "content_filter",
        _ => "stop",
    }
}

/// Token counts as litellm reports them: thinking tokens are output tokens.
fn tokens(u: &Value) -> Option<Tokens> {
    if !u.is_object() {
        return None;
    }
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    Some(Tokens {
        input: n("promptTokenCount"),
        output: n("candidatesTokenCount") + n("thoughtsTokenCount"),
        cache_read: n("cachedContentTokenCount"),
        cache_write: 0,
    })
}

/// Reads a complete reply.
pub(crate) fn parse(reply: &Value) -> Result<ChatReply, String> {
    let mut acc = Accumulator::default();
    acc.absorb(reply, false);
    if !reply.get("candidates").is_some_and(Value::is_array) && !acc.blocked {
        return Err("the reply has no candidates".into());
    }
    Ok(acc.reply())
}

/// A reply put together from one or more `GenerateContentResponse` chunks.
#[derive(Debug, Default)]
pub(crate) struct Accumulator {
    text: Option<String>,
    calls: Vec<Value>,
    finish: Option<String>,
    blocked: bool,
    tokens: Option<Tokens>,
    model: Option<String>,
    id: Option<String>,
    started: bool,
}

impl Accumulator {
    /// Takes one SSE `data:` payload.
    pub(crate) fn push(&mut self, data: &str) -> Result<(), String> {
        if let Some(chunk) = parse_event(data)? {
            self.absorb(&chunk, true);
        }
        Ok(())
    }

    fn absorb(&mut self, chunk: &Value, streaming: bool) {
        if !self.started {
            self.started = true;
            self.model = chunk
                .get("modelVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
            self.id = chunk
                .get("responseId")
                .and_then(Value::as_str)
                .map(str::to_string);
            if streaming {
                stream::emit(
                    json!({"type": "message_start", "provider": "gemini", "model": self.model}),
                );
            }
        }
        if chunk.pointer("/promptFeedback/blockReason").is_some() {
            self.blocked = true;
            self.finish = Some("SAFETY".into());
        }
        if let Some(u) = chunk.get("usageMetadata").and_then(tokens) {
            self.tokens = Some(u);
        }
        let Some(cand) = chunk
            .get("candidates")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        else {
            return;
        };
        for part in cand
            .pointer("/content/parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if part.get("thought").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            if let Some(t) = part.get("text").and_then(Value::as_str) {
                self.text.get_or_insert_with(String::new).push_str(t);
                if streaming && !t.is_empty() {
                    stream::emit(json!({"type": "text_delta", "text": t}));
                }
            }
            if let Some(fc) = part.get("functionCall") {
                let index = self.calls.len();
                let id = fc
                    .get("id")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("call_{index}"), str::to_string);
                let args = fc.get("args").cloned().unwrap_or_else(|| json!({}));
                if streaming {
                    stream::emit(json!({"type": "tool_call_delta", "index": index, "id": id,
                                        "name": fc.get("name"), "arguments": args.to_string()}));
                }
                self.calls
                    .push(json!({"id": id, "name": fc.get("name"), "arguments": args}));
            }
        }
        if let Some(f) = cand.get("finishReason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
        }
    }

    fn reply(self) -> ChatReply {
        ChatReply {
            finish_reason: finish(self.finish.as_deref(), !self.calls.is_empty()),
            content: self.text,
            tool_calls: self.calls,
            tokens: self.tokens,
            model: self.model,
            id: self.id,
        }
    }

    /// The reply the stream carried.
    pub(crate) fn finish(self) -> Result<ChatReply, String> {
        if !self.started {
            return Err("the stream ended before any event".into());
        }
        if let Some(t) = &self.tokens {
            stream::emit(usage_event(t));
        }
        let reply = self.reply();
        stream::emit(json!({"type": "message_end", "finish_reason": reply.finish_reason}));
        Ok(reply)
    }
}

/// `retryDelay` of a `RetryInfo` detail in an error body, in seconds (`"30s"`, `"1.5s"`).
pub(crate) fn retry_delay(body: &Value) -> Option<f64> {
    body.pointer("/error/details")?
        .as_array()?
        .iter()
        .find_map(|d| d.get("retryDelay").and_then(Value::as_str))
        .and_then(|s| s.trim().strip_suffix('s')?.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chat_maps_to_contents() {
        let messages = vec![
            json!({"role": "system", "content": "S"}),
            json!({"role": "user", "content": "U"}),
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_0", "type": "function", "function": {"name": "get", "arguments": "{\"q\": 1}"}}]}),
            json!({"role": "tool", "tool_call_id": "call_0", "content": "R"}),
        ];
        let params = json!({"temperature": 0, "max_tokens": 9, "stop": ["X"], "user": "u",
                            "thinkingConfig": {"thinkingBudget": 0}});
        let tools = vec![json!({"type": "function", "function": {"name": "get",
            "parameters": {"$schema": "s", "type": "object", "additionalProperties": false,
                           "properties": {"q": {"type": "integer"}}}}})];
        let b = body(&ChatRequest {
            model: "gemini-2.5-flash",
            messages: &messages,
            tools: &tools,
            json_mode: true,
            params: params.as_object().unwrap(),
            stream: false,
        });
        assert_eq!(
            b,
            json!({
                "contents": [
                    {"role": "user", "parts": [{"text": "U"}]},
                    {"role": "model", "parts": [{"functionCall": {"name": "get", "args": {"q": 1}}}]},
                    {"role": "user", "parts": [{"functionResponse": {"name": "get", "response": {"content": "R"}}}]}],
                "systemInstruction": {"parts": [{"text": "S"}]},
                "generationConfig": {"temperature": 0, "maxOutputTokens": 9, "stopSequences": ["X"],
                                     "thinkingConfig": {"thinkingBudget": 0}},
                "tools": [{"functionDeclarations": [{"name": "get", "parameters":
                    {"type": "object", "properties": {"q": {"type": "integer"}}}}]}]
            })
        );
        assert_eq!(
            path("models/g", true),
            "/v1beta/models/g:streamGenerateContent?alt=sse"
        );
    }

    #[test]
    fn replies_and_streams_read_the_same() {
        let whole = json!({"candidates": [{"content": {"role": "model", "parts": [
                {"text": "thinking…", "thought": true}, {"text": "Hello there"},
                {"functionCall": {"name": "get", "args": {"q": 1}}}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 3,
                              "thoughtsTokenCount": 2, "totalTokenCount": 12},
            "modelVersion": "gemini-2.5-flash", "responseId": "r1"});
        let r = parse(&whole).unwrap();
        assert_eq!(r.content.as_deref(), Some("Hello there"));
        assert_eq!(r.finish_reason, "tool_use");
        assert_eq!(
            r.tool_calls[0],
            json!({"id": "call_0", "name": "get", "arguments": {"q": 1}})
        );
        assert_eq!(r.tokens.unwrap().output, 5);
        let mut acc = Accumulator::default();
        for c in [
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "thinking…", "thought": true}, {"text": "Hello "}]}}],
                   "modelVersion": "gemini-2.5-flash", "responseId": "r1"}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "there"}]}}]}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "get", "args": {"q": 1}}}]},
                   "finishReason": "STOP"}],
                   "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 3, "thoughtsTokenCount": 2}}),
        ] {
            acc.push(&c.to_string()).unwrap();
        }
        assert_eq!(acc.finish().unwrap(), r);
        let blocked = parse(&json!({"promptFeedback": {"blockReason": "SAFETY"}})).unwrap();
        assert_eq!(
            (blocked.content, blocked.finish_reason),
            (None, "content_filter")
        );
        assert!(parse(&json!({"nothing": 1})).is_err());
        let e = json!({"error": {"code": 429, "details": [{"@type": "x", "retryDelay": "31s"}]}});
        assert_eq!(retry_delay(&e), Some(31.0));
    }
}

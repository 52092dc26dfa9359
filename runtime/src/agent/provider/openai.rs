//! OpenAI chat completions, also spoken by Azure OpenAI and the OpenAI-compatible hosted
//! providers (OpenRouter, Groq, Cerebras, Together, Mistral, DeepSeek, xAI, …).

use super::{ChatReply, ChatRequest, Tokens, parse_arguments, parse_event};
use crate::agent::stream;
use serde_json::{Map, Value, json};

/// The request body.
pub(crate) fn body(req: &ChatRequest<'_>) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    body.insert("messages".into(), Value::Array(req.messages.to_vec()));
    for (k, v) in req.params {
        body.insert(k.clone(), v.clone());
    }
    if !req.tools.is_empty() {
        body.insert("tools".into(), Value::Array(req.tools.to_vec()));
    } else if req.json_mode {
        body.insert("response_format".into(), json!({"type": "json_object"}));
    }
    if req.stream {
        body.insert("stream".into(), json!(true));
        // Without it the stream carries no usage, and the cost would be unknown.
        body.entry("stream_options")
            .or_insert_with(|| json!({"include_usage": true}));
    }
    Value::Object(body)
}

/// `stop`, `length`, `tool_use` or `content_filter` from a provider's finish reason.
pub(crate) fn finish(reason: Option<&str>) -> &'static str {
    match reason {
        Some("length" | "max_tokens") => "length",
        Some("tool_calls" | "tool_use" | "function_call") => "tool_use",
        Some("content_filter") => "content_filter",
        _ => "stop",
    }
}

/// Token counts from an OpenAI `usage` object (cached prompt tokens in
/// `prompt_tokens_details.cached_tokens`, or Anthropic-style fields some proxies add).
pub(crate) fn tokens(usage: &Value) -> Option<Tokens> {
    if !usage.is_object() {
        return None;
    }
    let n = |p: &str| usage.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let mut cache_read = n("/cache_read_input_tokens");
    if cache_read == 0 {
        cache_read = n("/prompt_tokens_details/cached_tokens");
    }
    Some(Tokens {
        input: n("/prompt_tokens"),
        output: n("/completion_tokens"),
        cache_read,
        cache_write: n("/cache_creation_input_tokens"),
    })
}

/// Reads a complete reply.
pub(crate) fn parse(reply: &Value) -> Result<ChatReply, String> {
    let choice = reply
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .filter(|c| c.get("message").is_some_and(Value::is_object))
        .ok_or("the reply has no choices[0].message")?;
    let content = choice
        .pointer("/message/content")
        .and_then(Value::as_str)
        .map(str::to_string);
    let tool_calls = choice
        .pointer("/message/tool_calls")
        .and_then(Value::as_array)
        .map(|calls| calls.iter().map(tool_call).collect())
        .unwrap_or_default();
    Ok(ChatReply {
        content,
        tool_calls,
        finish_reason: finish(choice.get("finish_reason").and_then(Value::as_str)),
        tokens: reply.get("usage").and_then(tokens),
        model: reply
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_string),
        id: reply.get("id").and_then(Value::as_str).map(str::to_string),
    })
}

/// `{id, name, arguments}` from an OpenAI tool call.
fn tool_call(call: &Value) -> Value {
    let function = call.get("function");
    json!({
        "id": call.get("id").cloned().unwrap_or(Value::Null),
        "name": function.and_then(|f| f.get("name")).cloned().unwrap_or(Value::Null),
        "arguments": parse_arguments(function.and_then(|f| f.get("arguments"))),
    })
}

/// A streamed reply being put together from `chat.completion.chunk` events.
#[derive(Debug, Default)]
pub(crate) struct Accumulator {
    text: Option<String>,
    /// Per tool-call index: id, name, argument text.
    calls: Vec<(Option<String>, Option<String>, String)>,
    finish: Option<String>,
    tokens: Option<Tokens>,
    model: Option<String>,
    id: Option<String>,
    started: bool,
}

impl Accumulator {
    /// Takes one SSE `data:` payload. `[DONE]` and keep-alives are ignored; an `error`
    /// object mid-stream is returned as the error message.
    pub(crate) fn push(&mut self, data: &str, provider: &str) -> Result<(), String> {
        let data = data.trim();
        if data == "[DONE]" {
            return Ok(());
        }
        let Some(chunk) = parse_event(data)? else {
            return Ok(());
        };
        if !self.started {
            self.started = true;
            self.model = chunk
                .get("model")
                .and_then(Value::as_str)
                .map(str::to_string);
            self.id = chunk.get("id").and_then(Value::as_str).map(str::to_string);
            stream::emit(json!({"type": "message_start", "provider": provider,
                                "model": self.model}));
        }
        if let Some(u) = chunk.get("usage").and_then(tokens) {
            self.tokens = Some(u);
            stream::emit(usage_event(&u));
        }
        let Some(choice) = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        else {
            return Ok(());
        };
        if let Some(delta) = choice.get("delta") {
            if let Some(t) = delta.get("content").and_then(Value::as_str)
                && !t.is_empty()
            {
                self.text.get_or_insert_with(String::new).push_str(t);
                stream::emit(json!({"type": "text_delta", "text": t}));
            }
            for call in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let index = call
                    .get("index")
                    .and_then(Value::as_u64)
                    .map_or(self.calls.len().saturating_sub(1), |i| i as usize);
                // Indexes come from the server: never let one allocate without bound.
                if index > self.calls.len() || index > 1024 {
                    return Err(format!(
                        "a streamed tool call has index {index} out of order"
                    ));
                }
                if index == self.calls.len() {
                    self.calls.push((None, None, String::new()));
                }
                let slot = &mut self.calls[index];
                let id = call.get("id").and_then(Value::as_str);
                let name = call.pointer("/function/name").and_then(Value::as_str);
                let args = call
                    .pointer("/function/arguments")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if let Some(id) = id {
                    slot.0 = Some(id.to_string());
                }
                if let Some(name) = name {
                    slot.1.get_or_insert_with(String::new).push_str(name);
                }
                slot.2.push_str(args);
                stream::emit(json!({"type": "tool_call_delta", "index": index, "id": id,
                                    "name": name, "arguments": args}));
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_string());
        }
        Ok(())
    }

    /// The reply the stream carried.
    pub(crate) fn finish(self) -> Result<ChatReply, String> {
        if !self.started {
            return Err("the stream ended before any event".into());
        }
        let finish_reason = finish(self.finish.as_deref());
        stream::emit(json!({"type": "message_end", "finish_reason": finish_reason}));
        Ok(ChatReply {
            content: self.text,
            tool_calls: self
                .calls
                .into_iter()
                .map(|(id, name, args)| {
                    json!({"id": id, "name": name,
                           "arguments": parse_arguments(Some(&Value::String(args)))})
                })
                .collect(),
            finish_reason,
            tokens: self.tokens,
            model: self.model,
            id: self.id,
        })
    }
}

/// The `usage` stream event.
pub(crate) fn usage_event(t: &Tokens) -> Value {
    json!({"type": "usage", "input_tokens": t.input, "output_tokens": t.output,
           "cache_read_tokens": t.cache_read, "cache_write_tokens": t.cache_write})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_adds_up_to_the_reply() {
        let mut acc = Accumulator::default();
        for data in [
            r#"{"id":"c1","model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"lo"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"t1","type":"function","function":{"name":"get","arguments":"{\"a\":"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8,"prompt_tokens_details":{"cached_tokens":2}}}"#,
            "[DONE]",
        ] {
            acc.push(data, "openai").unwrap();
        }
        let r = acc.finish().unwrap();
        assert_eq!(r.content.as_deref(), Some("Hello"));
        assert_eq!(r.finish_reason, "tool_use");
        assert_eq!(
            r.tool_calls,
            vec![json!({"id": "t1", "name": "get", "arguments": {"a": 1}})]
        );
        assert_eq!(
            r.tokens,
            Some(Tokens {
                input: 5,
                output: 3,
                cache_read: 2,
                cache_write: 0
            })
        );
        assert_eq!(r.model.as_deref(), Some("gpt-4o-2024-08-06"));
        let mut bad = Accumulator::default();
        bad.push(r#"{"choices":[]}"#, "openai").unwrap();
        assert!(
            bad.push(
                r#"{"choices":[{"delta":{"tool_calls":[{"index":7}]}}]}"#,
                "openai"
            )
            .is_err()
        );
        assert!(Accumulator::default().finish().is_err());
    }
}

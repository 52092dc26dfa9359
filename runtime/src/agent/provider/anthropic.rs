//! The Anthropic Messages API (`POST /v1/messages`).
//!
//! Differences from the chat shape it is mapped from: the system prompt is a top-level field;
//! tool calls are `tool_use` content blocks of the assistant message and their results
//! `tool_result` blocks of the next user message; consecutive messages of one role are merged
//! (the API wants strict alternation); `max_tokens` is required. OpenAI-only sampling
//! parameters the API refuses (`frequency_penalty`, `presence_penalty`, `seed`, `n`) are not
//! sent, as litellm drops them.

use super::{
    ChatReply, ChatRequest, Tokens, content_text, openai::usage_event, parse_event, push_merged,
    stop_list,
};
use crate::agent::stream;
use serde_json::{Map, Value, json};

/// `max_tokens` when the model block sets none (the API requires one).
pub(crate) const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Parameters the Messages API does not accept.
const DROPPED: &[&str] = &[
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "n",
    "stream_options",
    "response_format",
    "parallel_tool_calls",
    "max_completion_tokens",
    "reasoning_effort",
    "logprobs",
    "top_logprobs",
    "user",
];

/// The request body.
pub(crate) fn body(req: &ChatRequest<'_>) -> Value {
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    let mut push = |role: &str, block: Value| push_merged(&mut messages, role, "content", block);
    for m in req.messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let text = content_text(m.get("content"));
        match role {
            "system" | "developer" => system.push(text),
            "assistant" => {
                if !text.is_empty() {
                    push("assistant", json!({"type": "text", "text": text}));
                }
                for call in m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let input = super::parse_arguments(call.pointer("/function/arguments"));
                    push(
                        "assistant",
                        json!({"type": "tool_use", "id": call.get("id"),
                               "name": call.pointer("/function/name"), "input": input}),
                    );
                }
            }
            "tool" => push(
                "user",
                json!({"type": "tool_result", "tool_use_id": m.get("tool_call_id"),
                       "content": text}),
            ),
            _ => push("user", json!({"type": "text", "text": text})),
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n\n")));
    }
    body.insert("messages".into(), Value::Array(messages));
    let max_tokens = req
        .params
        .get("max_tokens")
        .or_else(|| req.params.get("max_completion_tokens"))
        .cloned()
        .unwrap_or(json!(DEFAULT_MAX_TOKENS));
    body.insert("max_tokens".into(), max_tokens);
    for (k, v) in req.params {
        match k.as_str() {
            "max_tokens" => {}
            "stop" => {
                body.insert("stop_sequences".into(), stop_list(v));
            }
            "tool_choice" => {
                if let Some(c) = tool_choice(v, req.params.get("parallel_tool_calls")) {
                    body.insert("tool_choice".into(), c);
                }
            }
            k if DROPPED.contains(&k) => {}
            _ => {
                body.insert(k.clone(), v.clone());
            }
        }
    }
    if !req.tools.is_empty() {
        let tools = req
            .tools
            .iter()
            .map(|t| {
                let f = t.get("function").unwrap_or(t);
                let mut tool = json!({
                    "name": f.get("name"),
                    "input_schema": f.get("parameters").cloned()
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                });
                if let Some(d) = f.get("description") {
                    tool["description"] = d.clone();
                }
                tool
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if req.stream {
        body.insert("stream".into(), json!(true));
    }
    Value::Object(body)
}

/// OpenAI's `tool_choice` in Anthropic's form.
fn tool_choice(choice: &Value, parallel: Option<&Value>) -> Option<Value> {
    let mut c = match choice {
        Value::String(s) => match s.as_str() {
            "auto" => json!({"type": "auto"}),
            "required" | "any" => json!({"type": "any"}),
            "none" => json!({"type": "none"}),
            _ => return None,
        },
        Value::Object(o) => match o
            .get("function")
            .and_then(|f| f.get("name"))
            .or_else(|| o.get("name"))
        {
            Some(name) => json!({"type": "tool", "name": name}),
            None => Value::Object(o.clone()),
        },
        _ => return None,
    };
    if parallel == Some(&Value::Bool(false)) {
        c["disable_parallel_tool_use"] = json!(true);
    }
    Some(c)
}

fn finish(reason: Option<&str>) -> &'static str {
    match reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_use",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// Token counts as litellm reports them: the prompt includes the cached tokens, which the
/// API counts apart.
fn tokens(usage: &Value) -> Option<Tokens> {
    if !usage.is_object() {
        return None;
    }
    let n = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (read, write) = (
        n("cache_read_input_tokens"),
        n("cache_creation_input_tokens"),
    );
    Some(Tokens {
        input: n("input_tokens") + read + write,
        output: n("output_tokens"),
        cache_read: read,
        cache_write: write,
    })
}

/// Reads a complete reply.
pub(crate) fn parse(reply: &Value) -> Result<ChatReply, String> {
    let blocks = reply
        .get("content")
        .and_then(Value::as_array)
        .ok_or("the reply has no content list")?;
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text
                .get_or_insert_with(String::new)
                .push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => tool_calls.push(json!({
                "id": b.get("id"), "name": b.get("name"),
                "arguments": b.get("input").cloned().unwrap_or_else(|| json!({})),
            })),
            _ => {}
        }
    }
    Ok(ChatReply {
        content: text,
        tool_calls,
        finish_reason: finish(reply.get("stop_reason").and_then(Value::as_str)),
        tokens: reply.get("usage").and_then(tokens),
        model: reply
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_string),
        id: reply.get("id").and_then(Value::as_str).map(str::to_string),
    })
}

/// A streamed reply being put together from Messages API events.
#[derive(Debug, Default)]
pub(crate) struct Accumulator {
    text: Option<String>,
    /// Tool-use blocks by content index: index, id, name, input JSON text.
    calls: Vec<(u64, Value, Value, String)>,
    usage: Map<String, Value>,
    stop: Option<String>,
    model: Option<String>,
    id: Option<String>,
    started: bool,
}

impl Accumulator {
    /// Takes one event (its name is repeated in the data's `type`).
    pub(crate) fn push(&mut self, data: &str) -> Result<(), String> {
        // An `error` event fails the stream here.
        let Some(ev) = parse_event(data)? else {
            return Ok(());
        };
        match ev.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                self.started = true;
                let m = ev.get("message").unwrap_or(&Value::Null);
                self.model = m.get("model").and_then(Value::as_str).map(str::to_string);
                self.id = m.get("id").and_then(Value::as_str).map(str::to_string);
                if let Some(u) = m.get("usage").and_then(Value::as_object) {
                    self.usage.extend(u.clone());
                }
                stream::emit(
                    json!({"type": "message_start", "provider": "anthropic", "model": self.model}),
                );
            }
            Some("content_block_start") => {
                let b = ev.get("content_block").unwrap_or(&Value::Null);
                if b.get("type").and_then(Value::as_str) == Some("tool_use") {
                    let index = ev.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let n = self.calls.len();
                    let (id, name) = (b.get("id").cloned(), b.get("name").cloned());
                    stream::emit(json!({"type": "tool_call_delta", "index": n, "id": id,
                                        "name": name, "arguments": ""}));
                    self.calls.push((
                        index,
                        id.unwrap_or(Value::Null),
                        name.unwrap_or(Value::Null),
                        String::new(),
                    ));
                }
            }
            Some("content_block_delta") => {
                let d = ev.get("delta").unwrap_or(&Value::Null);
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let t = d.get("text").and_then(Value::as_str).unwrap_or("");
                        self.text.get_or_insert_with(String::new).push_str(t);
                        stream::emit(json!({"type": "text_delta", "text": t}));
                    }
                    Some("input_json_delta") => {
                        let index = ev.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let part = d.get("partial_json").and_then(Value::as_str).unwrap_or("");
                        if let Some((n, call)) = self
                            .calls
                            .iter_mut()
                            .enumerate()
                            .find(|(_, c)| c.0 == index)
                        {
                            call.3.push_str(part);
                            stream::emit(json!({"type": "tool_call_delta", "index": n,
                                                "arguments": part}));
                        }
                    }
                    _ => {}
                }
            }
            Some("message_delta") => {
                if let Some(s) = ev.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop = Some(s.to_string());
                }
                if let Some(u) = ev.get("usage").and_then(Value::as_object) {
                    self.usage.extend(u.clone());
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The reply the stream carried.
    pub(crate) fn finish(self) -> Result<ChatReply, String> {
        if !self.started {
            return Err("the stream ended before message_start".into());
        }
        let t = tokens(&Value::Object(self.usage));
        if let Some(t) = &t {
            stream::emit(usage_event(t));
        }
        let finish_reason = finish(self.stop.as_deref());
        stream::emit(json!({"type": "message_end", "finish_reason": finish_reason}));
        Ok(ChatReply {
            content: self.text,
            tool_calls: self
                .calls
                .into_iter()
                .map(|(_, id, name, args)| {
                    let arguments = if args.trim().is_empty() {
                        json!({})
                    } else {
                        super::parse_arguments(Some(&Value::String(args)))
                    };
                    json!({"id": id, "name": name, "arguments": arguments})
                })
                .collect(),
            finish_reason,
            tokens: t,
            model: self.model,
            id: self.id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_chain_becomes_blocks_in_alternating_messages() {
        let messages = vec![
            json!({"role": "system", "content": "S"}),
            json!({"role": "user", "content": "U"}),
            json!({"role": "assistant", "content": "", "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "a", "arguments": "{\"x\": 1}"}},
                {"id": "t2", "type": "function", "function": {"name": "b", "arguments": "{}"}}]}),
            json!({"role": "tool", "tool_call_id": "t1", "content": "r1"}),
            json!({"role": "tool", "tool_call_id": "t2", "content": "r2"}),
            json!({"role": "user", "content": "more"}),
        ];
        let params = json!({"temperature": 0.2, "seed": 3, "stop": "END", "tool_choice": "required",
                            "thinking": {"type": "enabled"}});
        let tools = vec![
            json!({"type": "function", "function": {"name": "a", "description": "d",
                                 "parameters": {"type": "object"}}}),
        ];
        let b = body(&ChatRequest {
            model: "claude-x",
            messages: &messages,
            tools: &tools,
            json_mode: true,
            params: params.as_object().unwrap(),
            stream: false,
        });
        assert_eq!(
            b,
            json!({
                "model": "claude-x", "system": "S", "max_tokens": 4096,
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "U"}]},
                    {"role": "assistant", "content": [
                        {"type": "tool_use", "id": "t1", "name": "a", "input": {"x": 1}},
                        {"type": "tool_use", "id": "t2", "name": "b", "input": {}}]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "t1", "content": "r1"},
                        {"type": "tool_result", "tool_use_id": "t2", "content": "r2"},
                        {"type": "text", "text": "more"}]}],
                "temperature": 0.2, "stop_sequences": ["END"], "tool_choice": {"type": "any"},
                "thinking": {"type": "enabled"},
                "tools": [{"name": "a", "description": "d", "input_schema": {"type": "object"}}]
            })
        );
    }

    #[test]
    fn replies_and_streams_read_the_same() {
        let reply = json!({"id": "msg_1", "model": "claude-x", "stop_reason": "tool_use",
            "content": [{"type": "text", "text": "Let me look."},
                        {"type": "tool_use", "id": "tu1", "name": "get", "input": {"q": "a"}}],
            "usage": {"input_tokens": 10, "output_tokens": 4, "cache_read_input_tokens": 5,
                      "cache_creation_input_tokens": 1}});
        let r = parse(&reply).unwrap();
        let mut acc = Accumulator::default();
        for ev in [
            json!({"type": "message_start", "message": {"id": "msg_1", "model": "claude-x",
                   "usage": {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 5,
                             "cache_creation_input_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me "}}),
            json!({"type": "ping"}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "look."}}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "tu1", "name": "get", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"q\": "}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"a\"}"}}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 4}}),
            json!({"type": "message_stop"}),
        ] {
            acc.push(&ev.to_string()).unwrap();
        }
        assert_eq!(acc.finish().unwrap(), r);
        assert_eq!(r.finish_reason, "tool_use");
        assert_eq!(
            r.tokens,
            Some(Tokens {
                input: 16,
                output: 4,
                cache_read: 5,
                cache_write: 1
            })
        );
        let mut e = Accumulator::default();
        let err = e
            .push(r#"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#)
            .unwrap_err();
        assert_eq!(err, "Overloaded");
    }
}

//! Ollama's native chat API (`POST /api/chat`), streamed as newline-delimited JSON.
//!
//! Sampling parameters go in `options` (`max_tokens` as `num_predict`); JSON mode is
//! `format: "json"`; tool-call arguments are objects, not JSON text; Ollama streams unless
//! told not to, so `stream` is always sent.

use super::{
    ChatReply, ChatRequest, Tokens, content_text, openai::usage_event, parse_event, stop_list,
};
use crate::agent::stream;
use serde_json::{Map, Value, json};

/// Parameters that are top-level request fields rather than `options`.
const TOP_LEVEL: &[&str] = &["format", "keep_alive", "think"];

/// Parameters with no Ollama counterpart.
const DROPPED: &[&str] = &[
    "stream_options",
    "parallel_tool_calls",
    "tool_choice",
    "user",
    "n",
    "response_format",
];

/// The request body.
pub(crate) fn body(req: &ChatRequest<'_>) -> Value {
    let messages: Vec<Value> = req
        .messages
        .iter()
        .map(|m| {
            let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
            let mut out = json!({"role": role, "content": content_text(m.get("content"))});
            if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
                out["tool_calls"] = calls
                    .iter()
                    .map(|c| {
                        json!({"function": {
                            "name": c.pointer("/function/name"),
                            "arguments": super::parse_arguments(c.pointer("/function/arguments")),
                        }})
                    })
                    .collect();
            }
            if role == "tool"
                && let Some(name) = m.get("name")
            {
                out["tool_name"] = name.clone();
            }
            out
        })
        .collect();
    let mut body = Map::new();
    let mut options = Map::new();
    body.insert("model".into(), json!(req.model));
    body.insert("messages".into(), Value::Array(messages));
    for (k, v) in req.params {
        match k.as_str() {
            "max_tokens" | "max_completion_tokens" => {
                options.insert("num_predict".into(), v.clone());
            }
            "stop" => {
                options.insert("stop".into(), stop_list(v));
            }
            k if TOP_LEVEL.contains(&k) => {
                body.insert(k.to_string(), v.clone());
            }
            k if DROPPED.contains(&k) => {}
            _ => {
                options.insert(k.clone(), v.clone());
            }
        }
    }
    if !options.is_empty() {
        body.insert("options".into(), Value::Object(options));
    }
    if !req.tools.is_empty() {
        body.insert("tools".into(), Value::Array(req.tools.to_vec()));
    } else if req.json_mode {
        body.entry("format").or_insert(json!("json"));
    }
    body.insert("stream".into(), json!(req.stream));
    Value::Object(body)
}

fn tokens(reply: &Value) -> Option<Tokens> {
    let input = reply.get("prompt_eval_count").and_then(Value::as_u64);
    let output = reply.get("eval_count").and_then(Value::as_u64);
    (input.is_some() || output.is_some()).then(|| Tokens {
        input: input.unwrap_or(0),
        output: output.unwrap_or(0),
        ..Tokens::default()
    })
}

/// Reads a complete reply.
pub(crate) fn parse(reply: &Value) -> Result<ChatReply, String> {
    if !reply.get("message").is_some_and(Value::is_object) {
        return Err("the reply has no message".into());
    }
    let mut acc = Accumulator::default();
    acc.absorb(reply, false);
    Ok(acc.reply())
}

/// A reply put together from streamed chunks.
#[derive(Debug, Default)]
pub(crate) struct Accumulator {
    text: Option<String>,
    calls: Vec<Value>,
    done_reason: Option<String>,
    tokens: Option<Tokens>,
    model: Option<String>,
    started: bool,
}

impl Accumulator {
    /// Takes one line of the stream.
    pub(crate) fn push(&mut self, line: &str) -> Result<(), String> {
        if let Some(chunk) = parse_event(line)? {
            self.absorb(&chunk, true);
        }
        Ok(())
    }

    fn absorb(&mut self, chunk: &Value, streaming: bool) {
        if !self.started {
            self.started = true;
            self.model = chunk
                .get("model")
                .and_then(Value::as_str)
                .map(str::to_string);
            if streaming {
                stream::emit(
                    json!({"type": "message_start", "provider": "ollama", "model": self.model}),
                );
            }
        }
        if let Some(t) = chunk.pointer("/message/content").and_then(Value::as_str)
            && (!t.is_empty() || !streaming)
        {
            self.text.get_or_insert_with(String::new).push_str(t);
            if streaming {
                stream::emit(json!({"type": "text_delta", "text": t}));
            }
        }
        for c in chunk
            .pointer("/message/tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = self.calls.len();
            let name = c.pointer("/function/name").cloned().unwrap_or(Value::Null);
            let args = super::parse_arguments(c.pointer("/function/arguments"));
            let id = c
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("call_{index}"), str::to_string);
            if streaming {
                stream::emit(json!({"type": "tool_call_delta", "index": index, "id": id,
                                    "name": name, "arguments": args.to_string()}));
            }
            self.calls
                .push(json!({"id": id, "name": name, "arguments": args}));
        }
        if chunk.get("done").and_then(Value::as_bool) == Some(true) {
            self.done_reason = Some(
                chunk
                    .get("done_reason")
                    .and_then(Value::as_str)
                    .unwrap_or("stop")
                    .to_string(),
            );
            self.tokens = tokens(chunk);
        }
    }

    fn reply(self) -> ChatReply {
        let finish_reason = if !self.calls.is_empty() {
            "tool_use"
        } else {
            super::openai::finish(self.done_reason.as_deref())
        };
        ChatReply {
            content: self.text,
            tool_calls: self.calls,
            finish_reason,
            tokens: self.tokens,
            model: self.model,
            id: None,
        }
    }

    /// The reply the stream carried.
    pub(crate) fn finish(self) -> Result<ChatReply, String> {
        if self.done_reason.is_none() {
            return Err("the stream ended before its `done` line".into());
        }
        if let Some(t) = &self.tokens {
            stream::emit(usage_event(t));
        }
        let reply = self.reply();
        stream::emit(json!({"type": "message_end", "finish_reason": reply.finish_reason}));
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_use_the_native_shape() {
        let messages = vec![
            json!({"role": "system", "content": "S"}),
            json!({"role": "assistant", "content": "", "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}]}),
        ];
        let params =
            json!({"temperature": 0.1, "max_tokens": 5, "num_ctx": 4096, "keep_alive": "5m"});
        let b = body(&ChatRequest {
            model: "llama3.2",
            messages: &messages,
            tools: &[],
            json_mode: true,
            params: params.as_object().unwrap(),
            stream: false,
        });
        assert_eq!(
            b,
            json!({"model": "llama3.2", "messages": [
                    {"role": "system", "content": "S"},
                    {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}],
                   "options": {"temperature": 0.1, "num_predict": 5, "num_ctx": 4096},
                   "keep_alive": "5m", "format": "json", "stream": false})
        );
        let whole = json!({"model": "llama3.2", "message": {"role": "assistant", "content": "hi"},
                           "done": true, "done_reason": "length", "prompt_eval_count": 4, "eval_count": 2});
        let r = parse(&whole).unwrap();
        assert_eq!(
            (r.content.as_deref(), r.finish_reason),
            (Some("hi"), "length")
        );
        let mut acc = Accumulator::default();
        for line in [
            r#"{"model":"llama3.2","message":{"role":"assistant","content":"h"},"done":false}"#,
            r#"{"model":"llama3.2","message":{"role":"assistant","content":"i"},"done":false}"#,
            r#"{"model":"llama3.2","message":{"role":"assistant","content":""},"done":true,"done_reason":"length","prompt_eval_count":4,"eval_count":2}"#,
        ] {
            acc.push(line).unwrap();
        }
        assert_eq!(acc.finish().unwrap(), r);
        let mut cut = Accumulator::default();
        cut.push(r#"{"model":"m","message":{"content":"h"},"done":false}"#)
            .unwrap();
        assert!(cut.finish().is_err());
    }
}

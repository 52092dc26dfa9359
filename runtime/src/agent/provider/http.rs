//! One HTTP exchange with a model server, bounded in time and size, and the typed errors of
//! exchanges that fail.

use super::ratelimit::{self, Headers};
use super::sse;
use crate::agent::AgentResult;
use crate::agent::flatagent::HttpLimits;
use serde_json::{Value, json};

/// How much of a server's error body becomes an error message (the rest is cut): a misrouted
/// request can answer with a whole HTML page, which would otherwise land in the context, the
/// checkpoints and the logs.
const MAX_ERROR_MESSAGE_CHARS: usize = 2000;

/// How an exchange failed before a complete reply was read.
pub(crate) enum Trouble {
    /// The `timeout` passed (connecting, waiting or reading the body).
    Timeout,
    /// The connection failed or broke (refused, reset, closed mid-body).
    Connection(String),
    /// The body is longer than `max_response_bytes`.
    TooLarge(u16),
    /// A streamed reply carried an error event or an event that cannot be read.
    Stream(String),
}

/// A reply read in full (or, streamed, consumed by the event handler).
pub(crate) struct Reply {
    pub status: u16,
    /// The rate-limit, retry and request-id headers ([`ratelimit::is_reported`]), names
    /// lower-cased.
    pub headers: Headers,
    /// The body; empty for a successful streamed reply, whose events went to the handler.
    pub body: Vec<u8>,
}

/// What a streamed exchange hands its events to: the parser, and the callback for each event.
pub(crate) type EventSink<'a> = (
    sse::Parser,
    &'a mut (dyn FnMut(sse::Event) -> Result<(), String> + Send),
);

/// Sends the request and reads the reply, at most `max_response_bytes` of body. With
/// `events`, a 200 reply is parsed as it arrives (SSE, or newline-delimited JSON when the
/// parser is made for it) and each event handed to the callback instead of being kept.
pub(crate) async fn exchange(
    req: reqwest::RequestBuilder,
    limits: &HttpLimits,
    mut events: Option<EventSink<'_>>,
) -> Result<Reply, Trouble> {
    let mut response = req.send().await.map_err(reqwest_trouble)?;
    let status = response.status().as_u16();
    // Only the headers anything reads (rate limits, retry hints, request ids): a reply
    // carries dozens, and this runs on every call. `http` stores names lower-cased.
    let headers: Headers = response
        .headers()
        .iter()
        .filter(|(k, _)| ratelimit::is_reported(k.as_str()))
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let limit = limits.max_response_bytes;
    if response
        .content_length()
        .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Err(Trouble::TooLarge(status));
    }
    let streaming = status == 200 && events.is_some();
    let mut body = Vec::new();
    let mut read = 0usize;
    while let Some(chunk) = response.chunk().await.map_err(reqwest_trouble)? {
        if chunk.len() > limit.saturating_sub(read) {
            return Err(Trouble::TooLarge(status));
        }
        read += chunk.len();
        match events.as_mut() {
            Some((parser, on_event)) if streaming => {
                parser.feed(&chunk, *on_event).map_err(Trouble::Stream)?
            }
            _ => body.extend_from_slice(&chunk),
        }
    }
    if let Some((parser, on_event)) = events.as_mut()
        && streaming
    {
        parser.finish(*on_event).map_err(Trouble::Stream)?;
    }
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn reqwest_trouble(e: reqwest::Error) -> Trouble {
    if e.is_timeout() {
        return Trouble::Timeout;
    }
    // Without the URL, whose user info or query may hold a credential; with the causes, which
    // say what actually happened ("connection reset by peer").
    let e = e.without_url();
    let mut parts = vec![e.to_string()];
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let text = s.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    Trouble::Connection(parts.join(": "))
}

/// The `error` of a result for an exchange that did not complete.
pub(crate) fn trouble_error(
    trouble: &Trouble,
    limits: &HttpLimits,
    scrub: &dyn Fn(&str) -> String,
) -> Value {
    match trouble {
        Trouble::Timeout => json!({
            "code": "timeout",
            "type": "Timeout",
            "message": format!(
                "no complete reply within the {}s timeout",
                limits.timeout.as_secs_f64()
            ),
            "retryable": true,
        }),
        Trouble::Connection(message) => json!({
            "code": "server_error",
            "type": "APIConnectionError",
            "message": scrub(message),
            "retryable": true,
        }),
        Trouble::TooLarge(status) => json!({
            "code": "server_error",
            "type": "ResponseTooLargeError",
            "message": format!(
                "the response body is larger than max_response_bytes ({} bytes)",
                limits.max_response_bytes
            ),
            "status_code": status,
            // The same request would most likely get the same reply.
            "retryable": false,
        }),
        Trouble::Stream(message) => json!({
            "code": "server_error",
            "type": "APIError",
            "message": scrub(message),
            "status_code": 200,
            // Mid-stream errors are overloads and dropped upstreams: worth another try.
            "retryable": true,
        }),
    }
}

/// The provider error class names of the OpenAI SDK, which litellm raises for every
/// provider and the reference reports.
pub(crate) fn error_class(status: u16) -> &'static str {
    match status {
        400 => "BadRequestError",
        401 => "AuthenticationError",
        403 => "PermissionDeniedError",
        404 => "NotFoundError",
        408 => "Timeout",
        409 => "ConflictError",
        422 => "UnprocessableEntityError",
        429 => "RateLimitError",
        503 => "ServiceUnavailableError",
        500..=599 => "InternalServerError",
        _ => "APIError",
    }
}

/// The message of an error body: `error.message` (OpenAI, Anthropic, Gemini), `error` as a
/// string (Ollama), `message`, else the body's text.
fn error_message(body: &str) -> String {
    let parsed = serde_json::from_str::<Value>(body).ok();
    let found = parsed.as_ref().and_then(|b| {
        b.pointer("/error/message")
            .or_else(|| b.get("error").filter(|e| e.is_string()))
            .or_else(|| b.get("message"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let message = found.unwrap_or_else(|| body.trim().to_string());
    match message.char_indices().nth(MAX_ERROR_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}… (cut)", &message[..cut]),
        None => message,
    }
}

/// The failed result of a non-success status. `retry_after` is already capped.
pub(crate) fn http_error(
    status: u16,
    body: &str,
    headers: &Headers,
    retry_after: Option<f64>,
    user: Option<String>,
    provider_data: Value,
) -> AgentResult {
    let message = error_message(body);
    let lower = message.to_ascii_lowercase();
    let context_length = status == 400
        && [
            "context length",
            "context_length",
            "maximum context",
            "prompt is too long",
        ]
        .iter()
        .any(|p| lower.contains(p));
    let class = if context_length {
        // litellm's class for it, whatever the provider.
        "ContextWindowExceededError"
    } else {
        error_class(status)
    };
    let code = match status {
        429 => "rate_limit",
        401 | 403 => "auth_error",
        400 => "invalid_request",
        408 => "timeout",
        _ => "server_error",
    };
    // 529 is Anthropic's "overloaded".
    let retryable = status == 429 || status == 408 || status >= 500;
    AgentResult {
        error: Some(json!({
            "code": code,
            "type": class,
            "message": message,
            "status_code": status,
            "retryable": retryable,
        })),
        finish_reason: Some("error".into()),
        rate_limit: Some(ratelimit::state(headers, retry_after, status == 429)),
        provider_data: Some(provider_data),
        rendered_user_prompt: user,
        ..AgentResult::default()
    }
}

/// A failed result carrying `error`.
pub(crate) fn failed(
    error: Value,
    usage: Option<Value>,
    user: Option<String>,
    provider_data: Value,
) -> AgentResult {
    AgentResult {
        error: Some(error),
        usage,
        finish_reason: Some("error".into()),
        provider_data: Some(provider_data),
        rendered_user_prompt: user,
        ..AgentResult::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_errors_carry_the_provider_class() {
        let r = http_error(
            500,
            r#"{"error": {"message": "overheated"}}"#,
            &Vec::new(),
            None,
            None,
            Value::Null,
        );
        assert_eq!(r.error_text().unwrap(), "InternalServerError: overheated");
        assert!(r.retryable());
        let r = http_error(429, "{}", &Vec::new(), Some(2.0), None, Value::Null);
        assert_eq!(r.error.as_ref().unwrap()["code"], "rate_limit");
        let rl = r.rate_limit.unwrap();
        assert_eq!(
            (rl["retry_after"].clone(), rl["limited"].clone()),
            (json!(2), json!(true))
        );
        let r = http_error(
            404,
            r#"{"error": "model 'x' not found"}"#,
            &Vec::new(),
            None,
            None,
            Value::Null,
        );
        assert_eq!(
            r.error_text().unwrap(),
            "NotFoundError: model 'x' not found"
        );
        let r = http_error(
            400,
            r#"{"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long: 250000 tokens"}}"#,
            &Vec::new(),
            None,
            None,
            Value::Null,
        );
        assert_eq!(
            r.error.as_ref().unwrap()["type"],
            "ContextWindowExceededError"
        );
        assert!(!r.retryable());
        assert!(http_error(529, "", &Vec::new(), None, None, Value::Null).retryable());
    }
}

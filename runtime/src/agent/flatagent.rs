//! The `flatagent` adapter: a flatagent document run against any OpenAI-compatible
//! chat-completions endpoint (`hooks-adapters-cli.md` §5.1, `config.md` §10).

use super::{
    AdapterContext, AgentAdapter, AgentExecutor, AgentFailure, AgentResult, AgentSpec, ToolTurn,
};
use crate::template::{Templates, Vars};
use serde_json::{Map, Value, json};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Request fields taken from the model block and sent with the request.
const FORWARDED: &[&str] = &[
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
    "tool_choice",
    "parallel_tool_calls",
];

/// Adapter for `type: flatagent` (and plain agent paths and inline flatagent documents).
#[derive(Debug, Default)]
pub struct FlatAgentAdapter {
    client: OnceLock<reqwest::Client>,
    base_url: Option<String>,
}

impl FlatAgentAdapter {
    /// An adapter whose HTTP client is built on first use.
    pub fn new() -> Self {
        FlatAgentAdapter::default()
    }

    /// An adapter that sends requests to `base_url` (e.g. `http://127.0.0.1:8080/v1`) unless a
    /// model sets its own `base_url`; without it, `OPENAI_BASE_URL` or OpenAI's API is used.
    pub fn with_base_url(base_url: impl Into<String>) -> Self {
        FlatAgentAdapter {
            client: OnceLock::new(),
            base_url: Some(base_url.into()),
        }
    }

    fn client(&self) -> reqwest::Client {
        self.client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(30))
                    .build()
                    .unwrap_or_default()
            })
            .clone()
    }
}

impl AgentAdapter for FlatAgentAdapter {
    fn type_name(&self) -> &str {
        "flatagent"
    }

    fn create_executor(
        &self,
        name: &str,
        spec: &AgentSpec,
        context: &AdapterContext,
    ) -> Result<Arc<dyn AgentExecutor>, AgentFailure> {
        // An agent file read here (not by the compiler) brings its own folder's profiles.
        let mut own_profiles = spec.profiles.clone();
        let doc = match (&spec.config, &spec.reference) {
            (Some(c), _) if c.get("data").is_some() => c.clone(),
            (_, Some(r)) => {
                let path = spec.dir.join(r);
                let doc = load_document(&path)?;
                if own_profiles.is_none() {
                    own_profiles = path.parent().and_then(profiles_near);
                }
                doc
            }
            (Some(c), None) => c.clone(),
            (None, None) => {
                return Err(AgentFailure::new(
                    "ValueError",
                    format!("FlatAgent reference missing ref/config for agent '{name}'"),
                ));
            }
        };
        let data = doc.get("data").cloned().unwrap_or(Value::Null);
        let profiles = own_profiles.or_else(|| context.profiles.clone());
        let model = resolve_model(data.get("model"), profiles.as_ref())?;
        let wants_json = data
            .get("output")
            .and_then(Value::as_object)
            .is_some_and(|o| !o.is_empty());
        let text = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_string);
        Ok(Arc::new(FlatAgentExecutor {
            client: self.client(),
            templates: Templates::for_prompts(),
            system: text("system").unwrap_or_else(|| "You are a helpful assistant.".to_string()),
            user: text("user").unwrap_or_default(),
            suffix: text("instruction_suffix"),
            model,
            wants_json,
            metadata: doc.get("metadata").cloned(),
            base_url: self.base_url.clone(),
        }))
    }
}

/// An agent file named at run time (one the compiler did not load).
#[cfg(feature = "loader")]
fn load_document(path: &std::path::Path) -> Result<Value, AgentFailure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| AgentFailure::new("FileNotFoundError", format!("{}: {e}", path.display())))?;
    crate::yaml::yaml_to_json(&text)
        .ok_or_else(|| AgentFailure::new("ValueError", format!("cannot parse {}", path.display())))
}

/// Without the loader, agent files are read only at compile time.
#[cfg(not(feature = "loader"))]
fn load_document(path: &std::path::Path) -> Result<Value, AgentFailure> {
    Err(AgentFailure::new(
        "ValueError",
        format!(
            "agent file {} was not compiled into the machine, and flatmachines was built \
             without the `loader` feature that reads YAML at run time",
            path.display()
        ),
    ))
}

/// `profiles.yml` in `dir`, as the `data` map of the profiles document.
#[cfg(feature = "loader")]
fn profiles_near(dir: &std::path::Path) -> Option<Value> {
    crate::yaml::profiles_from_text(&std::fs::read_to_string(dir.join("profiles.yml")).ok()?)
}

#[cfg(not(feature = "loader"))]
fn profiles_near(_: &std::path::Path) -> Option<Value> {
    None
}

/// Resolves `data.model` against profiles (lowest to highest priority: default profile, named
/// profile, inline overrides, override profile).
pub(crate) fn resolve_model(
    model: Option<&Value>,
    profiles: Option<&Value>,
) -> Result<Map<String, Value>, AgentFailure> {
    let table = profiles
        .and_then(|p| p.get("model_profiles"))
        .and_then(Value::as_object);
    let profile = |name: &str| {
        table
            .and_then(|t| t.get(name))
            .and_then(Value::as_object)
            .cloned()
    };
    let default = profiles
        .and_then(|p| p.get("default"))
        .and_then(Value::as_str);
    let over = profiles
        .and_then(|p| p.get("override"))
        .and_then(Value::as_str);
    let (named, inline): (Option<&str>, Map<String, Value>) = match model {
        Some(Value::String(s)) => (Some(s.as_str()), Map::new()),
        Some(Value::Object(m)) => (
            m.get("profile").and_then(Value::as_str),
            m.iter()
                .filter(|(k, v)| *k != "profile" && !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        _ => (None, Map::new()),
    };
    let mut out = default.and_then(profile).unwrap_or_default();
    if let Some(name) = named {
        match profile(name) {
            Some(p) => out.extend(p),
            None if default.is_none() => {
                return Err(AgentFailure::new(
                    "ValueError",
                    format!("Model profile '{name}' not found and no default configured"),
                ));
            }
            None => tracing::warn!("model profile '{name}' not found; using the default profile"),
        }
    }
    out.extend(inline);
    if let Some(p) = over.and_then(profile) {
        out.extend(p);
    }
    Ok(out)
}

struct FlatAgentExecutor {
    client: reqwest::Client,
    templates: Templates,
    system: String,
    user: String,
    suffix: Option<String>,
    model: Map<String, Value>,
    wants_json: bool,
    metadata: Option<Value>,
    base_url: Option<String>,
}

#[async_trait::async_trait]
impl AgentExecutor for FlatAgentExecutor {
    async fn execute(&self, input: Value, _context: &Value) -> Result<AgentResult, AgentFailure> {
        self.call(input, None).await
    }

    fn supports_tool_loop(&self) -> bool {
        true
    }

    async fn execute_with_tools(
        &self,
        input: Value,
        turn: ToolTurn<'_>,
        _context: &Value,
    ) -> Result<AgentResult, AgentFailure> {
        self.call(input, Some(turn)).await
    }

    fn metadata(&self) -> Option<&Value> {
        self.metadata.as_ref()
    }
}

impl FlatAgentExecutor {
    fn render(
        &self,
        template: &str,
        input: &Value,
        tools_prompt: &str,
    ) -> Result<String, AgentFailure> {
        let model = Value::Object(self.model.clone());
        let empty_list = Value::Array(Vec::new());
        let tools_prompt = Value::String(tools_prompt.to_string());
        let vars = Vars::new()
            .with("input", input)
            .with("model", &model)
            .with("tools", &empty_list)
            .with("tools_prompt", &tools_prompt);
        self.templates
            .render_str(template, &vars)
            .map_err(|e| AgentFailure::new(e.kind(), e.to_string()))
    }

    async fn call(
        &self,
        input: Value,
        turn: Option<ToolTurn<'_>>,
    ) -> Result<AgentResult, AgentFailure> {
        let tools_prompt = turn.map_or("", |t| t.tools_prompt);
        let system = self.render(&self.system, &input, tools_prompt)?;
        let mut user = self.render(&self.user, &input, tools_prompt)?;
        if let Some(s) = &self.suffix {
            let s = self.render(s, &input, tools_prompt)?;
            if !s.is_empty() {
                user.push_str("\n\n");
                user.push_str(&s);
            }
        }
        let name = self
            .model
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("gpt-4o-mini");
        let has_input = input.as_object().is_none_or(|m| !m.is_empty());
        let history = turn.and_then(|t| t.messages);
        // A continuation sends the chain after the system prompt, and a new user message only
        // when there is fresh input; it reports no rendered prompt of its own.
        let mut messages = vec![json!({"role": "system", "content": system})];
        match history {
            Some(h) if !h.is_empty() => {
                messages.extend(h.iter().cloned());
                if has_input {
                    messages.push(json!({"role": "user", "content": user}));
                }
            }
            _ => messages.push(json!({"role": "user", "content": user})),
        }
        let user = (history.is_none() || has_input).then_some(user);
        let tools = turn.map_or(&[][..], |t| t.tools);
        let mut body = Map::new();
        body.insert("model".into(), json!(name));
        body.insert("messages".into(), Value::Array(messages));
        for k in FORWARDED {
            if let Some(v) = self.model.get(*k) {
                body.insert((*k).to_string(), v.clone());
            }
        }
        if !tools.is_empty() {
            body.insert("tools".into(), Value::Array(tools.to_vec()));
        } else if self.wants_json {
            body.insert("response_format".into(), json!({"type": "json_object"}));
        }
        let base = self
            .model
            .get("base_url")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| self.base_url.clone())
            .or_else(|| std::env::var("OPENAI_BASE_URL").ok())
            .unwrap_or_else(|| "https://api.openai.com/v1".to_string());
        let url = format!("{}/chat/completions", base.trim_end_matches('/'));
        let timeout = self
            .model
            .get("timeout")
            .and_then(Value::as_f64)
            .unwrap_or(600.0);
        let mut req = self
            .client
            .post(&url)
            .timeout(Duration::from_secs_f64(timeout.max(0.001)))
            .json(&Value::Object(body));
        if let Ok(key) = std::env::var("OPENAI_API_KEY") {
            req = req.bearer_auth(key);
        }
        let provider_data = json!({"provider": self.model.get("provider").cloned().unwrap_or(json!("openai")), "model": name});
        let response = match req.send().await {
            Ok(r) => r,
            Err(e) => return Ok(transport_error(&e, user, provider_data)),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok());
        let text = match response.text().await {
            Ok(t) => t,
            Err(e) => return Ok(transport_error(&e, user, provider_data)),
        };
        if status != 200 {
            return Ok(http_error(status, &text, retry_after, user, provider_data));
        }
        let reply: Value = serde_json::from_str(&text).map_err(|e| {
            AgentFailure::new("JSONDecodeError", format!("invalid JSON from {url}: {e}"))
        })?;
        let choice = reply.pointer("/choices/0").cloned().unwrap_or(Value::Null);
        // A reply that only calls tools has `content: null`, which stays null.
        let content = choice
            .pointer("/message/content")
            .and_then(Value::as_str)
            .map(str::to_string);
        let tool_calls = choice
            .pointer("/message/tool_calls")
            .and_then(Value::as_array)
            .filter(|calls| !calls.is_empty())
            .map(|calls| Value::Array(calls.iter().map(tool_call).collect()));
        let finish = match choice.get("finish_reason").and_then(Value::as_str) {
            Some("length" | "max_tokens") => "length",
            Some("tool_calls" | "tool_use" | "function_call") => "tool_use",
            Some("content_filter") => "content_filter",
            _ => "stop",
        };
        let usage = reply.get("usage").filter(|u| u.is_object()).map(|u| {
            let n = |k: &str| u.get(k).cloned().unwrap_or(json!(0));
            json!({
                "input_tokens": n("prompt_tokens"),
                "output_tokens": n("completion_tokens"),
                "total_tokens": n("total_tokens"),
                "cache_read_tokens": 0,
                "cache_write_tokens": 0,
                "api_calls": 1,
            })
        });
        let output = match &content {
            Some(text) if self.wants_json && tools.is_empty() && !text.is_empty() => Some(
                serde_json::from_str::<Value>(strip_markdown_json(text))
                    .unwrap_or_else(|_| json!({"_raw": text})),
            ),
            _ => None,
        };
        Ok(AgentResult {
            output,
            content,
            tool_calls,
            usage: usage.or_else(|| Some(json!({"api_calls": 1}))),
            finish_reason: Some(finish.to_string()),
            provider_data: Some(provider_data),
            metadata: self.metadata.clone(),
            rendered_user_prompt: user,
            ..AgentResult::default()
        })
    }
}

/// `{id, name, arguments}` from an OpenAI tool call. Arguments sent as JSON text are parsed
/// (text that is not JSON gives `{}`, as in the reference); an object is taken as it is.
fn tool_call(call: &Value) -> Value {
    let function = call.get("function");
    let arguments = match function.and_then(|f| f.get("arguments")) {
        Some(Value::String(text)) => serde_json::from_str(text).unwrap_or_else(|_| json!({})),
        Some(Value::Null) | None => json!({}),
        Some(other) => other.clone(),
    };
    json!({
        "id": call.get("id").cloned().unwrap_or(Value::Null),
        "name": function.and_then(|f| f.get("name")).cloned().unwrap_or(Value::Null),
        "arguments": arguments,
    })
}

/// The provider error class names of the OpenAI SDK, which the reference reports.
fn error_class(status: u16) -> &'static str {
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

fn http_error(
    status: u16,
    body: &str,
    retry_after: Option<f64>,
    user: Option<String>,
    provider_data: Value,
) -> AgentResult {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|b| {
            b.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| body.trim().to_string());
    let code = match status {
        429 => "rate_limit",
        401 | 403 => "auth_error",
        400 => "invalid_request",
        408 => "timeout",
        _ => "server_error",
    };
    let retryable = status == 429 || status == 408 || status >= 500;
    let mut rate_limit = None;
    if status == 429 || retry_after.is_some() {
        let mut rl = json!({"limited": status == 429});
        if let Some(r) = retry_after {
            rl["retry_after"] = json!(r);
        }
        rate_limit = Some(rl);
    }
    AgentResult {
        error: Some(json!({
            "code": code,
            "type": error_class(status),
            "message": message,
            "status_code": status,
            "retryable": retryable,
        })),
        finish_reason: Some("error".into()),
        rate_limit,
        provider_data: Some(provider_data),
        rendered_user_prompt: user,
        ..AgentResult::default()
    }
}

fn transport_error(e: &reqwest::Error, user: Option<String>, provider_data: Value) -> AgentResult {
    let (code, ty) = if e.is_timeout() {
        ("timeout", "Timeout")
    } else {
        ("server_error", "APIConnectionError")
    };
    AgentResult {
        error: Some(json!({"code": code, "type": ty, "message": e.to_string(), "retryable": true})),
        finish_reason: Some("error".into()),
        provider_data: Some(provider_data),
        rendered_user_prompt: user,
        ..AgentResult::default()
    }
}

/// The JSON inside a reply: the first fenced block if any, else the span from the first `{`/`[`
/// to the last matching closer, else the trimmed text.
pub(super) fn strip_markdown_json(text: &str) -> &str {
    let t = text.trim();
    if let Some(start) = t.find("```") {
        let after = &t[start + 3..];
        let after = after
            .strip_prefix("json")
            .or_else(|| after.strip_prefix("JSON"))
            .unwrap_or(after);
        if let Some(end) = after.find("```") {
            return after[..end].trim();
        }
    }
    let open = t.find(['{', '[']);
    if let Some(i) = open {
        let closer = if t.as_bytes()[i] == b'{' { '}' } else { ']' };
        if let Some(j) = t.rfind(closer)
            && j > i
        {
            return &t[i..=j];
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_fences_and_prose() {
        assert_eq!(strip_markdown_json("```json\n{\"a\":1}\n```"), "{\"a\":1}");
        assert_eq!(
            strip_markdown_json("Here: {\"a\": {\"b\": 2}} trailing"),
            "{\"a\": {\"b\": 2}}"
        );
        assert_eq!(strip_markdown_json("prefix [1,2] and {\"x\":1}"), "[1,2]");
        assert_eq!(strip_markdown_json("  plain "), "plain");
    }

    #[test]
    fn profiles_resolve_in_priority_order() {
        let profiles = json!({
            "model_profiles": {
                "base": {"provider": "openai", "name": "a", "temperature": 0.1},
                "fast": {"name": "b"},
                "lock": {"max_tokens": 5}
            },
            "default": "base",
            "override": "lock"
        });
        let m = resolve_model(
            Some(&json!({"profile": "fast", "temperature": 0.9})),
            Some(&profiles),
        )
        .unwrap();
        assert_eq!(
            Value::Object(m),
            json!({"provider": "openai", "name": "b", "temperature": 0.9, "max_tokens": 5})
        );
        let err =
            resolve_model(Some(&json!("nope")), Some(&json!({"model_profiles": {}}))).unwrap_err();
        assert_eq!(err.kind, "ValueError");
    }

    #[test]
    fn http_errors_carry_the_provider_class() {
        let r = http_error(
            500,
            r#"{"error": {"message": "overheated"}}"#,
            None,
            None,
            Value::Null,
        );
        assert_eq!(r.error_text().unwrap(), "InternalServerError: overheated");
        assert!(r.retryable());
        let r = http_error(429, "{}", Some(2.0), None, Value::Null);
        assert_eq!(r.error.as_ref().unwrap()["code"], "rate_limit");
        assert_eq!(r.rate_limit.unwrap()["retry_after"], 2.0);
    }
}

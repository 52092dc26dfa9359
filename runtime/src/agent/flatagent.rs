//! The `flatagent` adapter: a flatagent document run against any OpenAI-compatible
//! chat-completions endpoint (`hooks-adapters-cli.md` §5.1, `config.md` §10).

use super::{
    AdapterContext, AgentAdapter, AgentExecutor, AgentFailure, AgentResult, AgentSpec, REDACTED,
    ToolTurn, is_secret_key,
};
use crate::template::{Templates, Vars};
use serde_json::{Map, Value, json};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// How much of a server's error body becomes an error message (the rest is cut): a misrouted
/// request can answer with a whole HTML page, which would otherwise land in the context, the
/// checkpoints and the logs.
const MAX_ERROR_MESSAGE_CHARS: usize = 2000;

/// Limits on one chat-completions exchange, so that a slow, endless or hostile server yields
/// a typed error instead of a hang or an unbounded allocation. A model block may override each
/// one for its agent: `timeout` and `max_retry_after` in seconds, `max_response_bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpLimits {
    /// The whole exchange: connecting, sending, the status line and reading the whole body.
    /// Default 600 s (litellm's default request timeout).
    pub timeout: Duration,
    /// The most bytes read from a response body (error bodies included). Default 16 MiB.
    pub max_response_bytes: usize,
    /// The longest `Retry-After` reported in `rate_limit.retry_after` (which the `retry`
    /// execution type sleeps for). Default 60 s.
    pub max_retry_after: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            timeout: Duration::from_secs(600),
            max_response_bytes: 16 * 1024 * 1024,
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl HttpLimits {
    /// The defaults with `timeout` for the whole exchange.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same limits with at most `bytes` read from a response body.
    pub fn with_max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// The same limits with `Retry-After` capped at `cap`.
    pub fn with_max_retry_after(mut self, cap: Duration) -> Self {
        self.max_retry_after = cap;
        self
    }

    /// These limits with a model block's overrides applied.
    fn for_model(mut self, model: &Map<String, Value>) -> Self {
        if let Some(t) = model.get("timeout").and_then(seconds) {
            // A zero timeout would fail every call before it starts; a millisecond is the
            // smallest useful bound.
            self.timeout = t.max(Duration::from_millis(1));
        }
        if let Some(n) = model.get("max_response_bytes").and_then(byte_count) {
            self.max_response_bytes = n;
        }
        if let Some(t) = model.get("max_retry_after").and_then(seconds) {
            self.max_retry_after = t;
        }
        self
    }
}

/// A number of seconds as a `Duration`, saturating: negative is zero and too large for a
/// `Duration` (`1e30`, infinity) is `Duration::MAX`, never a panic. Not a number: `None`.
fn seconds(v: &Value) -> Option<Duration> {
    let f = v.as_f64().filter(|f| !f.is_nan())?;
    Some(crate::py::saturating_secs(f))
}

/// A byte count: a non-negative number, saturating at `usize::MAX`.
fn byte_count(v: &Value) -> Option<usize> {
    if let Some(n) = v.as_u64() {
        return Some(usize::try_from(n).unwrap_or(usize::MAX));
    }
    let f = v.as_f64().filter(|f| !f.is_nan())?;
    // `as` saturates for floats.
    Some(f.max(0.0) as usize)
}

/// A credential. `Debug` never shows it, so the executor holding it can be printed.
#[derive(Clone)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Secret {
    /// `text` with every occurrence of the secret replaced: error messages may quote what the
    /// server received (some servers echo the key they refused).
    fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.0, REDACTED)
        }
    }
}

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
    limits: HttpLimits,
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
            base_url: Some(base_url.into()),
            ..FlatAgentAdapter::default()
        }
    }

    /// The same adapter with `limits` for every agent whose model block does not set its own.
    pub fn with_limits(mut self, limits: HttpLimits) -> Self {
        self.limits = limits;
        self
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
        Ok(Arc::new(self.executor(name, spec, context)?))
    }
}

impl FlatAgentAdapter {
    fn executor(
        &self,
        name: &str,
        spec: &AgentSpec,
        context: &AdapterContext,
    ) -> Result<FlatAgentExecutor, AgentFailure> {
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
        let mut model = resolve_model(data.get("model"), profiles.as_ref())?;
        // The key leaves the model map, which templates and error paths see, and is kept
        // where nothing prints it. An `api_key` in the model block is the key litellm uses in
        // the reference; other credential-like keys are not read and are dropped likewise.
        let api_key = model
            .get("api_key")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .map(|k| Secret(k.to_string()));
        model.retain(|k, _| !is_secret_key(k));
        let limits = self.limits.for_model(&model);
        let template_model = template_model(&model);
        let wants_json = data
            .get("output")
            .and_then(Value::as_object)
            .is_some_and(|o| !o.is_empty());
        let text = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_string);
        Ok(FlatAgentExecutor {
            client: self.client(),
            templates: Templates::for_prompts(),
            system: text("system").unwrap_or_else(|| "You are a helpful assistant.".to_string()),
            user: text("user").unwrap_or_default(),
            suffix: text("instruction_suffix"),
            model,
            template_model,
            wants_json,
            metadata: doc.get("metadata").cloned(),
            base_url: self.base_url.clone(),
            api_key,
            limits,
        })
    }
}

/// An agent file named at run time (one the compiler did not load).
#[cfg(feature = "loader")]
fn load_document(path: &std::path::Path) -> Result<Value, AgentFailure> {
    let text = crate::yaml::read_file(path)
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
    crate::yaml::profiles_from_text(&crate::yaml::read_file(&dir.join("profiles.yml")).ok()?)
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

/// The `model` the prompts see, as the reference builds it in `_render_system_prompt`: the
/// resolved model block (credentials removed) with `name` as `<provider>/<name>` when a provider
/// is set and the name has no `/`, and the sampling fields and `base_url` always present (null
/// when unset). The request's `model` stays the bare name.
fn template_model(model: &Map<String, Value>) -> Value {
    let mut out = model.clone();
    let provider = model
        .get("provider")
        .filter(|p| crate::py::truthy(p))
        .and_then(Value::as_str);
    let name = match (provider, model.get("name")) {
        (Some(p), Some(Value::String(n))) if !n.is_empty() && !n.contains('/') => {
            Value::String(format!("{p}/{n}"))
        }
        (_, n) => n.cloned().unwrap_or(Value::Null),
    };
    out.insert("name".into(), name);
    for k in [
        "temperature",
        "max_tokens",
        "top_p",
        "top_k",
        "frequency_penalty",
        "presence_penalty",
        "seed",
        "base_url",
    ] {
        let v = model.get(k).cloned().unwrap_or(Value::Null);
        out.insert(k.into(), v);
    }
    Value::Object(out)
}

/// A `flatagent` executor. Its `Debug` output shows no credential: the API key is a [`Secret`]
/// and the model map no longer holds it.
#[derive(Debug)]
struct FlatAgentExecutor {
    client: reqwest::Client,
    templates: Templates,
    system: String,
    user: String,
    suffix: Option<String>,
    model: Map<String, Value>,
    /// `model` as the prompt templates see it ([`template_model`]).
    template_model: Value,
    wants_json: bool,
    metadata: Option<Value>,
    base_url: Option<String>,
    /// `model.api_key`; without it `OPENAI_API_KEY` is read at each call.
    api_key: Option<Secret>,
    limits: HttpLimits,
}

/// How an exchange failed before a complete reply was read.
enum Trouble {
    /// The `timeout` passed (connecting, waiting or reading the body).
    Timeout,
    /// The connection failed or broke (refused, reset, closed mid-body).
    Connection(String),
    /// The body is longer than `max_response_bytes`.
    TooLarge(u16),
}

/// A reply read in full.
struct Reply {
    status: u16,
    retry_after: Option<f64>,
    body: Vec<u8>,
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
        let empty_list = Value::Array(Vec::new());
        let tools_prompt = Value::String(tools_prompt.to_string());
        let vars = Vars::new()
            .with("input", input)
            .with("model", &self.template_model)
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
        let key = self.api_key.clone().or_else(|| {
            std::env::var("OPENAI_API_KEY")
                .ok()
                .filter(|k| !k.is_empty())
                .map(Secret)
        });
        let mut req = self.client.post(&url).json(&Value::Object(body));
        if let Some(key) = &key {
            // `bearer_auth` marks the header sensitive, so reqwest's own `Debug` hides it too.
            req = req.bearer_auth(&key.0);
        }
        let provider_data = json!({"provider": self.model.get("provider").cloned().unwrap_or(json!("openai")), "model": name});
        let limits = self.limits;
        // One deadline over the whole exchange, body included: a server that drips an endless
        // body is cut off like one that never answers.
        let outcome = match tokio::time::timeout(limits.timeout, exchange(req, &limits)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Trouble::Timeout),
        };
        let scrub = |text: &str| match &key {
            Some(k) => k.scrub(text),
            None => text.to_string(),
        };
        let reply = match outcome {
            Ok(reply) => reply,
            Err(trouble) => {
                let error = trouble_error(&trouble, &limits, &scrub);
                return Ok(failed(error, None, user, provider_data));
            }
        };
        if reply.status != 200 {
            let retry_after = reply.retry_after.map(|r| {
                // Capped: a server's `Retry-After: 100000` must not park the run for a day.
                r.min(limits.max_retry_after.as_secs_f64())
            });
            let text = String::from_utf8_lossy(&reply.body);
            let mut r = http_error(reply.status, &text, retry_after, user, provider_data);
            if let Some(e) = r.error.as_mut()
                && let Some(m) = e.get("message").and_then(Value::as_str)
            {
                e["message"] = json!(scrub(m));
            }
            return Ok(r);
        }
        let malformed = |message: String| {
            json!({
                "code": "server_error",
                "type": "APIResponseValidationError",
                "message": scrub(&message),
                "status_code": 200,
                // A proxy's or an overloaded server's bad reply may well be good next time.
                "retryable": true,
            })
        };
        let reply: Value = match serde_json::from_slice(&reply.body) {
            Ok(v) => v,
            Err(e) => {
                let error = malformed(format!("the reply is not JSON: {e}"));
                return Ok(failed(error, None, user, provider_data));
            }
        };
        let Some(choice) = reply
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
            .filter(|c| c.get("message").is_some_and(Value::is_object))
            .cloned()
        else {
            let error = malformed("the reply has no choices[0].message".into());
            return Ok(failed(error, None, user, provider_data));
        };
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
        if content.is_none() && tool_calls.is_none() {
            // Neither text nor tool calls: the reference returns an empty success here, which
            // a machine cannot tell from a real answer. `content_filter` is the provider's
            // decision and would repeat; anything else may be transient.
            let error = json!({
                "code": if finish == "content_filter" { "content_filter" } else { "server_error" },
                "type": "APIResponseValidationError",
                "message": format!("the reply has neither content nor tool calls (finish_reason: {finish})"),
                "status_code": 200,
                "retryable": finish != "content_filter",
            });
            let usage = usage.or_else(|| Some(json!({"api_calls": 1})));
            return Ok(failed(error, usage, user, provider_data));
        }
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
    let message = match message.char_indices().nth(MAX_ERROR_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}… (cut)", &message[..cut]),
        None => message,
    };
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

/// A failed result carrying `error`.
fn failed(
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

/// Sends the request and reads the whole reply, at most `max_response_bytes` of body.
async fn exchange(req: reqwest::RequestBuilder, limits: &HttpLimits) -> Result<Reply, Trouble> {
    let mut response = req.send().await.map_err(reqwest_trouble)?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        // Negative, NaN and infinite values are not waits (an HTTP date is not read either).
        .filter(|v| v.is_finite() && *v >= 0.0);
    let limit = limits.max_response_bytes;
    if response
        .content_length()
        .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Err(Trouble::TooLarge(status));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(reqwest_trouble)? {
        if chunk.len() > limit.saturating_sub(body.len()) {
            return Err(Trouble::TooLarge(status));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Reply {
        status,
        retry_after,
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
fn trouble_error(trouble: &Trouble, limits: &HttpLimits, scrub: &dyn Fn(&str) -> String) -> Value {
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
    fn the_executor_keeps_the_key_out_of_templates_and_debug() {
        let spec = AgentSpec {
            ty: "flatagent".into(),
            reference: None,
            config: Some(json!({"data": {"model": {
                "profile": "p", "api_key": "sk-unit-1", "headers": {"x": "sk-unit-2"},
                "timeout": 1e300, "max_response_bytes": -3.0,
            }}})),
            dir: Default::default(),
            profiles: Some(json!({"model_profiles": {"p": {"provider": "openai", "name": "n"}}})),
        };
        let ctx = AdapterContext {
            config_dir: Default::default(),
            settings: json!({}),
            machine_name: "m".into(),
            profiles: None,
        };
        let ex = FlatAgentAdapter::new().executor("a", &spec, &ctx).unwrap();
        let shown = format!("{ex:?}");
        assert!(!shown.contains("sk-unit"), "{shown}");
        assert!(!ex.template_model.to_string().contains("sk-unit"));
        assert_eq!(ex.api_key.as_ref().unwrap().0, "sk-unit-1");
        assert_eq!(ex.template_model["name"], "openai/n");
        assert_eq!(ex.template_model["seed"], Value::Null);
        assert_eq!(ex.limits.timeout, Duration::MAX);
        assert_eq!(ex.limits.max_response_bytes, 0);
        assert_eq!(
            Secret("k".into()).scrub("got k and k"),
            "got [redacted] and [redacted]"
        );
    }

    #[test]
    fn the_template_model_prefixes_only_bare_names() {
        let m = |v: Value| template_model(v.as_object().unwrap())["name"].clone();
        assert_eq!(m(json!({"provider": "openai", "name": "a"})), "openai/a");
        assert_eq!(m(json!({"provider": "openai", "name": "x/a"})), "x/a");
        assert_eq!(m(json!({"provider": "", "name": "a"})), "a");
        assert_eq!(m(json!({"provider": "openai"})), Value::Null);
        assert_eq!(m(json!({"name": "a"})), "a");
    }

    #[test]
    fn seconds_saturate() {
        assert_eq!(seconds(&json!(1e30)), Some(Duration::MAX));
        assert_eq!(seconds(&json!(-1)), Some(Duration::ZERO));
        assert_eq!(seconds(&json!(1.5)), Some(Duration::from_millis(1500)));
        assert_eq!(seconds(&json!("1")), None);
        assert_eq!(byte_count(&json!(1e30)), Some(usize::MAX));
        assert_eq!(byte_count(&json!(7)), Some(7));
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

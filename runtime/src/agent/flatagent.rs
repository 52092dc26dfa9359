//! The `flatagent` adapter: a flatagent document run against the model its `model` block
//! names, at any provider of [`super::provider`] (`hooks-adapters-cli.md` §5.1,
//! `config.md` §10).

use super::provider::http::{self, Trouble};
use super::provider::{
    self, ChatReply, ChatRequest, Dialect, Route, env_key, forwarded_params, ratelimit,
};
use super::{
    AdapterContext, AgentAdapter, AgentExecutor, AgentFailure, AgentResult, AgentSpec, REDACTED,
    ToolTurn, cost, is_secret_key,
};
use crate::template::{Templates, Vars};
use serde_json::{Map, Value, json};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

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

/// Extra HTTP headers from a model block; they may carry credentials, so `Debug` shows only
/// their names.
#[derive(Clone, Default)]
struct Headers(Vec<(String, String)>);

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
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

/// Adapter for `type: flatagent` (and plain agent paths and inline flatagent documents).
#[derive(Debug, Default)]
pub struct FlatAgentAdapter {
    client: OnceLock<reqwest::Client>,
    base_url: Option<String>,
    provider_base_urls: Vec<(String, String)>,
    limits: HttpLimits,
}

impl FlatAgentAdapter {
    /// An adapter whose HTTP client is built on first use.
    pub fn new() -> Self {
        FlatAgentAdapter::default()
    }

    /// An adapter that sends every request to `base_url` (e.g. `http://127.0.0.1:8080/v1`)
    /// unless a model block sets its own `base_url` or [`Self::with_provider_base_url`] names
    /// its provider; without it, each provider's `<PROVIDER>_BASE_URL` variable or its own
    /// endpoint is used.
    pub fn with_base_url(base_url: impl Into<String>) -> Self {
        FlatAgentAdapter {
            base_url: Some(base_url.into()),
            ..FlatAgentAdapter::default()
        }
    }

    /// The same adapter sending the requests of `provider` (a litellm name: `anthropic`,
    /// `gemini`, `groq`, …) to `base_url`, unless a model block sets its own `base_url`.
    pub fn with_provider_base_url(
        mut self,
        provider: impl Into<String>,
        base_url: impl Into<String>,
    ) -> Self {
        self.provider_base_urls
            .push((provider.into(), base_url.into()));
        self
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
            (config, Some(r)) => {
                let path = spec.dir.join(r);
                let mut doc = load_document(&path)?;
                if own_profiles.is_none() {
                    own_profiles = path.parent().and_then(profiles_near);
                }
                // A typed ref's `config` goes over the file's top-level keys, shallowly
                // (`config.md` §4.2).
                if let (Some(Value::Object(over)), Some(base)) = (config, doc.as_object_mut()) {
                    base.extend(over.clone());
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
        // the reference; `headers` are sent with each request; other credential-like keys are
        // not read and are dropped likewise.
        let api_key = model
            .get("api_key")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .map(|k| Secret(k.to_string()));
        let headers = ["headers", "extra_headers"]
            .iter()
            .filter_map(|k| model.get(*k).and_then(Value::as_object))
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect();
        model.retain(|k, _| !is_secret_key(k));
        let limits = self.limits.for_model(&model);
        let template_model = template_model(&model);
        let wants_json = data
            .get("output")
            .and_then(Value::as_object)
            .is_some_and(|o| !o.is_empty());
        let text = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_string);
        if let Some(backend) = model
            .get("backend")
            .and_then(Value::as_str)
            .filter(|b| !matches!(*b, "litellm" | "aisuite"))
        {
            // The reference's `codex` and `copilot` backends sign in with ChatGPT / GitHub
            // OAuth and speak private APIs.
            return Err(AgentFailure::new(
                "NotImplementedError",
                format!(
                    "agent '{name}': the `{backend}` backend is not supported; use a provider \
                     with an API key (e.g. `provider: openai`)"
                ),
            ));
        }
        let adapter_base = |provider: &str| {
            self.provider_base_urls
                .iter()
                .rev()
                .find(|(name, _)| name == provider)
                .map(|(_, url)| url.clone())
                .or_else(|| self.base_url.clone())
        };
        let route = provider::route(&model, &adapter_base)
            .map_err(|e| AgentFailure::new("ValueError", format!("agent '{name}': {e}")))?;
        let api_version = model
            .get("api_version")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| std::env::var("AZURE_API_VERSION").ok());
        Ok(FlatAgentExecutor {
            client: self.client(),
            templates: Templates::for_prompts(),
            system: text("system").unwrap_or_else(|| "You are a helpful assistant.".to_string()),
            user: text("user").unwrap_or_default(),
            suffix: text("instruction_suffix"),
            params: forwarded_params(&model),
            stream: model.get("stream").is_some_and(crate::py::truthy),
            price: cost::from_model_block(&model),
            template_model,
            wants_json,
            metadata: doc.get("metadata").cloned(),
            route,
            api_version,
            api_key,
            headers: Headers(headers),
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
    /// The model parameters sent with each request ([`forwarded_params`]).
    params: Map<String, Value>,
    /// `stream: true` in the model block.
    stream: bool,
    /// Prices from the model block, over the shipped table.
    price: Option<cost::Price>,
    /// `model` as the prompt templates see it ([`template_model`]).
    template_model: Value,
    wants_json: bool,
    metadata: Option<Value>,
    route: Route,
    /// Azure's `api-version`.
    api_version: Option<String>,
    /// `model.api_key`; without it the provider's key variables are read at each call.
    api_key: Option<Secret>,
    /// The model block's `headers`.
    headers: Headers,
    limits: HttpLimits,
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
        let route = &self.route;
        let request = ChatRequest {
            model: &route.model,
            messages: &messages,
            tools,
            json_mode: self.wants_json && tools.is_empty(),
            params: &self.params,
            stream: self.stream,
        };
        let dialect = route.provider.dialect;
        let body = match dialect {
            Dialect::OpenAi | Dialect::Azure => provider::openai::body(&request),
            Dialect::Anthropic => provider::anthropic::body(&request),
            Dialect::Gemini => provider::gemini::body(&request),
            Dialect::Ollama => provider::ollama::body(&request),
        };
        let key = self
            .api_key
            .clone()
            .or_else(|| env_key(route.provider).map(Secret));
        let req = self.request(&body, key.as_ref());
        let mut provider_data = json!({"provider": route.provider.name, "model": route.model_id});
        let limits = self.limits;
        let mut acc = self
            .stream
            .then(|| Accumulator::new(dialect, route.provider.name));
        let mut on_event = |e: provider::sse::Event| match acc.as_mut() {
            Some(a) => a.push(&e.data),
            None => Ok(()),
        };
        let events = self.stream.then(|| {
            let parser = if dialect == Dialect::Ollama {
                provider::sse::Parser::ndjson()
            } else {
                provider::sse::Parser::default()
            };
            (
                parser,
                &mut on_event
                    as &mut (dyn FnMut(provider::sse::Event) -> Result<(), String> + Send),
            )
        });
        // One deadline over the whole exchange, body included: a server that drips an endless
        // body is cut off like one that never answers.
        let outcome = match tokio::time::timeout(
            limits.timeout,
            http::exchange(req, &limits, events),
        )
        .await
        {
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
                let error = http::trouble_error(&trouble, &limits, &scrub);
                return Ok(http::failed(error, None, user, provider_data));
            }
        };
        let reported: serde_json::Map<String, Value> = reply
            .headers
            .iter()
            .filter(|(k, _)| ratelimit::is_reported(k))
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        if let Some(id) = reported
            .get("x-request-id")
            .or_else(|| reported.get("request-id"))
        {
            provider_data["request_id"] = id.clone();
        }
        if !reported.is_empty() {
            provider_data["raw_headers"] = Value::Object(reported);
        }
        let cap = |r: f64| r.min(limits.max_retry_after.as_secs_f64());
        if reply.status != 200 {
            let text = String::from_utf8_lossy(&reply.body);
            let mut retry_after = ratelimit::retry_after(&reply.headers);
            if retry_after.is_none() && dialect == Dialect::Gemini {
                retry_after = serde_json::from_str(&text)
                    .ok()
                    .and_then(|b| provider::gemini::retry_delay(&b));
            }
            // Capped: a server's `Retry-After: 100000` must not park the run for a day.
            let mut r = http::http_error(
                reply.status,
                &text,
                &reply.headers,
                retry_after.map(cap),
                user,
                provider_data,
            );
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
        let parsed = match acc {
            Some(acc) => acc.finish(),
            None => match serde_json::from_slice::<Value>(&reply.body) {
                Ok(v) => match dialect {
                    Dialect::OpenAi | Dialect::Azure => provider::openai::parse(&v),
                    Dialect::Anthropic => provider::anthropic::parse(&v),
                    Dialect::Gemini => provider::gemini::parse(&v),
                    Dialect::Ollama => provider::ollama::parse(&v),
                },
                Err(e) => Err(format!("the reply is not JSON: {e}")),
            },
        };
        let chat = match parsed {
            Ok(chat) => chat,
            Err(message) => {
                return Ok(http::failed(malformed(message), None, user, provider_data));
            }
        };
        let rate_limit = ratelimit::state(
            &reply.headers,
            ratelimit::retry_after(&reply.headers).map(cap),
            false,
        );
        let usage = match &chat.tokens {
            Some(t) => json!({
                "input_tokens": t.input,
                "output_tokens": t.output,
                "total_tokens": t.input + t.output,
                "cache_read_tokens": t.cache_read,
                "cache_write_tokens": t.cache_write,
                "api_calls": 1,
            }),
            None => json!({"api_calls": 1}),
        };
        let cost = chat.tokens.as_ref().map(|t| {
            let price = self.price.or_else(|| {
                chat.model
                    .as_deref()
                    .and_then(|m| cost::lookup(route.provider.name, m))
                    .or_else(|| cost::lookup(route.provider.name, &route.model))
            });
            cost::cost(price, t)
        });
        let content = chat.content;
        let tool_calls = (!chat.tool_calls.is_empty()).then(|| Value::Array(chat.tool_calls));
        let finish = chat.finish_reason;
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
            let mut r = http::failed(error, Some(usage), user, provider_data);
            r.cost = cost;
            r.rate_limit = Some(rate_limit);
            return Ok(r);
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
            usage: Some(usage),
            cost,
            finish_reason: Some(finish.to_string()),
            rate_limit: Some(rate_limit),
            provider_data: Some(provider_data),
            metadata: self.metadata.clone(),
            rendered_user_prompt: user,
            ..AgentResult::default()
        })
    }

    /// The HTTP request for `body`: the provider's URL and authentication, then the model
    /// block's `headers`.
    fn request(&self, body: &Value, key: Option<&Secret>) -> reqwest::RequestBuilder {
        let route = &self.route;
        let base = &route.base_url;
        let url = match route.provider.dialect {
            Dialect::OpenAi => format!("{base}/chat/completions"),
            Dialect::Azure => {
                let version = self.api_version.as_deref().unwrap_or(AZURE_API_VERSION);
                format!(
                    "{base}/openai/deployments/{}/chat/completions?api-version={version}",
                    route.model
                )
            }
            Dialect::Anthropic => {
                if base.ends_with("/v1/messages") {
                    base.clone()
                } else if base.ends_with("/v1") {
                    format!("{base}/messages")
                } else {
                    format!("{base}/v1/messages")
                }
            }
            Dialect::Gemini => format!(
                "{base}{}",
                provider::gemini::path(&route.model, self.stream)
            ),
            Dialect::Ollama => format!("{base}/api/chat"),
        };
        let mut req = self.client.post(&url).json(body);
        if let Some(key) = key {
            // Sensitive header values are hidden by reqwest's own `Debug` too.
            let header = |name: &str| {
                let mut v = reqwest::header::HeaderValue::from_str(&key.0)
                    .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static(""));
                v.set_sensitive(true);
                (name.to_string(), v)
            };
            req = match route.provider.dialect {
                Dialect::OpenAi | Dialect::Ollama => req.bearer_auth(&key.0),
                Dialect::Azure => {
                    let (n, v) = header("api-key");
                    req.header(n, v)
                }
                Dialect::Anthropic => {
                    let (n, v) = header("x-api-key");
                    req.header(n, v)
                }
                Dialect::Gemini => {
                    let (n, v) = header("x-goog-api-key");
                    req.header(n, v)
                }
            };
        }
        if route.provider.dialect == Dialect::Anthropic
            && !self
                .headers
                .0
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("anthropic-version"))
        {
            req = req.header("anthropic-version", ANTHROPIC_VERSION);
        }
        for (k, v) in &self.headers.0 {
            req = req.header(k.as_str(), v.as_str());
        }
        req
    }
}

/// The API version Azure requests name without `api_version` in the model block or
/// `AZURE_API_VERSION` (litellm's default).
const AZURE_API_VERSION: &str = "2025-02-01-preview";

/// The `anthropic-version` header sent unless the model block's `headers` set one.
const ANTHROPIC_VERSION: &str = "2023-06-01";

/// A streamed reply in the making, per dialect.
enum Accumulator {
    OpenAi(provider::openai::Accumulator, &'static str),
    Anthropic(provider::anthropic::Accumulator),
    Gemini(provider::gemini::Accumulator),
    Ollama(provider::ollama::Accumulator),
}

impl Accumulator {
    fn new(dialect: Dialect, provider: &'static str) -> Self {
        match dialect {
            Dialect::OpenAi | Dialect::Azure => Accumulator::OpenAi(Default::default(), provider),
            Dialect::Anthropic => Accumulator::Anthropic(Default::default()),
            Dialect::Gemini => Accumulator::Gemini(Default::default()),
            Dialect::Ollama => Accumulator::Ollama(Default::default()),
        }
    }

    fn push(&mut self, data: &str) -> Result<(), String> {
        match self {
            Accumulator::OpenAi(a, p) => a.push(data, p),
            Accumulator::Anthropic(a) => a.push(data),
            Accumulator::Gemini(a) => a.push(data),
            Accumulator::Ollama(a) => a.push(data),
        }
    }

    fn finish(self) -> Result<ChatReply, String> {
        match self {
            Accumulator::OpenAi(a, _) => a.finish(),
            Accumulator::Anthropic(a) => a.finish(),
            Accumulator::Gemini(a) => a.finish(),
            Accumulator::Ollama(a) => a.finish(),
        }
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
}

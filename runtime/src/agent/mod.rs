//! Agents: the adapter contract (`hooks-adapters-cli.md` §4), the registry keyed by type name,
//! and the built-in adapters `echo` and `flatagent`.

#[cfg(feature = "http")]
pub mod cost;
mod echo;
#[cfg(feature = "http")]
mod flatagent;
#[cfg(feature = "http")]
mod provider;
pub mod stream;

pub use echo::EchoAdapter;
#[cfg(feature = "http")]
pub use flatagent::{FlatAgentAdapter, HttpLimits};

use serde_json::{Map, Value};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed future, as adapters return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What an agent call produced (`AgentResult` of the reference).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentResult {
    /// Structured output.
    pub output: Option<Value>,
    /// Raw text.
    pub content: Option<String>,
    /// Token and call counts: `input_tokens`, `output_tokens`, `api_calls`, optional `cost`.
    pub usage: Option<Value>,
    /// A number, or `{input, output, cache_read, cache_write, total}`.
    pub cost: Option<Value>,
    /// Adapter-specific; `tool_results` is surfaced to hooks.
    pub metadata: Option<Value>,
    /// `stop`, `length`, `tool_use`, `error`, …
    pub finish_reason: Option<String>,
    /// `{code, type, message, status_code?, retryable}`: set means the call failed.
    pub error: Option<Value>,
    /// `{limited, retry_after?, windows?}`.
    pub rate_limit: Option<Value>,
    /// `{provider?, model?, request_id?, raw_headers?}`.
    pub provider_data: Option<Value>,
    /// `[{id, name, arguments}]`.
    pub tool_calls: Option<Value>,
    /// The user prompt as sent.
    pub rendered_user_prompt: Option<String>,
}

impl AgentResult {
    /// A successful result whose output is `output`.
    pub fn with_output(output: Value) -> Self {
        AgentResult {
            output: Some(output),
            ..AgentResult::default()
        }
    }

    /// `output` if set, else `{"content": content}` if set, else `{}`.
    pub fn output_payload(&self) -> Value {
        match (&self.output, &self.content) {
            (Some(o), _) if !o.is_null() => o.clone(),
            (_, Some(c)) => Value::Object(Map::from_iter([(
                "content".into(),
                Value::String(c.clone()),
            )])),
            _ => Value::Object(Map::new()),
        }
    }

    /// Consumes the result into its payload (see [`AgentResult::output_payload`]).
    pub fn into_payload(self) -> Value {
        match (self.output, self.content) {
            (Some(o), _) if !o.is_null() => o,
            (_, Some(c)) => Value::Object(Map::from_iter([("content".into(), Value::String(c))])),
            _ => Value::Object(Map::new()),
        }
    }

    /// `"<type>: <message>"`, the text the machine raises for a failed result.
    pub fn error_text(&self) -> Option<String> {
        let e = self.error.as_ref()?;
        let ty = e
            .get("type")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("AgentError");
        let msg = e
            .get("message")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown");
        Some(format!("{ty}: {msg}"))
    }

    /// Whether the error, if any, may be retried.
    pub fn retryable(&self) -> bool {
        self.error
            .as_ref()
            .and_then(|e| e.get("retryable"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// Number of API calls reported: `usage.api_calls`, else `usage.requests` or `usage.calls`.
    pub fn api_calls(&self) -> i64 {
        let Some(usage) = &self.usage else { return 0 };
        let pick = |k: &str| usage.get(k).filter(|v| !v.is_null());
        let v = match pick("api_calls") {
            Some(v) => Some(v),
            None => pick("requests")
                .filter(|v| truthy_num(v))
                .or_else(|| pick("calls")),
        };
        v.and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
            .unwrap_or(0)
    }

    /// Cost for the machine's `total_cost`: `cost` as a number or its map `total`, else the same
    /// read of `usage.cost` when `cost` is null.
    pub fn machine_cost(&self) -> f64 {
        match &self.cost {
            Some(c) if !c.is_null() => cost_number(c).unwrap_or(0.0),
            _ => self
                .usage
                .as_ref()
                .and_then(|u| u.get("cost"))
                .and_then(cost_number)
                .unwrap_or(0.0),
        }
    }
}

fn truthy_num(v: &Value) -> bool {
    v.as_f64().is_some_and(|f| f != 0.0)
}

fn cost_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Object(m) => m.get("total").and_then(Value::as_f64),
        _ => None,
    }
}

/// An exception raised by an adapter or executor (as opposed to a failed [`AgentResult`]).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct AgentFailure {
    /// The error class name `on_error` maps match on (`ValueError`, `TimeoutError`, …).
    pub kind: String,
    /// The message (`context.last_error`).
    pub message: String,
}

impl AgentFailure {
    /// A failure of class `kind`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        AgentFailure {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

/// How an agent is declared, after the compiler resolved its files. Its `Debug` output hides
/// credential-like keys of `config` and `profiles` (see [`redact_secrets`]).
#[derive(Clone, PartialEq)]
pub struct AgentSpec {
    /// The adapter type (`flatagent`, `echo`, or a user's).
    pub ty: String,
    /// `ref`, for adapters that interpret it.
    pub reference: Option<String>,
    /// `config`, or for `flatagent` the whole agent document.
    pub config: Option<Value>,
    /// The directory relative references resolve against.
    pub dir: PathBuf,
    /// The `data` of the `profiles.yml` next to the agent's own file, when the compiler loaded
    /// it (it wins over the machine's profiles, as in the reference).
    pub profiles: Option<Value>,
}

/// What an adapter knows about the machine creating an executor. Its `Debug` output hides
/// credential-like keys of `settings` and `profiles` (see [`redact_secrets`]).
#[derive(Clone)]
pub struct AdapterContext {
    /// The machine's config directory.
    pub config_dir: PathBuf,
    /// `data.settings`.
    pub settings: Value,
    /// `data.name`.
    pub machine_name: String,
    /// Model profiles visible to the machine (`data.model_profiles` and friends), if any.
    pub profiles: Option<Value>,
}

impl std::fmt::Debug for AgentSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSpec")
            .field("ty", &self.ty)
            .field("reference", &self.reference)
            .field("config", &self.config.as_ref().map(redact_secrets))
            .field("dir", &self.dir)
            .field("profiles", &self.profiles.as_ref().map(redact_secrets))
            .finish()
    }
}

impl std::fmt::Debug for AdapterContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdapterContext")
            .field("config_dir", &self.config_dir)
            .field("settings", &redact_secrets(&self.settings))
            .field("machine_name", &self.machine_name)
            .field("profiles", &self.profiles.as_ref().map(redact_secrets))
            .finish()
    }
}

/// What [`redact_secrets`] writes in place of a credential.
pub const REDACTED: &str = "[redacted]";

/// Whether a config key names a credential: `api_key` (the model block's, which the reference
/// hands to litellm) and its spellings (`openai_api_key`, `apiKey`), `secret`, `password`,
/// `token` and `*_token` except the token counts (`max_tokens`), `authorization`, `auth`,
/// `oauth`, and `headers` (which carry `Authorization`).
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace('-', "_");
    // Token counts and prices are not credentials.
    let counts = k.ends_with("_tokens") || k.ends_with("_per_token") || k.starts_with("max_");
    k.ends_with("api_key")
        || k.ends_with("apikey")
        || k.contains("secret")
        || k.contains("password")
        || (k == "token" || k.ends_with("_token")) && !counts
        || matches!(k.as_str(), "authorization" | "auth" | "oauth" | "headers")
}

/// `v` with the value of every credential-like key ([`is_secret_key`]), at any depth, replaced
/// by [`REDACTED`]: what `Debug` output and logs show of agent configs.
pub fn redact_secrets(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) && !v.is_null() {
                        Value::String(REDACTED.into())
                    } else {
                        redact_secrets(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(redact_secrets).collect()),
        other => other.clone(),
    }
}

/// One call of a machine-driven tool loop (the reference's `execute_with_tools` arguments).
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct ToolTurn<'a> {
    /// The tools the model may call, in OpenAI function format. Empty on the loop's final
    /// "tool use limit reached" pass, which asks for text.
    pub tools: &'a [Value],
    /// The chat so far (user, assistant and tool messages in OpenAI shape), `None` on the
    /// loop's first call, which renders the prompts from the input instead.
    pub messages: Option<&'a [Value]>,
    /// The agent's rendered `mcp.tool_prompt`, the `tools_prompt` prompt variable (empty
    /// without MCP servers).
    pub tools_prompt: &'a str,
}

impl<'a> ToolTurn<'a> {
    /// A turn offering `tools`, continuing `messages` (`None` for the first call).
    pub fn new(tools: &'a [Value], messages: Option<&'a [Value]>) -> Self {
        ToolTurn {
            tools,
            messages,
            tools_prompt: "",
        }
    }

    /// The same turn with `tools_prompt` set.
    pub fn with_tools_prompt(mut self, tools_prompt: &'a str) -> Self {
        self.tools_prompt = tools_prompt;
        self
    }
}

/// Runs one agent. Executors are created once per agent name and reused. Implement it with
/// `#[flatmachines::async_trait]`, like every async trait of the crate.
#[async_trait::async_trait]
pub trait AgentExecutor: Send + Sync {
    /// Calls the agent with the rendered `input`. `context` is the live machine context.
    async fn execute(&self, input: Value, context: &Value) -> Result<AgentResult, AgentFailure>;

    /// Whether [`AgentExecutor::execute_with_tools`] is implemented: a `tool_loop` state on an
    /// agent without it fails with the reference's "does not support machine-driven tool loops".
    fn supports_tool_loop(&self) -> bool {
        false
    }

    /// One call of a tool loop (`hooks-adapters-cli.md` §4.1): `input` is the rendered state
    /// input on the first call and `{}` on continuations. A reply that wants tools sets
    /// `finish_reason: "tool_use"` and `tool_calls: [{id, name, arguments}]`; the first call
    /// should report `rendered_user_prompt`, which seeds the chain.
    async fn execute_with_tools(
        &self,
        _input: Value,
        _turn: ToolTurn<'_>,
        _context: &Value,
    ) -> Result<AgentResult, AgentFailure> {
        Err(AgentFailure::new(
            "NotImplementedError",
            "this agent does not run machine-driven tool loops",
        ))
    }

    /// The agent document's `metadata` (read by `mdap_voting`).
    fn metadata(&self) -> Option<&Value> {
        None
    }
}

/// Creates executors for one agent type.
pub trait AgentAdapter: Send + Sync {
    /// The `type` name this adapter serves.
    fn type_name(&self) -> &str;

    /// Builds the executor for agent `name`.
    fn create_executor(
        &self,
        name: &str,
        spec: &AgentSpec,
        context: &AdapterContext,
    ) -> Result<Arc<dyn AgentExecutor>, AgentFailure>;
}

/// Adapters by type name.
#[derive(Clone, Default)]
pub struct AdapterRegistry {
    adapters: HashMap<String, Arc<dyn AgentAdapter>>,
}

impl std::fmt::Debug for AdapterRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.adapters.keys().collect();
        names.sort();
        f.debug_struct("AdapterRegistry")
            .field("types", &names)
            .finish()
    }
}

impl AdapterRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        AdapterRegistry::default()
    }

    /// The built-in adapters: `echo`, and `flatagent` (feature `http`).
    pub fn builtin() -> Self {
        let mut r = AdapterRegistry::new();
        r.register(Arc::new(EchoAdapter));
        #[cfg(feature = "http")]
        r.register(Arc::new(FlatAgentAdapter::new()));
        r
    }

    /// Registers (or replaces) the adapter for its type name.
    pub fn register(&mut self, adapter: Arc<dyn AgentAdapter>) {
        self.adapters
            .insert(adapter.type_name().to_string(), adapter);
    }

    /// The adapter for `ty`.
    pub fn get(&self, ty: &str) -> Result<&Arc<dyn AgentAdapter>, AgentFailure> {
        self.adapters.get(ty).ok_or_else(|| {
            // A flatagent without its adapter: say which feature brings it.
            let hint = if cfg!(feature = "http") || ty != "flatagent" {
                ""
            } else {
                " (the built-in `flatagent` adapter needs flatmachines' `http` feature)"
            };
            AgentFailure::new(
                "KeyError",
                format!("\"No agent adapter registered for type '{ty}'\"{hint}"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn debug_output_hides_credentials() {
        let spec = AgentSpec {
            ty: "flatagent".into(),
            reference: None,
            config: Some(
                json!({"data": {"model": {"name": "m", "api_key": "sk-hidden-1",
                                                    "max_tokens": 5}}}),
            ),
            dir: PathBuf::new(),
            profiles: Some(json!({"model_profiles": {"p": {"apiKey": "sk-hidden-2",
                                                           "headers": {"x": "sk-hidden-3"}}}})),
        };
        let ctx = AdapterContext {
            config_dir: PathBuf::new(),
            settings: json!({"openai_api_key": "sk-hidden-4"}),
            machine_name: "m".into(),
            profiles: spec.profiles.clone(),
        };
        let text = format!("{spec:?} {ctx:?}");
        assert!(!text.contains("sk-hidden"), "{text}");
        assert!(
            text.contains("max_tokens") && text.contains(REDACTED),
            "{text}"
        );
        for k in [
            "api_key",
            "OPENAI_API_KEY",
            "access_token",
            "client_secret",
            "Authorization",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "max_tokens",
            "name",
            "completion_tokens",
            "base_url",
            "temperature",
            "input_cost_per_token",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn payload_and_metrics_follow_the_reference() {
        let r = AgentResult {
            content: Some("hi".into()),
            usage: Some(json!({"requests": 2, "cost": {"total": 0.5}})),
            ..AgentResult::default()
        };
        assert_eq!(r.output_payload(), json!({"content": "hi"}));
        assert_eq!(r.api_calls(), 2);
        assert_eq!(r.machine_cost(), 0.5);
        let r = AgentResult {
            cost: Some(json!({"input": 1})),
            usage: Some(json!({"api_calls": 1, "cost": 3})),
            ..AgentResult::default()
        };
        // A map cost without `total` adds nothing and does not fall back to usage.cost.
        assert_eq!(r.machine_cost(), 0.0);
        assert_eq!(AgentResult::default().output_payload(), json!({}));
        let e = AgentResult {
            error: Some(json!({"type": "RateLimitError", "message": "slow", "retryable": true})),
            ..AgentResult::default()
        };
        assert_eq!(e.error_text().unwrap(), "RateLimitError: slow");
        assert!(e.retryable());
    }
}

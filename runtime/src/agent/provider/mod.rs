//! Model providers: which endpoint a model block calls, and how each provider's wire format
//! maps to and from the one chat shape the `flatagent` executor works with.
//!
//! The executor speaks OpenAI's chat shape internally (messages with `role`, `content`,
//! `tool_calls`; tools in OpenAI function format), because that is what the machine's tool
//! loop stores in checkpoints and what the reference hands to litellm. Each dialect module
//! turns a [`ChatRequest`] into its provider's request body and the provider's reply (or its
//! stream events) back into a [`ChatReply`].
//!
//! Routing follows litellm, which the reference calls: the effective model id is
//! `<provider>/<name>` when both are set and the name has no `/`, else `name`; a first path
//! segment naming a known provider picks it and is stripped from the model sent.

pub(crate) mod anthropic;
pub(crate) mod gemini;
pub(crate) mod http;
pub(crate) mod ollama;
pub(crate) mod openai;
pub(crate) mod ratelimit;
pub(crate) mod sse;

use serde_json::{Map, Value};

/// The wire format a provider speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// OpenAI chat completions (`POST {base}/chat/completions`, bearer key).
    OpenAi,
    /// Azure OpenAI: chat completions under `/openai/deployments/{model}`, `api-key` header.
    Azure,
    /// Anthropic Messages API (`POST {base}/v1/messages`, `x-api-key`).
    Anthropic,
    /// Google Gemini `generateContent` (`x-goog-api-key`).
    Gemini,
    /// Ollama's native chat API (`POST {base}/api/chat`).
    Ollama,
}

/// A provider litellm knows by name.
#[derive(Debug)]
pub(crate) struct Provider {
    /// The litellm name (`anthropic`, `together_ai`, …), the `provider:` of a model block.
    pub name: &'static str,
    pub dialect: Dialect,
    /// Where requests go without an override.
    pub default_base: &'static str,
    /// Environment variables holding the key, in the order litellm reads them.
    pub key_vars: &'static [&'static str],
    /// Environment variables overriding the base URL: `<PROVIDER>_BASE_URL`, then litellm's
    /// `<PROVIDER>_API_BASE`.
    pub base_vars: &'static [&'static str],
}

const fn p(
    name: &'static str,
    dialect: Dialect,
    default_base: &'static str,
    key_vars: &'static [&'static str],
    base_vars: &'static [&'static str],
) -> Provider {
    Provider {
        name,
        dialect,
        default_base,
        key_vars,
        base_vars,
    }
}

/// Every provider a model block may name. The OpenAI-compatible hosted ones differ from
/// OpenAI only in base URL and key.
pub(crate) const PROVIDERS: &[Provider] = &[
    p(
        "openai",
        Dialect::OpenAi,
        "https://api.openai.com/v1",
        &["OPENAI_API_KEY"],
        &["OPENAI_BASE_URL", "OPENAI_API_BASE"],
    ),
    p(
        "anthropic",
        Dialect::Anthropic,
        "https://api.anthropic.com",
        &["ANTHROPIC_API_KEY"],
        &["ANTHROPIC_BASE_URL", "ANTHROPIC_API_BASE"],
    ),
    p(
        "gemini",
        Dialect::Gemini,
        "https://generativelanguage.googleapis.com",
        &["GOOGLE_API_KEY", "GEMINI_API_KEY"],
        &["GEMINI_BASE_URL", "GEMINI_API_BASE"],
    ),
    p(
        "ollama",
        Dialect::Ollama,
        "http://localhost:11434",
        &["OLLAMA_API_KEY"],
        &["OLLAMA_BASE_URL", "OLLAMA_API_BASE"],
    ),
    p(
        "ollama_chat",
        Dialect::Ollama,
        "http://localhost:11434",
        &["OLLAMA_API_KEY"],
        &["OLLAMA_BASE_URL", "OLLAMA_API_BASE"],
    ),
    p(
        "azure",
        Dialect::Azure,
        "",
        &["AZURE_API_KEY", "AZURE_OPENAI_API_KEY"],
        &["AZURE_BASE_URL", "AZURE_API_BASE", "AZURE_OPENAI_ENDPOINT"],
    ),
    p(
        "openrouter",
        Dialect::OpenAi,
        "https://openrouter.ai/api/v1",
        &["OPENROUTER_API_KEY", "OR_API_KEY"],
        &["OPENROUTER_BASE_URL", "OPENROUTER_API_BASE"],
    ),
    p(
        "groq",
        Dialect::OpenAi,
        "https://api.groq.com/openai/v1",
        &["GROQ_API_KEY"],
        &["GROQ_BASE_URL", "GROQ_API_BASE"],
    ),
    p(
        "cerebras",
        Dialect::OpenAi,
        "https://api.cerebras.ai/v1",
        &["CEREBRAS_API_KEY"],
        &["CEREBRAS_BASE_URL", "CEREBRAS_API_BASE"],
    ),
    p(
        "together_ai",
        Dialect::OpenAi,
        "https://api.together.ai/v1",
        &[
            "TOGETHER_API_KEY",
            "TOGETHER_AI_API_KEY",
            "TOGETHERAI_API_KEY",
            "TOGETHER_AI_TOKEN",
        ],
        &["TOGETHER_AI_BASE_URL", "TOGETHER_AI_API_BASE"],
    ),
    p(
        "mistral",
        Dialect::OpenAi,
        "https://api.mistral.ai/v1",
        &["MISTRAL_API_KEY"],
        &["MISTRAL_BASE_URL", "MISTRAL_API_BASE"],
    ),
    p(
        "deepseek",
        Dialect::OpenAi,
        "https://api.deepseek.com/beta",
        &["DEEPSEEK_API_KEY"],
        &["DEEPSEEK_BASE_URL", "DEEPSEEK_API_BASE"],
    ),
    p(
        "xai",
        Dialect::OpenAi,
        "https://api.x.ai/v1",
        &["XAI_API_KEY"],
        &["XAI_BASE_URL", "XAI_API_BASE"],
    ),
    p(
        "fireworks_ai",
        Dialect::OpenAi,
        "https://api.fireworks.ai/inference/v1",
        &[
            "FIREWORKS_API_KEY",
            "FIREWORKS_AI_API_KEY",
            "FIREWORKSAI_API_KEY",
        ],
        &["FIREWORKS_BASE_URL", "FIREWORKS_API_BASE"],
    ),
    p(
        "perplexity",
        Dialect::OpenAi,
        "https://api.perplexity.ai",
        &["PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY"],
        &["PERPLEXITY_BASE_URL", "PERPLEXITY_API_BASE"],
    ),
    p(
        "deepinfra",
        Dialect::OpenAi,
        "https://api.deepinfra.com/v1/openai",
        &["DEEPINFRA_API_KEY"],
        &["DEEPINFRA_BASE_URL", "DEEPINFRA_API_BASE"],
    ),
    p(
        "nvidia_nim",
        Dialect::OpenAi,
        "https://integrate.api.nvidia.com/v1",
        &["NVIDIA_NIM_API_KEY"],
        &["NVIDIA_NIM_BASE_URL", "NVIDIA_NIM_API_BASE"],
    ),
    p(
        "sambanova",
        Dialect::OpenAi,
        "https://api.sambanova.ai/v1",
        &["SAMBANOVA_API_KEY"],
        &["SAMBANOVA_BASE_URL", "SAMBANOVA_API_BASE"],
    ),
    p(
        "hosted_vllm",
        Dialect::OpenAi,
        "",
        &["HOSTED_VLLM_API_KEY"],
        &["HOSTED_VLLM_BASE_URL", "HOSTED_VLLM_API_BASE"],
    ),
    p(
        "lm_studio",
        Dialect::OpenAi,
        "http://localhost:1234/v1",
        &["LM_STUDIO_API_KEY"],
        &["LM_STUDIO_BASE_URL", "LM_STUDIO_API_BASE"],
    ),
];

/// The provider called `name`.
pub(crate) fn provider(name: &str) -> Option<&'static Provider> {
    PROVIDERS.iter().find(|p| p.name == name)
}

/// Where one agent's requests go.
#[derive(Debug)]
pub(crate) struct Route {
    pub provider: &'static Provider,
    /// The model as the provider receives it (the provider prefix stripped).
    pub model: String,
    /// The effective litellm id (`<provider>/<name>`), what `provider_data.model` reports.
    pub model_id: String,
    /// The base URL after overrides, without a trailing `/`.
    pub base_url: String,
}

/// Picks the provider and model for a resolved model block, as litellm would. An unknown
/// `provider:` is an error naming the known ones; a bare name with no provider goes to
/// Anthropic when it is a Claude model and to OpenAI otherwise (litellm refuses names it does
/// not know; OpenAI-compatible servers accept any). `adapter_base_url` gives the program's
/// endpoint for the chosen provider, if it set one.
pub(crate) fn route(
    model: &Map<String, Value>,
    adapter_base_url: &dyn Fn(&str) -> Option<String>,
) -> Result<Route, String> {
    let name = model
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or("gpt-4o-mini");
    let provider_field = model
        .get("provider")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty());
    let model_id = match provider_field {
        Some(p) if !name.contains('/') => format!("{p}/{name}"),
        _ => name.to_string(),
    };
    let (chosen, sent) = match model_id.split_once('/') {
        Some((prefix, rest)) if provider(prefix).is_some() => {
            (provider(prefix).expect("checked"), rest.to_string())
        }
        _ => match provider_field {
            // `provider: openrouter` with `name: anthropic/claude-…`: the name already has a
            // `/`, so litellm reads its first segment as the provider; an unknown segment
            // leaves the provider field to decide.
            Some(p) => (
                provider(p).ok_or_else(|| unknown_provider(p))?,
                model_id.clone(),
            ),
            None if name.starts_with("claude") => {
                (provider("anthropic").expect("listed"), name.to_string())
            }
            None => (provider("openai").expect("listed"), name.to_string()),
        },
    };
    if let Some(p) = provider_field
        && provider(p).is_none()
    {
        return Err(unknown_provider(p));
    }
    let base = model
        .get("base_url")
        .or_else(|| model.get("api_base"))
        .and_then(Value::as_str)
        .filter(|b| !b.is_empty())
        .map(str::to_string)
        .or_else(|| adapter_base_url(chosen.name))
        .or_else(|| {
            chosen
                .base_vars
                .iter()
                .find_map(|v| std::env::var(v).ok().filter(|b| !b.is_empty()))
        })
        .unwrap_or_else(|| chosen.default_base.to_string());
    if base.is_empty() {
        return Err(format!(
            "provider '{}' has no default endpoint: set `base_url` in the model block or {}",
            chosen.name,
            chosen.base_vars.join(" or ")
        ));
    }
    Ok(Route {
        provider: chosen,
        model: sent,
        model_id,
        base_url: base.trim_end_matches('/').to_string(),
    })
}

fn unknown_provider(p: &str) -> String {
    let names: Vec<&str> = PROVIDERS.iter().map(|p| p.name).collect();
    format!(
        "unknown model provider '{p}'; known providers: {}",
        names.join(", ")
    )
}

/// The key for `provider` from its environment variables.
pub(crate) fn env_key(provider: &Provider) -> Option<String> {
    provider
        .key_vars
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|k| !k.is_empty()))
}

/// One model call in OpenAI's chat shape.
#[derive(Debug)]
pub(crate) struct ChatRequest<'a> {
    /// The model as the provider receives it.
    pub model: &'a str,
    /// `system` first, then user/assistant/tool messages.
    pub messages: &'a [Value],
    /// Tools in OpenAI function format; empty for none.
    pub tools: &'a [Value],
    /// Ask for a JSON object (the agent has an output schema and no tools are offered).
    pub json_mode: bool,
    /// Model parameters to forward (`temperature`, `max_tokens`, …, and unknown keys as-is).
    pub params: &'a Map<String, Value>,
    /// Stream the reply.
    pub stream: bool,
}

/// Token counts as the reference reports them (litellm's normalisation: `input` includes
/// cached prompt tokens for every provider).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Tokens {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

/// A provider's reply, normalised.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ChatReply {
    /// The text, `None` when the reply only calls tools.
    pub content: Option<String>,
    /// `[{id, name, arguments}]` with parsed arguments.
    pub tool_calls: Vec<Value>,
    /// `stop`, `length`, `tool_use` or `content_filter`.
    pub finish_reason: &'static str,
    /// Usage, when the provider reported it.
    pub tokens: Option<Tokens>,
    /// The model the provider says answered (dated names), for pricing.
    pub model: Option<String>,
    /// The provider's response id.
    pub id: Option<String>,
}

/// Parses tool-call arguments sent as JSON text; text that is not JSON gives `{}`, as in the
/// reference.
pub(crate) fn parse_arguments(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(text)) => {
            serde_json::from_str(text).unwrap_or_else(|_| Value::Object(Map::new()))
        }
        Some(Value::Null) | None => Value::Object(Map::new()),
        Some(other) => other.clone(),
    }
}

/// Keys of a model block that configure the call rather than being sent to the model: the
/// reference's known fields, litellm's own parameters (which litellm consumes), and ours.
const NOT_FORWARDED: &[&str] = &[
    "name",
    "provider",
    "profile",
    "backend",
    "base_url",
    "api_base",
    "api_version",
    "stream",
    "timeout",
    "max_response_bytes",
    "max_retry_after",
    "headers",
    "extra_headers",
    "oauth",
    "api",
    "num_retries",
    "drop_params",
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
];

/// The parameters of a model block to send with each request: everything but
/// [`NOT_FORWARDED`], null values and litellm's private `_`-prefixed flags (which litellm
/// consumes and never sends).
pub(crate) fn forwarded_params(model: &Map<String, Value>) -> Map<String, Value> {
    model
        .iter()
        .filter(|(k, v)| {
            !v.is_null() && !k.starts_with('_') && !NOT_FORWARDED.contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `stop` as a list of sequences: a single string becomes a one-item list, as every provider
/// but OpenAI wants.
pub(crate) fn stop_list(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::Array(vec![Value::String(s.clone())]),
        other => other.clone(),
    }
}

/// Appends `item` to the `key` list of the last message when it has `role`, else starts a
/// new message `{role, key: [item]}`: the merging of consecutive same-role turns that the
/// Anthropic (`content` blocks) and Gemini (`parts`) APIs need for strict alternation.
pub(crate) fn push_merged(messages: &mut Vec<Value>, role: &str, key: &str, item: Value) {
    if let Some(last) = messages.last_mut()
        && last["role"] == role
        && let Some(items) = last[key].as_array_mut()
    {
        items.push(item);
        return;
    }
    let mut message = Map::new();
    message.insert("role".into(), Value::String(role.to_string()));
    message.insert(key.to_string(), Value::Array(vec![item]));
    messages.push(Value::Object(message));
}

/// One streamed event's JSON: `None` for an empty payload; an `error` in it (an object with a
/// `message`, or a string) is returned as the error, as is a payload that is not JSON.
pub(crate) fn parse_event(data: &str) -> Result<Option<Value>, String> {
    if data.trim().is_empty() {
        return Ok(None);
    }
    let event: Value =
        serde_json::from_str(data).map_err(|e| format!("a stream event is not JSON: {e}"))?;
    if let Some(e) = event.get("error") {
        return Err(e
            .get("message")
            .or(Some(e))
            .and_then(Value::as_str)
            .map_or_else(|| e.to_string(), str::to_string));
    }
    Ok(Some(event))
}

/// The text of an OpenAI message `content`: a string, or the `text` parts of a list.
pub(crate) fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(v: Value) -> Result<Route, String> {
        route(v.as_object().unwrap(), &|_| Some("http://x".into()))
    }

    #[test]
    fn routes_follow_litellm() {
        let a = r(json!({"provider": "anthropic", "name": "claude-sonnet-4-5"})).unwrap();
        assert_eq!(a.provider.name, "anthropic");
        assert_eq!(a.model, "claude-sonnet-4-5");
        assert_eq!(a.model_id, "anthropic/claude-sonnet-4-5");
        let g = r(json!({"name": "gemini/gemini-2.5-flash"})).unwrap();
        assert_eq!(
            (g.provider.name, g.model.as_str()),
            ("gemini", "gemini-2.5-flash")
        );
        let o = r(json!({"name": "openrouter/anthropic/claude-3.5-sonnet"})).unwrap();
        assert_eq!(o.provider.name, "openrouter");
        assert_eq!(o.model, "anthropic/claude-3.5-sonnet");
        let t = r(json!({"provider": "together_ai", "name": "meta-llama/Llama-3-8b"})).unwrap();
        assert_eq!(t.provider.name, "together_ai");
        assert_eq!(t.model, "meta-llama/Llama-3-8b");
        assert_eq!(
            r(json!({"name": "claude-x"})).unwrap().provider.name,
            "anthropic"
        );
        assert_eq!(
            r(json!({"name": "my-model"})).unwrap().provider.name,
            "openai"
        );
        let e = r(json!({"provider": "nope", "name": "m"})).unwrap_err();
        assert!(e.contains("unknown model provider 'nope'"), "{e}");
        assert!(e.contains("anthropic"), "{e}");
        let b = route(
            json!({"provider": "groq", "name": "m", "base_url": "http://h/v1/"})
                .as_object()
                .unwrap(),
            &|_| Some("http://x".into()),
        )
        .unwrap();
        assert_eq!(b.base_url, "http://h/v1");
    }

    #[test]
    fn the_table_names_exactly_the_providers_the_compiler_accepts() {
        let ours: Vec<&str> = PROVIDERS.iter().map(|p| p.name).collect();
        assert_eq!(ours, flatmachines_ir::providers::PROVIDERS);
    }

    #[test]
    fn parameters_are_forwarded_as_the_reference_does() {
        let m = json!({"name": "n", "provider": "openai", "temperature": 0, "top_k": null,
                       "reasoning_effort": "low", "_skip_mcp_handler": true, "timeout": 3,
                       "stream": true, "stream_options": {"include_usage": true}});
        let f = forwarded_params(m.as_object().unwrap());
        assert_eq!(
            Value::Object(f),
            json!({"temperature": 0, "reasoning_effort": "low",
                   "stream_options": {"include_usage": true}})
        );
    }
}

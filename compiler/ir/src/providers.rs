//! The model providers the `flatagent` adapter speaks, by the litellm name a model block's
//! `provider:` (or a model id's first segment) uses. The compiler refuses other names
//! (`FM0414`); the runtime's provider table has exactly these entries.

/// Every provider name, in the order the docs list them.
pub const PROVIDERS: &[&str] = &[
    "openai",
    "anthropic",
    "gemini",
    "ollama",
    "ollama_chat",
    "azure",
    "openrouter",
    "groq",
    "cerebras",
    "together_ai",
    "mistral",
    "deepseek",
    "xai",
    "fireworks_ai",
    "perplexity",
    "deepinfra",
    "nvidia_nim",
    "sambanova",
    "hosted_vllm",
    "lm_studio",
];

/// Whether `name` is a provider the adapter speaks.
pub fn is_known(name: &str) -> bool {
    PROVIDERS.contains(&name)
}

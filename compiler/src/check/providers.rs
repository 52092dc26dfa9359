//! Model providers: a model block's `provider` must name one the `flatagent` adapter speaks
//! (`FM0414`). litellm fails such a name at the first call; here it is a compile error with
//! the closest known name.

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::ir::providers::{PROVIDERS, is_known};
use crate::model::agent::{AgentDoc, ModelRef};
use crate::suggest;

/// Checks the inline model block of one agent document.
pub(super) fn check_agent(doc: &AgentDoc, diags: &mut Diagnostics) {
    let Some(ModelRef::Config { node, .. }) = &doc.model else {
        return;
    };
    // The reference's OAuth backends (`codex`, `copilot`) name their own providers
    // (`openai-codex`, `github-copilot`); the runtime refuses those backends by name.
    if node
        .get("backend")
        .and_then(|b| b.as_str())
        .is_some_and(|b| !matches!(b, "litellm" | "aisuite"))
    {
        return;
    }
    let Some(p) = node.get("provider") else {
        return;
    };
    let Some(value) = p.as_str().filter(|v| !v.is_empty()) else {
        return;
    };
    if is_known(value) {
        return;
    }
    let help = suggest::help(value, PROVIDERS.iter().copied())
        .unwrap_or_else(|| format!("providers are: {}", PROVIDERS.join(", ")));
    diags.push(
        Diagnostic::new(
            Code::UnknownProvider,
            p.span,
            format!("model provider `{value}` is not one the `flatagent` adapter speaks"),
        )
        .help(help),
    );
}

#[cfg(test)]
mod tests {
    use super::super::test_support::check_files;

    const MACHINE: &str = "spec: flatmachine
spec_version: \"2.6.0\"
data:
  name: m
  agents:
    a: ./a.yml
  states:
    start:
      type: initial
      agent: a
      transitions: [{to: done}]
    done:
      type: final
";

    fn check(model: &str) -> Vec<crate::diag::JsonDiagnostic> {
        let agent = format!(
            "spec: flatagent\nspec_version: \"2.6.0\"\ndata:\n  model: {model}\n  user: hi\n"
        );
        check_files(&[("machine.yml", MACHINE), ("a.yml", &agent)])
            .1
            .into_iter()
            .filter(|d| d.code == "FM0414")
            .collect()
    }

    #[test]
    fn a_misspelt_provider_is_an_error_with_the_closest_name() {
        let d = check("{provider: antropic, name: claude-haiku-4-5}");
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(
            (d[0].file.as_deref(), d[0].line, d[0].column),
            (Some("a.yml"), Some(4), Some(21))
        );
        assert!(d[0].message.contains("`antropic`"), "{}", d[0].message);
        assert!(
            format!("{:?}", d[0].help).contains("anthropic"),
            "{:?}",
            d[0].help
        );
        let d = check("{provider: zzzzzz, name: m}");
        assert!(
            format!("{:?}", d[0].help).contains("providers are: openai, anthropic"),
            "{:?}",
            d[0].help
        );
    }

    #[test]
    fn known_providers_and_prefixed_names_pass() {
        for model in [
            "{provider: anthropic, name: claude-haiku-4-5}",
            "{provider: together_ai, name: meta-llama/x}",
            "{name: gemini/gemini-2.5-flash}",
            "{name: my-local-model}",
            "{provider: openai-codex, backend: codex, name: gpt-5.3-codex}",
        ] {
            assert!(check(model).is_empty(), "{model}");
        }
    }
}

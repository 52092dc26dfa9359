//! `{{ model.* }}` in a flatagent's prompts, as the reference renders it
//! (`FlatAgent._render_system_prompt`): the model block resolved through the profiles, with
//! `name` as `<provider>/<name>` and the sampling fields present even when unset — while the
//! request's `model` stays the bare name.

// Needs the adapter (`http`) and machine files read at run time (`loader`).
#![cfg(all(feature = "http", feature = "loader"))]

use flatmachines::agent::FlatAgentAdapter;
use flatmachines::{Machine, Runtime};
use flatmachines_testkit::{FakeLlm, TempDir};
use serde_json::json;

const PROFILES: &str = r#"
spec: flatprofiles
spec_version: "2.6.0"
data:
  model_profiles:
    base: {provider: openai, name: gpt-test, temperature: 0.25, custom_field: from-profile}
    strict: {max_tokens: 64}
  default: base
  override: strict
"#;

const AGENT: &str = r#"
spec: flatagent
spec_version: "2.6.0"
data:
  model: {profile: base, seed: 7, api_key: sk-not-for-prompts}
  system: "name={{ model.name }} provider={{ model.provider }} t={{ model.temperature }}"
  user: "max={{ model.max_tokens }} top_p={{ model.top_p }} seed={{ model.seed }} base={{ model.base_url }} custom={{ model.custom_field }} key={{ model.api_key }}"
"#;

const MACHINE: &str = r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: model-prompts
  agents:
    writer: ./agents/writer.yml
  states:
    start:
      type: initial
      agent: writer
      output_to_context: {text: output.content}
      transitions: [{to: done}]
    done:
      type: final
      output: {text: context.text}
"#;

#[tokio::test]
async fn prompts_see_the_resolved_model_with_the_provider_prefixed_name() {
    let llm = FakeLlm::start(json!({"models": {"gpt-test": {"default": "ok"}}})).unwrap();
    let dir = TempDir::with_prefix("fm-model-prompts-");
    dir.write("agents/profiles.yml", PROFILES);
    dir.write("agents/writer.yml", AGENT);
    let machine = Machine::from_file(dir.write("machine.yml", MACHINE)).unwrap();
    let rt = Runtime::builder()
        .adapter(FlatAgentAdapter::with_base_url(llm.base_url()))
        .build();
    let out = rt.run(&machine, json!({})).await.unwrap();
    assert_eq!(out, json!({"text": "ok"}));
    let log = llm.log();
    assert_eq!(log.len(), 1);
    // The request names the bare model (what the conformance cases pin).
    assert_eq!(log[0]["model"], "gpt-test");
    assert_eq!(
        log[0]["messages"][0]["content"],
        "name=openai/gpt-test provider=openai t=0.25"
    );
    // Unset fields render as Python's None, as they do in the reference; the profile's own
    // fields are there; the API key is not (it is never rendered into a prompt).
    assert_eq!(
        log[0]["messages"][1]["content"],
        "max=64 top_p=None seed=7 base=None custom=from-profile key="
    );
    assert_eq!(
        log[0]["params"],
        json!({"temperature": 0.25, "max_tokens": 64, "seed": 7})
    );
}

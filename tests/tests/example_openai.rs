//! The `examples/openai` machine against the scripted OpenAI-compatible server on 127.0.0.1.

use flatmachines::Runtime;
use flatmachines::agent::FlatAgentAdapter;
use flatmachines_testkit::FakeLlm;
use serde_json::json;

fn runtime(server: &FakeLlm) -> Runtime {
    Runtime::builder()
        .adapter(FlatAgentAdapter::with_base_url(server.base_url()))
        .build()
}

#[tokio::test]
async fn redrafts_until_the_editor_is_satisfied() {
    let server = FakeLlm::start(json!({"models": {"gpt-4o-mini": {"responses": [
        "v1: we added things",
        {"score": 5, "feedback": "Name the command."},
        "v2: `flatmachines check` is new",
        {"score": 9, "feedback": "Good."}
    ]}}}))
    .unwrap();
    let out = example_openai::write_release_notes(&runtime(&server), "added check")
        .await
        .unwrap();
    assert_eq!(
        out,
        json!({"notes": "v2: `flatmachines check` is new", "score": 9, "rounds": "2"})
    );
    let log = server.log();
    assert_eq!(log.len(), 4);
    // The second draft request carries the editor's feedback and the previous draft.
    let user = log[2]["messages"][1]["content"].as_str().unwrap();
    assert!(user.contains("v1: we added things"), "{user}");
    assert!(
        user.contains("The editor said: Name the command."),
        "{user}"
    );
    // The profile's settings reach the server; the editor asks for JSON.
    assert_eq!(log[0]["params"]["temperature"], json!(0.2));
    assert_eq!(
        log[1]["params"]["response_format"],
        json!({"type": "json_object"})
    );
}

#[tokio::test]
async fn a_refused_request_ends_in_the_failed_state() {
    let server = FakeLlm::start(json!({"models": {"gpt-4o-mini": {"responses": [
        {"$status": 401, "$message": "bad key", "$type": "invalid_api_key"}
    ]}}}))
    .unwrap();
    let out = example_openai::write_release_notes(&runtime(&server), "x")
        .await
        .unwrap();
    // Authentication errors are not retryable: one request, then `on_error: failed`.
    assert_eq!(server.log().len(), 1);
    assert!(out["error"].as_str().unwrap().contains("bad key"), "{out}");
    assert!(out["error_type"].is_string(), "{out}");
}

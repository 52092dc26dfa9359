//! Release notes drafted by one agent and graded by another, on any OpenAI-compatible server.
//!
//! The machine is compiled into this crate: a typo in `machines/*.yml` fails `cargo build`.
//! At run time the `flatagent` adapter sends chat completions to `OPENAI_BASE_URL` (default
//! `https://api.openai.com/v1`) with `OPENAI_API_KEY`, using the model of
//! `machines/profiles.yml`.

flatmachines::include_machine!("../machines/release-notes.yml");

pub use release_notes::State;

/// Runs the machine on `changes` and returns its output: `{notes, score, rounds}`, or
/// `{error, error_type}` when an agent call failed for good.
pub async fn write_release_notes(
    rt: &flatmachines::Runtime,
    changes: &str,
) -> Result<serde_json::Value, flatmachines::Error> {
    release_notes::execute(rt, serde_json::json!({ "changes": changes })).await
}

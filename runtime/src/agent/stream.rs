//! Stream events of agent calls: how an adapter hands token deltas and tool-call fragments to
//! whoever runs the machine, while the call is still in flight.
//!
//! The executor sets a sink for the duration of each agent call ([`scope`]); an adapter calls
//! [`emit`] with each event and never needs to know who listens (the `on_agent_stream_event`
//! hook, a run-event stream, nobody). The sink is task-local rather than a field of the
//! executor because one executor serves concurrent calls (fan-out, parallel machines), and each
//! call's events belong to its own state.
//!
//! Events are JSON objects with a `type`:
//!
//! | `type` | fields |
//! |---|---|
//! | `message_start` | `provider`, `model` |
//! | `text_delta` | `text` |
//! | `tool_call_delta` | `index`, `id?`, `name?`, `arguments` (a fragment of the JSON text) |
//! | `usage` | `input_tokens`, `output_tokens`, `cache_read_tokens`, `cache_write_tokens` |
//! | `message_end` | `finish_reason` |

use serde_json::Value;
use std::future::Future;
use std::sync::Arc;

/// Receives the stream events of one agent call.
pub type StreamSink = Arc<dyn Fn(Value) + Send + Sync>;

tokio::task_local! {
    static SINK: StreamSink;
}

/// Runs `fut` with `sink` receiving every event [`emit`]ted inside it (and in nothing it
/// spawns: a spawned task starts without a sink).
pub async fn scope<F: Future>(sink: StreamSink, fut: F) -> F::Output {
    SINK.scope(sink, fut).await
}

/// Whether the current agent call has a listener: adapters may skip building events, or
/// even streaming, without one.
pub fn is_listening() -> bool {
    SINK.try_with(|_| ()).is_ok()
}

/// Hands `event` to the current call's sink, if any.
pub fn emit(event: Value) {
    let _ = SINK.try_with(|sink| sink(event));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex;

    #[tokio::test]
    async fn events_reach_the_sink_of_their_own_scope_only() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let sink: StreamSink = Arc::new(move |e| s.lock().unwrap().push(e));
        emit(json!({"type": "lost"}));
        assert!(!is_listening());
        scope(sink, async {
            assert!(is_listening());
            emit(json!({"type": "text_delta", "text": "hi"}));
        })
        .await;
        emit(json!({"type": "lost"}));
        assert_eq!(
            *seen.lock().unwrap(),
            vec![json!({"type": "text_delta", "text": "hi"})]
        );
    }
}

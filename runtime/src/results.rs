//! Result backends: where child machines leave their results (`parallel-and-launch.md` §8).
//!
//! Every child run (`machine:`, `foreach:`, `launch:`) writes its output — or an error entry
//! `{"_error": <message>, "_error_type": <class>}` — to `flatagents://<execution_id>/result`.
//! The parent of a blocking call gets the result directly; launched machines, machines run by a
//! [`SubprocessInvoker`](crate::invoker::SubprocessInvoker) and jobs of external queues are read
//! back through the backend, and on resume the backend tells which launches already finished.
//!
//! ```
//! use flatmachines::results::{InMemoryResultBackend, ResultBackend, result_uri};
//! use serde_json::json;
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let backend = InMemoryResultBackend::new();
//! let uri = result_uri("child-1");
//! assert_eq!(uri, "flatagents://child-1/result");
//! backend.write(&uri, json!({"v": 1})).await.unwrap();
//! assert_eq!(backend.read(&uri, false, None).await.unwrap(), Some(json!({"v": 1})));
//! # });
//! ```

use async_trait::async_trait;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// The URI scheme of results.
pub const SCHEME: &str = "flatagents://";

/// `flatagents://<execution_id>/<path>`.
pub fn make_uri(execution_id: &str, path: &str) -> String {
    format!("{SCHEME}{execution_id}/{path}")
}

/// `flatagents://<execution_id>/result`, where a child's result is written.
pub fn result_uri(execution_id: &str) -> String {
    make_uri(execution_id, "result")
}

/// Splits a URI into execution id and path: the first `/` after the scheme separates them, and
/// a URI without a path means `result`.
pub fn parse_uri(uri: &str) -> Result<(&str, &str), ResultError> {
    let rest = uri
        .strip_prefix(SCHEME)
        .ok_or_else(|| ResultError::InvalidUri(uri.to_string()))?;
    Ok(match rest.split_once('/') {
        Some((id, path)) => (id, path),
        None => (rest, "result"),
    })
}

/// Why a result operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResultError {
    /// The URI does not start with `flatagents://`.
    #[error("Invalid URI: {0}. Expected flatagents:// scheme")]
    InvalidUri(String),
    /// A blocking read waited longer than its timeout.
    #[error("Timeout waiting for result at {uri}")]
    Timeout {
        /// The URI read.
        uri: String,
    },
    /// The storage behind the backend failed.
    #[error("result backend: {0}")]
    Backend(String),
}

impl ResultError {
    /// The reference's exception class for this error (`ValueError`, `TimeoutError`,
    /// `RuntimeError`), as `on_error` maps match it.
    pub fn kind(&self) -> &'static str {
        match self {
            ResultError::InvalidUri(_) => "ValueError",
            ResultError::Timeout { .. } => "TimeoutError",
            ResultError::Backend(_) => "RuntimeError",
        }
    }
}

/// Storage for child results, addressed by `flatagents://` URIs. Implement it over a shared
/// store (a database, Redis, …) when children run in other processes.
#[async_trait]
pub trait ResultBackend: Send + Sync {
    /// Stores `data` at `uri`, replacing what was there, and wakes readers waiting for it.
    async fn write(&self, uri: &str, data: Value) -> Result<(), ResultError>;
    /// The value at `uri`. Without `block`, `None` when nothing is there; with `block`, waits
    /// until a value is written or `timeout` passes ([`ResultError::Timeout`]); no timeout
    /// waits for ever.
    async fn read(
        &self,
        uri: &str,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<Option<Value>, ResultError>;
    /// Whether a value is stored at `uri`.
    async fn exists(&self, uri: &str) -> Result<bool, ResultError>;
    /// Removes the value at `uri` (no error when absent).
    async fn delete(&self, uri: &str) -> Result<(), ResultError>;
}

/// An in-process result backend: a map from `<execution_id>/<path>` to the value. Every
/// [`Runtime`](crate::Runtime) has one by default, shared by all its runs (the reference shares
/// one per process). Results are never deleted by the runtime.
#[derive(Default)]
pub struct InMemoryResultBackend {
    slots: Mutex<HashMap<String, Slot>>,
}

#[derive(Default)]
struct Slot {
    value: Option<Value>,
    /// Present while readers wait for a value.
    waiters: Option<Arc<Notify>>,
}

impl std::fmt::Debug for InMemoryResultBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryResultBackend")
            .field("entries", &self.len())
            .finish()
    }
}

impl InMemoryResultBackend {
    /// An empty backend.
    pub fn new() -> Self {
        InMemoryResultBackend::default()
    }

    /// How many values are stored.
    pub fn len(&self) -> usize {
        self.lock().values().filter(|s| s.value.is_some()).count()
    }

    /// Whether no value is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key(uri: &str) -> Result<String, ResultError> {
        let (id, path) = parse_uri(uri)?;
        Ok(format!("{id}/{path}"))
    }

    fn get(&self, key: &str) -> Option<Value> {
        self.lock().get(key).and_then(|s| s.value.clone())
    }
}

#[async_trait]
impl ResultBackend for InMemoryResultBackend {
    async fn write(&self, uri: &str, data: Value) -> Result<(), ResultError> {
        let key = Self::key(uri)?;
        let mut slots = self.lock();
        let slot = slots.entry(key).or_default();
        slot.value = Some(data);
        if let Some(waiters) = slot.waiters.take() {
            waiters.notify_waiters();
        }
        Ok(())
    }

    async fn read(
        &self,
        uri: &str,
        block: bool,
        timeout: Option<Duration>,
    ) -> Result<Option<Value>, ResultError> {
        let key = Self::key(uri)?;
        if !block {
            return Ok(self.get(&key));
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            let waiters = {
                let mut slots = self.lock();
                let slot = slots.entry(key.clone()).or_default();
                if let Some(v) = &slot.value {
                    return Ok(Some(v.clone()));
                }
                slot.waiters.get_or_insert_with(Default::default).clone()
            };
            let notified = waiters.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // A write between taking the waiters and enabling the future woke nobody.
            if let Some(v) = self.get(&key) {
                return Ok(Some(v));
            }
            match deadline {
                None => notified.await,
                Some(d) => {
                    if tokio::time::timeout_at(d, notified).await.is_err() {
                        let mut slots = self.lock();
                        // Drop the empty slot unless someone else waits on it.
                        if slots
                            .get(&key)
                            .is_some_and(|s| s.value.is_none() && Arc::strong_count(&waiters) <= 2)
                        {
                            slots.remove(&key);
                        }
                        return Err(ResultError::Timeout {
                            uri: uri.to_string(),
                        });
                    }
                }
            }
        }
    }

    async fn exists(&self, uri: &str) -> Result<bool, ResultError> {
        let key = Self::key(uri)?;
        Ok(self.lock().get(&key).is_some_and(|s| s.value.is_some()))
    }

    async fn delete(&self, uri: &str) -> Result<(), ResultError> {
        let key = Self::key(uri)?;
        if let Some(slot) = self.lock().remove(&key)
            && let Some(w) = slot.waiters
        {
            w.notify_waiters();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn uris_parse_like_the_reference() {
        assert_eq!(
            parse_uri("flatagents://abc/result").unwrap(),
            ("abc", "result")
        );
        assert_eq!(parse_uri("flatagents://abc").unwrap(), ("abc", "result"));
        assert_eq!(parse_uri("flatagents://abc/x/y").unwrap(), ("abc", "x/y"));
        let err = parse_uri("http://abc/result").unwrap_err();
        assert_eq!(err.kind(), "ValueError");
        assert_eq!(make_uri("a", "checkpoint"), "flatagents://a/checkpoint");
    }

    #[tokio::test]
    async fn non_blocking_read_of_a_missing_value_is_none() {
        let b = InMemoryResultBackend::new();
        assert_eq!(
            b.read("flatagents://x/result", false, None).await.unwrap(),
            None
        );
        assert!(!b.exists("flatagents://x/result").await.unwrap());
        assert!(b.is_empty());
    }

    #[tokio::test]
    async fn blocking_read_wakes_on_write() {
        let b = Arc::new(InMemoryResultBackend::new());
        let reader = {
            let b = b.clone();
            tokio::spawn(async move { b.read("flatagents://x/result", true, None).await })
        };
        tokio::task::yield_now().await;
        b.write("flatagents://x/result", json!({"ok": 1}))
            .await
            .unwrap();
        assert_eq!(reader.await.unwrap().unwrap(), Some(json!({"ok": 1})));
        assert!(b.exists("flatagents://x").await.unwrap());
        b.delete("flatagents://x/result").await.unwrap();
        assert!(!b.exists("flatagents://x/result").await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn blocking_read_times_out() {
        let b = InMemoryResultBackend::new();
        let err = b
            .read(
                "flatagents://late/result",
                true,
                Some(Duration::from_secs(2)),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Timeout waiting for result at flatagents://late/result"
        );
        assert_eq!(err.kind(), "TimeoutError");
        // The waiting slot is not left behind.
        assert!(b.lock().is_empty());
    }
}

//! Signals: durable messages on named channels that parked `wait_for` states consume
//! (`signals-and-dispatch.md` §1–2). The [`SignalBackend`] port and the in-memory backend;
//! the SQLite backend shares the checkpoint database (feature `sqlite`).

mod dispatch;
mod trigger;

pub use dispatch::{Dispatcher, RESERVED, RESUMING, Resumer};
pub use trigger::{FileTrigger, NoOpTrigger, SocketTrigger, Trigger, send_and_notify};

use crate::persistence::PersistenceError;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};

#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteSignalBackend;

/// One signal: `{id, channel, data, created_at}` as the reference stores it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Signal {
    /// A UUID4 string.
    pub id: String,
    /// The exact channel name (no wildcards).
    pub channel: String,
    /// The payload, any JSON value.
    pub data: Value,
    /// UTC ISO-8601 with microseconds (`2026-12-06T05:20:18.123456+00:00`).
    pub created_at: String,
}

/// Where signals wait until a `wait_for` state consumes them.
///
/// `consume` must be atomic: of two consumers of one channel, in this process or another, at most
/// one gets a given signal.
#[async_trait::async_trait]
pub trait SignalBackend: Send + Sync {
    /// Stores a signal on `channel` and returns its id.
    async fn send(&self, channel: &str, data: Value) -> Result<String, PersistenceError>;
    /// Removes and returns the oldest signal of `channel`, if any.
    async fn consume(&self, channel: &str) -> Result<Option<Signal>, PersistenceError>;
    /// The signals of `channel`, oldest first, without removing them.
    async fn peek(&self, channel: &str) -> Result<Vec<Signal>, PersistenceError>;
    /// The names of the channels that have signals, sorted.
    async fn channels(&self) -> Result<Vec<String>, PersistenceError>;
    /// Removes signal `id` on behalf of `consumer` and returns it. Idempotent for its consumer:
    /// a second claim by the same consumer returns the signal again (so a run that crashed
    /// right after claiming gets it back on resume); a signal claimed by another consumer, or
    /// unknown, gives `None`. This is how a `wait_for` state takes a signal exactly once.
    async fn claim(&self, id: &str, consumer: &str) -> Result<Option<Signal>, PersistenceError>;
}

/// Signals in process memory: a FIFO per channel (a channel disappears when it empties).
#[derive(Debug, Default)]
pub struct MemorySignalBackend {
    channels: std::sync::Mutex<BTreeMap<String, VecDeque<Signal>>>,
    /// Claimed signals by id, with their consumer.
    claimed: std::sync::Mutex<std::collections::HashMap<String, (String, Signal)>>,
}

impl MemorySignalBackend {
    /// An empty backend.
    pub fn new() -> Self {
        MemorySignalBackend::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, VecDeque<Signal>>> {
        // No code panics while holding the lock; a poisoned one still holds whole queues.
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl SignalBackend for MemorySignalBackend {
    async fn send(&self, channel: &str, data: Value) -> Result<String, PersistenceError> {
        let signal = Signal {
            id: crate::py::uuid4(),
            channel: channel.to_string(),
            data,
            created_at: crate::persistence::snapshot::utc_now_iso(),
        };
        let id = signal.id.clone();
        self.lock()
            .entry(channel.to_string())
            .or_default()
            .push_back(signal);
        Ok(id)
    }

    async fn consume(&self, channel: &str) -> Result<Option<Signal>, PersistenceError> {
        let mut map = self.lock();
        let Some(queue) = map.get_mut(channel) else {
            return Ok(None);
        };
        let signal = queue.pop_front();
        if queue.is_empty() {
            map.remove(channel);
        }
        Ok(signal)
    }

    async fn peek(&self, channel: &str) -> Result<Vec<Signal>, PersistenceError> {
        Ok(self
            .lock()
            .get(channel)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn channels(&self) -> Result<Vec<String>, PersistenceError> {
        Ok(self.lock().keys().cloned().collect())
    }

    async fn claim(&self, id: &str, consumer: &str) -> Result<Option<Signal>, PersistenceError> {
        let mut map = self.lock();
        let mut claimed = self.claimed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((by, signal)) = claimed.get(id) {
            return Ok((by == consumer).then(|| signal.clone()));
        }
        let found = map.iter().find_map(|(channel, q)| {
            q.iter()
                .position(|s| s.id == id)
                .map(|at| (channel.clone(), at))
        });
        let Some((channel, at)) = found else {
            return Ok(None);
        };
        let queue = map.get_mut(&channel).expect("found above");
        let signal = queue.remove(at).expect("found above");
        if queue.is_empty() {
            map.remove(&channel);
        }
        claimed.insert(id.to_string(), (consumer.to_string(), signal.clone()));
        Ok(Some(signal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn memory_signals_are_fifo_per_channel() {
        let b = MemorySignalBackend::new();
        b.send("a", json!(1)).await.unwrap();
        b.send("b", json!({"x": 2})).await.unwrap();
        b.send("a", json!(3)).await.unwrap();
        assert_eq!(b.channels().await.unwrap(), ["a", "b"]);
        assert_eq!(b.peek("a").await.unwrap().len(), 2);
        assert_eq!(b.consume("a").await.unwrap().unwrap().data, json!(1));
        assert_eq!(b.consume("a").await.unwrap().unwrap().data, json!(3));
        assert_eq!(b.consume("a").await.unwrap(), None);
        assert_eq!(b.channels().await.unwrap(), ["b"]);
    }

    #[tokio::test]
    async fn a_claim_is_exactly_once_and_idempotent_for_its_consumer() {
        let b = MemorySignalBackend::new();
        let id = b.send("c", json!({"ok": true})).await.unwrap();
        assert_eq!(
            b.claim(&id, "run-1").await.unwrap().unwrap().data,
            json!({"ok": true})
        );
        assert!(b.peek("c").await.unwrap().is_empty());
        assert!(b.claim(&id, "run-1").await.unwrap().is_some());
        assert_eq!(b.claim(&id, "run-2").await.unwrap(), None);
        assert_eq!(b.claim("nope", "run-1").await.unwrap(), None);
    }
}

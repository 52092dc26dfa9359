//! Checkpoint backends, execution locks and config stores (`persistence.md` §5–7).
//!
//! All three are traits so users can plug their own storage; the built-in ones are chosen from
//! the YAML `persistence` block with no code.

use async_trait::async_trait;

pub mod snapshot;
pub use snapshot::{MachineSnapshot, SnapshotError};

mod config_store;
pub mod local;
pub mod memory;
mod meta;
pub mod sqlite;
pub use config_store::config_hash;
pub use local::{LocalFileBackend, LocalFileConfigStore, LocalFileLock};
pub use memory::{MemoryBackend, MemoryConfigStore, NoOpLock};
pub use sqlite::{
    LeaseOptions, SqliteBackend, SqliteConfigStore, SqliteLeaseLock, resolve_db_path,
};

use std::path::PathBuf;
use std::sync::Arc;

/// Why a persistence operation failed. Every variant names what it was working on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PersistenceError {
    /// A key that could escape the store (`..`, a leading `/`, or empty).
    #[error("invalid checkpoint key `{0}`")]
    InvalidKey(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Stored data that does not decode (a torn or hand-edited file, a foreign format).
    #[error("{location}: corrupt checkpoint data: {message}")]
    Corrupt {
        /// The file path or `table/key` the data came from.
        location: String,
        /// What is wrong with it.
        message: String,
    },
    /// The database refused an operation.
    #[error("{path}: sqlite: {message}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// The driver's message.
        message: String,
    },
}

/// Filters for [`CheckpointBackend::list_execution_ids`]: an id matches when its **latest**
/// snapshot has this event and/or waiting channel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// The latest snapshot's `event`.
    pub event: Option<String>,
    /// The latest snapshot's `waiting_channel`.
    pub waiting_channel: Option<String>,
}

/// Byte storage for snapshots under keys `<execution_id>/step_<NNNNNN>_<event>.json` and the
/// pointer `<execution_id>/latest` (`persistence.md` §3, §5).
#[async_trait]
pub trait CheckpointBackend: Send + Sync {
    /// Stores `value` under `key`, replacing what was there.
    async fn save(&self, key: &str, value: &[u8]) -> Result<(), PersistenceError>;
    /// The bytes under `key`, or `None`.
    async fn load(&self, key: &str) -> Result<Option<Vec<u8>>, PersistenceError>;
    /// Removes `key` (no error if absent).
    async fn delete(&self, key: &str) -> Result<(), PersistenceError>;
    /// Execution ids, sorted.
    async fn list_execution_ids(
        &self,
        filter: &ListFilter,
    ) -> Result<Vec<String>, PersistenceError>;
    /// Removes every key of `execution_id`.
    async fn delete_execution(&self, execution_id: &str) -> Result<(), PersistenceError>;

    /// Saves a snapshot and then points `<execution_id>/latest` at it. Backends that can do
    /// both in one transaction override this; the default saves the snapshot first, so a crash
    /// between the two leaves the previous pointer valid.
    async fn save_checkpoint(
        &self,
        execution_id: &str,
        key: &str,
        snapshot: &[u8],
    ) -> Result<(), PersistenceError> {
        self.save(key, snapshot).await?;
        self.save(&format!("{execution_id}/latest"), key.as_bytes())
            .await
    }

    /// The config store that lives with this backend, if any (SQLite has one built in).
    fn config_store(&self) -> Option<Arc<dyn ConfigStore>> {
        None
    }
}

/// A lock on an execution id, held for the whole of a run (`persistence.md` §6).
#[async_trait]
pub trait ExecutionLock: Send + Sync {
    /// Takes the lock without waiting; `Ok(false)` when someone else holds it.
    async fn acquire(&self, key: &str) -> Result<bool, PersistenceError>;
    /// Releases the lock if held (never fails the run).
    async fn release(&self, key: &str);
}

/// Content-addressed machine configs, so a run can resume from its id alone (§7).
#[async_trait]
pub trait ConfigStore: Send + Sync {
    /// Stores `raw` and returns its SHA-256 hex digest; storing the same text again is a no-op.
    async fn put(&self, raw: &str) -> Result<String, PersistenceError>;
    /// The text stored under `hash`.
    async fn get(&self, hash: &str) -> Result<Option<String>, PersistenceError>;
    /// Removes `hash` (no error if absent).
    async fn delete(&self, hash: &str) -> Result<(), PersistenceError>;
}

/// Rejects keys that could escape the store (`persistence.md` §5.2–5.3).
pub fn validate_key(key: &str) -> Result<(), PersistenceError> {
    if key.is_empty() || key.contains("..") || key.starts_with('/') {
        return Err(PersistenceError::InvalidKey(key.to_string()));
    }
    Ok(())
}

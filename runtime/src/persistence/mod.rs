//! Checkpoint backends, execution locks and config stores (`persistence.md` §5–7).
//!
//! All three are traits so users can plug their own storage; the built-in ones are chosen from
//! the YAML `persistence` block with no code.

use async_trait::async_trait;

mod deep_json;
pub(crate) mod snapshot;
pub use snapshot::{MAX_SNAPSHOT_DEPTH, MachineSnapshot, SnapshotError};

mod config_store;
#[cfg(test)]
mod contract_tests;
pub mod local;
pub mod memory;
mod meta;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub use config_store::config_hash;
pub use local::{LocalFileBackend, LocalFileConfigStore, LocalFileLock};
pub use memory::{MemoryBackend, MemoryConfigStore, NoOpLock};
#[cfg(feature = "sqlite")]
pub use sqlite::{
    LeaseOptions, SqliteBackend, SqliteConfigStore, SqliteLeaseLock, resolve_db_path,
};

use std::path::PathBuf;
use std::sync::Arc;

/// The indexed fields of a snapshot, parsed from its bytes (for checks of [`SnapshotFields`]).
pub(crate) fn snapshot_fields_of(bytes: &[u8]) -> Result<meta::SnapshotMeta, String> {
    meta::snapshot_meta(bytes)
}

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
    /// A checkpoint would nest arrays and objects deeper than
    /// [`MAX_SNAPSHOT_DEPTH`](snapshot::MAX_SNAPSHOT_DEPTH) levels, which could not be read
    /// back: it is not written, and the run fails rather than leave a checkpoint that cannot
    /// resume.
    #[error(
        "state `{state}`: the {field} nests arrays and objects deeper than the {limit} levels \
         a checkpoint may hold"
    )]
    TooDeep {
        /// The snapshot's `current_state`.
        state: String,
        /// The snapshot field that is too deep (`context`, `output`, …).
        field: &'static str,
        /// The limit.
        limit: usize,
    },
    /// The YAML names a backend this build of flatmachines leaves out.
    #[error("{what} needs flatmachines' `{feature}` feature")]
    Unavailable {
        /// What was asked for (`persistence.backend: sqlite`).
        what: String,
        /// The cargo feature that brings it.
        feature: &'static str,
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

/// The snapshot fields that backends index or filter on (SQLite keeps them in columns), as
/// the code that encoded the snapshot knows them. They must be what decoding the snapshot's
/// bytes would give; a backend may trust them instead of parsing the JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotFields<'a> {
    /// `machine_name`.
    pub machine_name: &'a str,
    /// `event`.
    pub event: Option<&'a str>,
    /// `current_state`.
    pub current_state: &'a str,
    /// `waiting_channel`.
    pub waiting_channel: Option<&'a str>,
}

/// One snapshot of a batch for [`CheckpointBackend::save_checkpoints`].
#[derive(Clone, Copy, Debug)]
pub struct BatchEntry<'a> {
    /// The snapshot key.
    pub key: &'a str,
    /// The encoded snapshot.
    pub snapshot: &'a [u8],
    /// The snapshot's indexed fields when the caller knows them (the executor always does);
    /// with `None`, backends that need them parse `snapshot`.
    pub fields: Option<SnapshotFields<'a>>,
}

impl<'a> BatchEntry<'a> {
    /// An entry whose fields backends read from the bytes.
    pub fn new(key: &'a str, snapshot: &'a [u8]) -> Self {
        BatchEntry {
            key,
            snapshot,
            fields: None,
        }
    }

    /// An entry with its indexed fields given (see [`SnapshotFields`] for the contract).
    pub fn with_fields(key: &'a str, snapshot: &'a [u8], fields: SnapshotFields<'a>) -> Self {
        BatchEntry {
            key,
            snapshot,
            fields: Some(fields),
        }
    }
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

    /// Saves several snapshots of `execution_id` in order, leaving the store as
    /// [`save_checkpoint`](Self::save_checkpoint) called once per entry would: every snapshot
    /// stored, `<execution_id>/latest` naming the last one. When this returns `Ok`, all of them
    /// are as durable as one `save_checkpoint`. Backends with transactions override it to
    /// commit the batch at once (all or nothing); the default saves one after another, so a
    /// crash part way leaves a prefix of the batch, the pointer on the last saved snapshot.
    ///
    /// The executor batches only snapshots between which nothing with side effects runs (see
    /// `Run::checkpoint_with`), so either outcome resumes like separate saves would. It saves
    /// every snapshot through this method, with its [`SnapshotFields`]: a backend that indexes
    /// those fields can take them from the entries instead of parsing the bytes.
    async fn save_checkpoints(
        &self,
        execution_id: &str,
        batch: &[BatchEntry<'_>],
    ) -> Result<(), PersistenceError> {
        for entry in batch {
            self.save_checkpoint(execution_id, entry.key, entry.snapshot)
                .await?;
        }
        Ok(())
    }

    /// The executions whose latest checkpoint waits with a `wait_for` timeout that ended at or
    /// before `now` (seconds since the Unix epoch), with their channels; `None` when this
    /// backend cannot tell without reading every waiting snapshot (the dispatcher then does).
    async fn expired_waits(
        &self,
        _now: f64,
    ) -> Result<Option<Vec<(String, String)>>, PersistenceError> {
        Ok(None)
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
    if key.is_empty() || has_double_dot(key.as_bytes()) || key.starts_with('/') {
        return Err(PersistenceError::InvalidKey(key.to_string()));
    }
    Ok(())
}

/// Whether `b` contains `..`, eight bytes at a time: this runs for every key of every save,
/// where `str::contains` spends more on setting up its searcher than on the search.
fn has_double_dot(b: &[u8]) -> bool {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const DOTS: u64 = 0x2e2e_2e2e_2e2e_2e2e;
    let mut i = 0;
    while let Some(chunk) = b.get(i..i + 8) {
        let v = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])) ^ DOTS;
        // 0x80 in exactly the bytes that were `.` (no carries between bytes).
        let dots = !(((v & LOW7) + LOW7) | v | LOW7);
        if dots & (dots >> 8) != 0 {
            return true;
        }
        // Windows overlap by one byte, so every adjacent pair lies inside one of them.
        i += 7;
    }
    b[i..].windows(2).any(|w| w == b"..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_dots_are_found_at_every_position() {
        let naive = |b: &[u8]| b.windows(2).any(|w| w == b"..");
        let alphabet = [b'.', b'/', b'a', b'-', 0xc3, 0x2e ^ 0x80, 0x6e];
        for len in 0..20 {
            for seed in 0..200u64 {
                let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ len as u64;
                let b: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        alphabet[(x % alphabet.len() as u64) as usize]
                    })
                    .collect();
                assert_eq!(has_double_dot(&b), naive(&b), "{b:?}");
            }
            let mut b = vec![b'a'; len];
            for i in 0..len.saturating_sub(1) {
                b[i] = b'.';
                b[i + 1] = b'.';
                assert!(has_double_dot(&b), "{len} {i}");
                b[i] = b'a';
                b[i + 1] = b'a';
            }
        }
        assert!(validate_key("e/step_000001_execute.json").is_ok());
        assert!(validate_key("e/step_000001_execute..json").is_err());
    }
}

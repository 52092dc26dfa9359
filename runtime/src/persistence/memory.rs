//! Storage that lives as long as the process: [`MemoryBackend`], [`MemoryConfigStore`] and
//! [`NoOpLock`] (`persistence.md` §5.1, §6.1, §7). The default for machines without a
//! `persistence` block, so a save sits on the hot path of every step and is kept to one map
//! insert under an uncontended mutex.

use super::meta;
use super::{
    CheckpointBackend, ConfigStore, ExecutionLock, ListFilter, PersistenceError, config_hash,
    validate_key,
};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Checkpoints in a map shared by every clone of the backend.
///
/// Clones are cheap and see the same data, which is how a parent hands its store to the child
/// machines it launches; two backends built with [`MemoryBackend::new`] share nothing. Execution
/// ids are the distinct prefixes before the first `/` of the stored keys.
#[derive(Clone, Default)]
pub struct MemoryBackend {
    store: Arc<Mutex<Store>>,
}

/// Keys grouped by execution id, so deleting or listing an execution does not scan the
/// snapshots of every other one, and a checkpoint costs one lookup of the id and one insert.
#[derive(Default)]
struct Store {
    executions: HashMap<String, Execution>,
    /// Keys without a `/`; they belong to no execution, as in the reference.
    loose: HashMap<String, Vec<u8>>,
}

#[derive(Default)]
struct Execution {
    /// Keys after `<id>/`, except the pointer.
    entries: HashMap<String, Vec<u8>>,
    /// `<id>/latest`, kept apart because it moves at every checkpoint.
    latest: Option<Vec<u8>>,
}

impl Execution {
    fn put(&mut self, rest: &str, value: &[u8]) {
        if rest == "latest" {
            overwrite(self.latest.get_or_insert_with(Vec::new), value);
        } else {
            put_entry(&mut self.entries, rest, value);
        }
    }

    fn get(&self, rest: &str) -> Option<&Vec<u8>> {
        if rest == "latest" {
            self.latest.as_ref()
        } else {
            self.entries.get(rest)
        }
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.latest.is_none()
    }
}

/// Re-saving a key (the pointer, every tool call of a step) reuses its buffer.
fn overwrite(buf: &mut Vec<u8>, value: &[u8]) {
    buf.clear();
    buf.extend_from_slice(value);
}

fn put_entry(map: &mut HashMap<String, Vec<u8>>, key: &str, value: &[u8]) {
    // New keys are the common case (each checkpoint has its own), so one hashing with an owned
    // key beats a lookup followed by an insert.
    map.entry(key.to_owned())
        .and_modify(|buf| overwrite(buf, value))
        .or_insert_with(|| value.to_vec());
}

impl Store {
    fn put(&mut self, key: &str, value: &[u8]) {
        let Some((id, rest)) = key.split_once('/') else {
            put_entry(&mut self.loose, key, value);
            return;
        };
        if let Some(execution) = self.executions.get_mut(id) {
            execution.put(rest, value);
            return;
        }
        let mut execution = Execution::default();
        execution.put(rest, value);
        self.executions.insert(id.to_owned(), execution);
    }

    fn get(&self, key: &str) -> Option<&Vec<u8>> {
        match key.split_once('/') {
            Some((id, rest)) => self.executions.get(id)?.get(rest),
            None => self.loose.get(key),
        }
    }

    fn remove(&mut self, key: &str) {
        let Some((id, rest)) = key.split_once('/') else {
            self.loose.remove(key);
            return;
        };
        if let Some(execution) = self.executions.get_mut(id) {
            if rest == "latest" {
                execution.latest = None;
            } else {
                execution.entries.remove(rest);
            }
            if execution.is_empty() {
                self.executions.remove(id);
            }
        }
    }
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the guard cannot leave a half-written map entry behind, so the
        // data is still usable.
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let store = self.lock();
        f.debug_struct("MemoryBackend")
            .field("executions", &store.executions.len())
            .finish()
    }
}

#[async_trait]
impl CheckpointBackend for MemoryBackend {
    async fn save(&self, key: &str, value: &[u8]) -> Result<(), PersistenceError> {
        validate_key(key)?;
        self.lock().put(key, value);
        Ok(())
    }

    async fn load(&self, key: &str) -> Result<Option<Vec<u8>>, PersistenceError> {
        validate_key(key)?;
        Ok(self.lock().get(key).cloned())
    }

    async fn delete(&self, key: &str) -> Result<(), PersistenceError> {
        validate_key(key)?;
        self.lock().remove(key);
        Ok(())
    }

    async fn list_execution_ids(
        &self,
        filter: &ListFilter,
    ) -> Result<Vec<String>, PersistenceError> {
        let candidates: Vec<(String, Option<Vec<u8>>)> = {
            let store = self.lock();
            let unfiltered = filter.event.is_none() && filter.waiting_channel.is_none();
            store
                .executions
                .iter()
                .map(|(id, execution)| {
                    let latest = (!unfiltered)
                        .then(|| {
                            let pointer = std::str::from_utf8(execution.latest.as_ref()?).ok()?;
                            store.get(pointer.trim()).cloned()
                        })
                        .flatten();
                    (id.clone(), latest)
                })
                .collect()
        };
        // Parsing happens after the lock is released so a listing never stalls a running step.
        let mut ids: Vec<String> = if filter.event.is_none() && filter.waiting_channel.is_none() {
            candidates.into_iter().map(|(id, _)| id).collect()
        } else {
            candidates
                .into_iter()
                .filter(|(_, latest)| {
                    latest
                        .as_deref()
                        .and_then(|bytes| meta::snapshot_meta(bytes).ok())
                        .is_some_and(|m| m.matches(filter))
                })
                .map(|(id, _)| id)
                .collect()
        };
        ids.sort_unstable();
        Ok(ids)
    }

    async fn delete_execution(&self, execution_id: &str) -> Result<(), PersistenceError> {
        validate_key(execution_id)?;
        self.lock().executions.remove(execution_id);
        Ok(())
    }

    async fn save_checkpoint(
        &self,
        execution_id: &str,
        key: &str,
        snapshot: &[u8],
    ) -> Result<(), PersistenceError> {
        validate_key(key)?;
        validate_key(execution_id)?;
        let mut store = self.lock();
        match key.split_once('/') {
            // The usual case: the snapshot and the pointer go into one execution, found once.
            Some((id, rest)) if id == execution_id => {
                if let Some(execution) = store.executions.get_mut(id) {
                    execution.put(rest, snapshot);
                    overwrite(
                        execution.latest.get_or_insert_with(Vec::new),
                        key.as_bytes(),
                    );
                } else {
                    let mut execution = Execution::default();
                    execution.put(rest, snapshot);
                    execution.latest = Some(key.as_bytes().to_vec());
                    store.executions.insert(id.to_owned(), execution);
                }
            }
            _ => {
                store.put(key, snapshot);
                store.put(&format!("{execution_id}/latest"), key.as_bytes());
            }
        }
        Ok(())
    }
}

/// Configs in a map shared by every clone of the store.
#[derive(Clone, Debug, Default)]
pub struct MemoryConfigStore {
    configs: Arc<Mutex<HashMap<String, String>>>,
}

impl MemoryConfigStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.configs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl ConfigStore for MemoryConfigStore {
    async fn put(&self, raw: &str) -> Result<String, PersistenceError> {
        let hash = config_hash(raw);
        self.lock()
            .entry(hash.clone())
            .or_insert_with(|| raw.to_owned());
        Ok(hash)
    }

    async fn get(&self, hash: &str) -> Result<Option<String>, PersistenceError> {
        Ok(self.lock().get(hash).cloned())
    }

    async fn delete(&self, hash: &str) -> Result<(), PersistenceError> {
        self.lock().remove(hash);
        Ok(())
    }
}

/// A lock that is always granted: for `persistence.enabled: false`, the memory backend, and
/// deployments that serialise runs some other way.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoOpLock;

#[async_trait]
impl ExecutionLock for NoOpLock {
    async fn acquire(&self, _key: &str) -> Result<bool, PersistenceError> {
        Ok(true)
    }

    async fn release(&self, _key: &str) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(event: Option<&str>, channel: Option<&str>) -> ListFilter {
        ListFilter {
            event: event.map(str::to_string),
            waiting_channel: channel.map(str::to_string),
        }
    }

    fn snapshot(event: &str, channel: Option<&str>) -> Vec<u8> {
        serde_json::json!({"execution_id": "x", "event": event, "waiting_channel": channel})
            .to_string()
            .into_bytes()
    }

    #[tokio::test]
    async fn save_load_delete() {
        let b = MemoryBackend::new();
        assert_eq!(b.load("a/k.json").await.unwrap(), None);
        b.save("a/k.json", b"one").await.unwrap();
        b.save("a/k.json", b"two").await.unwrap();
        assert_eq!(
            b.load("a/k.json").await.unwrap().as_deref(),
            Some(&b"two"[..])
        );
        b.save("loose", b"x").await.unwrap();
        assert_eq!(b.load("loose").await.unwrap().as_deref(), Some(&b"x"[..]));
        b.delete("a/k.json").await.unwrap();
        b.delete("a/k.json").await.unwrap();
        assert_eq!(b.load("a/k.json").await.unwrap(), None);
        // Keys without a `/` belong to no execution; an emptied execution disappears.
        assert!(
            b.list_execution_ids(&filter(None, None))
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn clones_share_and_new_stores_do_not() {
        let a = MemoryBackend::new();
        let clone = a.clone();
        clone.save("e/latest", b"e/s.json").await.unwrap();
        assert!(a.load("e/latest").await.unwrap().is_some());
        assert!(
            MemoryBackend::new()
                .load("e/latest")
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn save_checkpoint_writes_snapshot_then_pointer() {
        let b = MemoryBackend::new();
        b.save_checkpoint("e", "e/step_000001_state_enter.json", b"{}")
            .await
            .unwrap();
        b.save_checkpoint("e", "e/step_000002_state_enter.json", b"{\"a\": 1}")
            .await
            .unwrap();
        assert_eq!(
            b.load("e/latest").await.unwrap().as_deref(),
            Some(&b"e/step_000002_state_enter.json"[..])
        );
        assert_eq!(
            b.load("e/step_000001_state_enter.json")
                .await
                .unwrap()
                .as_deref(),
            Some(&b"{}"[..])
        );
        // A snapshot filed under another id still moves this execution's pointer.
        b.save_checkpoint("f", "g/step_000001_state_enter.json", b"{}")
            .await
            .unwrap();
        assert_eq!(
            b.load("f/latest").await.unwrap().as_deref(),
            Some(&b"g/step_000001_state_enter.json"[..])
        );
        assert_eq!(
            b.list_execution_ids(&filter(None, None)).await.unwrap(),
            ["e", "f", "g"]
        );
        // The pointer is a key like any other.
        b.delete("e/latest").await.unwrap();
        assert_eq!(b.load("e/latest").await.unwrap(), None);
        assert!(
            b.load("e/step_000002_state_enter.json")
                .await
                .unwrap()
                .is_some()
        );
        b.delete("f/latest").await.unwrap();
        assert_eq!(
            b.list_execution_ids(&filter(None, None)).await.unwrap(),
            ["e", "g"]
        );
    }

    #[tokio::test]
    async fn list_filters_on_the_latest_snapshot() {
        let b = MemoryBackend::new();
        for (id, event, channel) in [
            ("c", "waiting", Some("ch/1")),
            ("a", "waiting", Some("ch/2")),
            ("b", "machine_end", None),
        ] {
            let key = format!("{id}/step_000001_{event}.json");
            b.save_checkpoint(id, &key, &snapshot(event, channel))
                .await
                .unwrap();
        }
        // An earlier snapshot that matched does not count once a later one is the latest.
        b.save(
            "d/step_000001_waiting.json",
            &snapshot("waiting", Some("ch/1")),
        )
        .await
        .unwrap();
        b.save_checkpoint(
            "d",
            "d/step_000002_state_exit.json",
            &snapshot("state_exit", None),
        )
        .await
        .unwrap();
        // No pointer, or a pointer to garbage: never listed by a filter.
        b.save(
            "e/step_000001_waiting.json",
            &snapshot("waiting", Some("ch/1")),
        )
        .await
        .unwrap();
        b.save_checkpoint("f", "f/step_000001_waiting.json", b"{\"event\": \"wait")
            .await
            .unwrap();

        let ids = |f| {
            let b = b.clone();
            async move { b.list_execution_ids(&f).await.unwrap() }
        };
        assert_eq!(
            ids(filter(None, None)).await,
            ["a", "b", "c", "d", "e", "f"]
        );
        assert_eq!(ids(filter(Some("waiting"), None)).await, ["a", "c"]);
        assert_eq!(ids(filter(None, Some("ch/1"))).await, ["c"]);
        assert_eq!(ids(filter(Some("waiting"), Some("ch/2"))).await, ["a"]);
        assert_eq!(
            ids(filter(Some("machine_end"), Some("ch/2"))).await,
            Vec::<String>::new()
        );
        assert_eq!(ids(filter(Some("machine_end"), None)).await, ["b"]);
    }

    #[tokio::test]
    async fn delete_execution_removes_only_that_execution() {
        let b = MemoryBackend::new();
        b.save_checkpoint("ab", "ab/step_000001_x.json", b"{}")
            .await
            .unwrap();
        b.save_checkpoint("a", "a/step_000001_x.json", b"{}")
            .await
            .unwrap();
        b.delete_execution("a").await.unwrap();
        assert_eq!(b.load("a/latest").await.unwrap(), None);
        assert!(b.load("ab/latest").await.unwrap().is_some());
        assert_eq!(
            b.list_execution_ids(&filter(None, None)).await.unwrap(),
            ["ab"]
        );
    }

    #[tokio::test]
    async fn invalid_keys_are_refused() {
        let b = MemoryBackend::new();
        for key in ["", "../x", "/abs", "a/../b"] {
            assert!(matches!(
                b.save(key, b"x").await,
                Err(PersistenceError::InvalidKey(k)) if k == key
            ));
            assert!(b.load(key).await.is_err());
            assert!(b.delete(key).await.is_err());
        }
        assert!(b.save_checkpoint("..", "../x.json", b"{}").await.is_err());
        assert!(b.delete_execution("..").await.is_err());
    }

    #[tokio::test]
    async fn config_store_is_content_addressed() {
        let s = MemoryConfigStore::new();
        let h = s.put("spec: flatmachine\n").await.unwrap();
        assert_eq!(h, config_hash("spec: flatmachine\n"));
        assert_eq!(s.put("spec: flatmachine\n").await.unwrap(), h);
        assert_eq!(
            s.get(&h).await.unwrap().as_deref(),
            Some("spec: flatmachine\n")
        );
        assert_eq!(
            s.clone().get(&h).await.unwrap().as_deref(),
            Some("spec: flatmachine\n")
        );
        s.delete(&h).await.unwrap();
        s.delete(&h).await.unwrap();
        assert_eq!(s.get(&h).await.unwrap(), None);
    }

    #[tokio::test]
    async fn noop_lock_always_grants() {
        let l = NoOpLock;
        assert!(l.acquire("x").await.unwrap());
        assert!(l.acquire("x").await.unwrap());
        l.release("x").await;
        l.release("never-held").await;
    }

    #[test]
    fn memory_backend_has_no_config_store() {
        assert!(MemoryBackend::new().config_store().is_none());
    }
}

//! Storage that lives as long as the process: [`MemoryBackend`], [`MemoryConfigStore`] and
//! [`NoOpLock`] (`persistence.md` §5.1, §6.1, §7). The default for machines without a
//! `persistence` block, so a save sits on the hot path of every step: it is one copy into a
//! buffer under an uncontended mutex, with no allocation in the common case.

use super::meta;
use super::{
    BatchEntry, CheckpointBackend, ConfigStore, ExecutionLock, ListFilter, PersistenceError,
    config_hash, validate_key,
};
use async_trait::async_trait;
use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use std::hash::BuildHasher;
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
/// The maps use foldhash: keys are snapshot keys chosen by the runtime, not by an adversary,
/// and SipHash (the std default) was the largest single cost of a checkpoint.
#[derive(Default)]
struct Store {
    executions: HashMap<String, Execution>,
    /// Keys without a `/`; they belong to no execution, as in the reference.
    loose: HashMap<String, Vec<u8>>,
}

#[derive(Default)]
struct Execution {
    /// Keys after `<id>/`, except the pointer.
    entries: Entries,
    /// `<id>/latest`, kept apart because it moves at every checkpoint.
    latest: Option<Pointer>,
}

/// The value of `<id>/latest`.
enum Pointer {
    /// The text `<id>/<key of entry i>`: what [`CheckpointBackend::save_checkpoint`] writes,
    /// kept as an index so that moving the pointer copies nothing. The text is made on load.
    Entry(usize),
    /// Anything else saved under the pointer key.
    Bytes(Vec<u8>),
}

/// `<id>/<key>` as bytes.
fn joined(id: &str, key: &[u8]) -> Vec<u8> {
    let mut text = Vec::with_capacity(id.len() + 1 + key.len());
    text.extend_from_slice(id.as_bytes());
    text.push(b'/');
    text.extend_from_slice(key);
    text
}

impl Execution {
    fn put(&mut self, rest: &str, value: &[u8]) {
        if rest == "latest" {
            match &mut self.latest {
                // Re-saving the pointer reuses its buffer.
                Some(Pointer::Bytes(buf)) => {
                    buf.clear();
                    buf.extend_from_slice(value);
                }
                slot => *slot = Some(Pointer::Bytes(value.to_vec())),
            }
        } else {
            self.entries.put(rest, value);
        }
    }

    fn load(&self, id: &str, rest: &str) -> Option<Vec<u8>> {
        if rest == "latest" {
            return match self.latest.as_ref()? {
                Pointer::Entry(i) => Some(joined(id, self.entries.key(*i))),
                Pointer::Bytes(bytes) => Some(bytes.clone()),
            };
        }
        let i = self.entries.find(rest)?;
        Some(self.entries.value(i).to_vec())
    }

    fn remove(&mut self, id: &str, rest: &str) {
        if rest == "latest" {
            self.latest = None;
            return;
        }
        let Some(i) = self.entries.find(rest) else {
            return;
        };
        // The pointer keeps naming a deleted snapshot, as a stored text would.
        if let Some(Pointer::Entry(p)) = self.latest
            && p == i
        {
            self.latest = Some(Pointer::Bytes(joined(id, self.entries.key(i))));
        }
        if let Some(moved) = self.entries.remove(i)
            && let Some(Pointer::Entry(p)) = &mut self.latest
            && *p == moved
        {
            *p = i;
        }
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.latest.is_none()
    }
}

/// The entries of one execution. Keys and values sit back to back in one buffer, found through
/// a table of slot indices: a run writes thousands of distinct keys, and one buffer instead of
/// two allocations per key makes a save one copy (growth is amortised), and dropping the
/// execution one free instead of thousands. (Separate blocks would avoid the copies of growth,
/// but measured slower: many large frees make the allocator return the pages to the kernel,
/// and the next run faults them in again.) Pages ahead of the write position are faulted in
/// by a background thread ([`Prefault`]).
#[derive(Default)]
struct Entries {
    data: Vec<u8>,
    slots: Vec<Slot>,
    /// Indices into `slots` with their key's hash, kept here so growing the table reads no
    /// slot and no key.
    index: HashTable<(u64, usize)>,
    hasher: DefaultHashBuilder,
    /// Bytes of `data` that no slot uses any more (replaced values, removed entries).
    garbage: usize,
    /// Pages of `data` ahead of the write position being faulted in (see
    /// [`Entries::reserve`]).
    prefault: Prefault,
}

/// Where one entry's bytes are in [`Entries::data`].
#[derive(Clone, Copy)]
struct Slot {
    key: usize,
    key_len: usize,
    value: usize,
    value_len: usize,
    /// Bytes reserved at `value`: a new value no longer than this is written in place.
    room: usize,
}

/// Garbage below this is never compacted away (a few small rewrites are not worth a copy).
const COMPACT_MIN: usize = 64 * 1024;

impl Entries {
    fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn key(&self, i: usize) -> &[u8] {
        let s = &self.slots[i];
        &self.data[s.key..s.key + s.key_len]
    }

    fn value(&self, i: usize) -> &[u8] {
        let s = &self.slots[i];
        &self.data[s.value..s.value + s.value_len]
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn find(&self, key: &str) -> Option<usize> {
        let hash = self.hash(key.as_bytes());
        self.index
            .find(hash, |&(h, i)| h == hash && self.key(i) == key.as_bytes())
            .map(|&(_, i)| i)
    }

    /// Stores `value` under `key` and returns the entry's index.
    fn put(&mut self, key: &str, value: &[u8]) -> usize {
        let hash = self.hash(key.as_bytes());
        let (data, slots) = (&self.data, &self.slots);
        // One probe for both the lookup and the insert. The full hash is compared first: it
        // is in the table, while the key is one cache miss away.
        let entry = self.index.entry(
            hash,
            |&(h, i)| {
                let s = &slots[i];
                h == hash && &data[s.key..s.key + s.key_len] == key.as_bytes()
            },
            |&(h, _)| h,
        );
        let vacant = match entry {
            hashbrown::hash_table::Entry::Occupied(found) => {
                let i = found.get().1;
                self.rewrite(i, value);
                return i;
            }
            hashbrown::hash_table::Entry::Vacant(vacant) => vacant,
        };
        let i = self.slots.len();
        vacant.insert((hash, i));
        let start = self.data.len();
        self.reserve(key.len() + value.len());
        self.data.extend_from_slice(key.as_bytes());
        self.data.extend_from_slice(value);
        self.slots.push(Slot {
            key: start,
            key_len: key.len(),
            value: start + key.len(),
            value_len: value.len(),
            room: value.len(),
        });
        i
    }

    /// Makes room for `additional` more bytes in `data`, and keeps the pages ahead of the
    /// write position faulted in (see [`Prefault`]).
    fn reserve(&mut self, additional: usize) {
        if self.data.capacity() - self.data.len() < additional {
            // Growing may move or free the buffer: no thread may be working on it then.
            self.prefault.settle();
            self.data.reserve(additional);
            self.prefault.done_to = self.data.len();
        }
        self.prefault.ahead_of(&mut self.data);
    }

    fn rewrite(&mut self, i: usize, value: &[u8]) {
        let s = &mut self.slots[i];
        if value.len() <= s.room {
            self.data[s.value..s.value + value.len()].copy_from_slice(value);
            s.value_len = value.len();
            return;
        }
        self.garbage += s.room;
        s.value = self.data.len();
        s.value_len = value.len();
        s.room = value.len();
        self.reserve(value.len());
        self.data.extend_from_slice(value);
        self.compact_if_sparse();
    }

    /// Removes entry `i`; the last entry takes its index, which is returned if it moved.
    fn remove(&mut self, i: usize) -> Option<usize> {
        let s = self.slots[i];
        let hash = self.hash(self.key(i));
        if let Ok(entry) = self.index.find_entry(hash, |&(_, j)| j == i) {
            entry.remove();
        }
        self.garbage += s.key_len + s.room;
        let last = self.slots.len() - 1;
        self.slots.swap_remove(i);
        let moved = (i != last).then(|| {
            let hash = self.hash(self.key(i));
            if let Some((_, j)) = self.index.find_mut(hash, |&(_, j)| j == last) {
                *j = i;
            }
            last
        });
        if self.slots.is_empty() {
            self.prefault.settle();
            self.data = Vec::new();
            self.garbage = 0;
        } else {
            self.compact_if_sparse();
        }
        moved
    }

    /// Copies the live bytes into a new buffer once more than half of `data` is garbage, so
    /// rewriting or deleting keys never grows memory without bound (amortised O(1) per byte).
    fn compact_if_sparse(&mut self) {
        if self.garbage < COMPACT_MIN || self.garbage * 2 < self.data.len() {
            return;
        }
        let mut data = Vec::with_capacity(self.data.len() - self.garbage);
        for s in &mut self.slots {
            let key = data.len();
            data.extend_from_slice(&self.data[s.key..s.key + s.key_len]);
            let value = data.len();
            data.extend_from_slice(&self.data[s.value..s.value + s.value_len]);
            s.key = key;
            s.value = value;
            s.room = s.value_len;
        }
        self.prefault.settle();
        self.data = data;
        self.garbage = 0;
    }
}

impl Drop for Entries {
    fn drop(&mut self) {
        self.prefault.settle();
    }
}

/// Faults in the pages just ahead of a buffer's write position from a background thread.
///
/// A run that keeps every snapshot fills tens of megabytes, and the kernel allocates and zeroes
/// each 4 KiB page the first time a snapshot lands on it: in a fresh process (the CLI) that was
/// over a third of a checkpoint's time. Once a buffer is large, a short-lived thread asks the
/// kernel for the next [`PREFAULT_WINDOW`] bytes of its spare capacity in one call
/// (`MADV_POPULATE_WRITE`), so the saving task mostly writes into pages that are already there.
/// The thread only hands addresses to the kernel and never reads or writes the bytes; the
/// buffer's owner calls [`Prefault::settle`] before anything that may move or free the buffer,
/// so the range it works on is always part of the live allocation.
#[derive(Default)]
struct Prefault {
    /// The thread in flight, if any.
    thread: Option<std::thread::JoinHandle<()>>,
    /// Buffer offset up to which pages have been requested.
    done_to: usize,
}

/// Buffers smaller than this fault their pages in as they go.
const PREFAULT_FROM: usize = 1 << 20;
/// How far ahead of the write position pages are requested.
const PREFAULT_WINDOW: usize = 2 << 20;

impl Prefault {
    /// Waits for the thread in flight, if any.
    fn settle(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Starts a thread for the next window of `buf` once the writes are within half a window
    /// of the requested pages and the last thread is done.
    fn ahead_of(&mut self, buf: &mut Vec<u8>) {
        if buf.capacity() < PREFAULT_FROM || buf.len() + PREFAULT_WINDOW / 2 < self.done_to {
            return;
        }
        if self.thread.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        self.settle();
        let from = self.done_to.max(buf.len());
        let to = buf.capacity().min(buf.len() + PREFAULT_WINDOW);
        if to <= from {
            return;
        }
        let base = buf.as_mut_ptr() as usize;
        self.thread = std::thread::Builder::new()
            .name("flatmachines-prefault".into())
            .spawn(move || fault_in(base + from, base + to))
            .ok();
        self.done_to = to;
    }
}

/// Asks the kernel to back the addresses `start..end` with pages now (`MADV_POPULATE_WRITE`,
/// Linux 5.14+; older kernels refuse it and pages come on first write as usual).
#[cfg(target_os = "linux")]
fn fault_in(start: usize, end: usize) {
    const PAGE: usize = 4096;
    let aligned = start.next_multiple_of(PAGE);
    let end = end / PAGE * PAGE;
    if end > aligned {
        // SAFETY: the range lies inside a live allocation (see `Prefault`); populating only
        // maps pages, zeroed as a first write would find them, and writes no byte.
        unsafe {
            libc::madvise(
                aligned as *mut libc::c_void,
                end - aligned,
                libc::MADV_POPULATE_WRITE,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn fault_in(_start: usize, _end: usize) {}

/// `rest` when `key` is `<execution_id>/<rest>` and `execution_id` has no `/` (so that is
/// where `key` splits), without searching `key`.
fn own_key<'k>(execution_id: &str, key: &'k str) -> Option<&'k str> {
    let rest = key.strip_prefix(execution_id)?.strip_prefix('/')?;
    (!execution_id.as_bytes().contains(&b'/')).then_some(rest)
}

impl Store {
    fn put(&mut self, key: &str, value: &[u8]) {
        let Some((id, rest)) = key.split_once('/') else {
            match self.loose.get_mut(key) {
                Some(buf) => {
                    buf.clear();
                    buf.extend_from_slice(value);
                }
                None => {
                    self.loose.insert(key.to_owned(), value.to_vec());
                }
            }
            return;
        };
        self.executions.entry_ref(id).or_default().put(rest, value);
    }

    fn load(&self, key: &str) -> Option<Vec<u8>> {
        match key.split_once('/') {
            Some((id, rest)) => self.executions.get(id)?.load(id, rest),
            None => self.loose.get(key).cloned(),
        }
    }

    fn remove(&mut self, key: &str) {
        let Some((id, rest)) = key.split_once('/') else {
            self.loose.remove(key);
            return;
        };
        if let Some(execution) = self.executions.get_mut(id) {
            execution.remove(id, rest);
            if execution.is_empty() {
                self.executions.remove(id);
            }
        }
    }

    /// The latest snapshot of an execution, for list filters.
    fn latest_snapshot(&self, execution: &Execution) -> Option<Vec<u8>> {
        match execution.latest.as_ref()? {
            Pointer::Entry(i) => Some(execution.entries.value(*i).to_vec()),
            Pointer::Bytes(pointer) => self.load(std::str::from_utf8(pointer).ok()?.trim()),
        }
    }

    /// [`CheckpointBackend::save_checkpoint`] under the lock.
    fn checkpoint(&mut self, execution_id: &str, key: &str, snapshot: &[u8]) {
        match own_key(execution_id, key) {
            // The usual case: the snapshot and the pointer go into one execution, found once.
            Some(rest) if rest != "latest" => {
                let execution = self.executions.entry_ref(execution_id).or_default();
                let i = execution.entries.put(rest, snapshot);
                execution.latest = Some(Pointer::Entry(i));
            }
            _ => {
                self.put(key, snapshot);
                self.executions
                    .entry_ref(execution_id)
                    .or_default()
                    .put("latest", key.as_bytes());
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
        Ok(self.lock().load(key))
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
        let unfiltered = filter.event.is_none() && filter.waiting_channel.is_none();
        let candidates: Vec<(String, Option<Vec<u8>>)> = {
            let store = self.lock();
            store
                .executions
                .iter()
                .map(|(id, execution)| {
                    let latest = if unfiltered {
                        None
                    } else {
                        store.latest_snapshot(execution)
                    };
                    (id.clone(), latest)
                })
                .collect()
        };
        // Parsing happens after the lock is released so a listing never stalls a running step.
        let mut ids: Vec<String> = if unfiltered {
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
        let removed = self.lock().executions.remove(execution_id);
        // Freed after the lock is released.
        drop(removed);
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
        self.lock().checkpoint(execution_id, key, snapshot);
        Ok(())
    }

    /// All of the batch under one lock.
    async fn save_checkpoints(
        &self,
        execution_id: &str,
        batch: &[BatchEntry<'_>],
    ) -> Result<(), PersistenceError> {
        validate_key(execution_id)?;
        for entry in batch {
            validate_key(entry.key)?;
        }
        let mut store = self.lock();
        // The usual batch: every snapshot in the execution's own entries, found once.
        let own = batch
            .iter()
            .all(|entry| own_key(execution_id, entry.key).is_some_and(|rest| rest != "latest"));
        if own && !batch.is_empty() {
            let execution = store.executions.entry_ref(execution_id).or_default();
            let mut last = 0;
            for entry in batch {
                last = execution
                    .entries
                    .put(&entry.key[execution_id.len() + 1..], entry.snapshot);
            }
            execution.latest = Some(Pointer::Entry(last));
            return Ok(());
        }
        for entry in batch {
            store.checkpoint(execution_id, entry.key, entry.snapshot);
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

    use crate::persistence::contract_tests::{self, filter};

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
        contract_tests::list_filters_use_the_latest_snapshot(&b).await;
        // A pointer to a snapshot that does not decode: listed, never matched.
        b.save_checkpoint("f", "f/step_000001_waiting.json", b"{\"event\": \"wait")
            .await
            .unwrap();
        let ids = |f| {
            let b = b.clone();
            async move { b.list_execution_ids(&f).await.unwrap() }
        };
        assert_eq!(
            ids(filter(None, None)).await,
            ["a", "b", "c", "d", "e", "f", "n"]
        );
        assert_eq!(ids(filter(Some("waiting"), None)).await, ["a", "c", "n"]);
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
    async fn rewrites_deletes_and_compaction_keep_every_value() {
        let b = MemoryBackend::new();
        let value =
            |k: usize, round: usize| vec![b'a' + (k % 26) as u8; (k * 37 + round * 101) % 3000];
        let mut expected = std::collections::BTreeMap::new();
        // Larger and smaller rewrites, a large value, and enough garbage to
        // compact several times.
        for round in 0..6 {
            for k in 0..400 {
                let key = format!("e/step_{k:06}_execute.json");
                let v = if k == 7 {
                    vec![b'z'; 200_000 + round]
                } else {
                    value(k, round)
                };
                b.save_checkpoint("e", &key, &v).await.unwrap();
                expected.insert(key, v);
            }
            for k in (round..400).step_by(7) {
                let key = format!("e/step_{k:06}_execute.json");
                b.delete(&key).await.unwrap();
                expected.remove(&key);
            }
        }
        for (key, v) in &expected {
            assert_eq!(b.load(key).await.unwrap().as_ref(), Some(v), "{key}");
        }
        for k in 0..400 {
            let key = format!("e/step_{k:06}_execute.json");
            assert_eq!(
                b.load(&key).await.unwrap().is_some(),
                expected.contains_key(&key)
            );
        }
        // The last checkpoint was step 399, deleted since: the pointer still names it.
        assert_eq!(
            b.load("e/latest").await.unwrap().as_deref(),
            Some(&b"e/step_000399_execute.json"[..])
        );
    }

    /// Megabytes of entries, so pages are faulted in ahead by background threads while the
    /// buffer grows, is compacted and is emptied: every value must come back intact.
    #[test]
    fn values_survive_growth_compaction_and_clearing_with_prefaulting() {
        let mut e = Entries::default();
        let value = |k: usize, round: usize| {
            vec![(k * 7 + round) as u8; 500 + (k * 131 + round * 17) % 4000]
        };
        let mut expected = std::collections::BTreeMap::new();
        for round in 0..4 {
            for k in 0..3000 {
                let key = format!("e/step_{k:06}.json");
                let v = value(k, round);
                e.put(&key, &v);
                expected.insert(key, v);
            }
            assert!(e.data.capacity() >= PREFAULT_FROM);
            assert!(
                e.prefault.done_to > e.data.len() / 2,
                "pages were requested ahead"
            );
            for k in (round..3000).step_by(2) {
                let key = format!("e/step_{k:06}.json");
                if let Some(i) = e.find(&key) {
                    e.remove(i);
                }
                expected.remove(&key);
            }
        }
        for (key, v) in &expected {
            let i = e.find(key).unwrap_or_else(|| panic!("{key} is missing"));
            assert_eq!(e.value(i), &v[..], "{key}");
        }
        while let Some(key) = expected.keys().next().cloned() {
            let i = e.find(&key).unwrap();
            e.remove(i);
            expected.remove(&key);
        }
        assert!(e.is_empty());
        assert_eq!(e.data.capacity(), 0);
    }

    #[tokio::test]
    async fn the_pointer_follows_its_entry_when_others_are_deleted() {
        let b = MemoryBackend::new();
        for k in ["a", "b", "c"] {
            b.save(&format!("e/{k}.json"), k.as_bytes()).await.unwrap();
        }
        b.save_checkpoint("e", "e/d.json", b"d").await.unwrap();
        // `d` is the last entry: deleting `a` moves it into `a`'s place.
        b.delete("e/a.json").await.unwrap();
        assert_eq!(
            b.load("e/latest").await.unwrap().as_deref(),
            Some(&b"e/d.json"[..])
        );
        assert_eq!(
            b.load("e/d.json").await.unwrap().as_deref(),
            Some(&b"d"[..])
        );
        let ids = b
            .list_execution_ids(&filter(Some("waiting"), None))
            .await
            .unwrap();
        assert!(ids.is_empty());
        // Saving the pointer by hand replaces the entry reference.
        b.save("e/latest", b"e/b.json").await.unwrap();
        b.delete("e/b.json").await.unwrap();
        assert_eq!(
            b.load("e/latest").await.unwrap().as_deref(),
            Some(&b"e/b.json"[..])
        );
        for k in ["c", "d"] {
            b.delete(&format!("e/{k}.json")).await.unwrap();
        }
        b.delete("e/latest").await.unwrap();
        assert!(
            b.list_execution_ids(&filter(None, None))
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_batch_is_saved_like_one_checkpoint_after_another() {
        let (one, batched) = (MemoryBackend::new(), MemoryBackend::new());
        let batch = [
            BatchEntry::new("e/step_000001_state_exit.json", b"1"),
            BatchEntry::new("e/step_000002_state_enter.json", b"2"),
            BatchEntry::new("e/step_000002_execute.json", b"3"),
        ];
        for entry in batch {
            one.save_checkpoint("e", entry.key, entry.snapshot)
                .await
                .unwrap();
        }
        batched.save_checkpoints("e", &batch).await.unwrap();
        for key in batch.iter().map(|e| e.key).chain(["e/latest"]) {
            assert_eq!(
                one.load(key).await.unwrap(),
                batched.load(key).await.unwrap()
            );
        }
        assert!(
            batched
                .save_checkpoints("e", &[BatchEntry::new("../x", b"")])
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn invalid_keys_are_refused() {
        contract_tests::invalid_keys_are_refused(&MemoryBackend::new()).await;
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

//! Files on the local disk: [`LocalFileBackend`], [`LocalFileLock`] and
//! [`LocalFileConfigStore`] (`persistence.md` §5.2, §6.2, §7).
//!
//! Every write is atomic and durable: the bytes go to a temporary file in the target's
//! directory, the file is fsynced, renamed over the target, and the directory is fsynced so the
//! rename itself survives a power cut. A crash therefore leaves either the old or the new
//! content, never a torn file; at worst a hidden `.…tmp` file stays behind, which nothing lists or
//! reads. File work runs on tokio's blocking pool, since an fsync can take milliseconds.

use super::meta::{self, is_pointer_key};
use super::{
    BatchEntry, CheckpointBackend, ConfigStore, ExecutionLock, ListFilter, PersistenceError,
    config_hash, config_store::is_config_hash, validate_key,
};
use async_trait::async_trait;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// The sub-directory of a checkpoint directory that holds configs; it is not an execution.
const CONFIGS_DIR: &str = "_configs";

/// Checkpoints as files: `<base>/<execution_id>/step_000001_state_enter.json` and the pointer
/// `<base>/<execution_id>/latest` (the snapshot key as plain text), the reference's layout.
///
/// Cheap to clone; clones use the same directory.
#[derive(Clone, Debug)]
pub struct LocalFileBackend {
    base: Arc<PathBuf>,
}

impl LocalFileBackend {
    /// The directory the YAML `backend: local` uses, relative to the working directory.
    pub const DEFAULT_DIR: &'static str = ".checkpoints";

    /// Uses `base_dir`, creating it and its parents. A relative path is resolved against the
    /// working directory now, so a later `chdir` does not move the checkpoints.
    pub fn new(base_dir: impl AsRef<Path>) -> Result<Self, PersistenceError> {
        let base = absolute(base_dir.as_ref())?;
        fs::create_dir_all(&base).map_err(|e| io_error(&base, e))?;
        Ok(LocalFileBackend {
            base: Arc::new(base),
        })
    }

    /// The absolute checkpoint directory.
    pub fn base_dir(&self) -> &Path {
        &self.base
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, PersistenceError> {
        validate_key(key)?;
        Ok(self.base.join(key))
    }
}

#[async_trait]
impl CheckpointBackend for LocalFileBackend {
    async fn save(&self, key: &str, value: &[u8]) -> Result<(), PersistenceError> {
        let path = self.path_of(key)?;
        let value = value.to_vec();
        blocking(move || write_durably(&path, &value)).await
    }

    async fn load(&self, key: &str) -> Result<Option<Vec<u8>>, PersistenceError> {
        let path = self.path_of(key)?;
        let pointer = is_pointer_key(key);
        let snapshot = key.ends_with(".json");
        blocking(move || {
            let Some(bytes) = read_if_present(&path)? else {
                return Ok(None);
            };
            // Checked here because only the backend knows which file the bytes came from.
            let checked = if pointer {
                meta::check_pointer(&bytes)
            } else if snapshot {
                meta::check_json(&bytes)
            } else {
                Ok(())
            };
            checked.map_err(|message| PersistenceError::Corrupt {
                location: path.display().to_string(),
                message,
            })?;
            Ok(Some(bytes))
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), PersistenceError> {
        let path = self.path_of(key)?;
        blocking(move || {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io_error(&path, e)),
            }
            // Without this a power cut could bring the deleted checkpoint back.
            sync_dir(parent_of(&path)?)
        })
        .await
    }

    /// Sub-directories of the base directory, except hidden ones and `_configs`; with a filter,
    /// those whose latest snapshot matches. An execution whose pointer or snapshot is missing or
    /// does not decode is left out of filtered listings (with a warning), as in the reference,
    /// so one damaged execution does not hide all the others.
    async fn list_execution_ids(
        &self,
        filter: &ListFilter,
    ) -> Result<Vec<String>, PersistenceError> {
        let base = Arc::clone(&self.base);
        let filter = filter.clone();
        blocking(move || {
            let mut ids = Vec::new();
            for entry in fs::read_dir(&*base).map_err(|e| io_error(&base, e))? {
                let entry = entry.map_err(|e| io_error(&base, e))?;
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                if name.starts_with('.') || name == CONFIGS_DIR || !entry.path().is_dir() {
                    continue;
                }
                ids.push(name);
            }
            ids.sort_unstable();
            if filter.event.is_some() || filter.waiting_channel.is_some() {
                ids.retain(|id| latest_matches(&base, id, &filter));
            }
            Ok(ids)
        })
        .await
    }

    async fn delete_execution(&self, execution_id: &str) -> Result<(), PersistenceError> {
        let dir = self.path_of(execution_id)?;
        blocking(move || {
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                // Like the reference, only a directory is an execution; anything else is left.
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io_error(&dir, e)),
            }
            fs::remove_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
            sync_dir(parent_of(&dir)?)
        })
        .await
    }

    /// Writes the snapshot durably before the pointer: if the pointer's rename reached the disk
    /// and the snapshot's did not, a resume would find the pointer dangling and start over.
    async fn save_checkpoint(
        &self,
        execution_id: &str,
        key: &str,
        snapshot: &[u8],
    ) -> Result<(), PersistenceError> {
        let snapshot_path = self.path_of(key)?;
        let pointer_path = self.path_of(&format!("{execution_id}/latest"))?;
        let snapshot = snapshot.to_vec();
        let key = key.to_owned();
        blocking(move || {
            write_durably(&snapshot_path, &snapshot)?;
            write_durably(&pointer_path, key.as_bytes())
        })
        .await
    }

    /// The batch with two directory fsyncs instead of two per snapshot: every snapshot and the
    /// pointer go to temporary files, which are fsynced before any is renamed; the snapshots
    /// are renamed into place in order and the directory fsynced; then the pointer is renamed
    /// and the directory fsynced again. The pointer's rename therefore never reaches the disk
    /// before the snapshots it follows, and when this returns every file is durable. A crash
    /// leaves each file old or new and complete, and the pointer on a stored snapshot (the
    /// previous one until the last step).
    async fn save_checkpoints(
        &self,
        execution_id: &str,
        batch: &[BatchEntry<'_>],
    ) -> Result<(), PersistenceError> {
        let Some(last) = batch.last() else {
            return Ok(());
        };
        let pointer_path = self.path_of(&format!("{execution_id}/latest"))?;
        let mut files = Vec::with_capacity(batch.len() + 1);
        for entry in batch {
            files.push((self.path_of(entry.key)?, entry.snapshot.to_vec()));
        }
        files.push((pointer_path, last.key.as_bytes().to_vec()));
        blocking(move || write_batch_durably(&files)).await
    }
}

/// Whether the latest snapshot of `id` passes `filter`; problems are logged and count as "no".
fn latest_matches(base: &Path, id: &str, filter: &ListFilter) -> bool {
    let pointer_path = base.join(id).join("latest");
    let result = (|| -> Result<bool, String> {
        let Some(pointer) = read_if_present(&pointer_path).map_err(|e| e.to_string())? else {
            return Ok(false);
        };
        meta::check_pointer(&pointer).map_err(|m| format!("{}: {m}", pointer_path.display()))?;
        let key = String::from_utf8_lossy(&pointer);
        let key = key.trim();
        if key.is_empty() {
            return Ok(false);
        }
        let path = base.join(key);
        let Some(bytes) = read_if_present(&path).map_err(|e| e.to_string())? else {
            return Ok(false);
        };
        let found = meta::snapshot_meta(&bytes).map_err(|m| format!("{}: {m}", path.display()))?;
        Ok(found.matches(filter))
    })();
    result.unwrap_or_else(|message| {
        tracing::warn!("listing checkpoints: skipping execution `{id}`: {message}");
        false
    })
}

/// Exclusive per-key locks held with `flock` on `<lock_dir>/<key>.lock`.
///
/// The lock belongs to an open file description that this object keeps until
/// [`release`](ExecutionLock::release), so:
/// - a second acquire of a held key fails, even from the same process or the same object
///   (each acquire opens the file anew);
/// - the kernel drops the lock when the holding process exits or is killed, so a crashed run
///   never blocks its own resume;
/// - the `.lock` files stay on disk; an unlocked file means nothing.
///
/// Locks are advisory and per host: they do not protect a checkpoint directory shared over a
/// network file system where `flock` is not coherent.
#[derive(Debug)]
pub struct LocalFileLock {
    dir: PathBuf,
    held: Mutex<HashMap<String, File>>,
}

impl LocalFileLock {
    /// The directory the YAML `backend: local` uses, relative to the working directory.
    pub const DEFAULT_DIR: &'static str = ".locks";

    /// Uses `lock_dir`, creating it and its parents (resolved against the working directory now).
    pub fn new(lock_dir: impl AsRef<Path>) -> Result<Self, PersistenceError> {
        let dir = absolute(lock_dir.as_ref())?;
        fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        Ok(LocalFileLock {
            dir,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// The absolute lock directory.
    pub fn lock_dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, PersistenceError> {
        validate_key(key)?;
        Ok(self.dir.join(format!("{key}.lock")))
    }
}

#[async_trait]
impl ExecutionLock for LocalFileLock {
    /// `Ok(false)` when another holder has the lock; `Err` when the lock file cannot be opened
    /// or locked for another reason (the reference answers `false` to both).
    async fn acquire(&self, key: &str) -> Result<bool, PersistenceError> {
        let path = self.path_of(key)?;
        if key.contains('/') {
            let parent = parent_of(&path)?;
            fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        if !try_lock_exclusive(&file).map_err(|e| io_error(&path, e))? {
            return Ok(false);
        }
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_owned(), file);
        Ok(true)
    }

    async fn release(&self, key: &str) {
        let file = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
        if let Some(file) = file {
            // Closing would release it too, unless a forked child still shares the descriptor.
            unlock(&file);
        }
    }
}

#[cfg(unix)]
fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: `file` owns a valid descriptor for the duration of the call.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(code) if code == libc::EWOULDBLOCK || code == libc::EAGAIN => return Ok(false),
            _ => return Err(err),
        }
    }
}

#[cfg(unix)]
fn unlock(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: as above; unlocking a descriptor we hold cannot violate memory safety.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
}

#[cfg(not(unix))]
fn try_lock_exclusive(_file: &File) -> io::Result<bool> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "file locks need flock (Unix only)",
    ))
}

#[cfg(not(unix))]
fn unlock(_file: &File) {}

/// Configs as files `<base>/_configs/<hash>.yml`, written once (temporary file and rename) and
/// never rewritten, since the name is the content's hash.
#[derive(Clone, Debug)]
pub struct LocalFileConfigStore {
    dir: Arc<PathBuf>,
}

impl LocalFileConfigStore {
    /// Stores under `<base_dir>/_configs`, creating it; `base_dir` is normally the checkpoint
    /// directory ([`LocalFileBackend::DEFAULT_DIR`]).
    pub fn new(base_dir: impl AsRef<Path>) -> Result<Self, PersistenceError> {
        let dir = absolute(base_dir.as_ref())?.join(CONFIGS_DIR);
        fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        Ok(LocalFileConfigStore { dir: Arc::new(dir) })
    }

    /// The absolute `_configs` directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, hash: &str) -> Result<PathBuf, PersistenceError> {
        // The hash comes from snapshot JSON; anything else could name a file outside the store.
        if !is_config_hash(hash) {
            return Err(PersistenceError::InvalidKey(hash.to_owned()));
        }
        Ok(self.dir.join(format!("{hash}.yml")))
    }
}

#[async_trait]
impl ConfigStore for LocalFileConfigStore {
    async fn put(&self, raw: &str) -> Result<String, PersistenceError> {
        let hash = config_hash(raw);
        let path = self.path_of(&hash)?;
        let raw = raw.to_owned();
        blocking(move || {
            if path.exists() {
                return Ok(());
            }
            write_durably(&path, raw.as_bytes())
        })
        .await?;
        Ok(hash)
    }

    /// `Err(Corrupt)` when the file no longer hashes to its name (edited or damaged).
    async fn get(&self, hash: &str) -> Result<Option<String>, PersistenceError> {
        let path = self.path_of(hash)?;
        let hash = hash.to_owned();
        blocking(move || {
            let Some(bytes) = read_if_present(&path)? else {
                return Ok(None);
            };
            let corrupt = |message: String| PersistenceError::Corrupt {
                location: path.display().to_string(),
                message,
            };
            let text = String::from_utf8(bytes).map_err(|e| corrupt(format!("not UTF-8 ({e})")))?;
            if config_hash(&text) != hash {
                return Err(corrupt("content does not match its hash".into()));
            }
            Ok(Some(text))
        })
        .await
    }

    async fn delete(&self, hash: &str) -> Result<(), PersistenceError> {
        let path = self.path_of(hash)?;
        blocking(move || match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(&path, e)),
        })
        .await
    }
}

/// Runs file work on tokio's blocking pool when there is a runtime (an fsync must not stall
/// the tasks sharing a worker thread), inline otherwise.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, PersistenceError> + Send + 'static,
) -> Result<T, PersistenceError> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => match handle.spawn_blocking(work).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(PersistenceError::Io {
                path: PathBuf::new(),
                source: io::Error::other(format!("file operation cancelled: {e}")),
            }),
        },
        Err(_) => work(),
    }
}

/// Replaces `path` with `bytes` atomically and durably (see the module docs).
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), PersistenceError> {
    let dir = parent_of(path)?;
    ensure_dir(dir)?;
    let tmp = Staged::write(path, bytes)?;
    tmp.file.sync_data().map_err(|e| io_error(&tmp.tmp, e))?;
    tmp.rename()?;
    sync_dir(dir)
}

/// Replaces each `(path, bytes)` atomically and durably, all but the last before the last: the
/// files are written to temporary files and fsynced, all but the last renamed into
/// place and their directories fsynced, then the last renamed and its directory fsynced. On an
/// error the temporary files not yet renamed are removed; the files renamed before it stay
/// (each complete and durable once its directory is synced).
fn write_batch_durably(files: &[(PathBuf, Vec<u8>)]) -> Result<(), PersistenceError> {
    let Some(((last_path, _), rest)) = files.split_last() else {
        return Ok(());
    };
    let mut dirs: Vec<&Path> = Vec::with_capacity(1);
    for (path, _) in files {
        let dir = parent_of(path)?;
        if !dirs.contains(&dir) {
            ensure_dir(dir)?;
            dirs.push(dir);
        }
    }
    let mut staged = Vec::with_capacity(files.len());
    for (path, bytes) in files {
        staged.push(Staged::write(path, bytes)?);
    }
    sync_data_all(&staged)?;
    let mut staged = staged.into_iter();
    for tmp in staged.by_ref().take(rest.len()) {
        tmp.rename()?;
    }
    for dir in &dirs {
        sync_dir(dir)?;
    }
    if let Some(tmp) = staged.next() {
        tmp.rename()?;
    }
    sync_dir(parent_of(last_path)?)
}

/// fsyncs the data of every staged file, one after another. (Running them in parallel threads
/// measured no faster here: the thread start-up ate what overlapping the waits saved.)
fn sync_data_all(staged: &[Staged<'_>]) -> Result<(), PersistenceError> {
    staged
        .iter()
        .try_for_each(|s| s.file.sync_data().map_err(|e| io_error(&s.tmp, e)))
}

/// A temporary file next to its target, holding the new content; removed if dropped before
/// [`Staged::rename`].
struct Staged<'a> {
    target: &'a Path,
    tmp: PathBuf,
    file: File,
    renamed: bool,
}

impl<'a> Staged<'a> {
    fn write(target: &'a Path, bytes: &[u8]) -> Result<Self, PersistenceError> {
        let dir = parent_of(target)?;
        let name = target
            .file_name()
            .ok_or_else(|| io_error(target, io::Error::other("not a file name")))?;
        // A unique name so two writers of one key never share a temporary file; the leading
        // dot keeps it out of execution listings.
        let tmp = dir.join(format!(
            ".{}.{:016x}.tmp",
            name.to_string_lossy(),
            rand::random::<u64>()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| io_error(&tmp, e))?;
        let staged = Staged {
            target,
            tmp,
            file,
            renamed: false,
        };
        (&staged.file)
            .write_all(bytes)
            .map_err(|e| io_error(&staged.tmp, e))?;
        Ok(staged)
    }

    fn rename(mut self) -> Result<(), PersistenceError> {
        fs::rename(&self.tmp, self.target).map_err(|e| io_error(self.target, e))?;
        self.renamed = true;
        Ok(())
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Creates `dir` and missing parents, fsyncing each new entry's parent so the directories
/// survive a power cut along with the files written into them.
fn ensure_dir(dir: &Path) -> Result<(), PersistenceError> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(io_error(
                dir,
                io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(dir, e)),
    }
    let parent = parent_of(dir)?;
    ensure_dir(parent)?;
    match fs::create_dir(dir) {
        Ok(()) => sync_dir(parent),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_error(dir, e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), PersistenceError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>, PersistenceError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, e)),
    }
}

fn parent_of(path: &Path) -> Result<&Path, PersistenceError> {
    path.parent()
        .ok_or_else(|| io_error(path, io::Error::other("path has no parent directory")))
}

fn absolute(path: &Path) -> Result<PathBuf, PersistenceError> {
    std::path::absolute(path).map_err(|e| io_error(path, e))
}

fn io_error(path: &Path, source: io::Error) -> PersistenceError {
    PersistenceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};

    use crate::persistence::contract_tests::{self, filter, snapshot};

    fn backend() -> (tempfile::TempDir, LocalFileBackend) {
        let tmp = tempfile::tempdir().unwrap();
        let b = LocalFileBackend::new(tmp.path().join("a/b/.checkpoints")).unwrap();
        (tmp, b)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn layout_and_round_trip() {
        let (_tmp, b) = backend();
        assert!(b.base_dir().is_absolute() && b.base_dir().is_dir());
        let key = "e1/step_000001_state_enter.json";
        b.save_checkpoint("e1", key, b"{\"step\": 1}")
            .await
            .unwrap();
        let dir = b.base_dir().join("e1");
        assert_eq!(names(&dir), ["latest", "step_000001_state_enter.json"]);
        assert_eq!(fs::read(dir.join("latest")).unwrap(), key.as_bytes());
        assert_eq!(
            fs::read(dir.join("step_000001_state_enter.json")).unwrap(),
            b"{\"step\": 1}"
        );
        assert_eq!(
            b.load(key).await.unwrap().as_deref(),
            Some(&b"{\"step\": 1}"[..])
        );
        assert_eq!(
            b.load("e1/latest").await.unwrap().as_deref(),
            Some(key.as_bytes())
        );
        assert_eq!(b.load("e1/step_000009_execute.json").await.unwrap(), None);
        assert_eq!(b.load("nobody/latest").await.unwrap(), None);

        b.save(key, b"{\"step\": 2}").await.unwrap();
        assert_eq!(
            b.load(key).await.unwrap().as_deref(),
            Some(&b"{\"step\": 2}"[..])
        );
        b.save("e1/notes.txt", b"not json").await.unwrap();
        assert_eq!(
            b.load("e1/notes.txt").await.unwrap().as_deref(),
            Some(&b"not json"[..])
        );

        b.delete(key).await.unwrap();
        b.delete(key).await.unwrap();
        b.delete("never/was").await.unwrap();
        assert_eq!(b.load(key).await.unwrap(), None);
        // No temporary file is left behind by successful writes.
        assert_eq!(names(&dir), ["latest", "notes.txt"]);
    }

    #[tokio::test]
    async fn save_checkpoints_writes_the_batch_and_points_at_its_last_key() {
        let (_tmp, b) = backend();
        let dir = b.base_dir().join("e");
        let batch = |step: u32| {
            ["state_exit", "state_enter", "execute"].map(|event| {
                (
                    format!("e/step_{step:06}_{event}.json"),
                    format!("{{\"step\": {step}, \"event\": \"{event}\"}}").into_bytes(),
                )
            })
        };
        for step in 1..=3 {
            let entries = batch(step);
            let refs: Vec<BatchEntry<'_>> =
                entries.iter().map(|(k, v)| BatchEntry::new(k, v)).collect();
            b.save_checkpoints("e", &refs).await.unwrap();
            for (key, bytes) in &entries {
                assert_eq!(b.load(key).await.unwrap().as_ref(), Some(bytes), "{key}");
            }
            assert_eq!(
                b.load("e/latest").await.unwrap().as_deref(),
                Some(entries[2].0.as_bytes())
            );
        }
        // Nothing but the snapshots and the pointer: no temporary file is left behind.
        let files = names(&dir);
        assert_eq!(files.len(), 3 * 3 + 1, "{files:?}");
        assert!(files.iter().all(|n| !n.starts_with('.')), "{files:?}");
        // Rewriting a key replaces it; an empty batch changes nothing.
        b.save_checkpoints(
            "e",
            &[BatchEntry::new(
                "e/step_000001_execute.json",
                b"{\"again\": 1}",
            )],
        )
        .await
        .unwrap();
        assert_eq!(
            fs::read(dir.join("step_000001_execute.json")).unwrap(),
            b"{\"again\": 1}"
        );
        assert_eq!(
            fs::read(dir.join("latest")).unwrap(),
            b"e/step_000001_execute.json"
        );
        b.save_checkpoints("e", &[]).await.unwrap();
        assert_eq!(names(&dir).len(), 10);
        // A bad key anywhere refuses the whole batch before anything is written.
        let err = b
            .save_checkpoints(
                "e",
                &[
                    BatchEntry::new("e/step_000009_execute.json", b"{}"),
                    BatchEntry::new("../x", b"{}"),
                ],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, PersistenceError::InvalidKey(_)), "{err}");
        assert_eq!(names(&dir).len(), 10);
        // A new execution's directory is created on the way.
        b.save_checkpoints("f", &[BatchEntry::new("f/step_000001_execute.json", b"{}")])
            .await
            .unwrap();
        assert_eq!(
            names(&b.base_dir().join("f")),
            ["latest", "step_000001_execute.json"]
        );
    }

    /// A failed rename part way removes the temporary files it had not renamed yet.
    #[test]
    fn failed_batches_leave_no_temporary_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("e");
        fs::create_dir_all(&dir).unwrap();
        // A directory where the second file should go: renaming a file over it fails.
        fs::create_dir_all(dir.join("b.json")).unwrap();
        fs::write(dir.join("b.json").join("keep"), b"x").unwrap();
        let files = [
            (dir.join("a.json"), b"{}".to_vec()),
            (dir.join("b.json"), b"{}".to_vec()),
            (dir.join("latest"), b"e/b.json".to_vec()),
        ];
        assert!(write_batch_durably(&files).is_err());
        assert_eq!(names(&dir), ["a.json", "b.json"]);
        assert!(!dir.join("latest").exists());
    }

    #[tokio::test]
    async fn relative_base_dirs_are_resolved_at_construction() {
        // `src` exists in the crate directory (the tests' working directory), so this creates
        // nothing there.
        let b = LocalFileBackend::new("src").unwrap();
        assert_eq!(b.base_dir(), std::env::current_dir().unwrap().join("src"));
        assert_eq!(LocalFileBackend::DEFAULT_DIR, ".checkpoints");
        assert_eq!(LocalFileLock::DEFAULT_DIR, ".locks");
    }

    #[tokio::test]
    async fn leftover_temporary_files_are_never_snapshots() {
        let (_tmp, b) = backend();
        b.save_checkpoint(
            "e",
            "e/step_000001_state_enter.json",
            &snapshot("state_enter", None),
        )
        .await
        .unwrap();
        // What a crash between write and rename leaves: a torn temporary file.
        let dir = b.base_dir().join("e");
        fs::write(
            dir.join(".latest.0123456789abcdef.tmp"),
            b"e/step_000002_exe",
        )
        .unwrap();
        fs::write(
            dir.join(".step_000002_execute.json.1.tmp"),
            b"{\"event\": \"exe",
        )
        .unwrap();
        fs::create_dir(b.base_dir().join(".e.tmp")).unwrap();

        assert_eq!(
            b.load("e/latest").await.unwrap().as_deref(),
            Some(&b"e/step_000001_state_enter.json"[..])
        );
        assert_eq!(b.load("e/step_000002_execute.json").await.unwrap(), None);
        assert_eq!(
            b.list_execution_ids(&filter(None, None)).await.unwrap(),
            ["e"]
        );
        assert_eq!(
            b.list_execution_ids(&filter(Some("state_enter"), None))
                .await
                .unwrap(),
            ["e"]
        );
        // A later checkpoint still goes through.
        b.save_checkpoint(
            "e",
            "e/step_000002_execute.json",
            &snapshot("execute", None),
        )
        .await
        .unwrap();
        assert_eq!(
            b.list_execution_ids(&filter(Some("execute"), None))
                .await
                .unwrap(),
            ["e"]
        );
    }

    #[tokio::test]
    async fn corrupt_and_unreadable_files_name_the_path() {
        let (_tmp, b) = backend();
        let dir = b.base_dir().join("e");
        fs::create_dir(&dir).unwrap();

        fs::write(dir.join("latest"), [0xff, 0xfe, 0x00]).unwrap();
        match b.load("e/latest").await {
            Err(PersistenceError::Corrupt { location, .. }) => {
                assert_eq!(location, dir.join("latest").display().to_string())
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        fs::write(dir.join("latest"), b"../../etc/passwd").unwrap();
        assert!(matches!(
            b.load("e/latest").await,
            Err(PersistenceError::Corrupt { .. })
        ));
        // An empty pointer means "no checkpoint", as in the reference.
        fs::write(dir.join("latest"), b"").unwrap();
        assert_eq!(b.load("e/latest").await.unwrap().as_deref(), Some(&b""[..]));

        let torn = dir.join("step_000001_state_enter.json");
        fs::write(
            &torn,
            b"{\"execution_id\": \"e\", \"context\": {\"a\": [1, 2",
        )
        .unwrap();
        let err = b.load("e/step_000001_state_enter.json").await.unwrap_err();
        assert!(matches!(err, PersistenceError::Corrupt { .. }));
        assert!(
            err.to_string().contains(&torn.display().to_string()),
            "{err}"
        );

        // Python's bare NaN is not corruption.
        fs::write(&torn, b"{\"execution_id\": \"e\", \"total_cost\": NaN}").unwrap();
        assert!(
            b.load("e/step_000001_state_enter.json")
                .await
                .unwrap()
                .is_some()
        );

        // A directory where a file should be cannot be read: an I/O error naming it.
        let odd = dir.join("step_000002_execute.json");
        fs::create_dir(&odd).unwrap();
        match b.load("e/step_000002_execute.json").await {
            Err(PersistenceError::Io { path, .. }) => assert_eq!(path, odd),
            other => panic!("expected Io, got {other:?}"),
        }
        match b.save("e/step_000002_execute.json", b"{}").await {
            Err(PersistenceError::Io { path, .. }) => assert_eq!(path, odd),
            other => panic!("expected Io, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn list_and_filters() {
        let (_tmp, b) = backend();
        contract_tests::list_filters_use_the_latest_snapshot(&b).await;
        // A damaged execution is skipped by filters, not fatal to the listing.
        b.save_checkpoint("t", "t/step_000001_waiting.json", b"{\"event\": \"wai")
            .await
            .unwrap();
        // Not executions: configs, hidden directories, stray files.
        LocalFileConfigStore::new(b.base_dir())
            .unwrap()
            .put("x: 1")
            .await
            .unwrap();
        fs::create_dir(b.base_dir().join(".hidden")).unwrap();
        fs::write(b.base_dir().join("stray"), b"").unwrap();

        let ids = |f| {
            let b = b.clone();
            async move { b.list_execution_ids(&f).await.unwrap() }
        };
        assert_eq!(
            ids(filter(None, None)).await,
            ["a", "b", "c", "d", "e", "n", "t"]
        );
        assert_eq!(ids(filter(Some("waiting"), None)).await, ["a", "c", "n"]);
        assert_eq!(ids(filter(None, Some("ch/1"))).await, ["c", "n"]);
    }

    #[tokio::test]
    async fn delete_execution_removes_the_tree() {
        let (_tmp, b) = backend();
        b.save_checkpoint("a", "a/step_000001_x.json", b"{}")
            .await
            .unwrap();
        b.save_checkpoint("ab", "ab/step_000001_x.json", b"{}")
            .await
            .unwrap();
        b.delete_execution("a").await.unwrap();
        b.delete_execution("a").await.unwrap();
        assert!(!b.base_dir().join("a").exists());
        assert!(b.load("ab/latest").await.unwrap().is_some());
        assert_eq!(
            b.list_execution_ids(&filter(None, None)).await.unwrap(),
            ["ab"]
        );
    }

    #[tokio::test]
    async fn invalid_keys_are_refused() {
        let (tmp, b) = backend();
        contract_tests::invalid_keys_are_refused(&b).await;
        assert!(!tmp.path().join("x").exists() && !tmp.path().join("a/x").exists());
    }

    #[tokio::test]
    async fn config_store_files() {
        let tmp = tempfile::tempdir().unwrap();
        let s = LocalFileConfigStore::new(tmp.path()).unwrap();
        let raw = "spec: flatmachine\ndata:\n  name: démo\n";
        let h = s.put(raw).await.unwrap();
        assert_eq!(h, config_hash(raw));
        let file = tmp.path().join("_configs").join(format!("{h}.yml"));
        assert_eq!(fs::read_to_string(&file).unwrap(), raw);
        assert_eq!(s.put(raw).await.unwrap(), h);
        assert_eq!(names(s.dir()), [format!("{h}.yml")]);
        assert_eq!(s.get(&h).await.unwrap().as_deref(), Some(raw));
        assert_eq!(s.get(&config_hash("other")).await.unwrap(), None);

        fs::write(&file, "spec: tampered\n").unwrap();
        let err = s.get(&h).await.unwrap_err();
        assert!(
            matches!(&err, PersistenceError::Corrupt { location, .. } if *location == file.display().to_string())
        );

        s.delete(&h).await.unwrap();
        s.delete(&h).await.unwrap();
        assert!(!file.exists());
        for bad in ["../../etc/passwd", "abc", &h.to_uppercase()] {
            assert!(matches!(
                s.get(bad).await,
                Err(PersistenceError::InvalidKey(_))
            ));
            assert!(matches!(
                s.delete(bad).await,
                Err(PersistenceError::InvalidKey(_))
            ));
        }
    }

    /// Polls `f` once with no runtime around: the backend must not need tokio to progress.
    fn poll_without_tokio<T>(f: impl std::future::Future<Output = T>) -> T {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::pin!(f).poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("backend future was pending without tokio"),
        }
    }

    #[test]
    fn works_without_a_tokio_runtime() {
        let (_tmp, b) = backend();
        poll_without_tokio(b.save_checkpoint("e", "e/step_000001_x.json", b"{}")).unwrap();
        assert_eq!(
            poll_without_tokio(b.load("e/latest")).unwrap().as_deref(),
            Some(&b"e/step_000001_x.json"[..])
        );
    }

    // ---- file lock ----

    #[tokio::test]
    async fn file_lock_in_process() {
        let tmp = tempfile::tempdir().unwrap();
        let lock = LocalFileLock::new(tmp.path().join("locks")).unwrap();
        let other = LocalFileLock::new(tmp.path().join("locks")).unwrap();
        assert!(lock.acquire("e1").await.unwrap());
        assert!(tmp.path().join("locks/e1.lock").is_file());
        // Same object and another object in the same process: both refused.
        assert!(!lock.acquire("e1").await.unwrap());
        assert!(!other.acquire("e1").await.unwrap());
        assert!(other.acquire("e2").await.unwrap());
        lock.release("e1").await;
        lock.release("e1").await;
        lock.release("never").await;
        assert!(other.acquire("e1").await.unwrap());
        // The lock file is left on disk.
        other.release("e1").await;
        assert!(tmp.path().join("locks/e1.lock").is_file());
        assert!(lock.acquire("e1").await.unwrap());
        // Dropping the lock object releases everything it held.
        drop(lock);
        assert!(other.acquire("e1").await.unwrap());
        assert!(matches!(
            other.acquire("../x").await,
            Err(PersistenceError::InvalidKey(_))
        ));
    }

    const CHILD_ENV: &str = "FLATMACHINES_TEST_LOCK_CHILD";
    const CHILD_MARK: &str = "lock-child:";

    /// Runs this test binary again as a separate process that tries to take `key` in `dir`;
    /// with `hold`, a child that got the lock keeps it until killed.
    fn spawn_child(dir: &Path, key: &str, hold: bool) -> (Child, String) {
        let mode = if hold { "hold" } else { "try" };
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "persistence::local::tests::lock_child_process",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{mode}\n{}\n{key}", dir.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let answer = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            // libtest prints the test's name on the same line first.
            .find_map(|line| {
                line.split_once(CHILD_MARK)
                    .map(|(_, a)| a.trim().to_string())
            })
            .expect("child reported its lock attempt");
        (child, answer)
    }

    /// The other process of the lock tests (spawned by [`spawn_child`]); does nothing when run
    /// by the test harness itself.
    #[test]
    #[ignore = "child process of the file-lock tests"]
    fn lock_child_process() {
        let Ok(spec) = std::env::var(CHILD_ENV) else {
            return;
        };
        let mut parts = spec.splitn(3, '\n');
        let (mode, dir, key) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let lock = LocalFileLock::new(dir).unwrap();
        let got = rt.block_on(lock.acquire(key)).unwrap();
        println!("{CHILD_MARK}{}", if got { "acquired" } else { "refused" });
        io::stdout().flush().unwrap();
        if got && mode == "hold" {
            std::thread::sleep(std::time::Duration::from_secs(120));
        }
    }

    #[tokio::test]
    async fn file_lock_across_processes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("locks");
        let lock = LocalFileLock::new(&dir).unwrap();

        assert!(lock.acquire("held-here").await.unwrap());
        let (mut child, answer) = spawn_child(&dir, "held-here", false);
        assert_eq!(answer, "refused");
        child.wait().unwrap();
        lock.release("held-here").await;
        let (mut child, answer) = spawn_child(&dir, "held-here", false);
        assert_eq!(answer, "acquired");
        child.wait().unwrap();
        // The child exited, so its lock went with it.
        assert!(lock.acquire("held-here").await.unwrap());
    }

    #[tokio::test]
    async fn file_lock_is_freed_when_the_holder_is_killed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("locks");
        let lock = LocalFileLock::new(&dir).unwrap();

        let (mut child, answer) = spawn_child(&dir, "run-1", true);
        assert_eq!(answer, "acquired");
        assert!(!lock.acquire("run-1").await.unwrap());
        child.kill().unwrap(); // SIGKILL: no chance to release
        child.wait().unwrap();
        assert!(lock.acquire("run-1").await.unwrap());
    }
}

//! SQLite: [`SqliteBackend`], [`SqliteConfigStore`] and [`SqliteLeaseLock`]
//! (`persistence.md` §5.3, §6.3, §7), with the reference's tables, columns and indexes, so a
//! database written by the Python SDK is read here and the other way round.
//!
//! # Connection settings
//!
//! Every connection runs `journal_mode=WAL`, `synchronous=NORMAL` and `busy_timeout=10000`, as
//! the reference does. `synchronous=NORMAL` is deliberate: in WAL mode a commit is then durable
//! against a crash of the process (the WAL pages are in the kernel's cache) and the database can
//! never be corrupted, but a power cut or kernel crash may lose the last few commits, because
//! the WAL is only fsynced at checkpoints. Losing the newest checkpoints only makes a resume
//! re-run the last states, which execution is at-least-once about anyway (§8); `FULL` would
//! add an fsync (milliseconds on real disks) to every commit.
//!
//! # What a checkpoint costs
//!
//! Almost all of it is the commit: SQLite appends every page the transaction changed to the WAL
//! and takes and releases its WAL locks (`fcntl`). SQLite writes each frame as two `pwrite`
//! calls; connections here open the database through a VFS shim (`wal_vfs`) that writes a
//! commit's frames with one call before the commit is published, which halves the kernel time
//! of a checkpoint and changes nothing on disk. With the
//! reference's tables a snapshot row changes about five pages (the table leaf, its parent as
//! leaves fill, the primary-key index, the `(execution_id, created_at)` index and the
//! `machine_latest` row), plus page 1 whenever the file grows. Page-cache, `mmap_size` and
//! `temp_store` settings change none of this (measured). What does is committing fewer times:
//! [`CheckpointBackend::save_checkpoints`] writes a batch in one transaction, and a run without
//! hooks hands the executor's three snapshots around each state body over as one batch
//! (`Run::checkpoint_deferred` explains why that keeps the durability of separate commits), so
//! a step costs one commit of about seven and a half pages instead of three of five or six.
//!
//! The reference declares that index `created_at DESC`. New entries of an execution then go
//! to the front of its range, where SQLite splits pages by rebalancing their neighbours: 1.3
//! more WAL pages per commit than appending at the back (8.8 instead of 7.5 here). Databases
//! created here therefore get the same index ascending, which SQLite scans backwards for
//! newest-first reads; a database that already has the descending one keeps it, and either
//! SDK works with either file (`docs/compatibility.md`).
//!
//! The executor hands each snapshot's indexed fields over with its bytes ([`SnapshotFields`]),
//! so rows are filled without parsing the JSON; other callers' snapshots are parsed.
//!
//! SQLite would run each WAL checkpoint (which fsyncs) inside whichever commit crosses the
//! 1000-page threshold; a [`SqliteBackend`] instead starts a `PASSIVE` checkpoint on a second
//! connection in the blocking pool every 200 commits, and its connections only checkpoint
//! inline past 10,000 pages. Durability is unchanged: the WAL is still synced at each
//! checkpoint.
//!
//! # Why the calls run inline
//!
//! Each backend owns one connection behind a `std::sync::Mutex` and runs its statements on the
//! calling task. A checkpoint is a few microseconds of SQLite work against pages in memory,
//! less than the thread hand-off of `spawn_blocking` would cost. The price: while another
//! process holds the database's write lock, a call may wait up to the busy timeout on the
//! worker thread (and it checkpoints inline if the WAL ever passes 10,000 pages).

use super::meta::{self, execution_id_of, is_pointer_key};
use super::snapshot::utc_now_iso;
use super::{
    BatchEntry, CheckpointBackend, ConfigStore, ExecutionLock, ListFilter, PersistenceError,
    SnapshotFields, config_hash, validate_key,
};
use async_trait::async_trait;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The environment variable consulted by [`resolve_db_path`].
pub const DB_PATH_ENV: &str = "FLATMACHINES_DB_PATH";
/// The database file used when neither the YAML nor the environment names one.
pub const DEFAULT_DB_PATH: &str = "flatmachines.sqlite";

/// The database a `backend: sqlite` machine uses: `persistence.db_path` from the YAML, else the
/// `FLATMACHINES_DB_PATH` environment variable, else `flatmachines.sqlite`; empty values count
/// as absent. The result is absolute (resolved against the working directory now).
pub fn resolve_db_path(configured: Option<&str>) -> Result<PathBuf, PersistenceError> {
    let env = std::env::var(DB_PATH_ENV).ok();
    resolve_db_path_from(configured, env.as_deref())
}

fn resolve_db_path_from(
    configured: Option<&str>,
    env: Option<&str>,
) -> Result<PathBuf, PersistenceError> {
    let chosen = [configured, env]
        .into_iter()
        .flatten()
        .find(|p| !p.is_empty())
        .unwrap_or(DEFAULT_DB_PATH);
    absolute(Path::new(chosen))
}

fn absolute(path: &Path) -> Result<PathBuf, PersistenceError> {
    std::path::absolute(path).map_err(|source| PersistenceError::Io {
        path: path.to_path_buf(),
        source,
    })
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS machine_checkpoints (
    checkpoint_key  TEXT PRIMARY KEY,
    execution_id    TEXT NOT NULL,
    machine_name    TEXT,
    event           TEXT,
    current_state   TEXT,
    waiting_channel TEXT,
    snapshot_json   BLOB NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_mc_execution_created
  ON machine_checkpoints(execution_id, created_at);
CREATE TABLE IF NOT EXISTS machine_latest (
    execution_id TEXT PRIMARY KEY,
    latest_key   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS machine_configs (
    config_hash  TEXT PRIMARY KEY,
    machine_name TEXT,
    spec_version TEXT,
    config_raw   TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
";

/// Created after the migration, since older tables lack the column it indexes.
const WAITING_INDEX: &str = "
CREATE INDEX IF NOT EXISTS idx_mc_waiting_channel
  ON machine_checkpoints(waiting_channel)
  WHERE waiting_channel IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_mc_wait_deadline
  ON machine_checkpoints(json_extract(CAST(snapshot_json AS TEXT), '$.context._wait_for_deadline.deadline'))
  WHERE waiting_channel IS NOT NULL;
";

const LEASE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS execution_leases (
    execution_id   TEXT PRIMARY KEY,
    owner_id       TEXT NOT NULL,
    phase          TEXT NOT NULL,
    lease_until    INTEGER NOT NULL,
    fencing_token  INTEGER NOT NULL DEFAULT 1,
    acquired_at    TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_execution_leases_until
  ON execution_leases(lease_until);
";

const UPSERT_CHECKPOINT: &str = "
INSERT INTO machine_checkpoints (
    checkpoint_key, execution_id, machine_name,
    event, current_state, waiting_channel, snapshot_json, created_at
) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
ON CONFLICT(checkpoint_key) DO UPDATE SET
    execution_id = excluded.execution_id,
    machine_name = excluded.machine_name,
    event = excluded.event,
    current_state = excluded.current_state,
    waiting_channel = excluded.waiting_channel,
    snapshot_json = excluded.snapshot_json,
    created_at = excluded.created_at";

const UPSERT_LATEST: &str = "
INSERT INTO machine_latest (execution_id, latest_key, updated_at)
VALUES (?1, ?2, ?3)
ON CONFLICT(execution_id) DO UPDATE SET
    latest_key = excluded.latest_key,
    updated_at = excluded.updated_at";

/// Commits of a [`SqliteBackend`] between two background WAL checkpoints. A commit adds 5–6
/// pages to the WAL (one snapshot) to about 9 (a batch of three), so this is one to two times
/// SQLite's default threshold of 1000 pages. While commits follow each other without a pause
/// (agents that answer at once) a background checkpoint never ends between two of them, so the
/// WAL only starts over at the inline threshold below; with real agent calls between commits it
/// starts over after each background checkpoint.
const CHECKPOINT_EVERY: u32 = 200;
/// WAL pages past which SQLite still checkpoints inline, should background checkpoints fall
/// behind (about 40 MB).
const INLINE_CHECKPOINT_PAGES: i64 = 10_000;

/// Opens a connection with the settings of the module docs (also used by the SQLite signal
/// backend, so every connection to a shared file runs the same settings and VFS).
/// A connection to the database at `path` (made absolute, its folder created) with the
/// settings of [`connect`], after running `schema`. Returns the absolute path too.
pub(crate) fn open_connection(
    path: &Path,
    schema: &[&str],
) -> Result<(PathBuf, Connection), PersistenceError> {
    let path = absolute(path)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| PersistenceError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let conn = connect(&path)?;
    for sql in schema {
        conn.execute_batch(sql)
            .map_err(|e| PersistenceError::Database {
                path: path.clone(),
                message: format!("creating tables: {e}"),
            })?;
    }
    Ok((path, conn))
}

fn connect(path: &Path) -> Result<Connection, PersistenceError> {
    let fail = |what: &str, e: rusqlite::Error| PersistenceError::Database {
        path: path.to_path_buf(),
        message: format!("{what}: {e}"),
    };
    let conn = match wal_vfs::name() {
        Some(vfs) => Connection::open_with_flags_and_vfs(path, OpenFlags::default(), vfs),
        None => Connection::open(path),
    }
    .map_err(|e| fail("opening", e))?;
    // Set first, so the statements below already wait for other writers.
    conn.busy_timeout(Duration::from_millis(10_000))
        .map_err(|e| fail("setting busy_timeout", e))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| fail("enabling WAL", e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(
            "{}: SQLite kept journal_mode={mode} (WAL unsupported here)",
            path.display()
        );
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(|e| fail("setting synchronous", e))?;
    conn.pragma_update(None, "wal_autocheckpoint", INLINE_CHECKPOINT_PAGES)
        .map_err(|e| fail("setting wal_autocheckpoint", e))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// One connection and the file it is open on.
struct Db {
    path: PathBuf,
    conn: Mutex<Connection>,
    checkpointer: Arc<Checkpointer>,
}

impl Db {
    /// The checkpoint and config tables, migrated from older releases.
    fn open_checkpoints(path: &Path) -> Result<Db, PersistenceError> {
        let db = Db::open(path, &[SCHEMA])?;
        migrate(&db.lock()).map_err(|e| db.error("migrating machine_checkpoints", e))?;
        Ok(db)
    }

    fn open(path: &Path, schema: &[&str]) -> Result<Db, PersistenceError> {
        let (path, conn) = open_connection(path, schema)?;
        Ok(Db {
            checkpointer: Arc::new(Checkpointer {
                path: path.clone(),
                conn: Mutex::new(None),
                running: AtomicBool::new(false),
                commits: AtomicU32::new(0),
                done: AtomicU64::new(0),
            }),
            path,
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // rusqlite rolls back an unfinished transaction when it is dropped, so a panic while the
        // guard was held leaves a usable connection.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn error(&self, what: &str, e: rusqlite::Error) -> PersistenceError {
        PersistenceError::Database {
            path: self.path.clone(),
            message: format!("{what}: {e}"),
        }
    }

    fn corrupt(&self, table: &str, key: &str, message: String) -> PersistenceError {
        PersistenceError::Corrupt {
            location: format!("{} ({table}/{key})", self.path.display()),
            message,
        }
    }
}

/// Runs WAL checkpoints away from the saving task. A checkpoint fsyncs the WAL and the
/// database (milliseconds on real disks); SQLite would otherwise run it inside whichever commit
/// crosses the threshold, making every ~200th checkpoint of a machine that slow. `PASSIVE`
/// checkpoints never wait for, or block, writers.
struct Checkpointer {
    path: PathBuf,
    /// Its own connection, opened on first use, so saves never wait for a checkpoint.
    conn: Mutex<Option<Connection>>,
    running: AtomicBool,
    commits: AtomicU32,
    /// Completed checkpoints (for tests).
    done: AtomicU64,
}

impl Checkpointer {
    fn after_commit(self: &Arc<Self>) {
        let n = self.commits.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        if !n.is_multiple_of(CHECKPOINT_EVERY) || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = Arc::clone(self);
        let work = move || {
            me.checkpoint();
            me.running.store(false, Ordering::Release);
        };
        let started = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(work);
                true
            }
            Err(_) => std::thread::Builder::new()
                .name("flatmachines-wal-checkpoint".into())
                .spawn(work)
                .is_ok(),
        };
        if !started {
            self.running.store(false, Ordering::Release);
        }
    }

    fn checkpoint(&self) {
        let mut slot = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            match connect(&self.path) {
                Ok(conn) => *slot = Some(conn),
                Err(e) => {
                    tracing::warn!("WAL checkpoint skipped: {e}");
                    return;
                }
            }
        }
        let Some(conn) = slot.as_ref() else { return };
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            Ok(()) => {
                self.done.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!("{}: WAL checkpoint failed: {e}", self.path.display()),
        }
    }
}

/// An `IMMEDIATE` transaction whose `BEGIN` and `COMMIT` are cached statements (rusqlite's
/// `Transaction` prepares both again for every commit, a measurable part of a checkpoint).
/// Dropped without [`Immediate::commit`] (an error, a panic), it rolls back, as `Transaction`
/// does.
struct Immediate<'c> {
    conn: &'c Connection,
    open: bool,
}

impl<'c> Immediate<'c> {
    fn begin(conn: &'c Connection) -> rusqlite::Result<Self> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(Immediate { conn, open: true })
    }

    fn commit(mut self) -> rusqlite::Result<()> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        self.open = false;
        Ok(())
    }
}

impl Drop for Immediate<'_> {
    fn drop(&mut self) {
        if self.open && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// Adds `waiting_channel` to `machine_checkpoints` tables made before the column existed.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let has_column = conn
        .prepare("PRAGMA table_info(machine_checkpoints)")?
        .query_map([], |r| r.get::<_, String>(1))?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .iter()
        .any(|c| c == "waiting_channel");
    if !has_column {
        conn.execute_batch("ALTER TABLE machine_checkpoints ADD COLUMN waiting_channel TEXT")?;
    }
    conn.execute_batch(WAITING_INDEX)
}

/// Checkpoints in a SQLite database: snapshots in `machine_checkpoints` (with `machine_name`,
/// `event`, `current_state` and `waiting_channel` copied into columns by a best-effort parse),
/// pointers in `machine_latest`, configs in `machine_configs`.
///
/// Cheap to clone; clones share the connection. See the module docs for the durability and
/// threading choices.
#[derive(Clone)]
pub struct SqliteBackend {
    db: Arc<Db>,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("path", &self.db.path)
            .finish()
    }
}

impl SqliteBackend {
    /// Opens (creating if needed) the database at `path` and its tables, migrating tables made
    /// by older releases. Missing parent directories are created.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, PersistenceError> {
        Ok(SqliteBackend {
            db: Arc::new(Db::open_checkpoints(path.as_ref())?),
        })
    }

    /// The absolute database path.
    pub fn path(&self) -> &Path {
        &self.db.path
    }

    /// The config store on this backend's connection, as a concrete type.
    pub fn sqlite_config_store(&self) -> SqliteConfigStore {
        SqliteConfigStore {
            db: Arc::clone(&self.db),
        }
    }

    fn save_pointer(&self, execution_id: &str, value: &[u8]) -> Result<(), PersistenceError> {
        let text = std::str::from_utf8(value)
            .map_err(|_| PersistenceError::InvalidKey(String::from_utf8_lossy(value).into()))?;
        // Trimmed like the reference, which accepts a pointer with a trailing newline.
        let target = text.trim();
        validate_key(target)?;
        self.db
            .lock()
            .prepare_cached(UPSERT_LATEST)
            .and_then(|mut s| s.execute(params![execution_id, target, utc_now_iso()]))
            .map_err(|e| self.db.error("saving the latest pointer", e))?;
        self.db.checkpointer.after_commit();
        Ok(())
    }
}

/// The metadata columns of one row, from the caller's [`SnapshotFields`] or a parse.
#[derive(Default)]
struct Columns<'a> {
    machine_name: Option<&'a str>,
    event: Option<&'a str>,
    current_state: Option<&'a str>,
    waiting_channel: Option<&'a str>,
}

impl<'a> Columns<'a> {
    fn given(f: &SnapshotFields<'a>) -> Self {
        Columns {
            machine_name: Some(f.machine_name),
            event: f.event,
            current_state: Some(f.current_state),
            waiting_channel: f.waiting_channel,
        }
    }

    fn parsed(m: &'a meta::SnapshotMeta) -> Self {
        Columns {
            machine_name: m.machine_name.as_deref(),
            event: m.event.as_deref(),
            current_state: m.current_state.as_deref(),
            waiting_channel: m.waiting_channel.as_deref(),
        }
    }
}

/// Snapshot columns, parsed before the connection is locked so other tasks wait less.
fn snapshot_row(snapshot: &[u8]) -> meta::SnapshotMeta {
    meta::snapshot_meta(snapshot).unwrap_or_default()
}

#[async_trait]
impl CheckpointBackend for SqliteBackend {
    async fn save(&self, key: &str, value: &[u8]) -> Result<(), PersistenceError> {
        validate_key(key)?;
        let execution_id = execution_id_of(key);
        if is_pointer_key(key) {
            return self.save_pointer(execution_id, value);
        }
        let m = snapshot_row(value);
        self.db
            .lock()
            .prepare_cached(UPSERT_CHECKPOINT)
            .and_then(|mut s| {
                s.execute(params![
                    key,
                    execution_id,
                    m.machine_name,
                    m.event,
                    m.current_state,
                    m.waiting_channel,
                    value,
                    utc_now_iso()
                ])
            })
            .map_err(|e| self.db.error("saving a checkpoint", e))?;
        self.db.checkpointer.after_commit();
        Ok(())
    }

    async fn load(&self, key: &str) -> Result<Option<Vec<u8>>, PersistenceError> {
        validate_key(key)?;
        let execution_id = execution_id_of(key);
        if is_pointer_key(key) {
            let found: Option<String> = self
                .db
                .lock()
                .prepare_cached("SELECT latest_key FROM machine_latest WHERE execution_id = ?1")
                .and_then(|mut s| s.query_row([execution_id], |r| r.get(0)).optional())
                .map_err(|e| self.db.error("loading the latest pointer", e))?;
            return Ok(found.map(String::into_bytes));
        }
        let found = self
            .db
            .lock()
            .prepare_cached(
                "SELECT snapshot_json FROM machine_checkpoints WHERE checkpoint_key = ?1",
            )
            .and_then(|mut s| {
                s.query_row([key], |r| {
                    // BLOB from the Python SDK, TEXT from the JavaScript one.
                    Ok(match r.get_ref(0)? {
                        ValueRef::Blob(b) | ValueRef::Text(b) => Some(b.to_vec()),
                        _ => None,
                    })
                })
                .optional()
            })
            .map_err(|e| self.db.error("loading a checkpoint", e))?
            .flatten();
        if let Some(bytes) = &found
            && key.ends_with(".json")
        {
            meta::check_json(bytes).map_err(|m| self.db.corrupt("machine_checkpoints", key, m))?;
        }
        Ok(found)
    }

    async fn delete(&self, key: &str) -> Result<(), PersistenceError> {
        validate_key(key)?;
        let execution_id = execution_id_of(key);
        let mut conn = self.db.lock();
        let result = if is_pointer_key(key) {
            conn.execute(
                "DELETE FROM machine_latest WHERE execution_id = ?1",
                [execution_id],
            )
            .map(drop)
        } else {
            // A pointer to a deleted snapshot would dangle, so it goes too.
            conn.transaction().and_then(|tx| {
                tx.execute(
                    "DELETE FROM machine_checkpoints WHERE checkpoint_key = ?1",
                    [key],
                )?;
                tx.execute(
                    "DELETE FROM machine_latest WHERE execution_id = ?1 AND latest_key = ?2",
                    [execution_id, key],
                )?;
                tx.commit()
            })
        };
        drop(conn);
        result.map_err(|e| self.db.error("deleting a checkpoint", e))?;
        self.db.checkpointer.after_commit();
        Ok(())
    }

    /// Unfiltered: every execution with a snapshot row. Filtered: executions whose latest
    /// pointer names a snapshot row with the given `event` / `waiting_channel` columns (an
    /// indexed join, no JSON decoding).
    async fn list_execution_ids(
        &self,
        filter: &ListFilter,
    ) -> Result<Vec<String>, PersistenceError> {
        let conn = self.db.lock();
        let ids = match (&filter.event, &filter.waiting_channel) {
            (None, None) => conn
                .prepare_cached(
                    "SELECT DISTINCT execution_id FROM machine_checkpoints ORDER BY execution_id",
                )
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect()),
            // Who waits on a channel: straight from the partial index on `waiting_channel`,
            // then each hit's `machine_latest` row by primary key (no scan of the executions).
            (None, Some(channel)) => conn
                .prepare_cached(
                    "SELECT mc.execution_id
                     FROM machine_checkpoints mc
                     JOIN machine_latest ml
                       ON ml.execution_id = mc.execution_id AND ml.latest_key = mc.checkpoint_key
                     WHERE mc.waiting_channel = ?1
                     ORDER BY mc.execution_id",
                )
                .and_then(|mut s| s.query_map([channel], |r| r.get(0))?.collect()),
            (event, channel) => conn
                .prepare_cached(
                    "SELECT ml.execution_id
                     FROM machine_latest ml
                     JOIN machine_checkpoints mc ON mc.checkpoint_key = ml.latest_key
                     WHERE (?1 IS NULL OR mc.event = ?1)
                       AND (?2 IS NULL OR mc.waiting_channel = ?2)
                     ORDER BY ml.execution_id",
                )
                .and_then(|mut s| {
                    s.query_map(params![event, channel], |r| r.get(0))?
                        .collect()
                }),
        };
        ids.map_err(|e| self.db.error("listing executions", e))
    }

    async fn expired_waits(
        &self,
        now: f64,
    ) -> Result<Option<Vec<(String, String)>>, PersistenceError> {
        let conn = self.db.lock();
        // Through the expression index on the deadline of waiting snapshots: only the waits
        // with a timeout are read, never every parked execution.
        conn.prepare_cached(
            "SELECT mc.execution_id, mc.waiting_channel
             FROM machine_checkpoints mc
             JOIN machine_latest ml
               ON ml.execution_id = mc.execution_id AND ml.latest_key = mc.checkpoint_key
             WHERE mc.waiting_channel IS NOT NULL
               AND json_extract(CAST(mc.snapshot_json AS TEXT),
                                '$.context._wait_for_deadline.deadline') <= ?1
             ORDER BY mc.execution_id",
        )
        .and_then(|mut s| {
            s.query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .map(Some)
        .map_err(|e| self.db.error("listing expired waits", e))
    }

    async fn delete_execution(&self, execution_id: &str) -> Result<(), PersistenceError> {
        validate_key(execution_id)?;
        let mut conn = self.db.lock();
        conn.transaction()
            .and_then(|tx| {
                tx.execute(
                    "DELETE FROM machine_checkpoints WHERE execution_id = ?1",
                    [execution_id],
                )?;
                tx.execute(
                    "DELETE FROM machine_latest WHERE execution_id = ?1",
                    [execution_id],
                )?;
                tx.commit()
            })
            .map_err(|e| self.db.error("deleting an execution", e))?;
        self.db.checkpointer.after_commit();
        Ok(())
    }

    /// The snapshot row and the pointer in one transaction: one commit (one WAL append)
    /// instead of two, and no moment where the pointer and the snapshots disagree.
    async fn save_checkpoint(
        &self,
        execution_id: &str,
        key: &str,
        snapshot: &[u8],
    ) -> Result<(), PersistenceError> {
        validate_key(key)?;
        validate_key(execution_id)?;
        let m = snapshot_row(snapshot);
        let now = utc_now_iso();
        let conn = self.db.lock();
        let write = || -> rusqlite::Result<()> {
            let tx = Immediate::begin(&conn)?;
            tx.conn.prepare_cached(UPSERT_CHECKPOINT)?.execute(params![
                key,
                execution_id_of(key),
                m.machine_name,
                m.event,
                m.current_state,
                m.waiting_channel,
                snapshot,
                now
            ])?;
            tx.conn
                .prepare_cached(UPSERT_LATEST)?
                .execute(params![execution_id, key, now])?;
            tx.commit()
        };
        write().map_err(|e| self.db.error("saving a checkpoint", e))?;
        self.db.checkpointer.after_commit();
        Ok(())
    }

    /// Every snapshot row and the pointer in one transaction: one commit for the batch. Each
    /// row gets its own `created_at`, as separate saves would, and the pointer is written once,
    /// naming the last snapshot (what the intermediate pointer writes would leave).
    async fn save_checkpoints(
        &self,
        execution_id: &str,
        batch: &[BatchEntry<'_>],
    ) -> Result<(), PersistenceError> {
        validate_key(execution_id)?;
        let Some(last) = batch.last() else {
            return Ok(());
        };
        // Parsed only for entries that come without their fields.
        let mut parsed = Vec::new();
        for entry in batch {
            validate_key(entry.key)?;
            if entry.fields.is_none() {
                parsed.push(snapshot_row(entry.snapshot));
            }
        }
        let conn = self.db.lock();
        let write = || -> rusqlite::Result<()> {
            let tx = Immediate::begin(&conn)?;
            let mut now = String::new();
            {
                let mut upsert = tx.conn.prepare_cached(UPSERT_CHECKPOINT)?;
                let mut parsed = parsed.iter();
                for entry in batch {
                    let columns = match &entry.fields {
                        Some(f) => Columns::given(f),
                        None => parsed.next().map(Columns::parsed).unwrap_or_default(),
                    };
                    now = utc_now_iso();
                    upsert.execute(params![
                        entry.key,
                        execution_id_of(entry.key),
                        columns.machine_name,
                        columns.event,
                        columns.current_state,
                        columns.waiting_channel,
                        entry.snapshot,
                        now
                    ])?;
                }
            }
            tx.conn
                .prepare_cached(UPSERT_LATEST)?
                .execute(params![execution_id, last.key, now])?;
            tx.commit()
        };
        write().map_err(|e| self.db.error("saving checkpoints", e))?;
        self.db.checkpointer.after_commit();
        Ok(())
    }

    fn config_store(&self) -> Option<Arc<dyn ConfigStore>> {
        Some(Arc::new(self.sqlite_config_store()))
    }
}

/// Configs in the `machine_configs` table, keyed by [`config_hash`]. `put` fills `machine_name`
/// (`data.name`) and `spec_version` from a best-effort YAML parse (JSON is YAML too) and never
/// replaces an existing row.
#[derive(Clone)]
pub struct SqliteConfigStore {
    db: Arc<Db>,
}

impl std::fmt::Debug for SqliteConfigStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteConfigStore")
            .field("path", &self.db.path)
            .finish()
    }
}

impl SqliteConfigStore {
    /// Opens the database at `path` on a connection of its own. A [`SqliteBackend`] already
    /// has a store on its connection ([`SqliteBackend::sqlite_config_store`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, PersistenceError> {
        Ok(SqliteConfigStore {
            db: Arc::new(Db::open_checkpoints(path.as_ref())?),
        })
    }
}

/// `data.name` and `spec_version` of a machine config, kept with their YAML types as the
/// reference's `sqlite3` binding would store them.
///
/// The configs flatmachines writes are JSON (which is YAML); other YAML is read with the
/// loader when the `loader` feature is on, else the columns stay null.
fn config_columns(raw: &str) -> (SqlValue, SqlValue) {
    fn column(v: Option<&serde_json::Value>) -> SqlValue {
        use serde_json::Value;
        match v {
            Some(Value::String(s)) => SqlValue::Text(s.clone()),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) => SqlValue::Integer(i),
                None => n.as_f64().map_or(SqlValue::Null, SqlValue::Real),
            },
            Some(Value::Bool(b)) => SqlValue::Integer(i64::from(*b)),
            _ => SqlValue::Null,
        }
    }
    let parsed = serde_json::from_str::<serde_json::Value>(raw).ok();
    #[cfg(feature = "loader")]
    let parsed = parsed.or_else(|| crate::yaml::yaml_to_json(raw));
    let Some(root) = parsed else {
        return (SqlValue::Null, SqlValue::Null);
    };
    (
        column(root.get("data").and_then(|d| d.get("name"))),
        column(root.get("spec_version")),
    )
}

#[async_trait]
impl ConfigStore for SqliteConfigStore {
    async fn put(&self, raw: &str) -> Result<String, PersistenceError> {
        let hash = config_hash(raw);
        let (machine_name, spec_version) = config_columns(raw);
        self.db
            .lock()
            .prepare_cached(
                "INSERT INTO machine_configs
                     (config_hash, machine_name, spec_version, config_raw, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(config_hash) DO NOTHING",
            )
            .and_then(|mut s| {
                s.execute(params![
                    hash,
                    machine_name,
                    spec_version,
                    raw,
                    utc_now_iso()
                ])
            })
            .map_err(|e| self.db.error("saving a config", e))?;
        Ok(hash)
    }

    /// `Err(Corrupt)` when the stored text no longer hashes to its key.
    async fn get(&self, hash: &str) -> Result<Option<String>, PersistenceError> {
        let found: Option<String> = self
            .db
            .lock()
            .prepare_cached("SELECT config_raw FROM machine_configs WHERE config_hash = ?1")
            .and_then(|mut s| s.query_row([hash], |r| r.get(0)).optional())
            .map_err(|e| self.db.error("loading a config", e))?;
        if let Some(raw) = &found
            && config_hash(raw) != hash
        {
            return Err(self.db.corrupt(
                "machine_configs",
                hash,
                "content does not match its hash".into(),
            ));
        }
        Ok(found)
    }

    async fn delete(&self, hash: &str) -> Result<(), PersistenceError> {
        self.db
            .lock()
            .execute("DELETE FROM machine_configs WHERE config_hash = ?1", [hash])
            .map_err(|e| self.db.error("deleting a config", e))?;
        Ok(())
    }
}

/// Settings of a [`SqliteLeaseLock`].
#[derive(Clone, Debug)]
pub struct LeaseOptions {
    /// Who holds the leases this lock takes; `None` (the default) makes a fresh
    /// `<hostname>:<pid>:<nonce>:<node>` identity (see [`SqliteLeaseLock`]).
    pub owner_id: Option<String>,
    /// Stored in the `phase` column; the machine uses `"machine"`.
    pub phase: String,
    /// How long a lease lasts without renewal: 300 s by default, at least 30 s.
    pub ttl: Duration,
    /// How often a held lease is renewed: 100 s by default, at least 5 s and at most half the
    /// TTL (so one late renewal does not let the lease lapse).
    pub renew_interval: Duration,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        LeaseOptions {
            owner_id: None,
            phase: "machine".to_owned(),
            ttl: Duration::from_secs(300),
            renew_interval: Duration::from_secs(100),
        }
    }
}

struct LeaseShared {
    db: Db,
    owner: String,
    phase: String,
    ttl_secs: i64,
    renew_interval: Duration,
}

/// Execution locks as renewable leases in the `execution_leases` table, for several processes
/// (or hosts sharing the file) that run machines against one database.
///
/// # Taking a lease
///
/// `acquire(key)` runs in an `IMMEDIATE` transaction. It succeeds when there is no row for
/// `key`, or the row's holder is this lock object itself (the lease is refreshed), or the row's
/// lease has expired (`lease_until` < now, Unix seconds), or the holder is a process that is
/// known to be dead. A takeover keeps `acquired_at`, replaces owner, phase and `lease_until`,
/// and increments `fencing_token`, so writes stamped with an older token can be recognised.
///
/// # Owners, and when a lease is taken over early
///
/// Each lock object holds leases as `<hostname>:<pid>:<nonce>:<node>`: `nonce` is random per
/// object (two objects in one process are different owners), and `node` identifies the kernel
/// boot and PID namespace (`/proc/sys/kernel/random/boot_id` and `/proc/self/ns/pid`). A
/// lease whose holder has the same `node` as the caller and whose `pid` no longer exists
/// (`kill(pid, 0)` fails with `ESRCH`, or the process is a zombie) is taken over at once, so a
/// run killed with SIGKILL can be resumed immediately on the same host. Holders that are alive,
/// on another host or in another container, or whose identity does not parse (leases written by
/// the Python SDK, which uses execution ids) are only taken over once `lease_until` has passed.
/// A reused PID only makes a dead holder look alive, which delays the takeover until expiry;
/// it never lets two live owners hold one lease. Where `/proc` is missing, `node` is empty and
/// only expiry applies.
///
/// # Heartbeat and release
///
/// While a lease is held, a tokio task renews it every `renew_interval` (`lease_until = now +
/// ttl`, for this owner only). If the row no longer belongs to this owner the heartbeat stops
/// with a warning; a later successful `acquire` of the key starts a new one. A failed renewal
/// (database busy) is retried at the next interval. `release(key)` stops the heartbeat and
/// deletes the row only if this owner holds it; dropping the lock releases whatever it holds.
pub struct SqliteLeaseLock {
    shared: Arc<LeaseShared>,
    heartbeats: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for SqliteLeaseLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLeaseLock")
            .field("path", &self.shared.db.path)
            .field("owner", &self.shared.owner)
            .finish()
    }
}

impl SqliteLeaseLock {
    /// The shortest lease accepted.
    pub const MIN_TTL: Duration = Duration::from_secs(30);
    /// The shortest renewal interval accepted.
    pub const MIN_RENEW_INTERVAL: Duration = Duration::from_secs(5);

    /// A lock on the database at `path` (its own connection) with the default settings: a new
    /// owner identity, phase `machine`, 300 s leases renewed every 100 s.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, PersistenceError> {
        Self::open_with(path, LeaseOptions::default())
    }

    /// A lock with explicit settings; the TTL and interval are raised to [`Self::MIN_TTL`] and
    /// [`Self::MIN_RENEW_INTERVAL`] and the interval is capped at half the TTL.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: LeaseOptions,
    ) -> Result<Self, PersistenceError> {
        let ttl = options.ttl.max(Self::MIN_TTL);
        let renew_interval = options
            .renew_interval
            .max(Self::MIN_RENEW_INTERVAL)
            .min(ttl / 2);
        let db = Db::open(path.as_ref(), &[LEASE_SCHEMA])?;
        Ok(SqliteLeaseLock {
            shared: Arc::new(LeaseShared {
                db,
                owner: options.owner_id.unwrap_or_else(new_owner_id),
                phase: options.phase,
                ttl_secs: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
                renew_interval,
            }),
            heartbeats: Mutex::new(HashMap::new()),
        })
    }

    /// The owner id written into the leases this lock takes.
    pub fn owner_id(&self) -> &str {
        &self.shared.owner
    }

    /// The absolute database path.
    pub fn path(&self) -> &Path {
        &self.shared.db.path
    }

    fn heartbeats(&self) -> MutexGuard<'_, HashMap<String, tokio::task::JoinHandle<()>>> {
        self.heartbeats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl LeaseShared {
    fn try_acquire(&self, key: &str) -> rusqlite::Result<bool> {
        let now = unix_now();
        let until = now.saturating_add(self.ttl_secs);
        let stamp = utc_now_iso();
        let mut conn = self.db.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: Option<(String, i64)> = tx
            .prepare_cached(
                "SELECT owner_id, lease_until FROM execution_leases WHERE execution_id = ?1",
            )?
            .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let granted = match current {
            None => {
                tx.prepare_cached(
                    "INSERT INTO execution_leases (execution_id, owner_id, phase, lease_until,
                         fencing_token, acquired_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5)",
                )?
                .execute(params![key, self.owner, self.phase, until, stamp])?;
                true
            }
            Some((holder, lease_until)) => {
                let free = holder == self.owner || lease_until < now || holder_is_gone(&holder);
                if free {
                    tx.prepare_cached(
                        "UPDATE execution_leases
                         SET owner_id = ?2, phase = ?3, lease_until = ?4,
                             fencing_token = fencing_token + 1, updated_at = ?5
                         WHERE execution_id = ?1",
                    )?
                    .execute(params![key, self.owner, self.phase, until, stamp])?;
                }
                free
            }
        };
        tx.commit()?;
        Ok(granted)
    }

    /// Extends this owner's lease; `false` when the row is no longer this owner's.
    fn renew(&self, key: &str) -> rusqlite::Result<bool> {
        let until = unix_now().saturating_add(self.ttl_secs);
        let changed = self
            .db
            .lock()
            .prepare_cached(
                "UPDATE execution_leases SET lease_until = ?1, updated_at = ?2
                 WHERE execution_id = ?3 AND owner_id = ?4",
            )?
            .execute(params![until, utc_now_iso(), key, self.owner])?;
        Ok(changed > 0)
    }

    fn delete(&self, key: &str) {
        let result = self.db.lock().execute(
            "DELETE FROM execution_leases WHERE execution_id = ?1 AND owner_id = ?2",
            [key, self.owner.as_str()],
        );
        if let Err(e) = result {
            tracing::warn!(
                "{}: releasing the lease on `{key}` failed: {e}",
                self.db.path.display()
            );
        }
    }
}

/// Renews `key` every interval counted from `acquired` (not from the task's first poll, which
/// may come later on a busy runtime).
async fn heartbeat(shared: Arc<LeaseShared>, key: String, acquired: tokio::time::Instant) {
    let mut ticks =
        tokio::time::interval_at(acquired + shared.renew_interval, shared.renew_interval);
    // After a stall, renew once and keep the rhythm rather than renewing in a burst.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match shared.renew(&key) {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    "lease on `{key}` is no longer held by {} (taken over or deleted); \
                     no longer renewing it",
                    shared.owner
                );
                return;
            }
            Err(e) => tracing::warn!(
                "{}: renewing the lease on `{key}` failed, retrying later: {e}",
                shared.db.path.display()
            ),
        }
    }
}

#[async_trait]
impl ExecutionLock for SqliteLeaseLock {
    /// `Ok(false)` when another owner's lease is still valid; `Err` when the database fails,
    /// or when called outside a tokio runtime (the lease could not be renewed).
    async fn acquire(&self, key: &str) -> Result<bool, PersistenceError> {
        let granted = self
            .shared
            .try_acquire(key)
            .map_err(|e| self.shared.db.error("acquiring a lease", e))?;
        if !granted {
            return Ok(false);
        }
        let mut heartbeats = self.heartbeats();
        if heartbeats.get(key).is_none_or(|h| h.is_finished()) {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                drop(heartbeats);
                self.shared.delete(key);
                return Err(PersistenceError::Database {
                    path: self.shared.db.path.clone(),
                    message: "a lease lock needs a tokio runtime to renew its leases".into(),
                });
            };
            let task = runtime.spawn(heartbeat(
                Arc::clone(&self.shared),
                key.to_owned(),
                tokio::time::Instant::now(),
            ));
            heartbeats.insert(key.to_owned(), task);
        }
        Ok(true)
    }

    async fn release(&self, key: &str) {
        if let Some(task) = self.heartbeats().remove(key) {
            task.abort();
        }
        self.shared.delete(key);
    }
}

impl Drop for SqliteLeaseLock {
    fn drop(&mut self) {
        let held: Vec<(String, tokio::task::JoinHandle<()>)> = self.heartbeats().drain().collect();
        for (key, task) in held {
            task.abort();
            self.shared.delete(&key);
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A new owner identity `<hostname>:<pid>:<nonce>:<node>` (see [`SqliteLeaseLock`]).
fn new_owner_id() -> String {
    format!(
        "{}:{}:{:016x}:{}",
        hostname(),
        std::process::id(),
        rand::random::<u64>(),
        local_node()
    )
}

/// Whether `owner` names a process on this kernel and PID namespace that no longer runs.
fn holder_is_gone(owner: &str) -> bool {
    let node = local_node();
    let mut parts = owner.split(':');
    let (Some(_host), Some(pid), Some(_nonce), Some(their_node), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    if node.is_empty() || their_node != node {
        return false;
    }
    match pid.parse::<u32>() {
        Ok(pid) if pid != std::process::id() => process_is_gone(pid),
        _ => false,
    }
}

/// `<boot id>.<pid namespace inode>`, or empty when either is unknown.
fn local_node() -> &'static str {
    static NODE: OnceLock<String> = OnceLock::new();
    NODE.get_or_init(|| {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let ns = std::fs::read_link("/proc/self/ns/pid")
            .ok()
            .and_then(|p| {
                let p = p.to_string_lossy().into_owned();
                let digits: String = p.chars().filter(char::is_ascii_digit).collect();
                (!digits.is_empty()).then_some(digits)
            })
            .unwrap_or_default();
        let clean = |s: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if boot.is_empty() || ns.is_empty() || !clean(&boot) {
            String::new()
        } else {
            format!("{boot}.{ns}")
        }
    })
}

fn hostname() -> String {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for `buf.len()` bytes; gethostname NUL-terminates within
        // it on success (the last byte stays 0 if it truncates).
        let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) } == 0;
        if ok {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            let name: String = String::from_utf8_lossy(&buf[..end])
                .chars()
                .map(|c| {
                    if c == ':' || c.is_whitespace() {
                        '_'
                    } else {
                        c
                    }
                })
                .collect();
            if !name.is_empty() {
                return name;
            }
        }
    }
    "unknown-host".to_owned()
}

#[cfg(unix)]
fn process_is_gone(pid: u32) -> bool {
    // 0 and negative values address process groups, never one process.
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists; nothing is delivered.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return is_zombie(pid);
    }
    std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

#[cfg(not(unix))]
fn process_is_gone(_pid: u32) -> bool {
    false
}

/// A zombie has exited and released everything; only its parent has not collected it yet.
#[cfg(unix)]
fn is_zombie(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The state follows the command name, which is in parentheses and may contain any
            // character, so look after the last `)`.
            let (_, rest) = stat.rsplit_once(')')?;
            rest.trim_start().chars().next()
        })
        .is_some_and(|state| state == 'Z' || state == 'X')
}

mod wal_vfs;

#[cfg(test)]
mod tests;

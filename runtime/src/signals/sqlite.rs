//! [`SqliteSignalBackend`]: signals in the reference's `signals` table
//! (`signals-and-dispatch.md` §2), so the Python SDK and this one can share a database file,
//! which may also hold the checkpoint tables (`machine_checkpoints`, …).
//!
//! Connections run the checkpoint backend's settings (`journal_mode=WAL`, `synchronous=NORMAL`,
//! `busy_timeout=10000`, the same VFS), so both backends can use one file side by side.
//!
//! # Atomic consume (a deviation from the reference)
//!
//! The reference consumes with a `SELECT` of the oldest row and then a `DELETE` by id,
//! serialised only by a lock in its own process: two processes may both return the same
//! signal. Here `consume` is one statement, `DELETE … WHERE id = (SELECT … LIMIT 1) RETURNING …`.
//! A writing statement takes SQLite's write lock before it reads (waiting up to the busy
//! timeout for another writer), so the row it picks cannot be taken by anyone else in between:
//! of any number of consumers, in this process or others, exactly one gets each signal.
//!
//! As in the checkpoint backend, statements run on the calling task on one connection behind a
//! `std::sync::Mutex` (a few microseconds of SQLite work; while another process holds the
//! write lock a call may wait up to the busy timeout).

use super::{Signal, SignalBackend};
use crate::persistence::PersistenceError;
use crate::persistence::sqlite::open_connection;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The reference's table and index, verbatim.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS signals (
    id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    data_json TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_signals_channel ON signals (channel, created_at ASC);
";

/// Ours, beside the reference's table: who claimed which signal, so a claim is exactly once and
/// a consumer that crashed after claiming gets its signal back.
const CLAIMS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS signal_claims (
    id TEXT PRIMARY KEY,
    consumer TEXT NOT NULL,
    channel TEXT NOT NULL,
    data_json TEXT NOT NULL,
    created_at TEXT NOT NULL,
    claimed_at TEXT NOT NULL
);
";

const INSERT: &str =
    "INSERT INTO signals (id, channel, data_json, created_at) VALUES (?1, ?2, ?3, ?4)";

/// Removes and returns the oldest signal of `?1` in one statement (see the module docs). Ties of
/// `created_at` (same microsecond) go by insertion order: a new row's rowid is above every
/// remaining row's.
const CONSUME: &str = "
DELETE FROM signals
WHERE id = (SELECT id FROM signals WHERE channel = ?1 ORDER BY created_at, rowid LIMIT 1)
RETURNING id, channel, data_json, created_at";

const PEEK: &str = "
SELECT id, channel, data_json, created_at FROM signals
WHERE channel = ?1 ORDER BY created_at, rowid";

/// Byte order, which is code-point order for UTF-8, as Python's `sorted` gives for `str`.
const CHANNELS: &str = "SELECT DISTINCT channel FROM signals ORDER BY channel";

/// SQLite's default WAL size (pages) past which a commit checkpoints inline. The shared
/// `connect` raises it because the checkpoint backend checkpoints in the background; signals
/// have no background checkpointer, so their connection goes back to the default.
const AUTOCHECKPOINT_PAGES: i64 = 1000;

/// Signals in a SQLite database: one row per signal in the reference's `signals` table
/// (`id`, `channel`, `data_json`, `created_at`), oldest first per channel. `consume` is atomic
/// across processes (see the module docs).
pub struct SqliteSignalBackend {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteSignalBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteSignalBackend")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteSignalBackend {
    /// Opens (creating if needed) the database at `db_path` and its `signals` table. The path is
    /// made absolute and missing parent directories are created. The file may also hold the
    /// checkpoint tables.
    pub fn open(db_path: impl AsRef<Path>) -> Result<Self, PersistenceError> {
        let (path, conn) = open_connection(db_path.as_ref(), &[SCHEMA, CLAIMS_SCHEMA])?;
        let backend = SqliteSignalBackend {
            path,
            conn: Mutex::new(conn),
        };
        backend
            .lock()
            .pragma_update(None, "wal_autocheckpoint", AUTOCHECKPOINT_PAGES)
            .map_err(|e| backend.error("setting wal_autocheckpoint", e))?;
        Ok(backend)
    }

    /// The absolute database path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // No transaction is left open across a panic (each call is one autocommit statement).
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn error(&self, what: &str, e: rusqlite::Error) -> PersistenceError {
        PersistenceError::Database {
            path: self.path.clone(),
            message: format!("{what}: {e}"),
        }
    }

    /// A signal from a row of `(id, channel, data_json, created_at)`.
    fn signal(&self, raw: RawSignal) -> Result<Signal, PersistenceError> {
        let data: Value =
            serde_json::from_str(&raw.data_json).map_err(|e| PersistenceError::Corrupt {
                location: format!("{} (signals/{})", self.path.display(), raw.id),
                message: format!("data_json is not JSON: {e}"),
            })?;
        Ok(Signal {
            id: raw.id,
            channel: raw.channel,
            data,
            created_at: raw.created_at,
        })
    }
}

/// A row as stored, before `data_json` is parsed.
struct RawSignal {
    id: String,
    channel: String,
    data_json: String,
    created_at: String,
}

impl RawSignal {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawSignal {
            id: r.get(0)?,
            channel: r.get(1)?,
            data_json: r.get(2)?,
            created_at: r.get(3)?,
        })
    }
}

#[async_trait::async_trait]
impl SignalBackend for SqliteSignalBackend {
    async fn send(&self, channel: &str, data: Value) -> Result<String, PersistenceError> {
        let id = crate::py::uuid4();
        let data_json = crate::py::json::dumps(&data);
        let created_at = crate::persistence::snapshot::utc_now_iso();
        self.lock()
            .prepare_cached(INSERT)
            .and_then(|mut s| s.execute(params![id, channel, data_json, created_at]))
            .map_err(|e| self.error("sending a signal", e))?;
        Ok(id)
    }

    async fn consume(&self, channel: &str) -> Result<Option<Signal>, PersistenceError> {
        let raw = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare_cached(CONSUME)
                .map_err(|e| self.error("consuming a signal", e))?;
            let mut rows = stmt
                .query([channel])
                .map_err(|e| self.error("consuming a signal", e))?;
            let raw = match rows.next() {
                Ok(Some(row)) => Some(
                    RawSignal::from_row(row).map_err(|e| self.error("consuming a signal", e))?,
                ),
                Ok(None) => None,
                Err(e) => return Err(self.error("consuming a signal", e)),
            };
            // Step to the end so the statement completes (and commits) before the lock is
            // released, rather than when the cached statement is next reset.
            while rows
                .next()
                .map_err(|e| self.error("consuming a signal", e))?
                .is_some()
            {}
            raw
        };
        raw.map(|r| self.signal(r)).transpose()
    }

    async fn peek(&self, channel: &str) -> Result<Vec<Signal>, PersistenceError> {
        let raws = {
            let conn = self.lock();
            conn.prepare_cached(PEEK)
                .and_then(|mut s| {
                    s.query_map([channel], RawSignal::from_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(|e| self.error("peeking at signals", e))?
        };
        raws.into_iter().map(|r| self.signal(r)).collect()
    }

    async fn claim(&self, id: &str, consumer: &str) -> Result<Option<Signal>, PersistenceError> {
        let fail = |e| self.error("claiming a signal", e);
        let raw = {
            let mut conn = self.lock();
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(fail)?;
            let earlier: Option<(String, RawSignal)> = tx
                .query_row(
                    "SELECT consumer, id, channel, data_json, created_at FROM signal_claims \
                     WHERE id = ?1",
                    [id],
                    |r| {
                        Ok((
                            r.get(0)?,
                            RawSignal {
                                id: r.get(1)?,
                                channel: r.get(2)?,
                                data_json: r.get(3)?,
                                created_at: r.get(4)?,
                            },
                        ))
                    },
                )
                .optional()
                .map_err(fail)?;
            let raw = match earlier {
                Some((by, raw)) => (by == consumer).then_some(raw),
                None => {
                    let taken = tx
                        .query_row(
                            "DELETE FROM signals WHERE id = ?1 \
                             RETURNING id, channel, data_json, created_at",
                            [id],
                            RawSignal::from_row,
                        )
                        .optional()
                        .map_err(fail)?;
                    if let Some(raw) = &taken {
                        tx.execute(
                            "INSERT INTO signal_claims \
                             (id, consumer, channel, data_json, created_at, claimed_at) \
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                            params![
                                raw.id,
                                consumer,
                                raw.channel,
                                raw.data_json,
                                raw.created_at,
                                crate::persistence::snapshot::utc_now_iso()
                            ],
                        )
                        .map_err(fail)?;
                    }
                    taken
                }
            };
            tx.commit().map_err(fail)?;
            raw
        };
        raw.map(|r| self.signal(r)).transpose()
    }

    async fn channels(&self) -> Result<Vec<String>, PersistenceError> {
        self.lock()
            .prepare_cached(CHANNELS)
            .and_then(|mut s| {
                s.query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            })
            .map_err(|e| self.error("listing signal channels", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persistence::{CheckpointBackend, SqliteBackend};
    use serde_json::json;

    fn db() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sub/dir/flatmachines.sqlite");
        (tmp, path)
    }

    /// A plain connection, as another process or the `sqlite3` tool would use.
    fn raw(path: &Path) -> Connection {
        let c = Connection::open(path).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        c
    }

    #[tokio::test]
    async fn signals_are_fifo_per_channel() {
        let (_tmp, path) = db();
        let b = SqliteSignalBackend::open(&path).unwrap();
        assert!(b.path().is_absolute());
        let mut ids = Vec::new();
        for i in 0..50 {
            ids.push(b.send("a", json!({"n": i})).await.unwrap());
            b.send("b", json!(i)).await.unwrap();
        }
        for (i, id) in ids.iter().enumerate() {
            let s = b.consume("a").await.unwrap().unwrap();
            assert_eq!(
                (&s.id, &s.channel, &s.data),
                (id, &"a".to_string(), &json!({"n": i}))
            );
        }
        assert_eq!(b.consume("a").await.unwrap(), None);
        assert_eq!(b.consume("nothing").await.unwrap(), None);
        for i in 0..50 {
            assert_eq!(b.consume("b").await.unwrap().unwrap().data, json!(i));
        }
        assert_eq!(b.consume("b").await.unwrap(), None);
    }

    #[tokio::test]
    async fn ties_of_created_at_go_by_insertion_order() {
        let (_tmp, path) = db();
        let b = SqliteSignalBackend::open(&path).unwrap();
        let c = raw(&path);
        // Inserted out of id order, all in the same microsecond.
        for id in ["c", "a", "b"] {
            c.execute(
                "INSERT INTO signals VALUES (?1, 'x', '1', '2026-01-01T00:00:00.000000+00:00')",
                [id],
            )
            .unwrap();
        }
        let peeked: Vec<_> = b
            .peek("x")
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(peeked, ["c", "a", "b"]);
        assert_eq!(b.consume("x").await.unwrap().unwrap().id, "c");
        assert_eq!(b.consume("x").await.unwrap().unwrap().id, "a");
        assert_eq!(b.consume("x").await.unwrap().unwrap().id, "b");
    }

    #[tokio::test]
    async fn peek_does_not_remove() {
        let (_tmp, path) = db();
        let b = SqliteSignalBackend::open(&path).unwrap();
        assert!(b.peek("a").await.unwrap().is_empty());
        let first = b.send("a", json!("one")).await.unwrap();
        let second = b.send("a", json!("two")).await.unwrap();
        for _ in 0..2 {
            let peeked = b.peek("a").await.unwrap();
            let ids: Vec<_> = peeked.iter().map(|s| s.id.as_str()).collect();
            assert_eq!(ids, [first.as_str(), second.as_str()]);
            assert_eq!(peeked[0].data, json!("one"));
            assert!(peeked[0].created_at <= peeked[1].created_at);
            assert!(peeked[0].created_at.ends_with("+00:00"));
        }
        assert_eq!(b.consume("a").await.unwrap().unwrap().id, first);
        assert_eq!(b.peek("a").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn channels_are_sorted_and_only_non_empty() {
        let (_tmp, path) = db();
        let b = SqliteSignalBackend::open(&path).unwrap();
        assert!(b.channels().await.unwrap().is_empty());
        for ch in ["zeta", "alpha", "Beta", "é", "alpha", "mid/sub"] {
            b.send(ch, json!(null)).await.unwrap();
        }
        assert_eq!(
            b.channels().await.unwrap(),
            ["Beta", "alpha", "mid/sub", "zeta", "é"]
        );
        b.consume("zeta").await.unwrap().unwrap();
        b.consume("alpha").await.unwrap().unwrap();
        assert_eq!(
            b.channels().await.unwrap(),
            ["Beta", "alpha", "mid/sub", "é"]
        );
        b.consume("alpha").await.unwrap().unwrap();
        assert_eq!(b.channels().await.unwrap(), ["Beta", "mid/sub", "é"]);
    }

    #[tokio::test]
    async fn any_json_value_round_trips() {
        let (_tmp, path) = db();
        let b = SqliteSignalBackend::open(&path).unwrap();
        let values = [
            json!(null),
            json!(true),
            json!(0),
            json!(-17),
            json!(u64::MAX),
            json!(1.5),
            json!(1e300),
            json!(""),
            json!("text with \"quotes\", \\ and ünïcödé 🚀"),
            json!([]),
            json!([1, "two", null, [3.25], {"k": false}]),
            json!({}),
            json!({"b": 1, "a": {"nested": [1, 2]}}),
        ];
        for v in &values {
            b.send("v", v.clone()).await.unwrap();
        }
        let peeked: Vec<_> = b
            .peek("v")
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.data)
            .collect();
        assert_eq!(peeked, values);
        for v in &values {
            assert_eq!(&b.consume("v").await.unwrap().unwrap().data, v);
        }
    }

    #[tokio::test]
    async fn data_json_is_python_json_dumps_text() {
        let (_tmp, path) = db();
        let b = SqliteSignalBackend::open(&path).unwrap();
        let id = b
            .send("c", json!({"b": [1, 2.0], "a": "é", "n": null}))
            .await
            .unwrap();
        let stored: String = raw(&path)
            .query_row("SELECT data_json FROM signals WHERE id = ?1", [&id], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(stored, r#"{"b": [1, 2.0], "a": "\u00e9", "n": null}"#);
        // Rows another SDK wrote (any spacing) are read.
        raw(&path)
            .execute(
                "INSERT INTO signals VALUES ('x', 'c', '{\"k\":[1,2]}', '9999-01-01T00:00:00.000000+00:00')",
                [],
            )
            .unwrap();
        let all = b.peek("c").await.unwrap();
        assert_eq!(all[1].data, json!({"k": [1, 2]}));
    }

    #[tokio::test]
    async fn corrupt_data_json_is_an_error_naming_the_row() {
        let (_tmp, path) = db();
        let b = SqliteSignalBackend::open(&path).unwrap();
        raw(&path)
            .execute(
                "INSERT INTO signals VALUES ('bad', 'c', 'not json', '2026-01-01T00:00:00.000000+00:00')",
                [],
            )
            .unwrap();
        let err = b.peek("c").await.unwrap_err();
        assert!(matches!(err, PersistenceError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("signals/bad"), "{err}");
    }

    #[tokio::test]
    async fn schema_matches_the_reference() {
        let (_tmp, path) = db();
        SqliteSignalBackend::open(&path).unwrap();
        // Opening again is harmless.
        SqliteSignalBackend::open(&path).unwrap();
        let c = raw(&path);
        let columns: Vec<(String, String, bool, bool)> = c
            .prepare("PRAGMA table_info(signals)")
            .unwrap()
            .query_map([], |r| {
                Ok((r.get(1)?, r.get(2)?, r.get(3)?, r.get::<_, i64>(5)? > 0))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let col = |n: &str, notnull, pk| (n.to_string(), "TEXT".to_string(), notnull, pk);
        assert_eq!(
            columns,
            [
                col("id", false, true),
                col("channel", true, false),
                col("data_json", true, false),
                col("created_at", true, false),
            ]
        );
        let (table, sql): (String, String) = c
            .query_row(
                "SELECT tbl_name, sql FROM sqlite_master WHERE type = 'index' AND name = 'idx_signals_channel'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(table, "signals");
        assert_eq!(
            sql,
            "CREATE INDEX idx_signals_channel ON signals (channel, created_at ASC)"
        );
        let index_columns: Vec<String> = c
            .prepare("PRAGMA index_info(idx_signals_channel)")
            .unwrap()
            .query_map([], |r| r.get(2))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(index_columns, ["channel", "created_at"]);
        let mode: String = c
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn consume_uses_the_channel_index() {
        let (_tmp, path) = db();
        SqliteSignalBackend::open(&path).unwrap();
        let plan: Vec<String> = raw(&path)
            .prepare(&format!("EXPLAIN QUERY PLAN {CONSUME}"))
            .unwrap()
            .query_map(["x"], |r| r.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("idx_signals_channel"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }

    #[tokio::test]
    async fn shares_a_file_with_the_checkpoint_tables() {
        let (_tmp, path) = db();
        // Checkpoints first, then signals; then the other order on a second file.
        let cp = SqliteBackend::open(&path).unwrap();
        cp.save("e1/step_000001_a.json", br#"{"execution_id": "e1"}"#)
            .await
            .unwrap();
        let sig = SqliteSignalBackend::open(&path).unwrap();
        let id = sig.send("approvals/e1", json!({"ok": true})).await.unwrap();
        cp.save("e1/step_000002_b.json", b"{}").await.unwrap();
        assert_eq!(
            cp.load("e1/step_000001_a.json").await.unwrap().unwrap(),
            br#"{"execution_id": "e1"}"#
        );
        assert_eq!(sig.peek("approvals/e1").await.unwrap()[0].id, id);
        // A second handle of each on the same file (another process would do the same).
        let cp2 = SqliteBackend::open(&path).unwrap();
        let sig2 = SqliteSignalBackend::open(&path).unwrap();
        assert!(cp2.load("e1/step_000002_b.json").await.unwrap().is_some());
        assert_eq!(sig2.consume("approvals/e1").await.unwrap().unwrap().id, id);
        assert_eq!(sig.consume("approvals/e1").await.unwrap(), None);

        let other = path.with_file_name("other.sqlite");
        let sig = SqliteSignalBackend::open(&other).unwrap();
        sig.send("c", json!(1)).await.unwrap();
        let cp = SqliteBackend::open(&other).unwrap();
        cp.save("e2/step_000001_a.json", b"{}").await.unwrap();
        assert!(cp.load("e2/step_000001_a.json").await.unwrap().is_some());
        assert_eq!(sig.consume("c").await.unwrap().unwrap().data, json!(1));

        let tables: Vec<String> = raw(&path)
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        for t in ["machine_checkpoints", "machine_latest", "signals"] {
            assert!(tables.iter().any(|n| n == t), "{tables:?}");
        }
    }

    #[tokio::test]
    async fn concurrent_consumers_in_one_process_never_share_a_signal() {
        let (_tmp, path) = db();
        let b = SqliteSignalBackend::open(&path).unwrap();
        let mut sent = std::collections::BTreeSet::new();
        for i in 0..200 {
            sent.insert(b.send("q", json!(i)).await.unwrap());
        }
        let mut threads = Vec::new();
        for _ in 0..4 {
            // Separate connections, each on its own thread.
            let b = SqliteSignalBackend::open(&path).unwrap();
            threads.push(std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                let mut got = Vec::new();
                while let Some(s) = rt.block_on(b.consume("q")).unwrap() {
                    got.push(s.id);
                }
                got
            }));
        }
        let mut all = Vec::new();
        for t in threads {
            all.extend(t.join().unwrap());
        }
        assert_eq!(all.len(), sent.len());
        assert_eq!(
            all.into_iter().collect::<std::collections::BTreeSet<_>>(),
            sent
        );
        assert!(b.channels().await.unwrap().is_empty());
    }
}

use super::*;

use crate::persistence::contract_tests::{self, filter, snapshot};

fn db() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("sub/dir/flatmachines.sqlite");
    (tmp, path)
}

/// A plain connection, as another process or a person with the `sqlite3` tool would use.
fn raw(path: &Path) -> Connection {
    let c = Connection::open(path).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

/// `(name, type, notnull, pk)` of every column.
fn columns(conn: &Connection, table: &str) -> Vec<(String, String, bool, bool)> {
    conn.prepare(&format!("PRAGMA table_info({table})"))
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(1)?, r.get(2)?, r.get(3)?, r.get::<_, i64>(5)? > 0))
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn col(name: &str, ty: &str, notnull: bool, pk: bool) -> (String, String, bool, bool) {
    (name.into(), ty.into(), notnull, pk)
}

fn index_sql(conn: &Connection, name: &str) -> String {
    conn.query_row(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?1",
        [name],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test]
async fn schema_matches_the_reference() {
    let (_tmp, path) = db();
    let b = SqliteBackend::open(&path).unwrap();
    let _lock = SqliteLeaseLock::open(&path).unwrap();
    assert!(b.path().is_absolute());
    let c = raw(&path);
    assert_eq!(
        columns(&c, "machine_checkpoints"),
        [
            col("checkpoint_key", "TEXT", false, true),
            col("execution_id", "TEXT", true, false),
            col("machine_name", "TEXT", false, false),
            col("event", "TEXT", false, false),
            col("current_state", "TEXT", false, false),
            col("waiting_channel", "TEXT", false, false),
            col("snapshot_json", "BLOB", true, false),
            col("created_at", "TEXT", true, false),
        ]
    );
    assert_eq!(
        columns(&c, "machine_latest"),
        [
            col("execution_id", "TEXT", false, true),
            col("latest_key", "TEXT", true, false),
            col("updated_at", "TEXT", true, false),
        ]
    );
    assert_eq!(
        columns(&c, "machine_configs"),
        [
            col("config_hash", "TEXT", false, true),
            col("machine_name", "TEXT", false, false),
            col("spec_version", "TEXT", false, false),
            col("config_raw", "TEXT", true, false),
            col("created_at", "TEXT", true, false),
        ]
    );
    assert_eq!(
        columns(&c, "execution_leases"),
        [
            col("execution_id", "TEXT", false, true),
            col("owner_id", "TEXT", true, false),
            col("phase", "TEXT", true, false),
            col("lease_until", "INTEGER", true, false),
            col("fencing_token", "INTEGER", true, false),
            col("acquired_at", "TEXT", true, false),
            col("updated_at", "TEXT", true, false),
        ]
    );
    let fencing_default: String = c
        .query_row(
            "SELECT dflt_value FROM pragma_table_info('execution_leases') WHERE name = 'fencing_token'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(fencing_default, "1");
    let squash = |s: String| s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(
        squash(index_sql(&c, "idx_mc_execution_created")),
        // Ascending, unlike the reference's `created_at DESC` (docs/compatibility.md).
        "CREATE INDEX idx_mc_execution_created ON machine_checkpoints(execution_id, created_at)"
    );
    // Newest-first reads, what the reference has the index for, still use it (backwards).
    let plan: Vec<String> = c
        .prepare(
            "EXPLAIN QUERY PLAN SELECT checkpoint_key FROM machine_checkpoints
             WHERE execution_id = 'e' ORDER BY created_at DESC",
        )
        .unwrap()
        .query_map([], |r| r.get(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        plan.iter().any(|p| p.contains("idx_mc_execution_created"))
            && !plan.iter().any(|p| p.contains("TEMP B-TREE")),
        "{plan:?}"
    );
    assert_eq!(
        squash(index_sql(&c, "idx_mc_waiting_channel")),
        "CREATE INDEX idx_mc_waiting_channel ON machine_checkpoints(waiting_channel) WHERE waiting_channel IS NOT NULL"
    );
    // Who waits on a channel is found through that index, not a scan of the executions.
    let plan: Vec<String> = c
        .prepare(
            "EXPLAIN QUERY PLAN SELECT mc.execution_id
             FROM machine_checkpoints mc
             JOIN machine_latest ml
               ON ml.execution_id = mc.execution_id AND ml.latest_key = mc.checkpoint_key
             WHERE mc.waiting_channel = 'c'
             ORDER BY mc.execution_id",
        )
        .unwrap()
        .query_map([], |r| r.get(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        plan.iter().any(|p| p.contains("idx_mc_waiting_channel"))
            && !plan.iter().any(|p| p.starts_with("SCAN")),
        "{plan:?}"
    );
    assert_eq!(
        squash(index_sql(&c, "idx_execution_leases_until")),
        "CREATE INDEX idx_execution_leases_until ON execution_leases(lease_until)"
    );
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let sync: i64 =
        b.db.lock()
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
    assert_eq!(sync, 1, "synchronous=NORMAL");
    let busy: i64 =
        b.db.lock()
            .query_row("PRAGMA busy_timeout", [], |r| r.get(0))
            .unwrap();
    assert_eq!(busy, 10_000);
}

#[tokio::test]
async fn old_tables_gain_waiting_channel() {
    let (_tmp, path) = db();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let c = raw(&path);
    c.execute_batch(
        "CREATE TABLE machine_checkpoints (
             checkpoint_key TEXT PRIMARY KEY, execution_id TEXT NOT NULL, machine_name TEXT,
             event TEXT, current_state TEXT, snapshot_json BLOB NOT NULL, created_at TEXT NOT NULL);
         INSERT INTO machine_checkpoints VALUES
             ('old/step_000001_waiting.json', 'old', 'm', 'waiting', 's', CAST('{}' AS BLOB), 't');",
    )
    .unwrap();
    let b = SqliteBackend::open(&path).unwrap();
    assert!(
        columns(&c, "machine_checkpoints")
            .iter()
            .any(|(name, ..)| name == "waiting_channel")
    );
    index_sql(&c, "idx_mc_waiting_channel");
    assert_eq!(
        b.load("old/step_000001_waiting.json")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"{}"[..])
    );
    b.save_checkpoint(
        "new",
        "new/step_000001_waiting.json",
        &snapshot("waiting", Some("c")),
    )
    .await
    .unwrap();
    assert_eq!(
        b.list_execution_ids(&filter(None, Some("c")))
            .await
            .unwrap(),
        ["new"]
    );
    // Opening again finds the column and changes nothing.
    drop(b);
    SqliteBackend::open(&path).unwrap();
}

#[tokio::test]
async fn reads_databases_written_by_the_other_sdks() {
    let (_tmp, path) = db();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let c = raw(&path);
    // The reference's own DDL and rows as Python's sqlite3 (BLOB) and the JavaScript SDK
    // (TEXT) write them.
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS machine_checkpoints (
             checkpoint_key TEXT PRIMARY KEY, execution_id TEXT NOT NULL, machine_name TEXT,
             event TEXT, current_state TEXT, waiting_channel TEXT, snapshot_json BLOB NOT NULL,
             created_at TEXT NOT NULL);
         CREATE INDEX IF NOT EXISTS idx_mc_execution_created
             ON machine_checkpoints(execution_id, created_at DESC);
         CREATE INDEX IF NOT EXISTS idx_mc_waiting_channel
             ON machine_checkpoints(waiting_channel) WHERE waiting_channel IS NOT NULL;
         CREATE TABLE IF NOT EXISTS machine_latest (
             execution_id TEXT PRIMARY KEY, latest_key TEXT NOT NULL, updated_at TEXT NOT NULL);",
    )
    .unwrap();
    let py = br#"{"execution_id": "py", "event": "waiting", "waiting_channel": "ch", "total_cost": NaN}"#;
    c.execute(
        "INSERT INTO machine_checkpoints VALUES ('py/step_000002_waiting.json', 'py', 'm',
             'waiting', 's', 'ch', ?1, '2026-01-05T09:30:12.123456+00:00')",
        [&py[..]],
    )
    .unwrap();
    c.execute_batch(
        r#"INSERT INTO machine_checkpoints VALUES ('js/step_000001_machine_end.json', 'js', 'm',
               'machine_end', 'end', NULL, '{"event": "machine_end"}', '2026-01-05T09:30:12Z');
           INSERT INTO machine_latest VALUES ('py', 'py/step_000002_waiting.json', 't'),
                                             ('js', 'js/step_000001_machine_end.json', 't');"#,
    )
    .unwrap();

    let b = SqliteBackend::open(&path).unwrap();
    assert_eq!(
        b.load("py/latest").await.unwrap().as_deref(),
        Some(&b"py/step_000002_waiting.json"[..])
    );
    assert_eq!(
        b.load("py/step_000002_waiting.json")
            .await
            .unwrap()
            .as_deref(),
        Some(&py[..])
    );
    assert_eq!(
        b.load("js/step_000001_machine_end.json")
            .await
            .unwrap()
            .as_deref(),
        Some(&br#"{"event": "machine_end"}"#[..])
    );
    assert_eq!(
        b.list_execution_ids(&filter(None, None)).await.unwrap(),
        ["js", "py"]
    );
    assert_eq!(
        b.list_execution_ids(&filter(Some("waiting"), Some("ch")))
            .await
            .unwrap(),
        ["py"]
    );

    // The reference's descending index is kept as it is, and keeps serving newest-first reads.
    assert!(
        index_sql(&c, "idx_mc_execution_created").contains("created_at DESC"),
        "{}",
        index_sql(&c, "idx_mc_execution_created")
    );

    // And the other way: the reference's filtered query over rows we wrote.
    b.save_checkpoint(
        "rs",
        "rs/step_000001_waiting.json",
        &snapshot("waiting", Some("ch")),
    )
    .await
    .unwrap();
    let ids: Vec<String> = c
        .prepare(
            "SELECT ml.execution_id FROM machine_latest ml
             JOIN machine_checkpoints mc ON mc.checkpoint_key = ml.latest_key
             WHERE mc.waiting_channel = ? ORDER BY ml.execution_id",
        )
        .unwrap()
        .query_map(["ch"], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(ids, ["py", "rs"]);
    let kind: String = c
        .query_row(
            "SELECT typeof(snapshot_json) FROM machine_checkpoints WHERE execution_id = 'rs'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kind, "blob");
}

#[tokio::test]
async fn save_load_delete_and_columns() {
    let (_tmp, path) = db();
    let b = SqliteBackend::open(&path).unwrap();
    let c = raw(&path);
    let key = "e/step_000001_waiting.json";
    b.save(key, &snapshot("waiting", Some("ch/1")))
        .await
        .unwrap();
    // The pointer is stored trimmed, as the reference does.
    b.save("e/latest", format!("{key}\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        b.load("e/latest").await.unwrap().as_deref(),
        Some(key.as_bytes())
    );
    assert_eq!(
        b.load(key).await.unwrap(),
        Some(snapshot("waiting", Some("ch/1")))
    );
    assert_eq!(b.load("e/step_000009_x.json").await.unwrap(), None);
    assert_eq!(b.load("nobody/latest").await.unwrap(), None);

    let row = |k: &str| -> (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ) {
        c.query_row(
            "SELECT execution_id, machine_name, event, current_state, waiting_channel
             FROM machine_checkpoints WHERE checkpoint_key = ?1",
            [k],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap()
    };
    assert_eq!(
        row(key),
        (
            "e".into(),
            Some("m".into()),
            Some("waiting".into()),
            Some("s".into()),
            Some("ch/1".into())
        )
    );
    // Re-saving replaces every column; bytes that are not a snapshot leave them empty.
    b.save(key, b"not json").await.unwrap();
    assert_eq!(row(key), ("e".into(), None, None, None, None));
    b.save("e/notes.txt", b"\xff\x00binary").await.unwrap();
    assert_eq!(
        b.load("e/notes.txt").await.unwrap().as_deref(),
        Some(&b"\xff\x00binary"[..])
    );
    let nan = br#"{"event": "execute", "machine_name": "m", "context": {"x": NaN}}"#;
    b.save(key, nan).await.unwrap();
    assert_eq!(row(key).2.as_deref(), Some("execute"));

    // Deleting the snapshot the pointer names removes the pointer too.
    b.delete(key).await.unwrap();
    assert_eq!(b.load(key).await.unwrap(), None);
    assert_eq!(b.load("e/latest").await.unwrap(), None);
    b.delete(key).await.unwrap();
    // Deleting another snapshot leaves the pointer; deleting the pointer leaves snapshots.
    b.save_checkpoint("e", "e/step_000002_a.json", b"{}")
        .await
        .unwrap();
    b.save("e/step_000001_a.json", b"{}").await.unwrap();
    b.delete("e/step_000001_a.json").await.unwrap();
    assert!(b.load("e/latest").await.unwrap().is_some());
    b.delete("e/latest").await.unwrap();
    assert_eq!(b.load("e/latest").await.unwrap(), None);
    assert!(b.load("e/step_000002_a.json").await.unwrap().is_some());
}

#[tokio::test]
async fn save_checkpoint_commits_snapshot_and_pointer_together() {
    let (_tmp, path) = db();
    let b = SqliteBackend::open(&path).unwrap();
    b.save_checkpoint("e", "e/step_000001_state_enter.json", b"{}")
        .await
        .unwrap();
    // Make the pointer write fail: the snapshot written just before must be rolled back.
    raw(&path)
        .execute_batch(
            "CREATE TRIGGER no_pointer BEFORE UPDATE ON machine_latest
             BEGIN SELECT RAISE(ABORT, 'pointer refused'); END;",
        )
        .unwrap();
    let err = b
        .save_checkpoint("e", "e/step_000002_execute.json", b"{}")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("pointer refused"), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(b.load("e/step_000002_execute.json").await.unwrap(), None);
    assert_eq!(
        b.load("e/latest").await.unwrap().as_deref(),
        Some(&b"e/step_000001_state_enter.json"[..])
    );
    // The connection is usable afterwards.
    b.save("e/step_000003_x.json", b"{}").await.unwrap();
}

#[tokio::test]
async fn save_checkpoints_commits_the_whole_batch_or_nothing() {
    let (_tmp, path) = db();
    let b = SqliteBackend::open(&path).unwrap();
    let batch = |step: u32| {
        ["state_exit", "state_enter", "execute"].map(|event| {
            (
                format!("e/step_{step:06}_{event}.json"),
                snapshot(event, None),
            )
        })
    };
    let first = batch(1);
    let refs: Vec<BatchEntry<'_>> = first.iter().map(|(k, s)| BatchEntry::new(k, s)).collect();
    b.save_checkpoints("e", &refs).await.unwrap();
    for (key, bytes) in &first {
        assert_eq!(b.load(key).await.unwrap().as_ref(), Some(bytes));
    }
    assert_eq!(
        b.load("e/latest").await.unwrap().as_deref(),
        Some(&b"e/step_000001_execute.json"[..])
    );
    let events: Vec<String> = raw(&path)
        .prepare("SELECT event FROM machine_checkpoints ORDER BY rowid")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(events, ["state_exit", "state_enter", "execute"]);
    // The last row of the next batch is refused: none of it may stay.
    raw(&path)
        .execute_batch(
            "CREATE TRIGGER no_execute BEFORE INSERT ON machine_checkpoints
             WHEN NEW.event = 'execute' AND NEW.checkpoint_key LIKE '%000002%'
             BEGIN SELECT RAISE(ABORT, 'execute refused'); END;",
        )
        .unwrap();
    let second = batch(2);
    let refs: Vec<BatchEntry<'_>> = second.iter().map(|(k, s)| BatchEntry::new(k, s)).collect();
    let err = b.save_checkpoints("e", &refs).await.unwrap_err();
    assert!(err.to_string().contains("execute refused"), "{err}");
    for (key, _) in &second {
        assert_eq!(b.load(key).await.unwrap(), None, "{key}");
    }
    assert_eq!(
        b.load("e/latest").await.unwrap().as_deref(),
        Some(&b"e/step_000001_execute.json"[..])
    );
    // The transaction was rolled back, so the connection takes new writes.
    b.save_checkpoints("e", &refs[..2]).await.unwrap();
    assert_eq!(
        b.load("e/latest").await.unwrap().as_deref(),
        Some(&b"e/step_000002_state_enter.json"[..])
    );
    b.save_checkpoints("e", &[]).await.unwrap();
    assert!(
        b.save_checkpoints("e", &[BatchEntry::new("../x", b"{}")])
            .await
            .is_err()
    );
}

#[tokio::test]
async fn batch_columns_come_from_the_given_fields_else_from_the_bytes() {
    let (_tmp, path) = db();
    let b = SqliteBackend::open(&path).unwrap();
    let parsed = snapshot("waiting", Some("ch"));
    // Bytes without the fields show which source each row's columns came from (a real caller
    // must pass the fields the bytes hold).
    let fields = SnapshotFields {
        machine_name: "given",
        event: Some("execute"),
        current_state: "s",
        waiting_channel: None,
    };
    b.save_checkpoints(
        "e",
        &[
            BatchEntry::with_fields("e/step_000001_execute.json", b"{}", fields),
            BatchEntry::new("e/step_000002_waiting.json", &parsed),
        ],
    )
    .await
    .unwrap();
    type Row = (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = raw(&path)
        .prepare(
            "SELECT checkpoint_key, machine_name, event, current_state, waiting_channel
                 FROM machine_checkpoints ORDER BY checkpoint_key",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let some = |s: &str| Some(s.to_string());
    assert_eq!(
        rows,
        [
            (
                "e/step_000001_execute.json".to_string(),
                some("given"),
                some("execute"),
                some("s"),
                None
            ),
            (
                "e/step_000002_waiting.json".to_string(),
                some("m"),
                some("waiting"),
                some("s"),
                some("ch")
            ),
        ]
    );
}

#[tokio::test]
async fn wal_checkpoints_run_in_the_background() {
    let (_tmp, path) = db();
    let b = SqliteBackend::open(&path).unwrap();
    let empty = std::fs::metadata(&path).unwrap().len();
    let snapshot = vec![b' '; 1024];
    for i in 0..2 * CHECKPOINT_EVERY {
        let key = format!("e/step_{i:06}_execute.json");
        b.save_checkpoint("e", &key, &snapshot).await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while b.db.checkpointer.done.load(Ordering::Relaxed) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no background checkpoint ran"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The rows reached the database file itself; far below the 10,000-page inline threshold,
    // nothing but the background checkpoint copies them there.
    let grown = std::fs::metadata(&path).unwrap().len();
    assert!(grown > empty + 100 * 1024, "{empty} -> {grown}");
    assert_eq!(
        b.load("e/latest").await.unwrap().as_deref(),
        Some(format!("e/step_{:06}_execute.json", 2 * CHECKPOINT_EVERY - 1).as_bytes())
    );
}

#[tokio::test]
async fn list_filters_use_the_latest_snapshot() {
    let (_tmp, path) = db();
    let b = SqliteBackend::open(&path).unwrap();
    contract_tests::list_filters_use_the_latest_snapshot(&b).await;
}

#[tokio::test]
async fn delete_execution_and_invalid_keys() {
    let (_tmp, path) = db();
    let b = SqliteBackend::open(&path).unwrap();
    b.save_checkpoint("a", "a/step_000001_x.json", b"{}")
        .await
        .unwrap();
    b.save_checkpoint("ab", "ab/step_000001_x.json", b"{}")
        .await
        .unwrap();
    b.delete_execution("a").await.unwrap();
    b.delete_execution("a").await.unwrap();
    assert_eq!(b.load("a/latest").await.unwrap(), None);
    assert_eq!(b.load("a/step_000001_x.json").await.unwrap(), None);
    assert_eq!(
        b.list_execution_ids(&filter(None, None)).await.unwrap(),
        ["ab"]
    );

    contract_tests::invalid_keys_are_refused(&b).await;
    // A pointer naming an invalid key, or not text at all, is refused.
    assert!(matches!(
        b.save("a/latest", b"../../x").await,
        Err(PersistenceError::InvalidKey(_))
    ));
    assert!(matches!(
        b.save("a/latest", b"\xff").await,
        Err(PersistenceError::InvalidKey(_))
    ));
}

#[tokio::test]
async fn corrupt_rows_name_the_database_and_key() {
    let (_tmp, path) = db();
    let b = SqliteBackend::open(&path).unwrap();
    let key = "e/step_000001_execute.json";
    b.save_checkpoint("e", key, b"{}").await.unwrap();
    raw(&path)
        .execute(
            "UPDATE machine_checkpoints SET snapshot_json = CAST('{\"event\": \"exe' AS BLOB)",
            [],
        )
        .unwrap();
    match b.load(key).await {
        Err(PersistenceError::Corrupt { location, .. }) => {
            assert!(location.contains(&path.display().to_string()), "{location}");
            assert!(
                location.contains(&format!("machine_checkpoints/{key}")),
                "{location}"
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // A file that is not a database at all.
    let junk = path.with_file_name("junk.sqlite");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    match SqliteBackend::open(&junk) {
        Err(PersistenceError::Database { path, .. }) => assert_eq!(path, junk),
        other => panic!("expected Database, got {other:?}"),
    }
}

#[tokio::test]
async fn config_store_on_the_backend_connection() {
    let (_tmp, path) = db();
    let b = SqliteBackend::open(&path).unwrap();
    let store = b.config_store().expect("sqlite has a config store");
    let yaml = "spec: flatmachine\nspec_version: 2.6.0\ndata:\n  name: review\n  states: {}\n";
    let h = store.put(yaml).await.unwrap();
    assert_eq!(h, config_hash(yaml));
    assert_eq!(store.put(yaml).await.unwrap(), h);
    assert_eq!(store.get(&h).await.unwrap().as_deref(), Some(yaml));
    let json_text = r#"{"spec": "flatmachine", "spec_version": "2.6.0", "data": {"name": "j"}}"#;
    let hj = store.put(json_text).await.unwrap();
    let hbad = store.put("{ not: [valid").await.unwrap();
    let hnum = store.put("spec_version: 2.5\ndata: 3\n").await.unwrap();

    let c = raw(&path);
    let cols = |h: &str| -> (Option<String>, rusqlite::types::Value) {
        c.query_row(
            "SELECT machine_name, spec_version FROM machine_configs WHERE config_hash = ?1",
            [h],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    assert_eq!(
        cols(&h),
        (Some("review".into()), SqlValue::Text("2.6.0".into()))
    );
    assert_eq!(
        cols(&hj),
        (Some("j".into()), SqlValue::Text("2.6.0".into()))
    );
    assert_eq!(cols(&hbad), (None, SqlValue::Null));
    // An unquoted version is a YAML float; the TEXT column turns it into text, as it does for
    // the reference.
    assert_eq!(cols(&hnum), (None, SqlValue::Text("2.5".into())));

    // Insert-or-ignore: a second put keeps the first row's created_at.
    let created = |h: &str| -> String {
        c.query_row(
            "SELECT created_at FROM machine_configs WHERE config_hash = ?1",
            [h],
            |r| r.get(0),
        )
        .unwrap()
    };
    let first = created(&h);
    std::thread::sleep(Duration::from_millis(5));
    store.put(yaml).await.unwrap();
    assert_eq!(created(&h), first);

    // A store opened separately on the same file sees the same rows.
    let other = SqliteConfigStore::open(&path).unwrap();
    assert_eq!(other.get(&h).await.unwrap().as_deref(), Some(yaml));
    c.execute(
        "UPDATE machine_configs SET config_raw = 'tampered' WHERE config_hash = ?1",
        [&h],
    )
    .unwrap();
    assert!(matches!(
        other.get(&h).await,
        Err(PersistenceError::Corrupt { .. })
    ));
    other.delete(&h).await.unwrap();
    other.delete(&h).await.unwrap();
    assert_eq!(store.get(&h).await.unwrap(), None);
    assert_eq!(store.get("nope").await.unwrap(), None);
}

#[test]
fn db_path_resolution() {
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(
        resolve_db_path_from(Some("/data/x.sqlite"), Some("/env.sqlite")).unwrap(),
        PathBuf::from("/data/x.sqlite")
    );
    assert_eq!(
        resolve_db_path_from(Some(""), Some("/env.sqlite")).unwrap(),
        PathBuf::from("/env.sqlite")
    );
    assert_eq!(
        resolve_db_path_from(None, Some("rel/e.sqlite")).unwrap(),
        cwd.join("rel/e.sqlite")
    );
    assert_eq!(
        resolve_db_path_from(Some(""), Some("")).unwrap(),
        cwd.join("flatmachines.sqlite")
    );
    assert_eq!(
        resolve_db_path_from(None, None).unwrap(),
        cwd.join(DEFAULT_DB_PATH)
    );
}

// ---- lease lock ----

fn lease(c: &Connection, key: &str) -> Option<(String, i64, i64, String)> {
    c.query_row(
        "SELECT owner_id, lease_until, fencing_token, acquired_at FROM execution_leases
         WHERE execution_id = ?1",
        [key],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )
    .optional()
    .unwrap()
}

/// Puts a lease for `owner` straight into the table, as a process that then died would have.
fn plant_lease(c: &Connection, key: &str, owner: &str, lease_until: i64) {
    c.execute(
        "INSERT INTO execution_leases VALUES (?1, ?2, 'machine', ?3, 1, 'then', 'then')",
        params![key, owner, lease_until],
    )
    .unwrap();
}

fn owner_for_pid(pid: u32, node: &str) -> String {
    format!("{}:{pid}:00000000000000ab:{node}", hostname())
}

#[tokio::test]
async fn lease_acquire_release_and_ownership() {
    let (_tmp, path) = db();
    let a = SqliteLeaseLock::open(&path).unwrap();
    let b = SqliteLeaseLock::open(&path).unwrap();
    let c = raw(&path);
    assert_ne!(a.owner_id(), b.owner_id());
    assert!(
        a.owner_id()
            .starts_with(&format!("{}:{}:", hostname(), std::process::id()))
    );

    let before = unix_now();
    assert!(a.acquire("k").await.unwrap());
    let (owner, until, token, acquired_at) = lease(&c, "k").unwrap();
    assert_eq!(owner, a.owner_id());
    assert!(until >= before + 300 && until <= unix_now() + 300);
    assert_eq!(token, 1);
    // Another owner in this very process is refused: it is alive.
    assert!(!b.acquire("k").await.unwrap());
    // The same owner may take it again (the reference's semantics); the token moves on.
    assert!(a.acquire("k").await.unwrap());
    let (_, _, token, acquired_again) = lease(&c, "k").unwrap();
    assert_eq!((token, acquired_again), (2, acquired_at));
    assert_eq!(a.heartbeats().len(), 1);

    // Releasing someone else's lease deletes nothing.
    b.release("k").await;
    assert_eq!(lease(&c, "k").unwrap().0, a.owner_id());
    a.release("k").await;
    assert_eq!(lease(&c, "k"), None);
    assert!(a.heartbeats().is_empty());
    a.release("k").await;
    assert!(b.acquire("k").await.unwrap());
    // Dropping a lock releases what it holds.
    drop(b);
    assert_eq!(lease(&c, "k"), None);
    assert!(a.acquire("k").await.unwrap());
}

#[test]
fn lease_race_has_exactly_one_winner() {
    let (_tmp, path) = db();
    let locks: Vec<SqliteLeaseLock> = (0..3)
        .map(|_| SqliteLeaseLock::open(&path).unwrap())
        .collect();
    let keys: Vec<String> = (0..25).map(|i| format!("race-{i}")).collect();
    let barrier = std::sync::Barrier::new(locks.len());
    let wins: Vec<Vec<bool>> = std::thread::scope(|s| {
        let handles: Vec<_> = locks
            .iter()
            .map(|lock| {
                let (keys, barrier) = (&keys, &barrier);
                s.spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .unwrap();
                    keys.iter()
                        .map(|k| {
                            barrier.wait();
                            rt.block_on(lock.acquire(k)).unwrap()
                        })
                        .collect::<Vec<bool>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let c = raw(&path);
    for (i, key) in keys.iter().enumerate() {
        let winners: Vec<usize> = (0..locks.len()).filter(|&l| wins[l][i]).collect();
        assert_eq!(winners.len(), 1, "{key}: {wins:?}");
        assert_eq!(lease(&c, key).unwrap().0, locks[winners[0]].owner_id());
    }
}

#[tokio::test]
async fn expired_lease_is_taken_over_with_the_next_fencing_token() {
    let (_tmp, path) = db();
    let a = SqliteLeaseLock::open(&path).unwrap();
    let b = SqliteLeaseLock::open_with(
        &path,
        LeaseOptions {
            phase: "resume".into(),
            ..LeaseOptions::default()
        },
    )
    .unwrap();
    let c = raw(&path);
    assert!(a.acquire("k").await.unwrap());
    let acquired_at = lease(&c, "k").unwrap().3;
    assert!(!b.acquire("k").await.unwrap());
    // Still valid in the very second it ends (`lease_until < now` is the rule).
    c.execute(
        "UPDATE execution_leases SET lease_until = ?1",
        [unix_now() + 1],
    )
    .unwrap();
    assert!(!b.acquire("k").await.unwrap());
    c.execute(
        "UPDATE execution_leases SET lease_until = ?1",
        [unix_now() - 1],
    )
    .unwrap();
    assert!(b.acquire("k").await.unwrap());
    let (owner, until, token, acquired_again) = lease(&c, "k").unwrap();
    assert_eq!(owner, b.owner_id());
    assert!(until >= unix_now() + 299);
    assert_eq!(token, 2);
    assert_eq!(acquired_again, acquired_at);
    let phase: String = c
        .query_row("SELECT phase FROM execution_leases", [], |r| r.get(0))
        .unwrap();
    assert_eq!(phase, "resume");
    // The old owner cannot take it back, and releasing does not delete the new owner's row.
    assert!(!a.acquire("k").await.unwrap());
    a.release("k").await;
    assert_eq!(lease(&c, "k").unwrap().0, b.owner_id());
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn dead_owner_on_this_host_is_taken_over_at_once() {
    let (_tmp, path) = db();
    let me = SqliteLeaseLock::open(&path).unwrap();
    let c = raw(&path);
    let node = local_node();
    assert!(
        !node.is_empty(),
        "/proc gives a boot id and a pid namespace"
    );
    let far = unix_now() + 3600;

    // A live process on this host: refused.
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let pid = child.id();
    plant_lease(&c, "run", &owner_for_pid(pid, node), far);
    assert!(!me.acquire("run").await.unwrap());

    // The same process after SIGKILL: taken over immediately, with the next token.
    child.kill().unwrap();
    // SIGKILL is delivered asynchronously: wait until the kernel shows the zombie.
    let stat = format!("/proc/{pid}/stat");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string(&stat)
        .unwrap_or_default()
        .rsplit(')')
        .next()
        .is_some_and(|rest| rest.trim_start().starts_with('Z'))
    {
        assert!(std::time::Instant::now() < deadline, "pid {pid} never died");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // Not reaped yet, a zombie, already counts as dead.
    plant_lease(&c, "zombie", &owner_for_pid(pid, node), far);
    assert!(me.acquire("zombie").await.unwrap());
    child.wait().unwrap();
    assert!(me.acquire("run").await.unwrap());
    let (owner, _, token, _) = lease(&c, "run").unwrap();
    assert_eq!((owner.as_str(), token), (me.owner_id(), 2));

    // A dead pid from another host or container, or an identity that does not parse (the
    // Python SDK's execution ids): only expiry frees them.
    for (key, owner) in [
        ("other-node", owner_for_pid(pid, "another-boot.4026531836")),
        ("no-node", owner_for_pid(pid, "")),
        ("python", "3f0c9c1e-5d2b-4b8e-9a57-5d4f0f3e21aa".to_owned()),
        ("garbage-pid", format!("{}:notapid:ab:{node}", hostname())),
        ("group-pid", owner_for_pid(0, node)),
    ] {
        plant_lease(&c, key, &owner, far);
        assert!(!me.acquire(key).await.unwrap(), "{key}");
        c.execute(
            "UPDATE execution_leases SET lease_until = ?1 WHERE execution_id = ?2",
            params![unix_now() - 1, key],
        )
        .unwrap();
        assert!(me.acquire(key).await.unwrap(), "{key}");
    }
}

#[tokio::test(start_paused = true)]
async fn heartbeat_extends_the_lease() {
    let (_tmp, path) = db();
    let lock = SqliteLeaseLock::open(&path).unwrap();
    let c = raw(&path);
    assert!(lock.acquire("k").await.unwrap());
    // Pretend the lease is about to run out; only a renewal can move it.
    c.execute("UPDATE execution_leases SET lease_until = 5", [])
        .unwrap();
    tokio::time::advance(Duration::from_secs(99)).await;
    settle().await;
    assert_eq!(
        lease(&c, "k").unwrap().1,
        5,
        "no renewal before the interval"
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    settle().await;
    let (_, until, token, _) = lease(&c, "k").unwrap();
    assert!(
        until >= unix_now() + 299,
        "renewed to now + ttl, got {until}"
    );
    assert_eq!(token, 1, "renewals keep the fencing token");
    // And again at the next interval.
    c.execute("UPDATE execution_leases SET lease_until = 5", [])
        .unwrap();
    tokio::time::advance(Duration::from_secs(100)).await;
    settle().await;
    assert!(lease(&c, "k").unwrap().1 >= unix_now() + 299);
    // After release nothing renews (or re-creates) the row.
    lock.release("k").await;
    tokio::time::advance(Duration::from_secs(300)).await;
    settle().await;
    assert_eq!(lease(&c, "k"), None);
}

#[tokio::test(start_paused = true)]
async fn lost_lease_stops_the_heartbeat_and_a_reacquire_restarts_it() {
    let (_tmp, path) = db();
    let lock = SqliteLeaseLock::open(&path).unwrap();
    let c = raw(&path);
    assert!(lock.acquire("k").await.unwrap());
    // Someone else takes the lease over.
    let far = unix_now() + 3600;
    c.execute(
        "UPDATE execution_leases SET owner_id = 'intruder', lease_until = ?1",
        [far],
    )
    .unwrap();
    tokio::time::advance(Duration::from_secs(101)).await;
    settle().await;
    assert!(lock.heartbeats()["k"].is_finished());
    assert_eq!(
        lease(&c, "k").unwrap().1,
        far,
        "the intruder's lease is not touched"
    );
    assert!(!lock.acquire("k").await.unwrap());

    // Once the intruder's lease expires, this owner takes it back and renews it again (the
    // reference never restarts a stopped heartbeat).
    c.execute(
        "UPDATE execution_leases SET lease_until = ?1",
        [unix_now() - 1],
    )
    .unwrap();
    assert!(lock.acquire("k").await.unwrap());
    assert!(!lock.heartbeats()["k"].is_finished());
    c.execute("UPDATE execution_leases SET lease_until = 5", [])
        .unwrap();
    tokio::time::advance(Duration::from_secs(101)).await;
    settle().await;
    assert!(lease(&c, "k").unwrap().1 >= unix_now() + 299);
}

/// Lets spawned tasks run after the paused clock moved.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn lease_options_are_clamped() {
    let (_tmp, path) = db();
    let lock = SqliteLeaseLock::open_with(
        &path,
        LeaseOptions {
            ttl: Duration::from_secs(1),
            renew_interval: Duration::from_millis(10),
            owner_id: Some("me".into()),
            ..LeaseOptions::default()
        },
    )
    .unwrap();
    assert_eq!(lock.shared.ttl_secs, 30);
    assert_eq!(lock.shared.renew_interval, Duration::from_secs(5));
    assert_eq!(lock.owner_id(), "me");
    let long_renew = SqliteLeaseLock::open_with(
        &path,
        LeaseOptions {
            ttl: Duration::from_secs(60),
            renew_interval: Duration::from_secs(600),
            ..LeaseOptions::default()
        },
    )
    .unwrap();
    assert_eq!(long_renew.shared.renew_interval, Duration::from_secs(30));
    assert!(lock.acquire("k").await.unwrap());
    let until = lease(&raw(&path), "k").unwrap().1;
    assert!(until >= unix_now() + 29 && until <= unix_now() + 30);
}

#[test]
fn acquire_outside_tokio_is_an_error_and_leaves_no_lease() {
    let (_tmp, path) = db();
    let lock = SqliteLeaseLock::open(&path).unwrap();
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut fut = std::pin::pin!(lock.acquire("k"));
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(Err(PersistenceError::Database { message, .. })) => {
            assert!(message.contains("tokio"), "{message}")
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(lease(&raw(&path), "k"), None);
}

#[test]
fn owner_identity() {
    let id = new_owner_id();
    let parts: Vec<&str> = id.split(':').collect();
    assert_eq!(parts.len(), 4, "{id}");
    assert_eq!(parts[1], std::process::id().to_string());
    assert_eq!(parts[3], local_node());
    // This process is alive, whatever the identity says.
    assert!(!holder_is_gone(&id));
    assert!(!holder_is_gone(""));
    assert!(!holder_is_gone("a:b:c:d:e"));
}

/// The WAL shim (`wal_vfs`) writes a commit's frames when the commit frame is complete: after
/// every save, a connection on the default VFS (another process, the reference) sees it, and a
/// copy of the files taken at that moment (what a crash of this process would leave) holds it.
#[tokio::test]
async fn commits_are_in_the_files_when_saves_return() {
    assert!(wal_vfs::name().is_some(), "the WAL shim did not register");
    let (tmp, path) = db();
    let b = SqliteBackend::open(&path).unwrap();
    let other = raw(&path);
    let mut big = vec![b' '; 300 * 1024];
    big[0] = b'{';
    *big.last_mut().unwrap() = b'}';
    for step in 1..=40u32 {
        let keys = ["state_exit", "state_enter", "execute"]
            .map(|event| format!("e/step_{step:06}_{event}.json"));
        // Every tenth batch is larger than the shim's buffer, so it is written in parts.
        let body = if step % 10 == 0 {
            big.clone()
        } else {
            snapshot("execute", None)
        };
        let batch: Vec<BatchEntry<'_>> = keys.iter().map(|k| BatchEntry::new(k, &body)).collect();
        b.save_checkpoints("e", &batch).await.unwrap();
        let latest: String = other
            .query_row(
                "SELECT latest_key FROM machine_latest WHERE execution_id = 'e'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(latest, keys[2]);
        let stored: Vec<u8> = other
            .query_row(
                "SELECT snapshot_json FROM machine_checkpoints WHERE checkpoint_key = ?1",
                [&keys[1]],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(stored, body, "step {step}");
        if step % 13 == 0 {
            let copy = tmp.path().join(format!("copy{step}"));
            std::fs::create_dir_all(&copy).unwrap();
            for suffix in ["", "-wal"] {
                let name = format!("flatmachines.sqlite{suffix}");
                std::fs::copy(path.with_file_name(&name), copy.join(&name)).unwrap();
            }
            let c = raw(&copy.join("flatmachines.sqlite"));
            let count: i64 = c
                .query_row(
                    "SELECT count(*) FROM machine_checkpoints WHERE execution_id = 'e'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(count, i64::from(step) * 3);
            let check: String = c
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap();
            assert_eq!(check, "ok");
        }
    }
    // Writes from the other connection interleave with ours without harm.
    other
        .execute(
            "UPDATE machine_latest SET updated_at = 'x' WHERE execution_id = 'e'",
            [],
        )
        .unwrap();
    b.save_checkpoint("e", "e/step_000041_execute.json", b"{}")
        .await
        .unwrap();
    drop(b);
    let check: String = other
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let latest: String = other
        .query_row("SELECT latest_key FROM machine_latest", [], |r| r.get(0))
        .unwrap();
    assert_eq!(latest, "e/step_000041_execute.json");
}

/// A transaction that spills frames into the WAL and then rolls back must not leave buffered
/// frames behind: once the write lock is released another connection appends at those offsets,
/// and writing the stale frames later would destroy its commits.
#[test]
fn rolled_back_spilled_frames_never_overwrite_later_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spill.sqlite");
    let ours = connect(&path).unwrap();
    ours.execute_batch("CREATE TABLE t (x BLOB); INSERT INTO t VALUES (zeroblob(10));")
        .unwrap();
    // A tiny page cache makes a large transaction write frames before its commit.
    ours.execute_batch("PRAGMA cache_size = 5; BEGIN;").unwrap();
    for _ in 0..40 {
        ours.execute("INSERT INTO t VALUES (randomblob(3000))", [])
            .unwrap();
    }
    ours.execute_batch("ROLLBACK").unwrap();

    // Another connection, without the shim, commits in the meantime.
    let other = Connection::open(&path).unwrap();
    other.busy_timeout(Duration::from_secs(10)).unwrap();
    for i in 0..20 {
        other
            .execute("INSERT INTO t VALUES (?1)", [format!("other-{i}")])
            .unwrap();
    }

    // Our connection reads and writes again, then everything must still be there.
    let n: i64 = ours
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 21);
    ours.execute("INSERT INTO t VALUES ('ours')", []).unwrap();
    drop(ours);
    drop(other);
    let check = Connection::open(&path).unwrap();
    let integrity: String = check
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let n: i64 = check
        .query_row("SELECT count(*) FROM t WHERE x LIKE 'other-%'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(n, 20, "commits of the other connection survive");
}

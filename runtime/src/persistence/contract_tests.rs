//! What every [`CheckpointBackend`] must do, written once and run against each backend by its
//! own tests (`local.rs`, `memory.rs`, `sqlite/tests.rs`).

use super::{BatchEntry, CheckpointBackend, ListFilter};

/// A listing filter.
pub(crate) fn filter(event: Option<&str>, channel: Option<&str>) -> ListFilter {
    ListFilter {
        event: event.map(str::to_string),
        waiting_channel: channel.map(str::to_string),
    }
}

/// A minimal snapshot with the fields listings filter on.
pub(crate) fn snapshot(event: &str, channel: Option<&str>) -> Vec<u8> {
    serde_json::json!({"execution_id": "x", "machine_name": "m", "current_state": "s",
                       "event": event, "waiting_channel": channel})
    .to_string()
    .into_bytes()
}

/// `list_execution_ids`: every execution, sorted; filters look at each execution's latest
/// snapshot only, and an execution without a readable latest snapshot never matches a filter.
pub(crate) async fn list_filters_use_the_latest_snapshot(b: &dyn CheckpointBackend) {
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
    b.save_checkpoint(
        "d",
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
    // Snapshots but no pointer: listed, never matched by a filter.
    b.save(
        "e/step_000001_waiting.json",
        &snapshot("waiting", Some("ch/1")),
    )
    .await
    .unwrap();
    // Python wrote non-finite floats: still matched.
    b.save_checkpoint(
        "n",
        "n/step_000003_waiting.json",
        br#"{"context": {"x": NaN}, "event": "waiting", "waiting_channel": "ch/1"}"#,
    )
    .await
    .unwrap();

    let ids = |f| async move { b.list_execution_ids(&f).await.unwrap() };
    assert_eq!(
        ids(filter(None, None)).await,
        ["a", "b", "c", "d", "e", "n"]
    );
    assert_eq!(ids(filter(Some("waiting"), None)).await, ["a", "c", "n"]);
    assert_eq!(ids(filter(None, Some("ch/1"))).await, ["c", "n"]);
    assert_eq!(ids(filter(Some("waiting"), Some("ch/2"))).await, ["a"]);
    assert_eq!(ids(filter(Some("state_exit"), None)).await, ["d"]);
    assert_eq!(ids(filter(Some("machine_end"), None)).await, ["b"]);
    assert!(
        ids(filter(Some("machine_end"), Some("ch/1")))
            .await
            .is_empty()
    );
}

/// Keys that could leave the store (empty, `..`, absolute) are refused by every operation,
/// naming the key, before anything is written.
pub(crate) async fn invalid_keys_are_refused(b: &dyn CheckpointBackend) {
    use super::PersistenceError::InvalidKey;
    for key in ["", "../x", "/etc/passwd", "/abs", "a/../b", "a/../../x"] {
        assert!(
            matches!(b.save(key, b"{}").await, Err(InvalidKey(k)) if k == key),
            "save {key:?}"
        );
        assert!(
            matches!(b.load(key).await, Err(InvalidKey(_))),
            "load {key:?}"
        );
        assert!(
            matches!(b.delete(key).await, Err(InvalidKey(_))),
            "delete {key:?}"
        );
    }
    assert!(b.delete_execution("..").await.is_err());
    assert!(b.save_checkpoint("..", "ok/k.json", b"{}").await.is_err());
    assert!(b.save_checkpoint("e", "../x.json", b"{}").await.is_err());
    assert!(
        b.save_checkpoints("e", &[BatchEntry::new("../x", b"{}")])
            .await
            .is_err()
    );
}

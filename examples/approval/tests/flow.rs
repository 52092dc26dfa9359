//! The example's whole flow in separate processes: start (drafts and parks), a rework request,
//! the example's dispatcher (drafts again and parks), an approval, then the final output.

use flatmachines::signals::{SignalBackend, SqliteSignalBackend};
use serde_json::json;
use std::path::Path;
use std::process::Command;

fn example(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_example-approval"))
        .args(args)
        .current_dir(dir)
        .env("FLATAGENTS_LOG_LEVEL", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn draft_wait_rework_wait_approve() {
    let dir = tempdir();
    let waiting = "execution CHG-9 waits for a signal on `approval/CHG-9`";
    assert!(example(&dir, &["start", "CHG-9", "retry uploads"]).contains(waiting));
    let signals = SqliteSignalBackend::open(dir.join("approval.sqlite")).unwrap();
    signals
        .send(
            "approval/CHG-9",
            json!({"approved": false, "feedback": "limit the retries"}),
        )
        .await
        .unwrap();
    assert!(example(&dir, &["dispatch"]).contains("approval/CHG-9: resumed CHG-9"));
    assert!(example(&dir, &["status", "CHG-9"]).contains(waiting));
    signals
        .send("approval/CHG-9", json!({"approved": true, "by": "ada"}))
        .await
        .unwrap();
    example(&dir, &["dispatch"]);
    let output: serde_json::Value =
        serde_json::from_str(&example(&dir, &["status", "CHG-9"])).unwrap();
    assert_eq!(
        output,
        json!({
            "status": "merged",
            "draft": "Retry uploads on 503 with backoff (max 5 tries), logged.",
            "reviewer": "ada",
            "rounds": "2"
        })
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A fresh directory under the target folder (the example has no temp-dir dependency).
fn tempdir() -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "approval-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

//! Wake-up hints after a signal is sent (`signals-and-dispatch.md` §3). Signals are durable
//! without them; a trigger only lets a dispatcher react at once instead of on its next round.

use super::SignalBackend;
use crate::persistence::PersistenceError;
use serde_json::Value;
use std::path::PathBuf;

/// Tells whoever dispatches that `channel` has a new signal. Never fails: a hint that cannot
/// be delivered is logged at debug level.
pub trait Trigger: Send + Sync {
    /// Notifies about `channel`.
    fn notify(&self, channel: &str);
}

/// Does nothing (the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoOpTrigger;

impl Trigger for NoOpTrigger {
    fn notify(&self, _channel: &str) {}
}

/// Touches `<base_path>/trigger` (creates it or updates its modification time), for a launchd
/// `WatchPaths` or systemd `.path` unit that starts `flatmachines dispatch --once`. The channel
/// is not recorded.
#[derive(Clone, Debug)]
pub struct FileTrigger {
    base_path: PathBuf,
}

impl FileTrigger {
    /// The reference's default folder, `/tmp/flatmachines`.
    pub const DEFAULT_BASE: &'static str = "/tmp/flatmachines";

    /// A trigger in `base_path`, which is created now.
    pub fn new(base_path: impl Into<PathBuf>) -> Result<Self, PersistenceError> {
        let base_path = base_path.into();
        std::fs::create_dir_all(&base_path).map_err(|source| PersistenceError::Io {
            path: base_path.clone(),
            source,
        })?;
        Ok(FileTrigger { base_path })
    }

    /// The file that is touched.
    pub fn path(&self) -> PathBuf {
        self.base_path.join("trigger")
    }
}

impl Trigger for FileTrigger {
    fn notify(&self, _channel: &str) {
        let path = self.path();
        let touched = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        if let Err(e) = touched {
            tracing::debug!("file trigger {}: {e}", path.display());
        }
    }
}

/// Sends one Unix-domain datagram whose payload is the channel name to a listening dispatcher
/// (`flatmachines dispatch --listen`). A missing or refusing socket is ignored.
#[derive(Clone, Debug)]
pub struct SocketTrigger {
    socket_path: PathBuf,
}

impl SocketTrigger {
    /// The reference's default socket, `/tmp/flatmachines/trigger.sock`.
    pub const DEFAULT_SOCKET: &'static str = "/tmp/flatmachines/trigger.sock";

    /// A trigger that writes to `socket_path`.
    pub fn new(socket_path: impl Into<PathBuf>) -> Self {
        SocketTrigger {
            socket_path: socket_path.into(),
        }
    }
}

impl Trigger for SocketTrigger {
    #[cfg(unix)]
    fn notify(&self, channel: &str) {
        let sent = std::os::unix::net::UnixDatagram::unbound()
            .and_then(|s| s.send_to(channel.as_bytes(), &self.socket_path));
        if let Err(e) = sent {
            tracing::debug!("socket trigger {}: {e}", self.socket_path.display());
        }
    }

    #[cfg(not(unix))]
    fn notify(&self, _channel: &str) {
        tracing::debug!("socket triggers need Unix-domain sockets");
    }
}

/// Stores the signal first, then notifies (`send_and_notify` of the reference): the signal is
/// durable whether or not the hint arrives.
pub async fn send_and_notify(
    signals: &dyn SignalBackend,
    trigger: &dyn Trigger,
    channel: &str,
    data: Value,
) -> Result<String, PersistenceError> {
    let id = signals.send(channel, data).await?;
    trigger.notify(channel);
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::MemorySignalBackend;
    use serde_json::json;

    #[tokio::test]
    async fn the_file_trigger_touches_its_file_and_the_signal_is_stored_first() {
        let dir = tempfile::tempdir().unwrap();
        let trigger = FileTrigger::new(dir.path().join("t")).unwrap();
        let signals = MemorySignalBackend::new();
        send_and_notify(&signals, &trigger, "c", json!(1))
            .await
            .unwrap();
        assert!(trigger.path().exists());
        assert_eq!(signals.peek("c").await.unwrap().len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn the_socket_trigger_sends_the_channel_and_ignores_a_missing_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        SocketTrigger::new(&path).notify("nobody/listens");
        let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        SocketTrigger::new(&path).notify("approval/1");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"approval/1");
    }
}

//! The dispatcher (`signals-and-dispatch.md` §4): finds the executions parked on a channel,
//! and resumes them when it has a signal.

use super::SignalBackend;
use crate::error::Error;
use crate::persistence::{CheckpointBackend, ListFilter, PersistenceError};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Channels under this prefix belong to the dispatcher, not to machines.
pub const RESERVED: &str = "__flatmachines/";

/// The channel of the dispatcher's markers of resumes in progress.
pub const RESUMING: &str = "__flatmachines/resuming";

/// Continues a parked execution (`resume.py` of the reference). The resumed run consumes its
/// signal from the backend itself.
#[async_trait::async_trait]
pub trait Resumer: Send + Sync {
    /// Resumes `execution_id` and returns its output (which is `{_waiting, _channel}` again
    /// when it parks again).
    async fn resume(&self, execution_id: &str) -> Result<Value, Error>;
}

/// Wakes parked executions when signals arrive.
///
/// One signal wakes every execution waiting on its channel (broadcast): with several waiters
/// the signal is consumed and a copy is queued for each, behind any older backlog, as in the
/// reference; with one waiter (the usual addressed channel, `approval/<ticket>`) the waiter
/// consumes the signal itself and no copy is made, so a dispatcher that loses a race leaves no
/// stray copy behind. A resume that fails is logged and its signal stays queued.
#[derive(Clone)]
pub struct Dispatcher {
    signals: Arc<dyn SignalBackend>,
    checkpoints: Arc<dyn CheckpointBackend>,
    resumer: Option<Arc<dyn Resumer>>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("resumer", &self.resumer.is_some())
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher over `signals` and the checkpoints that say who waits. Without a resumer
    /// ([`Dispatcher::with_resumer`]) it only reports the waiters (the reference's
    /// `--allow-noop-resume`).
    pub fn new(signals: Arc<dyn SignalBackend>, checkpoints: Arc<dyn CheckpointBackend>) -> Self {
        Dispatcher {
            signals,
            checkpoints,
            resumer: None,
        }
    }

    /// Resumes waiters with `resumer`.
    pub fn with_resumer(mut self, resumer: Arc<dyn Resumer>) -> Self {
        self.resumer = Some(resumer);
        self
    }

    /// The executions whose latest checkpoint waits on `channel`, sorted.
    pub async fn waiters(&self, channel: &str) -> Result<Vec<String>, PersistenceError> {
        let filter = ListFilter {
            waiting_channel: Some(channel.to_string()),
            ..ListFilter::default()
        };
        self.checkpoints.list_execution_ids(&filter).await
    }

    /// One signal of `channel` to its waiters; returns the executions resumed. Nothing happens
    /// (and the signals stay queued) when nobody waits or nothing is pending.
    pub async fn dispatch(&self, channel: &str) -> Result<Vec<String>, PersistenceError> {
        let waiters = self.waiters(channel).await?;
        if waiters.is_empty() {
            return Ok(Vec::new());
        }
        if waiters.len() == 1 {
            if self.signals.peek(channel).await?.is_empty() {
                return Ok(Vec::new());
            }
        } else {
            let Some(signal) = self.signals.consume(channel).await? else {
                return Ok(Vec::new());
            };
            for _ in &waiters {
                self.signals.send(channel, signal.data.clone()).await?;
            }
        }
        let mut resumed = Vec::new();
        for id in waiters {
            if self.resumer.is_none() {
                tracing::info!("would resume execution {id} (waiting on `{channel}`)");
                resumed.push(id);
                continue;
            }
            if self.resume_marked(&id).await? {
                tracing::info!("resumed execution {id} (waiting on `{channel}`)");
                resumed.push(id);
            }
        }
        Ok(resumed)
    }

    /// Resumes `id` behind a marker signal on [`RESUMING`]: the marker is stored before the
    /// resume and removed after it, so a dispatcher killed during a resume leaves it for the
    /// next one ([`Dispatcher::recover`]). `false` when the resume failed.
    async fn resume_marked(&self, id: &str) -> Result<bool, PersistenceError> {
        let Some(resumer) = &self.resumer else {
            return Ok(false);
        };
        let marker = self
            .signals
            .send(RESUMING, serde_json::json!({"execution_id": id}))
            .await?;
        let ok = match resumer.resume(id).await {
            Ok(out) => {
                tracing::debug!("execution {id}: {out}");
                true
            }
            Err(e) => {
                tracing::error!("resuming execution {id} failed: {e}");
                false
            }
        };
        self.signals.claim(&marker, "dispatcher").await?;
        Ok(ok)
    }

    /// Finishes the resumes that a dispatcher killed part way left behind (their markers on
    /// [`RESUMING`]): each execution is resumed again from its last checkpoint, under its lock,
    /// so a run another dispatcher is still resuming is left to it. Returns the executions
    /// resumed.
    pub async fn recover(&self) -> Result<Vec<String>, PersistenceError> {
        let Some(resumer) = &self.resumer else {
            return Ok(Vec::new());
        };
        let mut recovered = Vec::new();
        for marker in self.signals.peek(RESUMING).await? {
            let Some(id) = marker.data.get("execution_id").and_then(Value::as_str) else {
                self.signals.claim(&marker.id, "dispatcher").await?;
                continue;
            };
            match resumer.resume(id).await {
                Ok(out) => {
                    tracing::info!("recovered the interrupted resume of execution {id}: {out}");
                    recovered.push(id.to_string());
                }
                // Someone is resuming it right now: that resume removes its own marker.
                Err(Error::Locked { .. }) => continue,
                Err(e) => tracing::error!("recovering execution {id} failed: {e}"),
            }
            self.signals.claim(&marker.id, "dispatcher").await?;
        }
        Ok(recovered)
    }

    /// [`Dispatcher::dispatch`] again and again until a round resumes nobody or `max_signals`
    /// rounds resumed someone; all the executions resumed, in order.
    pub async fn dispatch_channel(
        &self,
        channel: &str,
        max_signals: Option<usize>,
    ) -> Result<Vec<String>, PersistenceError> {
        let mut all = Vec::new();
        let mut rounds = 0;
        while max_signals.is_none_or(|m| rounds < m) {
            let resumed = self.dispatch(channel).await?;
            if resumed.is_empty() {
                break;
            }
            rounds += 1;
            all.extend(resumed);
        }
        Ok(all)
    }

    /// Resumes the executions whose `wait_for` timeout has passed (their resume fails the
    /// waiting state with `TimeoutError`, which `on_error` handles); returns them by channel.
    pub async fn dispatch_expired(
        &self,
    ) -> Result<BTreeMap<String, Vec<String>>, PersistenceError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let expired = match self.checkpoints.expired_waits(now).await? {
            Some(expired) => expired,
            None => self.scan_expired(now).await?,
        };
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (id, channel) in expired {
            let done = match &self.resumer {
                None => true,
                Some(r) => match r.resume(&id).await {
                    Ok(out) => {
                        tracing::info!("execution {id} timed out waiting on `{channel}`: {out}");
                        true
                    }
                    Err(e) => {
                        tracing::error!("resuming execution {id} after its timeout failed: {e}");
                        false
                    }
                },
            };
            if done {
                out.entry(channel).or_default().push(id);
            }
        }
        Ok(out)
    }

    /// [`CheckpointBackend::expired_waits`] for a backend that cannot answer it: every waiting
    /// execution's latest snapshot is read.
    async fn scan_expired(&self, now: f64) -> Result<Vec<(String, String)>, PersistenceError> {
        let filter = ListFilter {
            event: Some("waiting".into()),
            ..ListFilter::default()
        };
        let mut out = Vec::new();
        for id in self.checkpoints.list_execution_ids(&filter).await? {
            let Some(latest) =
                crate::persistence::snapshot::load_latest(self.checkpoints.as_ref(), &id).await?
            else {
                continue;
            };
            let deadline = latest
                .snapshot
                .context
                .get("_wait_for_deadline")
                .and_then(|d| d.get("deadline"))
                .and_then(Value::as_f64);
            if deadline.is_some_and(|d| d <= now) {
                out.push((id, latest.snapshot.waiting_channel.unwrap_or_default()));
            }
        }
        Ok(out)
    }

    /// Every channel that has signals, each up to the number of signals it has now, then the
    /// waits whose timeout has passed; the channels where someone was resumed, with whom.
    pub async fn dispatch_all(&self) -> Result<BTreeMap<String, Vec<String>>, PersistenceError> {
        let recovered = self.recover().await?;
        let mut out = self.dispatch_signals().await?;
        if !recovered.is_empty() {
            out.entry(RESUMING.to_string())
                .or_default()
                .extend(recovered);
        }
        for (channel, ids) in self.dispatch_expired().await? {
            out.entry(channel).or_default().extend(ids);
        }
        Ok(out)
    }

    async fn dispatch_signals(&self) -> Result<BTreeMap<String, Vec<String>>, PersistenceError> {
        let mut out = BTreeMap::new();
        for channel in self.signals.channels().await? {
            if channel.starts_with(RESERVED) {
                continue;
            }
            let pending = self.signals.peek(&channel).await?.len().max(1);
            let resumed = self.dispatch_channel(&channel, Some(pending)).await?;
            if !resumed.is_empty() {
                out.insert(channel, resumed);
            }
        }
        Ok(out)
    }

    /// Drains every channel, then waits for channel names on the Unix datagram socket
    /// `socket_path` (what a [`SocketTrigger`](super::SocketTrigger) sends) and dispatches each,
    /// until `stop` is set. The socket file is replaced if stale and removed at the end.
    #[cfg(unix)]
    pub async fn listen(
        &self,
        socket_path: &std::path::Path,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<(), PersistenceError> {
        use std::sync::atomic::Ordering;
        let io = |source: std::io::Error| PersistenceError::Io {
            path: socket_path.to_path_buf(),
            source,
        };
        if let Some(parent) = socket_path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let _ = std::fs::remove_file(socket_path);
        let socket = std::os::unix::net::UnixDatagram::bind(socket_path).map_err(io)?;
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(1)))
            .map_err(io)?;
        let socket = Arc::new(socket);
        self.dispatch_all().await?;
        let result = loop {
            if stop.load(Ordering::Relaxed) {
                break Ok(());
            }
            let s = socket.clone();
            let received = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; 4096];
                s.recv(&mut buf).map(|n| {
                    buf.truncate(n);
                    buf
                })
            })
            .await;
            let bytes = match received {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Ok(Err(e)) => break Err(io(e)),
                Err(e) => break Err(io(std::io::Error::other(e))),
            };
            let channel = String::from_utf8_lossy(&bytes).trim().to_string();
            if channel.is_empty() {
                continue;
            }
            let pending = self.signals.peek(&channel).await?.len().max(1);
            let resumed = self.dispatch_channel(&channel, Some(pending)).await?;
            tracing::info!("`{channel}`: {} execution(s) resumed", resumed.len());
        };
        let _ = std::fs::remove_file(socket_path);
        result
    }
}

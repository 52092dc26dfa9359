//! Invokers: how a `launch:` state starts a machine without waiting for it
//! (`parallel-and-launch.md` §5, §7).
//!
//! The runtime records a launch intent, makes it part of a checkpoint, then hands a
//! [`LaunchRequest`] to the runtime's [`Invoker`] and marks the intent launched once the invoker
//! accepted it. Three invokers come with the crate:
//!
//! * [`InlineInvoker`] (the default): a tokio task in this process, sharing the parent's
//!   adapters, persistence and result backend. The parent's run awaits it before returning.
//! * [`SubprocessInvoker`]: a `flatmachines run` process per launch, given the child's config,
//!   input, execution id and parent id; its output (stdout) is written to the result backend.
//! * [`QueueInvoker`] (wrap it in [`Queue`]): hands the launch to an external queue; the
//!   worker that runs it writes the result to a shared [`ResultBackend`].
//!
//! ```
//! use flatmachines::invoker::{InvokeError, Queue, QueueInvoker, QueueJob};
//! use std::sync::Mutex;
//!
//! #[derive(Default)]
//! struct Jobs(Mutex<Vec<QueueJob>>);
//!
//! #[flatmachines::async_trait]
//! impl QueueInvoker for Jobs {
//!     async fn enqueue(&self, job: QueueJob) -> Result<(), InvokeError> {
//!         self.0.lock().unwrap().push(job);
//!         Ok(())
//!     }
//! }
//!
//! let rt = flatmachines::Runtime::builder().invoker(Queue(Jobs::default())).build();
//! # drop(rt);
//! ```

use crate::results::{ResultBackend, ResultError, result_uri};
use async_trait::async_trait;
use serde_json::Value;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// One machine to launch.
#[derive(Clone, Debug)]
pub struct LaunchRequest {
    /// The name the parent's `machines:` gives it.
    pub machine_name: String,
    /// The file it was loaded from (`None` for an inline document).
    pub config_path: Option<PathBuf>,
    /// Its document as JSON (`None` if only the file is known).
    pub document: Option<Arc<Value>>,
    /// Its input (`launch_input`, rendered).
    pub input: Value,
    /// The execution id the parent chose for it.
    pub execution_id: String,
    /// The parent's execution id.
    pub parent_execution_id: String,
}

/// A launched machine run in this process: the future that runs it and writes its result.
pub type InlineRun = std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What an invoker may use of the launching run: its result backend, its directory, background
/// tasks it awaits, and — through a narrow callback the executor provides — running a launched
/// machine in this process.
pub struct LaunchContext<'a> {
    pub(crate) results: Arc<dyn ResultBackend>,
    pub(crate) config_dir: &'a Path,
    pub(crate) spawned: Mutex<Vec<JoinHandle<()>>>,
    /// Builds the in-process run of a request (the child machine with the parent's adapters,
    /// persistence and result backend).
    pub(crate) run_inline: &'a (dyn Fn(LaunchRequest) -> InlineRun + Send + Sync),
}

impl LaunchContext<'_> {
    /// The result backend children write to.
    pub fn results(&self) -> &Arc<dyn ResultBackend> {
        &self.results
    }

    /// The launching machine's config directory.
    pub fn config_dir(&self) -> &Path {
        self.config_dir
    }

    /// Runs `task` in the background; the launching run awaits it before it returns (as the
    /// reference awaits its background tasks in its final cleanup).
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        self.spawned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
    }

    /// Runs `request` in a tokio task of this process, as [`InlineInvoker`] does: the child
    /// shares the parent's adapters, hooks registry, persistence and result backend, and the
    /// launching run awaits it before it returns.
    pub fn spawn_inline(&self, request: LaunchRequest) {
        let run = (self.run_inline)(request);
        self.spawn(run);
    }

    pub(crate) fn take_spawned(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut *self.spawned.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Why a launch was refused. It fails the launching state, which `on_error` sees as `kind`.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct InvokeError {
    /// The error class name (`OSError`, `ValueError`, …).
    pub kind: String,
    /// The message.
    pub message: String,
}

impl InvokeError {
    /// An error of class `kind`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        InvokeError {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

/// Starts launched machines. Returning `Ok` means the launch was accepted (the intent is then
/// marked launched); the child's result goes to the result backend.
#[async_trait]
pub trait Invoker: Send + Sync {
    /// Starts `request` and returns without waiting for it to finish.
    async fn launch(
        &self,
        cx: &LaunchContext<'_>,
        request: LaunchRequest,
    ) -> Result<(), InvokeError>;
}

/// The default invoker: a tokio task in this process, sharing the parent's adapters, hooks
/// registry, persistence and result backend. The child resolves relative paths against its own
/// file's directory.
#[derive(Clone, Copy, Debug, Default)]
pub struct InlineInvoker;

#[async_trait]
impl Invoker for InlineInvoker {
    async fn launch(
        &self,
        cx: &LaunchContext<'_>,
        request: LaunchRequest,
    ) -> Result<(), InvokeError> {
        cx.spawn_inline(request);
        Ok(())
    }
}

#[cfg(feature = "subprocess")]
mod subprocess;
#[cfg(feature = "subprocess")]
pub use subprocess::SubprocessInvoker;

/// A launch handed to an external queue.
#[derive(Clone, Debug)]
pub struct QueueJob {
    /// The execution id the parent chose.
    pub execution_id: String,
    /// The parent's execution id.
    pub parent_execution_id: String,
    /// The name the parent's `machines:` gives the machine.
    pub machine_name: String,
    /// The machine's file, when it has one.
    pub config_path: Option<PathBuf>,
    /// The machine's document as JSON, when known.
    pub document: Option<Arc<Value>>,
    /// The input.
    pub input: Value,
}

/// An invoker that hands launches to an external queue (wrap it in [`Queue`] to install it).
/// The worker running a job should run it with the given execution and parent ids and write its
/// result (or `{_error, _error_type}`) to `flatagents://<execution_id>/result` of a
/// [`ResultBackend`] the parent can read; [`wait_for_result`] reads it back.
#[async_trait]
pub trait QueueInvoker: Send + Sync {
    /// Puts `job` on the queue.
    async fn enqueue(&self, job: QueueJob) -> Result<(), InvokeError>;
}

/// Makes a [`QueueInvoker`] an [`Invoker`].
#[derive(Clone, Debug, Default)]
pub struct Queue<Q>(pub Q);

#[async_trait]
impl<Q: QueueInvoker> Invoker for Queue<Q> {
    async fn launch(
        &self,
        _cx: &LaunchContext<'_>,
        request: LaunchRequest,
    ) -> Result<(), InvokeError> {
        self.0
            .enqueue(QueueJob {
                execution_id: request.execution_id,
                parent_execution_id: request.parent_execution_id,
                machine_name: request.machine_name,
                config_path: request.config_path,
                document: request.document,
                input: request.input,
            })
            .await
    }
}

/// Waits for the result of `execution_id` (the reference's `invoke` after a launch): at most
/// `timeout`, or for ever.
pub async fn wait_for_result(
    results: &dyn ResultBackend,
    execution_id: &str,
    timeout: Option<Duration>,
) -> Result<Value, ResultError> {
    let uri = result_uri(execution_id);
    results
        .read(&uri, true, timeout)
        .await?
        .ok_or(ResultError::Timeout { uri })
}

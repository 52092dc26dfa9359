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

use crate::executor::Inherited;
use crate::machine::Machine;
use crate::results::{ResultBackend, ResultError, result_uri};
use crate::runtime::Runtime;
use async_trait::async_trait;
use serde_json::{Value, json};
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
    /// The machine, loaded and checked.
    pub machine: Machine,
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

/// What an invoker may use of the launching run.
pub struct LaunchContext<'a> {
    pub(crate) results: Arc<dyn ResultBackend>,
    pub(crate) config_dir: &'a Path,
    pub(crate) spawned: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) inherited: Inherited,
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

/// Runs each launched machine as a `flatmachines run` process:
///
/// ```text
/// <program> run --config <child file> --input '<json>' --execution-id <id> --parent-id <parent>
/// ```
///
/// The config is the child's own file; an inline child is written as JSON to a temporary file
/// (in [`working_dir`](Self::working_dir), else the parent's config directory so its relative
/// paths resolve as they would in-process, else the system temp directory), removed when the
/// process exits. The working directory is `working_dir`, else the parent's config directory.
/// Standard output is read as the result JSON and written to the result backend (a non-zero exit
/// writes `{_error, _error_type}` with the last line of standard error, which is forwarded to
/// this process's standard error). The parent's run awaits the process before it returns.
#[derive(Clone, Debug)]
pub struct SubprocessInvoker {
    program: PathBuf,
    working_dir: Option<PathBuf>,
}

impl Default for SubprocessInvoker {
    fn default() -> Self {
        SubprocessInvoker::new()
    }
}

impl SubprocessInvoker {
    /// Runs `$FLATMACHINES_BIN`, else `flatmachines` from the `PATH`.
    pub fn new() -> Self {
        SubprocessInvoker {
            program: std::env::var_os("FLATMACHINES_BIN")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("flatmachines")),
            working_dir: None,
        }
    }

    /// Runs this program (the `flatmachines` CLI, or anything accepting its `run` arguments).
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    /// Runs children in this directory (and writes temporary configs there).
    pub fn working_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    /// The command line for `request` (without the program).
    fn args(&self, config: &Path, request: &LaunchRequest) -> Vec<std::ffi::OsString> {
        vec![
            "run".into(),
            "--config".into(),
            config.as_os_str().to_owned(),
            "--input".into(),
            request.input.to_string().into(),
            "--execution-id".into(),
            request.execution_id.clone().into(),
            "--parent-id".into(),
            request.parent_execution_id.clone().into(),
        ]
    }
}

/// Writes `doc` as JSON to a new file in the first directory that accepts it.
fn write_temp_config(dirs: &[&Path], id: &str, doc: &Value) -> Result<PathBuf, InvokeError> {
    let text = doc.to_string();
    let mut last = None;
    for dir in dirs {
        let path = dir.join(format!(".flatmachine-{id}.json"));
        match std::fs::write(&path, &text) {
            Ok(()) => return Ok(path),
            Err(e) => last = Some(e),
        }
    }
    Err(InvokeError::new(
        "OSError",
        format!(
            "cannot write the child's config: {}",
            last.map_or_else(|| "no directory".into(), |e| e.to_string())
        ),
    ))
}

/// `(class, message)` from the last line the CLI wrote to standard error, e.g.
/// `error: machine `m`, state `s`: ValueError: bad` → `("ValueError", "bad")`.
fn cli_failure(stderr: &str, status: &std::process::ExitStatus) -> (String, String) {
    let line = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let text = line.strip_prefix("error: ").unwrap_or(line);
    if let Some(pos) = text.find("`: ") {
        let rest = &text[pos + 3..];
        if let Some((kind, message)) = rest.split_once(": ")
            && !kind.is_empty()
            && kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return (kind.to_string(), message.to_string());
        }
    }
    let message = if text.is_empty() {
        format!("child process failed ({status})")
    } else {
        text.to_string()
    };
    ("RuntimeError".into(), message)
}

#[async_trait]
impl Invoker for SubprocessInvoker {
    async fn launch(
        &self,
        cx: &LaunchContext<'_>,
        request: LaunchRequest,
    ) -> Result<(), InvokeError> {
        let (config, temp) = match &request.config_path {
            Some(p) if p.is_file() => (p.clone(), None),
            _ => {
                let doc = request.document.as_deref().ok_or_else(|| {
                    InvokeError::new(
                        "FileNotFoundError",
                        format!(
                            "Machine config file not found for `{}`",
                            request.machine_name
                        ),
                    )
                })?;
                let system = std::env::temp_dir();
                let mut dirs: Vec<&Path> = Vec::new();
                if let Some(d) = &self.working_dir {
                    dirs.push(d);
                }
                dirs.push(cx.config_dir());
                dirs.push(&system);
                let path = write_temp_config(&dirs, &request.execution_id, doc)?;
                (path.clone(), Some(path))
            }
        };
        let cwd = self
            .working_dir
            .clone()
            .unwrap_or_else(|| cx.config_dir().to_path_buf());
        let child = tokio::process::Command::new(&self.program)
            .args(self.args(&config, &request))
            .current_dir(&cwd)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                if let Some(t) = &temp {
                    let _ = std::fs::remove_file(t);
                }
                return Err(InvokeError::new(
                    if e.kind() == std::io::ErrorKind::NotFound {
                        "FileNotFoundError"
                    } else {
                        "OSError"
                    },
                    format!("cannot start `{}`: {e}", self.program.display()),
                ));
            }
        };
        let results = cx.results().clone();
        let id = request.execution_id;
        cx.spawn(async move {
            let entry = match child.wait_with_output().await {
                Ok(out) => {
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    if !stderr.is_empty() {
                        eprint!("{stderr}");
                    }
                    match serde_json::from_slice::<Value>(&out.stdout) {
                        Ok(v) if out.status.success() => v,
                        Ok(_) | Err(_) if !out.status.success() => {
                            let (kind, message) = cli_failure(&stderr, &out.status);
                            json!({"_error": message, "_error_type": kind})
                        }
                        Ok(_) | Err(_) => json!({
                            "_error": "the child process printed no JSON result",
                            "_error_type": "ValueError",
                        }),
                    }
                }
                Err(e) => json!({"_error": e.to_string(), "_error_type": "OSError"}),
            };
            if let Err(e) = results.write(&result_uri(&id), entry).await {
                tracing::warn!("cannot write the result of child {id}: {e}");
            }
            if let Some(t) = temp {
                let _ = std::fs::remove_file(t);
            }
        });
        Ok(())
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn status(code: i32) -> std::process::ExitStatus {
        use std::os::unix::process::ExitStatusExt;
        std::process::ExitStatus::from_raw(code << 8)
    }

    #[cfg(unix)]
    #[test]
    fn cli_errors_give_the_class_and_message() {
        let s = status(1);
        assert_eq!(
            cli_failure(
                "INFO something\nerror: machine `w`, state `start`: ValueError: bad input\n",
                &s
            ),
            ("ValueError".into(), "bad input".into())
        );
        assert_eq!(
            cli_failure("error: cannot read x.yml\n", &s),
            ("RuntimeError".into(), "cannot read x.yml".into())
        );
        let (kind, message) = cli_failure("", &s);
        assert_eq!(kind, "RuntimeError");
        assert!(message.starts_with("child process failed"), "{message}");
    }
}

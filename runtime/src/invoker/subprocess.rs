//! [`SubprocessInvoker`] (feature `subprocess`): launches as `flatmachines run` processes.

use super::{InvokeError, Invoker, LaunchContext, LaunchRequest};
use crate::results::result_uri;
use async_trait::async_trait;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

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

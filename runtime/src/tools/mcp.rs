//! Tools from the MCP servers an agent declares in `data.mcp` (feature `mcp`), through the
//! official Rust SDK, `rmcp`.
//!
//! [`McpServers::start`] starts every server of the block (stdio servers as child processes,
//! streamable-HTTP servers as HTTP clients), lists their tools and keeps the connections open;
//! the value is a [`ToolProvider`] whose calls go to the server that offers the tool.
//! [`McpServers::shutdown`] closes them. `docs/tools.md` ("MCP servers") describes the YAML,
//! the path, naming and filter rules and the lifecycle.

use super::{ToolError, ToolProvider, ToolResult};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ContentBlock,
    Implementation, Tool,
};
use rmcp::service::{ClientInitializeError, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{Peer, RoleClient, ServiceExt};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a server may take to start, initialize and list its tools when its block has no
/// `timeout`.
const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`McpServers::shutdown`] waits for one server to close before killing it (rmcp's
/// stdio close is: end of input, 3 s, SIGTERM, 3 s, SIGKILL).
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of a stdio server's standard error kept for error messages.
const STDERR_TAIL_LINES: usize = 5;
/// Characters kept of one standard-error line.
const STDERR_LINE_CHARS: usize = 300;

/// An MCP server that could not be configured, started, initialized or listed.
///
/// Displayed as `MCP server '<server>': <message>`; an error in the `mcp` block itself rather
/// than in one server's entry (`servers` or `tool_filter` of the wrong shape) has an empty
/// `server` and is displayed as `MCP config: <message>`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct McpError {
    /// The server's name (its key under `servers`), or empty for an error of the whole block.
    pub server: String,
    /// What went wrong.
    pub message: String,
}

impl McpError {
    fn new(server: impl Into<String>, message: impl Into<String>) -> Self {
        McpError {
            server: server.into(),
            message: message.into(),
        }
    }

    fn config(message: impl Into<String>) -> Self {
        McpError::new("", message)
    }

    fn describe(&self) -> String {
        if self.server.is_empty() {
            format!("MCP config: {}", self.message)
        } else {
            format!("MCP server '{}': {}", self.server, self.message)
        }
    }
}

/// One server's entry of `data.mcp.servers`, resolved against the agent's directory.
#[derive(Clone, Debug)]
struct ServerConfig {
    name: String,
    transport: TransportConfig,
    /// `timeout` (seconds): bounds the startup and every tool call.
    timeout: Option<Duration>,
}

#[derive(Clone, Debug)]
enum TransportConfig {
    Stdio {
        program: OsString,
        args: Vec<OsString>,
        env: Vec<(String, String)>,
        cwd: PathBuf,
    },
    Http {
        url: String,
        headers: Vec<(String, String)>,
    },
}

/// `data.mcp.tool_filter`.
#[derive(Clone, Debug, Default)]
struct ToolFilter {
    allow: Vec<String>,
    deny: Vec<String>,
}

impl ToolFilter {
    fn matches(pattern: &str, server: &str, tool: &str) -> bool {
        match pattern.strip_suffix(":*") {
            Some(s) => s == server,
            None => {
                pattern
                    .strip_prefix(server)
                    .and_then(|r| r.strip_prefix(':'))
                    == Some(tool)
            }
        }
    }

    /// Deny wins over allow; an absent or empty allow list allows every tool.
    fn allows(&self, server: &str, tool: &str) -> bool {
        if self.deny.iter().any(|p| Self::matches(p, server, tool)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|p| Self::matches(p, server, tool))
    }
}

/// A scalar YAML value as the string a command line or header would carry.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn string_map(server: &str, key: &str, value: &Value) -> Result<Vec<(String, String)>, McpError> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                scalar(v).map(|v| (k.clone(), v)).ok_or_else(|| {
                    McpError::new(server, format!("`{key}.{k}` must be a string, got {v}"))
                })
            })
            .collect(),
        other => Err(McpError::new(
            server,
            format!("`{key}` must be a map of strings, got {other}"),
        )),
    }
}

fn string_list(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::Null => Some(Vec::new()),
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => items.iter().map(scalar).collect(),
        _ => None,
    }
}

/// `command` as the program to run: a relative path with a `/` in it (`./server.py`,
/// `bin/srv`) is taken from `base_dir`; a bare name (`npx`) is looked up in `PATH`; an
/// absolute path stays as it is.
fn resolve_command(command: &str, base_dir: &Path) -> OsString {
    let path = Path::new(command);
    if command.contains('/') && path.is_relative() {
        // `./srv` → `<base_dir>/srv`.
        let path: PathBuf = path
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect();
        base_dir.join(path).into_os_string()
    } else {
        OsString::from(command)
    }
}

/// One of `args`: a relative path naming a file or directory that exists in `base_dir` becomes
/// that path under `base_dir`; options (`-x`, `--flag=value`) and everything else stay as
/// written.
fn resolve_arg(arg: &str, base_dir: &Path) -> OsString {
    if arg.is_empty() || arg.starts_with('-') || Path::new(arg).is_absolute() {
        return OsString::from(arg);
    }
    let candidate = base_dir.join(arg);
    if candidate.exists() {
        candidate.into_os_string()
    } else {
        OsString::from(arg)
    }
}

/// `${NAME}` in `text` (`NAME` an identifier: letters, digits, `_`) replaced by the environment
/// variable `NAME`; a variable that is not set is an error naming it. Every other `$` stays as it
/// is, so shell code in `args` (`$$`, `$1`, `$(…)`) reaches the server unchanged.
fn expand_vars(server: &str, text: &str) -> Result<String, McpError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let body = &rest[at + 2..];
        let ident = body.find('}').map(|end| &body[..end]).filter(|v| {
            v.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        match ident {
            Some(var) => {
                let value = std::env::var(var).map_err(|_| {
                    McpError::new(
                        server,
                        format!("`${{{var}}}` names an environment variable that is not set"),
                    )
                })?;
                out.push_str(&value);
                rest = &body[var.len() + 1..];
            }
            None => {
                out.push_str("${");
                rest = body;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Every string of a server entry with its `${NAME}` variables expanded.
fn expand_entry(server: &str, value: &Value) -> Result<Value, McpError> {
    Ok(match value {
        Value::String(s) => Value::String(expand_vars(server, s)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| expand_entry(server, v))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), expand_entry(server, v)?)))
                .collect::<Result<_, McpError>>()?,
        ),
        other => other.clone(),
    })
}

fn parse_server(name: &str, spec: &Value, base_dir: &Path) -> Result<ServerConfig, McpError> {
    let spec = &expand_entry(name, spec)?;
    let Value::Object(spec) = spec else {
        return Err(McpError::new(
            name,
            format!("the server entry must be a map, got {spec}"),
        ));
    };
    let field = |key: &str| spec.get(key).filter(|v| !v.is_null());
    let timeout = match field("timeout") {
        None => None,
        Some(v) => match v.as_f64() {
            // Past `Duration`'s range (1e30 s) means no limit, rather than a panic.
            Some(s) if s > 0.0 && s.is_finite() => Some(crate::py::saturating_secs(s)),
            _ => {
                return Err(McpError::new(
                    name,
                    format!("`timeout` must be a positive number of seconds, got {v}"),
                ));
            }
        },
    };
    let url = field("url").or_else(|| field("server_url"));
    let transport = match (field("command"), url) {
        (Some(_), Some(_)) => {
            return Err(McpError::new(
                name,
                "has both `command` (stdio) and `url` (HTTP); give one",
            ));
        }
        (None, None) => {
            return Err(McpError::new(
                name,
                "needs `command` (a stdio server) or `url` (a streamable-HTTP server)",
            ));
        }
        (Some(command), None) => {
            let command = command
                .as_str()
                .filter(|c| !c.trim().is_empty())
                .ok_or_else(|| {
                    McpError::new(name, format!("`command` must be a string, got {command}"))
                })?;
            let args = string_list(spec.get("args").unwrap_or(&Value::Null)).ok_or_else(|| {
                McpError::new(name, "`args` must be a list of strings".to_string())
            })?;
            let env = string_map(name, "env", spec.get("env").unwrap_or(&Value::Null))?;
            let cwd = match field("cwd") {
                None => base_dir.to_path_buf(),
                Some(Value::String(cwd)) => base_dir.join(cwd),
                Some(other) => {
                    return Err(McpError::new(
                        name,
                        format!("`cwd` must be a string, got {other}"),
                    ));
                }
            };
            TransportConfig::Stdio {
                program: resolve_command(command, base_dir),
                args: args.iter().map(|a| resolve_arg(a, base_dir)).collect(),
                env,
                cwd,
            }
        }
        (None, Some(url)) => {
            let url = url
                .as_str()
                .filter(|u| !u.trim().is_empty())
                .ok_or_else(|| McpError::new(name, format!("`url` must be a string, got {url}")))?;
            let headers = string_map(name, "headers", spec.get("headers").unwrap_or(&Value::Null))?;
            TransportConfig::Http {
                url: url.to_string(),
                headers,
            }
        }
    };
    Ok(ServerConfig {
        name: name.to_string(),
        transport,
        timeout,
    })
}

fn parse_filter(mcp: &Value) -> Result<ToolFilter, McpError> {
    let filter = match mcp.get("tool_filter") {
        None | Some(Value::Null) => return Ok(ToolFilter::default()),
        Some(f @ Value::Object(_)) => f,
        Some(other) => {
            return Err(McpError::config(format!(
                "`tool_filter` must be a map with `allow` and/or `deny`, got {other}"
            )));
        }
    };
    let list = |key: &str| {
        string_list(filter.get(key).unwrap_or(&Value::Null)).ok_or_else(|| {
            McpError::config(format!(
                "`tool_filter.{key}` must be a list of \"server:tool\" or \"server:*\""
            ))
        })
    };
    Ok(ToolFilter {
        allow: list("allow")?,
        deny: list("deny")?,
    })
}

/// The last lines a stdio server wrote to its standard error.
#[derive(Clone, Default)]
struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    fn push(&self, line: &str) {
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == STDERR_TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line.chars().take(STDERR_LINE_CHARS).collect());
    }

    /// `" (stderr: a | b)"`, or nothing when the server wrote nothing.
    fn suffix(&self) -> String {
        let lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if lines.is_empty() {
            String::new()
        } else {
            let joined: Vec<&str> = lines.iter().map(String::as_str).collect();
            format!(" (stderr: {})", joined.join(" | "))
        }
    }
}

type Client = RunningService<RoleClient, ClientConfig>;

/// One running server.
struct Server {
    name: String,
    /// Sends requests; stays usable (and fails) after the service is closed.
    peer: Peer<RoleClient>,
    /// The running client, taken by [`McpServers::shutdown`].
    service: Mutex<Option<Client>>,
    /// The stdio child's process id (also its process group's id on Unix).
    pid: Option<u32>,
    stderr: StderrTail,
    call_timeout: Option<Duration>,
}

impl Server {
    fn error(&self, message: impl std::fmt::Display) -> ToolError {
        ToolError::new(format!(
            "MCP server '{}': {message}{}",
            self.name,
            self.stderr.suffix()
        ))
    }
}

/// A server as started, before the tools of all servers are named.
struct Started {
    server: Server,
    tools: Vec<Tool>,
}

/// A tool as the model sees it.
struct Entry {
    server: usize,
    /// The name the model calls (the tool's own name, or `<server>_<tool>` on a clash).
    exposed: String,
    /// `<server>:<tool>`, the form `tool_filter` uses.
    qualified: String,
    tool: Tool,
}

/// The MCP servers of one agent's `data.mcp` block, started and initialized, seen as one
/// [`ToolProvider`].
///
/// Dropping it without [`shutdown`](McpServers::shutdown) kills the stdio servers still running
/// (SIGKILL to their process groups on Unix) rather than leaving them behind.
pub struct McpServers {
    servers: Vec<Server>,
    tools: Vec<Entry>,
    by_name: HashMap<String, usize>,
    definitions: Vec<Value>,
}

impl std::fmt::Debug for McpServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let servers: Vec<&str> = self.servers.iter().map(|s| s.name.as_str()).collect();
        let tools: Vec<&str> = self.tools.iter().map(|t| t.exposed.as_str()).collect();
        f.debug_struct("McpServers")
            .field("servers", &servers)
            .field("tools", &tools)
            .finish()
    }
}

fn client_config() -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("flatmachines", env!("CARGO_PKG_VERSION")),
    )
}

fn init_error(e: ClientInitializeError) -> String {
    format!("initialize failed: {e}")
}

/// Spawns a stdio server: its own process group on Unix, killed when the handle drops, its
/// standard error forwarded to `tracing` (debug) and kept for error messages.
fn spawn_stdio(
    name: &str,
    program: &OsString,
    args: &[OsString],
    env: &[(String, String)],
    cwd: &Path,
    tail: &StderrTail,
) -> Result<(TokioChildProcess, Option<tokio::task::JoinHandle<()>>), McpError> {
    use process_wrap::tokio::{CommandWrap, KillOnDrop};
    if !cwd.is_dir() {
        return Err(McpError::new(
            name,
            format!("working directory {} does not exist", cwd.display()),
        ));
    }
    let mut command = tokio::process::Command::new(program);
    command.args(args).current_dir(cwd);
    for (k, v) in env {
        command.env(k, v);
    }
    let mut wrap = CommandWrap::from(command);
    wrap.wrap(KillOnDrop);
    #[cfg(unix)]
    wrap.wrap(process_wrap::tokio::ProcessGroup::leader());
    let shown = Path::new(program).display().to_string();
    let (child, stderr) = TokioChildProcess::builder(wrap)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::NotFound if shown.contains('/') => "no such file".to_string(),
                std::io::ErrorKind::NotFound => "command not found in PATH".to_string(),
                std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                _ => e.to_string(),
            };
            McpError::new(name, format!("cannot start `{shown}`: {why}"))
        })?;
    let reader = stderr.map(|stderr| {
        let tail = tail.clone();
        let server = name.to_string();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(target: "flatmachines::mcp", server = %server, "{line}");
                tail.push(&line);
            }
        })
    });
    Ok((child, reader))
}

/// Starts, initializes and lists one server, within its startup timeout.
async fn start_server(config: ServerConfig) -> Result<Started, McpError> {
    let name = config.name.clone();
    let limit = config.timeout.unwrap_or(DEFAULT_STARTUP_TIMEOUT);
    let tail = StderrTail::default();
    let mut reader = None;
    let connect = async {
        let (service, pid) = match &config.transport {
            TransportConfig::Stdio {
                program,
                args,
                env,
                cwd,
            } => {
                let (child, stderr_reader) = spawn_stdio(&name, program, args, env, cwd, &tail)?;
                reader = stderr_reader;
                let pid = child.id();
                let service = client_config().serve(child).await;
                (service, pid)
            }
            TransportConfig::Http { url, headers } => {
                let mut map = HashMap::new();
                for (k, v) in headers {
                    let key = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                        .map_err(|e| McpError::new(&name, format!("header `{k}`: {e}")))?;
                    let value = reqwest::header::HeaderValue::from_str(v)
                        .map_err(|e| McpError::new(&name, format!("header `{k}`: {e}")))?;
                    map.insert(key, value);
                }
                let transport = StreamableHttpClientTransport::from_config(
                    StreamableHttpClientTransportConfig::with_uri(url.as_str()).custom_headers(map),
                );
                (client_config().serve(transport).await, None)
            }
        };
        let service = service.map_err(|e| McpError::new(&name, init_error(e)))?;
        let tools = service
            .peer()
            .list_all_tools()
            .await
            .map_err(|e| McpError::new(&name, format!("tools/list failed: {e}")))?;
        Ok::<_, McpError>((service, pid, tools))
    };
    let outcome = tokio::time::timeout(limit, connect).await;
    let (service, pid, tools) = match outcome {
        Ok(Ok(started)) => started,
        Ok(Err(mut e)) => {
            // A server that exited at once: let its last words reach the message.
            if let Some(reader) = reader {
                let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
            }
            e.message.push_str(&tail.suffix());
            return Err(e);
        }
        Err(_) => {
            return Err(McpError::new(
                &name,
                format!(
                    "did not start within {} s (spawn, initialize and tools/list){}",
                    limit.as_secs_f64(),
                    tail.suffix()
                ),
            ));
        }
    };
    tracing::debug!(
        target: "flatmachines::mcp",
        server = %name,
        pid,
        tools = tools.len(),
        "MCP server started"
    );
    Ok(Started {
        server: Server {
            name,
            peer: service.peer().clone(),
            service: Mutex::new(Some(service)),
            pid,
            stderr: tail,
            call_timeout: config.timeout,
        },
        tools,
    })
}

/// Names the tools the filter lets through: a tool keeps its own name unless another kept tool
/// has the same one, then both become `<server>_<tool>`.
fn name_tools(started: &[Started], filter: &ToolFilter) -> Result<Vec<Entry>, McpError> {
    let mut kept = Vec::new();
    for (i, s) in started.iter().enumerate() {
        for tool in &s.tools {
            if filter.allows(&s.server.name, &tool.name) {
                kept.push((i, tool));
            }
        }
    }
    let mut count: HashMap<&str, usize> = HashMap::new();
    for (_, tool) in &kept {
        *count.entry(tool.name.as_ref()).or_default() += 1;
    }
    let mut taken: HashMap<String, usize> = HashMap::new();
    let mut entries = Vec::with_capacity(kept.len());
    for (i, tool) in kept {
        let server = &started[i].server.name;
        let exposed = if count[tool.name.as_ref()] > 1 {
            format!("{server}_{}", tool.name)
        } else {
            tool.name.to_string()
        };
        if let Some(&other) = taken.get(&exposed) {
            return Err(McpError::new(
                server,
                format!(
                    "tool `{}` would be offered as `{exposed}`, which server '{}' already \
                     offers; leave one out with `tool_filter.deny`",
                    tool.name, started[other].server.name
                ),
            ));
        }
        taken.insert(exposed.clone(), i);
        entries.push(Entry {
            server: i,
            qualified: format!("{server}:{}", tool.name),
            exposed,
            tool: tool.clone(),
        });
    }
    Ok(entries)
}

fn parameters(tool: &Tool) -> Value {
    if tool.input_schema.is_empty() {
        json!({"type": "object", "properties": {}})
    } else {
        Value::Object(tool.input_schema.as_ref().clone())
    }
}

fn description(tool: &Tool) -> String {
    tool.description.as_deref().unwrap_or("").to_string()
}

/// A `tools/call` result as the text the model reads: the text parts joined with newlines, any
/// other part (image, audio, resource) as its JSON; `structuredContent` when there is no part.
fn tool_result(result: CallToolResult) -> ToolResult {
    let mut parts: Vec<String> = result
        .content
        .iter()
        .map(|block| match block {
            ContentBlock::Text(text) => text.text.clone(),
            other => serde_json::to_string(other).unwrap_or_default(),
        })
        .collect();
    if parts.is_empty()
        && let Some(structured) = &result.structured_content
    {
        parts.push(structured.to_string());
    }
    ToolResult {
        content: parts.join("\n"),
        is_error: result.is_error.unwrap_or(false),
    }
}

/// SIGKILL to a stdio server's process group (its leader's pid on Unix).
#[cfg(unix)]
fn kill_group(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions; a negative pid names the group.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

impl McpServers {
    /// Starts every server of `mcp` (an agent's `data.mcp` map) and lists its tools.
    ///
    /// `base_dir` is the agent file's directory: a relative `command` with a `/` in it, the
    /// relative `args` that name an existing file or directory there, and `cwd` are resolved
    /// against it, and a stdio server runs in `cwd` or else in `base_dir`. Servers start
    /// concurrently; each has `timeout` seconds (default 30) to start, initialize and list its
    /// tools (all pages). `tool_filter` then picks the tools and clashing names get their
    /// server's prefix (see `docs/tools.md`).
    ///
    /// # Errors
    ///
    /// A block or entry of the wrong shape, a server with neither `command` nor `url`, a command
    /// that cannot be spawned, an `initialize` or `tools/list` that fails, a server that does not
    /// answer in time, or two tools that would still share a name. The servers already started
    /// are stopped before the error is returned.
    pub async fn start(mcp: &Value, base_dir: &Path) -> Result<McpServers, McpError> {
        let base_dir = std::path::absolute(base_dir).unwrap_or_else(|_| base_dir.to_path_buf());
        if !mcp.is_object() && !mcp.is_null() {
            return Err(McpError::config(format!(
                "`mcp` must be a map with `servers`, got {mcp}"
            )));
        }
        let configs = match mcp.get("servers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(servers)) => servers
                .iter()
                .map(|(name, spec)| parse_server(name, spec, &base_dir))
                .collect::<Result<Vec<_>, _>>()?,
            Some(other) => {
                return Err(McpError::config(format!(
                    "`servers` must be a map from server name to its entry, got {other}"
                )));
            }
        };
        let filter = parse_filter(mcp)?;
        for pattern in filter.allow.iter().chain(&filter.deny) {
            let named = configs.iter().any(|c| {
                pattern
                    .strip_prefix(c.name.as_str())
                    .is_some_and(|r| r.starts_with(':'))
            });
            if !named {
                tracing::warn!(
                    target: "flatmachines::mcp",
                    "tool_filter entry `{pattern}` names no configured server \
                     (expected \"server:tool\" or \"server:*\")"
                );
            }
        }

        let count = configs.len();
        let mut set = tokio::task::JoinSet::new();
        for (i, config) in configs.into_iter().enumerate() {
            let name = config.name.clone();
            set.spawn(async move { (i, name, start_server(config).await) });
        }
        let mut slots: Vec<Option<Result<Started, McpError>>> = (0..count).map(|_| None).collect();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((i, _, result)) => slots[i] = Some(result),
                Err(e) => {
                    // A panic while starting: the other servers are dropped (and so killed).
                    return Err(McpError::config(format!("starting a server panicked: {e}")));
                }
            }
        }
        let mut started = Vec::with_capacity(count);
        let mut failure = None;
        for slot in slots.into_iter().flatten() {
            match slot {
                Ok(s) => started.push(s),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        let entries = match failure {
            Some(e) => Err(e),
            None => name_tools(&started, &filter),
        };
        let servers: Vec<Server> = started.into_iter().map(|s| s.server).collect();
        let mut built = McpServers {
            servers,
            tools: Vec::new(),
            by_name: HashMap::new(),
            definitions: Vec::new(),
        };
        match entries {
            Ok(entries) => {
                built.definitions = entries
                    .iter()
                    .map(|e| {
                        json!({
                            "type": "function",
                            "function": {
                                "name": e.exposed,
                                "description": description(&e.tool),
                                "parameters": parameters(&e.tool),
                            }
                        })
                    })
                    .collect();
                built.by_name = entries
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (e.exposed.clone(), i))
                    .collect();
                built.tools = entries;
                Ok(built)
            }
            Err(e) => {
                built.shutdown().await;
                Err(e)
            }
        }
    }

    /// The tools for rendering the agent's `tool_prompt`, in the order of
    /// [`definitions`](ToolProvider::definitions): `{name, description, inputSchema, _server,
    /// _qualified}`, where `name` is the name the model calls and `_qualified` is
    /// `<server>:<tool>` with the server's own tool name.
    pub fn prompt_tools(&self) -> Vec<Value> {
        self.tools
            .iter()
            .map(|e| {
                json!({
                    "name": e.exposed,
                    "description": description(&e.tool),
                    "inputSchema": parameters(&e.tool),
                    "_server": self.servers[e.server].name,
                    "_qualified": e.qualified,
                })
            })
            .collect()
    }

    /// The process id of stdio server `server` (also its process group's id on Unix), or `None`
    /// for an HTTP server or a name that is not a server.
    pub fn pid(&self, server: &str) -> Option<u32> {
        self.servers
            .iter()
            .find(|s| s.name == server)
            .and_then(|s| s.pid)
    }

    /// Closes every client: HTTP sessions end, stdio servers get end of input, then SIGTERM,
    /// then SIGKILL (to their process groups on Unix), and are waited for. Tool calls made
    /// afterwards fail with an error naming the server. Calling it twice does nothing more.
    pub async fn shutdown(&self) {
        let mut set = tokio::task::JoinSet::new();
        for server in &self.servers {
            let taken = server
                .service
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            let Some(mut service) = taken else { continue };
            let pid = server.pid;
            let name = server.name.clone();
            set.spawn(async move {
                let closed = service.close_with_timeout(SHUTDOWN_TIMEOUT).await;
                if !matches!(closed, Ok(Some(_))) {
                    tracing::warn!(
                        target: "flatmachines::mcp",
                        server = %name,
                        "MCP server did not close in time; killing it"
                    );
                    #[cfg(unix)]
                    if let Some(pid) = pid {
                        kill_group(pid);
                    }
                    #[cfg(not(unix))]
                    let _ = pid;
                }
            });
        }
        while set.join_next().await.is_some() {}
    }
}

impl Drop for McpServers {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let service = server
                .service
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            let Some(service) = service else { continue };
            // Still running: rmcp would close it from a task on the runtime, which may be
            // gone or shutting down by now; kill the group here so nothing is left behind.
            // A service whose transport is closed has already waited for its child, whose pid
            // may be reused: leave it.
            #[cfg(unix)]
            if let Some(pid) = server.pid
                && !server.peer.is_transport_closed()
            {
                kill_group(pid);
            }
            drop(service);
        }
    }
}

#[async_trait::async_trait]
impl ToolProvider for McpServers {
    fn definitions(&self) -> Vec<Value> {
        self.definitions.clone()
    }

    async fn execute(
        &self,
        name: &str,
        _call_id: &str,
        arguments: &Value,
    ) -> Result<ToolResult, ToolError> {
        let Some(&index) = self.by_name.get(name) else {
            return Ok(ToolResult::error(format!("Unknown tool: {name}")));
        };
        let entry = &self.tools[index];
        let server = &self.servers[entry.server];
        let tool = entry.tool.name.clone();
        let running = server
            .service
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if !running {
            return Err(server.error(format!("cannot call `{tool}`: the server was shut down")));
        }
        let mut params = CallToolRequestParams::new(tool.clone());
        match arguments {
            Value::Null => {}
            Value::Object(args) => params = params.with_arguments(args.clone()),
            other => {
                return Err(server.error(format!(
                    "arguments of `{tool}` must be a JSON object, got {other}"
                )));
            }
        }
        let call = server.peer.call_tool(params);
        let result = match server.call_timeout {
            Some(limit) => match tokio::time::timeout(limit, call).await {
                Ok(result) => result,
                Err(_) => {
                    return Err(server.error(format!(
                        "`{tool}` did not answer within {} s",
                        limit.as_secs_f64()
                    )));
                }
            },
            None => call.await,
        };
        result
            .map(tool_result)
            .map_err(|e| server.error(format!("calling `{tool}` failed: {e}")))
    }

    fn provides(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    fn qualified_name(&self, name: &str) -> Option<String> {
        self.by_name
            .get(name)
            .map(|&i| self.tools[i].qualified.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_patterns_are_exact_or_whole_server_and_deny_wins() {
        let f = ToolFilter {
            allow: vec!["files:read_file".into(), "search:*".into()],
            deny: vec!["search:drop".into()],
        };
        assert!(f.allows("files", "read_file"));
        assert!(!f.allows("files", "write_file"));
        assert!(f.allows("search", "query"));
        assert!(!f.allows("search", "drop"));
        assert!(!f.allows("searchx", "query"));
        assert!(!f.allows("other", "read_file"));
        let open = ToolFilter {
            allow: vec![],
            deny: vec!["a:*".into()],
        };
        assert!(open.allows("b", "x"));
        assert!(!open.allows("a", "x"));
    }

    #[test]
    fn commands_with_a_slash_and_existing_args_resolve_against_the_base_dir() {
        let base = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(resolve_command("npx", base), OsString::from("npx"));
        assert_eq!(resolve_command("/bin/sh", base), OsString::from("/bin/sh"));
        assert_eq!(
            resolve_command("./srv.py", base),
            base.join("srv.py").into_os_string()
        );
        assert_eq!(
            resolve_command("bin/srv", base),
            base.join("bin/srv").into_os_string()
        );
        assert_eq!(resolve_arg("src", base), base.join("src").into_os_string());
        assert_eq!(
            resolve_arg("Cargo.toml", base),
            base.join("Cargo.toml").into_os_string()
        );
        assert_eq!(resolve_arg("-y", base), OsString::from("-y"));
        assert_eq!(
            resolve_arg("--root=src", base),
            OsString::from("--root=src")
        );
        assert_eq!(resolve_arg("not-here", base), OsString::from("not-here"));
    }

    #[test]
    fn environment_variables_expand_in_server_entries() {
        // PATH is set in every test environment.
        let path = std::env::var("PATH").unwrap();
        assert_eq!(
            expand_vars("s", "a ${PATH} b").unwrap(),
            format!("a {path} b")
        );
        assert_eq!(
            expand_vars("s", "echo $$ $1 ${ ${1x} $(pwd)").unwrap(),
            "echo $$ $1 ${ ${1x} $(pwd)"
        );
        let e = expand_vars("s", "${FLATMACHINES_SURELY_UNSET_VAR}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "MCP server 's': `${FLATMACHINES_SURELY_UNSET_VAR}` names an environment variable that is not set"
        );
    }

    #[test]
    fn a_timeout_beyond_durations_range_means_no_limit() {
        let c = parse_server(
            "x",
            &json!({"command": "a", "timeout": 1e30}),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(c.timeout, Some(Duration::MAX));
        let c = parse_server(
            "x",
            &json!({"command": "a", "timeout": 2.5}),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(c.timeout, Some(Duration::from_millis(2500)));
    }

    #[test]
    fn entries_need_exactly_one_of_command_and_url() {
        let base = Path::new("/tmp");
        let e = parse_server("x", &json!({}), base).unwrap_err();
        assert_eq!(e.server, "x");
        assert!(e.message.contains("`command`"), "{e}");
        let e = parse_server("x", &json!({"command": "a", "url": "http://h"}), base).unwrap_err();
        assert!(e.to_string().starts_with("MCP server 'x': has both"), "{e}");
        assert!(parse_server("x", &json!({"server_url": "http://h/mcp"}), base).is_ok());
        let e = parse_server("x", &json!({"command": "a", "args": [{}]}), base).unwrap_err();
        assert!(e.message.contains("`args`"), "{e}");
        let e = parse_server("x", &json!({"command": "a", "timeout": 0}), base).unwrap_err();
        assert!(e.message.contains("`timeout`"), "{e}");
        assert_eq!(
            McpError::config("bad").to_string(),
            "MCP config: bad".to_string()
        );
    }
}

//! The MCP tool provider (`tools::McpServers`, feature `mcp`) against real MCP servers.
//!
//! Most tests talk to a server written with the Python SDK (`mcp` on PyPI, `tests/mcp_server.py`)
//! over stdio and over streamable HTTP. The tests install that SDK themselves, once, into a venv
//! under the target directory (`target/tmp/mcp-venv`). Where that cannot happen (no `python3`, no
//! `venv`, no network) they print `skipped: …` and pass, except on CI (`CI=true`), where they
//! fail. The tests of startup errors use only `sh`.

#![cfg(unix)]

use flatmachines::tools::{McpServers, ToolProvider, definition_name};
use flatmachines_testkit::TempDir;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The Python SDK the tests install (2.x: `MCPServer`, protocol 2025-11-25 and 2026-07-28).
const PY_MCP: &str = "mcp==2.3.0";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp_server.py");

/// The venv's python with the SDK installed, or why there is none.
fn install() -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mcp-venv");
    let python = venv.join("bin/python");
    let marker = venv.join(format!(".installed-{PY_MCP}"));
    if marker.exists() && python.exists() {
        return Ok(python);
    }
    let run = |cmd: &mut Command, what: &str| -> Result<(), String> {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{what}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            Err(format!(
                "{what} failed ({}): {}",
                out.status,
                tail.join(" / ")
            ))
        }
    };
    run(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
        "python3 -m venv",
    )?;
    run(
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--quiet",
            PY_MCP,
        ]),
        &format!("pip install {PY_MCP}"),
    )?;
    std::fs::write(&marker, "").map_err(|e| format!("write {}: {e}", marker.display()))?;
    Ok(python)
}

/// The venv's python, or `None` after printing why the test is skipped (a panic on CI).
fn python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(install) {
        Ok(python) => Some(python.clone()),
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("the Python MCP server is required on CI: {why}")
        }
        Err(why) => {
            eprintln!("skipped: the Python MCP server could not be installed: {why}");
            None
        }
    }
}

/// A stdio server entry running the Python server with `args`.
fn py(python: &Path, args: &[&str]) -> Value {
    let mut all = vec![SCRIPT.to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    json!({"command": python, "args": all})
}

fn names(servers: &McpServers) -> Vec<String> {
    servers
        .definitions()
        .iter()
        .map(|d| definition_name(d).unwrap().to_string())
        .collect()
}

/// Whether process `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X') | None)
        }
        Err(_) => false,
    }
}

/// The live processes of process group `pgid`.
fn group(pgid: u32) -> Vec<u32> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        // state ppid pgrp …
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[2] == pgid.to_string() && !matches!(fields[0], "Z" | "X") {
            members.push(pid);
        }
    }
    members
}

/// Polls `done` for up to `limit`.
async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn discovers_the_tools_and_gives_openai_definitions() {
    let Some(python) = python() else { return };
    let mcp = json!({"servers": {"py": py(&python, &[])}});
    let servers = McpServers::start(&mcp, &here()).await.unwrap();
    assert_eq!(
        names(&servers),
        ["add", "shout", "fail", "whoami", "picture"]
    );
    let add = &servers.definitions()[0];
    assert_eq!(add["type"], "function");
    assert_eq!(add["function"]["description"], "Add two integers.");
    let params = &add["function"]["parameters"];
    assert_eq!(params["type"], "object");
    assert_eq!(params["properties"]["a"]["type"], "integer");
    assert_eq!(params["required"], json!(["a", "b"]));
    assert!(servers.provides("shout"));
    assert!(!servers.provides("py_shout"));

    let prompt = servers.prompt_tools();
    assert_eq!(prompt.len(), 5);
    assert_eq!(prompt[1]["name"], "shout");
    assert_eq!(prompt[1]["description"], "Upper-case the text.");
    assert_eq!(prompt[1]["_server"], "py");
    assert_eq!(prompt[1]["_qualified"], "py:shout");
    assert_eq!(
        prompt[1]["inputSchema"]["properties"]["text"]["type"],
        "string"
    );
    servers.shutdown().await;
}

#[tokio::test]
async fn calls_a_tool_and_reads_its_text() {
    let Some(python) = python() else { return };
    let mcp = json!({"servers": {"py": py(&python, &[])}});
    let servers = McpServers::start(&mcp, &here()).await.unwrap();

    let sum = servers
        .execute("add", "call_1", &json!({"a": 2, "b": 40}))
        .await
        .unwrap();
    assert_eq!((sum.content.as_str(), sum.is_error), ("42", false));
    let loud = servers
        .execute("shout", "call_2", &json!({"text": "hello"}))
        .await
        .unwrap();
    assert_eq!(loud.content, "HELLO");

    // A non-text part is given as its JSON, after the text parts.
    let picture = servers
        .execute("picture", "call_3", &json!({}))
        .await
        .unwrap();
    let (text, image) = picture.content.split_once('\n').unwrap();
    assert_eq!(text, "two parts");
    let image: Value = serde_json::from_str(image).unwrap();
    assert_eq!(image["type"], "image");
    assert_eq!(image["mimeType"], "image/png");

    // Arguments may be absent (`null`) for a tool without parameters.
    let me = servers
        .execute("whoami", "call_4", &Value::Null)
        .await
        .unwrap();
    assert!(me.content.starts_with("py "), "{me:?}");

    let unknown = servers.execute("nope", "call_5", &json!({})).await.unwrap();
    assert_eq!(unknown.content, "Unknown tool: nope");
    assert!(unknown.is_error);
    servers.shutdown().await;
}

#[tokio::test]
async fn is_error_from_the_server_becomes_is_error() {
    let Some(python) = python() else { return };
    let mcp = json!({"servers": {"py": py(&python, &["--only", "fail"])}});
    let servers = McpServers::start(&mcp, &here()).await.unwrap();
    let failed = servers
        .execute("fail", "call_1", &json!({"reason": "boom"}))
        .await
        .unwrap();
    assert!(failed.is_error);
    assert!(
        failed.content.contains("failed on purpose: boom"),
        "{failed:?}"
    );
    // Arguments the tool's schema rejects: also a result with is_error, from the server.
    let invalid = servers
        .execute("fail", "call_2", &json!({"reason": {"not": "a string"}}))
        .await
        .unwrap();
    assert!(invalid.is_error, "{invalid:?}");
    servers.shutdown().await;
}

#[tokio::test]
async fn tool_filter_allows_and_denies_server_tool_names() {
    let Some(python) = python() else { return };
    let a = py(&python, &["--name", "a", "--only", "add,fail,shout"]);
    let b = py(&python, &["--name", "b", "--only", "whoami,picture"]);
    let mcp = json!({
        "servers": {"a": a, "b": b},
        "tool_filter": {"allow": ["a:*", "b:whoami"], "deny": ["a:fail"]}
    });
    let servers = McpServers::start(&mcp, &here()).await.unwrap();
    assert_eq!(names(&servers), ["add", "shout", "whoami"]);
    assert!(!servers.provides("fail"));
    let denied = servers.execute("fail", "c", &json!({"reason": "x"})).await;
    assert_eq!(denied.unwrap().content, "Unknown tool: fail");
    servers.shutdown().await;

    // Deny wins over allow; no allow list allows everything not denied.
    let mcp = json!({
        "servers": {"a": a, "b": b},
        "tool_filter": {"deny": ["a:add", "b:*"]}
    });
    let servers = McpServers::start(&mcp, &here()).await.unwrap();
    assert_eq!(names(&servers), ["shout", "fail"]);
    servers.shutdown().await;
    let mcp = json!({
        "servers": {"a": a},
        "tool_filter": {"allow": ["a:add", "a:shout"], "deny": ["a:add"]}
    });
    let servers = McpServers::start(&mcp, &here()).await.unwrap();
    assert_eq!(names(&servers), ["shout"]);
    servers.shutdown().await;
}

#[tokio::test]
async fn a_name_two_servers_offer_gets_the_server_prefix() {
    let Some(python) = python() else { return };
    let mcp = json!({"servers": {
        "one": py(&python, &["--name", "one", "--only", "add,whoami"]),
        "two": py(&python, &["--name", "two", "--only", "shout,whoami"]),
    }});
    let servers = McpServers::start(&mcp, &here()).await.unwrap();
    assert_eq!(
        names(&servers),
        ["add", "one_whoami", "shout", "two_whoami"]
    );
    let two = servers
        .execute("two_whoami", "c1", &json!({}))
        .await
        .unwrap();
    assert!(two.content.starts_with("two "), "{two:?}");
    let one = servers
        .execute("one_whoami", "c2", &json!({}))
        .await
        .unwrap();
    assert!(one.content.starts_with("one "), "{one:?}");
    let prompt = servers.prompt_tools();
    assert_eq!(prompt[3]["name"], "two_whoami");
    assert_eq!(prompt[3]["_qualified"], "two:whoami");
    assert_eq!(prompt[3]["_server"], "two");
    // A filter that leaves one of them out leaves the other unprefixed.
    servers.shutdown().await;
    let mut filtered = mcp.clone();
    filtered["tool_filter"] = json!({"deny": ["one:whoami"]});
    let servers = McpServers::start(&filtered, &here()).await.unwrap();
    assert_eq!(names(&servers), ["add", "shout", "whoami"]);
    servers.shutdown().await;
}

#[tokio::test]
async fn every_page_of_tools_list_is_read() {
    let Some(python) = python() else { return };
    let mcp = json!({"servers": {"paged": py(&python, &["--paged"])}});
    let servers = McpServers::start(&mcp, &here()).await.unwrap();
    assert_eq!(
        names(&servers),
        ["add", "shout", "fail", "whoami", "picture"]
    );
    servers.shutdown().await;
}

/// A streamable-HTTP Python server on a free port, killed on drop.
struct HttpServer {
    child: std::process::Child,
    url: String,
}

impl HttpServer {
    async fn start(python: &Path, args: &[&str]) -> HttpServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(python)
            .arg(SCRIPT)
            .args(["--http", &port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let listening = eventually(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
        if !listening {
            let _ = child.kill();
            panic!("the HTTP MCP server did not listen on port {port} within 30 s");
        }
        HttpServer {
            child,
            url: format!("http://127.0.0.1:{port}/mcp"),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn streamable_http_servers_work_beside_stdio_ones() {
    let Some(python) = python() else { return };
    let http = HttpServer::start(&python, &["--name", "web", "--only", "add,whoami"]).await;
    let mcp = json!({"servers": {
        "web": {"url": http.url, "headers": {"X-Flatmachines-Test": "yes"}},
        "local": py(&python, &["--name", "local", "--only", "shout,whoami"]),
    }});
    let servers = McpServers::start(&mcp, &here()).await.unwrap();
    assert_eq!(
        names(&servers),
        ["add", "web_whoami", "shout", "local_whoami"]
    );
    assert_eq!(servers.pid("web"), None);
    assert!(servers.pid("local").is_some());
    let sum = servers
        .execute("add", "c1", &json!({"a": 20, "b": 22}))
        .await
        .unwrap();
    assert_eq!(sum.content, "42");
    let web = servers
        .execute("web_whoami", "c2", &json!({}))
        .await
        .unwrap();
    assert!(web.content.starts_with("web "), "{web:?}");
    servers.shutdown().await;

    // The reference's key for the URL, `server_url`, works too.
    let mcp = json!({"servers": {"web": {"server_url": http.url}}});
    let servers = McpServers::start(&mcp, &here()).await.unwrap();
    let loud = servers.execute("add", "c3", &json!({"a": 1, "b": 1})).await;
    assert_eq!(loud.unwrap().content, "2");
    servers.shutdown().await;
}

#[tokio::test]
async fn a_relative_command_args_and_cwd_resolve_against_the_base_dir() {
    let Some(python) = python() else { return };
    let base = TempDir::new();
    let launcher = base.write(
        "bin/run-server",
        format!("#!/bin/sh\nexec '{}' \"$@\"\n", python.display()),
    );
    let mut perms = std::fs::metadata(&launcher).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&launcher, perms).unwrap();
    base.write("server.py", std::fs::read(SCRIPT).unwrap());
    std::fs::create_dir(base.join("work")).unwrap();

    // `server.py` exists in the base dir, not in `cwd`: it resolves against the base dir.
    let mcp = json!({"servers": {"rel": {
        "command": "bin/run-server",
        "args": ["server.py", "--name", "rel", "--only", "whoami"],
        "cwd": "work",
        "env": {"FM_TEST_VAR": "from-env"},
    }}});
    let servers = McpServers::start(&mcp, base.path()).await.unwrap();
    let me = servers.execute("whoami", "c", &json!({})).await.unwrap();
    let work = std::fs::canonicalize(base.join("work")).unwrap();
    assert_eq!(me.content, format!("rel {} from-env", work.display()));
    servers.shutdown().await;

    // Without `cwd` the server runs in the base dir; `./` commands resolve there too.
    let mcp = json!({"servers": {"rel": {
        "command": "./bin/run-server",
        "args": ["server.py", "--only", "whoami"],
    }}});
    let servers = McpServers::start(&mcp, base.path()).await.unwrap();
    let me = servers.execute("whoami", "c", &json!({})).await.unwrap();
    let dir = std::fs::canonicalize(base.path()).unwrap();
    assert_eq!(me.content, format!("py {} -", dir.display()));
    servers.shutdown().await;
}

#[tokio::test]
async fn a_command_that_does_not_exist_is_an_error_naming_the_server() {
    let mcp = json!({"servers": {"ghost": {"command": "flatmachines-no-such-mcp-server"}}});
    let e = McpServers::start(&mcp, &here()).await.unwrap_err();
    assert_eq!(e.server, "ghost");
    assert!(e.message.contains("command not found"), "{e}");
    assert!(
        e.to_string()
            .starts_with("MCP server 'ghost': cannot start `flatmachines-no-such-mcp-server`"),
        "{e}"
    );

    let mcp = json!({"servers": {"ghost": {"command": "./bin/nothing-here"}}});
    let e = McpServers::start(&mcp, &here()).await.unwrap_err();
    assert_eq!(e.server, "ghost");
    assert!(e.message.contains("no such file"), "{e}");

    let mcp = json!({"servers": {"nowhere": {}}});
    let e = McpServers::start(&mcp, &here()).await.unwrap_err();
    assert_eq!(e.server, "nowhere");
}

#[tokio::test]
async fn a_server_that_exits_at_once_is_an_error_not_a_hang() {
    let mcp = json!({"servers": {"quitter": {
        "command": "sh",
        "args": ["-c", "echo 'quitter: no config found' >&2; exit 3"],
    }}});
    let start = Instant::now();
    let e = McpServers::start(&mcp, &here()).await.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(e.server, "quitter");
    assert!(e.message.starts_with("initialize failed"), "{e}");
    assert!(e.message.contains("quitter: no config found"), "{e}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_and_is_killed() {
    let dir = TempDir::new();
    let pidfile = dir.join("pid");
    let mcp = json!({"servers": {"mute": {
        "command": "sh",
        "args": ["-c", format!("echo $$ > '{}'; exec sleep 300", pidfile.display())],
        "timeout": 1,
    }}});
    let start = Instant::now();
    let e = McpServers::start(&mcp, &here()).await.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(e.server, "mute");
    assert!(e.message.contains("did not start within 1 s"), "{e}");
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || !alive(pid)).await,
        "the server that timed out is still running (pid {pid})"
    );
}

/// The Python server behind a shell that also starts a `sleep` that ignores end of input: the
/// server's process group then has more than the process rmcp spawned.
fn with_a_straggler(python: &Path, args: &str) -> Value {
    json!({"command": "sh", "args": [
        "-c",
        format!("sleep 300 & '{}' '{SCRIPT}' {args}; wait", python.display()),
    ]})
}

#[tokio::test]
async fn shutdown_leaves_no_process_of_the_server_behind() {
    let Some(python) = python() else { return };
    let mcp = json!({"servers": {"py": with_a_straggler(&python, "--only add")}});
    let servers = McpServers::start(&mcp, &here()).await.unwrap();
    let pid = servers.pid("py").unwrap();
    assert!(alive(pid));
    assert!(
        group(pid).len() >= 3,
        "sh, python and sleep: {:?}",
        group(pid)
    );

    servers.shutdown().await;
    assert!(!alive(pid), "the server (pid {pid}) outlived shutdown");
    assert!(
        eventually(Duration::from_secs(5), || group(pid).is_empty()).await,
        "processes of the server's group outlived shutdown: {:?}",
        group(pid)
    );
    let after = servers.execute("add", "c", &json!({"a": 1, "b": 2})).await;
    let e = after.unwrap_err();
    assert_eq!(
        e.message,
        "MCP server 'py': cannot call `add`: the server was shut down"
    );
    servers.shutdown().await; // a second time: nothing to do
}

#[tokio::test]
async fn dropping_the_servers_kills_them() {
    let Some(python) = python() else { return };
    let mcp = json!({"servers": {"py": with_a_straggler(&python, "--only add")}});
    let servers = McpServers::start(&mcp, &here()).await.unwrap();
    let pid = servers.pid("py").unwrap();
    assert!(group(pid).len() >= 3, "{:?}", group(pid));
    drop(servers);
    assert!(
        eventually(Duration::from_secs(10), || group(pid).is_empty()).await,
        "processes of the server's group outlived the drop: {:?}",
        group(pid)
    );
}

/// Dropped together with its runtime, rmcp cannot close the servers from a task any more (the
/// task is cancelled; only the process it spawned is killed): `McpServers` kills their process
/// groups itself.
#[test]
fn dropping_the_servers_with_their_runtime_kills_them() {
    let Some(python) = python() else { return };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mcp = json!({"servers": {"py": with_a_straggler(&python, "--only add")}});
    let servers = rt.block_on(McpServers::start(&mcp, &here())).unwrap();
    let pid = servers.pid("py").unwrap();
    assert!(group(pid).len() >= 3, "{:?}", group(pid));
    drop(servers);
    drop(rt);
    let start = Instant::now();
    while !group(pid).is_empty() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        group(pid).is_empty(),
        "processes of the server's group outlived the drop: {:?}",
        group(pid)
    );
}

#[tokio::test]
async fn a_server_that_died_gives_a_tool_error_naming_it() {
    let Some(python) = python() else { return };
    let mcp = json!({"servers": {"py": py(&python, &["--only", "add"])}});
    let servers = McpServers::start(&mcp, &here()).await.unwrap();
    let pid = servers.pid("py").unwrap();
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let args = json!({"a": 1, "b": 2});
    let call = servers.execute("add", "c", &args);
    let result = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("a call to a dead server must not hang");
    let e = result.unwrap_err();
    assert!(e.message.starts_with("MCP server 'py': "), "{e}");
    servers.shutdown().await;
}

#[tokio::test]
async fn a_block_of_the_wrong_shape_is_an_error() {
    let e = McpServers::start(&json!({"servers": ["a"]}), &here())
        .await
        .unwrap_err();
    assert_eq!(e.server, "");
    assert!(e.to_string().starts_with("MCP config: `servers`"), "{e}");
    let e = McpServers::start(
        &json!({"servers": {}, "tool_filter": {"allow": "a:*", "deny": {"x": 1}}}),
        &here(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("tool_filter.deny"), "{e}");
    // No servers at all: an empty provider.
    let none = McpServers::start(&json!({"tool_prompt": "x"}), &here())
        .await
        .unwrap();
    assert!(none.definitions().is_empty());
}

/// The npm reference server (`@modelcontextprotocol/server-everything`, TypeScript SDK) through
/// `npx`, as agents usually declare servers. Skipped without `npx` or when the package cannot be
/// fetched, except on CI.
#[tokio::test]
async fn the_npm_reference_server_works_through_npx() {
    const PACKAGE: &str = "@modelcontextprotocol/server-everything@2026.8.31";
    let on_ci = std::env::var("CI").as_deref() == Ok("true");
    if Command::new("npx").arg("--version").output().is_err() {
        assert!(!on_ci, "npx is required on CI");
        eprintln!("skipped: no npx");
        return;
    }
    let mcp = json!({
        "servers": {"everything": {"command": "npx", "args": ["-y", PACKAGE], "timeout": 180}},
        "tool_filter": {
            "allow": ["everything:echo", "everything:get-sum", "everything:get-tiny-image"]
        }
    });
    let servers = match McpServers::start(&mcp, &here()).await {
        Ok(servers) => servers,
        Err(e) if !on_ci => {
            eprintln!("skipped: {PACKAGE} did not start through npx: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    assert_eq!(names(&servers), ["echo", "get-sum", "get-tiny-image"]);
    let echo = servers
        .execute("echo", "c1", &json!({"message": "hi"}))
        .await
        .unwrap();
    assert_eq!(echo.content, "Echo: hi");
    let sum = servers
        .execute("get-sum", "c2", &json!({"a": 2, "b": 3}))
        .await
        .unwrap();
    assert!(sum.content.contains('5'), "{sum:?}");
    let image = servers
        .execute("get-tiny-image", "c3", &json!({}))
        .await
        .unwrap();
    assert!(image.content.contains("\"type\":\"image\""), "{image:?}");
    let pid = servers.pid("everything").unwrap();
    servers.shutdown().await;
    assert!(
        eventually(Duration::from_secs(5), || group(pid).is_empty()).await,
        "npx or node outlived shutdown: {:?}",
        group(pid)
    );
}

/// A machine's tool loop with the Python server declared in its agent's YAML: the runtime starts
/// it, offers its tools, applies `allowed_tools`/`denied_tools` written as `server:tool`, and
/// stops it when the run ends.
#[cfg(all(feature = "loader", feature = "http"))]
#[tokio::test]
async fn a_tool_loop_uses_the_servers_its_agent_declares_and_stops_them() {
    use flatmachines::agent::FlatAgentAdapter;
    use flatmachines::{Machine, Runtime};
    use flatmachines_testkit::FakeLlm;

    let Some(python) = python() else { return };
    let dir = TempDir::new();
    // A name no other test's server has, to find this server's process afterwards.
    let token = format!("loop-{}-{}", std::process::id(), dir.path().display());
    let agent = json!({
        "spec": "flatagent",
        "spec_version": "2.6.0",
        "data": {
            "name": "calc",
            "model": {"provider": "openai", "name": "calc-model"},
            "system": "Tools:\n{{ tools_prompt }}",
            "user": "{{ input.q }}",
            "mcp": {
                "servers": {"py": py(&python, &["--name", &token])},
                "tool_prompt": "{% for t in tools %}{{ t._qualified }} {% endfor %}",
            },
        }
    });
    // JSON is YAML.
    dir.write("calc.yml", agent.to_string());
    dir.write(
        "machine.yml",
        r#"spec: flatmachine
spec_version: "2.6.0"
data:
  name: calc-loop
  agents: {calc: ./calc.yml}
  states:
    start:
      type: initial
      agent: calc
      tool_loop:
        allowed_tools: ["py:*"]
        denied_tools: ["py:shout"]
      input: {q: "{{ input.q }}"}
      output_to_context: {answer: output.content, calls: output._tool_calls_count}
      transitions: [{to: done}]
    done:
      type: final
      output: {answer: context.answer, calls: context.calls}
"#,
    );
    let server = FakeLlm::start(json!({"models": {"calc-model": [
        {"$tool_calls": [
            {"id": "a", "name": "add", "arguments": {"a": 2, "b": 40}},
            {"id": "s", "name": "shout", "arguments": {"text": "hi"}},
            {"id": "w", "name": "whoami", "arguments": {}}
        ]},
        "42"
    ]}}))
    .unwrap();
    let machine = Machine::from_file(dir.join("machine.yml")).unwrap();
    let rt = Runtime::builder()
        .adapter(FlatAgentAdapter::with_base_url(server.base_url()))
        .build();
    let out = rt.run(&machine, json!({"q": "2 + 40?"})).await.unwrap();
    assert_eq!(out, json!({"answer": "42", "calls": 2}));
    let log = server.log();
    let system = log[0]["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("py:add py:shout"), "{system}");
    let tools: Vec<(String, String)> = log[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            (
                m["tool_call_id"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(tools[0], ("a".into(), "42".into()));
    assert_eq!(
        tools[1],
        ("s".into(), "Tool 'shout' is not allowed.".into())
    );
    // It ran in the agent file's directory, and was stopped when the run ended.
    assert!(tools[2].1.starts_with(&token), "{}", tools[2].1);
    assert!(
        tools[2].1.contains(&dir.path().display().to_string()),
        "{}",
        tools[2].1
    );
    let running = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
            std::fs::read(p.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&token))
        })
    };
    assert!(
        eventually(Duration::from_secs(10), || !running()).await,
        "the MCP server outlived the run"
    );
}

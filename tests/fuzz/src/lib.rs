//! The fuzzing entry points: one function per fuzz target, each taking the raw input bytes.
//!
//! The fuzz targets in `fuzz_targets/` call these, and `tests/tests/fuzz_regressions.rs`
//! includes this file to replay every input in `regressions/<target>/` through the same code.
//! Each function returns a small number derived from the result (so nothing is optimised
//! away, and the regression test can check the result is bounded); a panic is the failure.

use flatmachines::agent::FlatAgentAdapter;
use flatmachines::agent::{AdapterContext, AgentAdapter, AgentExecutor, AgentSpec, ToolTurn};
use flatmachines::unstable::condition::{Condition, Engine};
use flatmachines::unstable::snapshot::MachineSnapshot;
use flatmachines::unstable::template::{Templates, Vars};
use flatmachines_compiler::load::{Input, LoadOptions, MemoryFs, load_with};
use flatmachines_compiler::{Checked, check::check_project};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// The names of the targets, which are also the folder names under `seeds/` and
/// `regressions/`.
pub const TARGETS: [&str; 7] = [
    "check_yaml",
    "template_value",
    "template_prompt",
    "condition_simple",
    "condition_cel",
    "snapshot",
    "llm_reply",
];

/// Runs target `name` on `data`.
pub fn run(name: &str, data: &[u8]) -> usize {
    match name {
        "check_yaml" => check_yaml(data),
        "template_value" => template_value(data),
        "template_prompt" => template_prompt(data),
        "condition_simple" => condition_simple(data),
        "condition_cel" => condition_cel(data),
        "snapshot" => snapshot(data),
        "llm_reply" => llm_reply(data),
        _ => panic!("no fuzz target named {name}"),
    }
}

/// `tests/fixtures`, from either crate that compiles this file (`tests/fuzz` or `tests`).
fn fixtures() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tests = if dir.ends_with("fuzz") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    tests.join("fixtures")
}

/// Where the fuzzed machine sits in the in-memory file system.
const MACHINE_DIR: &str = "/fuzz";

/// The files a fuzzed machine can reference: every agent and child machine of the
/// conformance fixtures (by their path inside their case), and the defective fixtures' agents
/// folder and child machine, all in one folder next to the fuzzed machine.
fn companions() -> &'static [(PathBuf, Vec<u8>)] {
    static FILES: OnceLock<Vec<(PathBuf, Vec<u8>)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let root = fixtures();
        let mut files = Vec::new();
        let mut add = |name: &str, file: &Path| {
            if let Ok(bytes) = std::fs::read(file) {
                files.push((Path::new(MACHINE_DIR).join(name), bytes));
            }
        };
        let cases = std::fs::read_dir(root.join("conformance"))
            .into_iter()
            .flatten();
        for case in cases.flatten() {
            let mut stack = vec![case.path()];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else if path.extension().is_some_and(|e| e == "yml")
                        && !path.ends_with("machine.yml")
                        && let Ok(rel) = path.strip_prefix(case.path())
                    {
                        add(&rel.to_string_lossy(), &path);
                    }
                }
            }
        }
        let defective = root.join("defective");
        add("agents/writer.yml", &defective.join("agents/writer.yml"));
        add(
            "agents/profiles.yml",
            &defective.join("agents/profiles.yml"),
        );
        add("child.yml", &defective.join("child_ok.yml"));
        let triage = root.join("compiled/triage");
        add(
            "agents/classifier.yml",
            &triage.join("agents/classifier.yml"),
        );
        add("escalate.yml", &triage.join("escalate.yml"));
        files
    })
}

/// (a) What `flatmachines check` does with a machine file: load it and everything it
/// references, check it, render the diagnostics as text and as JSON. The machine is read
/// from an in-memory file system, so a fuzzed reference never reaches the disk.
pub fn check_yaml(data: &[u8]) -> usize {
    let path = Path::new(MACHINE_DIR).join("machine.yml");
    let mut fs = MemoryFs::new();
    for (name, bytes) in companions() {
        fs = fs.file(name.clone(), Cow::Borrowed(bytes.as_slice()));
    }
    let fs = fs.file(path.clone(), data.to_vec());
    let project = load_with(Input::File(&path), &LoadOptions::default(), &fs);
    let diagnostics = check_project(&project);
    let checked = Checked {
        project,
        diagnostics,
    };
    checked.render().len() + checked.to_json().len() + usize::from(checked.has_errors())
}

/// The fixed context templates and conditions see.
fn context() -> &'static Value {
    static CONTEXT: OnceLock<Value> = OnceLock::new();
    CONTEXT.get_or_init(|| {
        json!({
            "n": 5,
            "score": 0.75,
            "name": "Ada",
            "empty": "",
            "flag": true,
            "none": null,
            "tags": ["a", "b", "c"],
            "nums": [3, 1, 2],
            "nested": {"k": [1, 2.5, null, true], "deep": {"x": "y"}},
            "json_text": "{\"a\": [1, 2], \"b\": \"c\"}",
            "big": 9007199254740993u64,
            "neg": -7,
            "machine": {"execution_id": "e-1", "step": 3, "state": "work"},
        })
    })
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// (b) A value template (a state's `input`, `output_to_context`, `output`): the machine
/// environment, one fresh template cache per input so the cache does not grow.
pub fn template_value(data: &[u8]) -> usize {
    let Some(src) = text(data) else { return 0 };
    let templates = Templates::new();
    let ctx = context();
    let output = json!({"content": "hi", "items": [1, 2]});
    let vars = Vars::new()
        .with("context", ctx)
        .with("input", ctx)
        .with("output", &output);
    let mut n = usize::from(templates.compile(src).is_ok());
    let value = Value::String(src.to_string());
    if let Ok(v) = templates.render_value(&value, &vars) {
        n += v.to_string().len();
    }
    let map = json!({"a": src, "b": [src, 1, {"c": src}]});
    if let Ok(v) = templates.render_map(&map, &vars) {
        n += v.to_string().len();
    }
    n
}

/// (b) An agent prompt template: the prompt environment with the variables the `flatagent`
/// adapter passes (`input`, `model`, `tools`, `tools_prompt`).
pub fn template_prompt(data: &[u8]) -> usize {
    let Some(src) = text(data) else { return 0 };
    let templates = Templates::for_prompts();
    let model = json!({"name": "gpt-test", "temperature": 0.2});
    let tools = json!([]);
    let tools_prompt = json!("Use the tools.");
    let vars = Vars::new()
        .with("input", context())
        .with("model", &model)
        .with("tools", &tools)
        .with("tools_prompt", &tools_prompt);
    match templates.render_str(src, &vars) {
        Ok(s) => s.len(),
        Err(e) => e.message().len(),
    }
}

/// (c) A `simple`-engine condition: see [`condition`].
pub fn condition_simple(data: &[u8]) -> usize {
    condition(data, Engine::Simple)
}

/// (c) A CEL condition (`expression_engine: cel`): see [`condition`].
pub fn condition_cel(data: &[u8]) -> usize {
    condition(data, Engine::Cel)
}

/// (c) A transition condition: parse it for `engine`, evaluate it against the fixed context
/// and against `null` (a context without keys).
fn condition(data: &[u8], engine: Engine) -> usize {
    let Some(src) = text(data) else { return 0 };
    if engine == Engine::Cel {
        // The compiler's check of the same text (`flatmachines check`).
        let _ = flatmachines_compiler::expr::cel::check(src);
    }
    match Condition::compile(src, engine) {
        Ok(condition) => {
            let a = condition.evaluate(context()).map_or(2, usize::from);
            let b = condition.evaluate(&json!({})).map_or(2, usize::from);
            a + b
        }
        Err(e) => e.message().len(),
    }
}

/// (d) Bytes read from a checkpoint store: decode them as a snapshot; a decoded snapshot must
/// encode and decode again to the same snapshot.
///
/// Known and reported: without serde_json's `float_roundtrip` feature (which flatmachines only
/// gets when another crate in the build turns it on), JSON floats are not read correctly
/// rounded, so a float can move by an ulp or two in a write and read (`regressions/snapshot/`).
/// While the parser in this build is inexact, floats are compared with that tolerance, so
/// fuzzing finds other faults; once it is exact, the comparison is exact.
pub fn snapshot(data: &[u8]) -> usize {
    match MachineSnapshot::from_json(data) {
        Ok(snapshot) => {
            let bytes = snapshot.to_json();
            let again = MachineSnapshot::from_json(&bytes)
                .unwrap_or_else(|e| panic!("a written snapshot does not decode: {e}"));
            if again != snapshot {
                assert!(
                    !exact_floats() && same_snapshot(&again, &snapshot),
                    "a snapshot changed in a write and read:\n{snapshot:?}\n{again:?}"
                );
            }
            let _ = snapshot.key();
            bytes.len()
        }
        Err(e) => e.to_string().len(),
    }
}

/// Whether serde_json reads floats correctly rounded in this build.
fn exact_floats() -> bool {
    serde_json::from_str::<f64>("1.66666666666666666").ok() == Some(1.666_666_666_666_666_7)
}

/// Floats within four ulps.
fn close(a: f64, b: f64) -> bool {
    a == b || (a.signum() == b.signum() && a.to_bits().abs_diff(b.to_bits()) <= 4)
}

/// Equal JSON, floats within four ulps.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() && y.is_f64() => {
            close(x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, a), (kb, b))| ka == kb && same_json(a, b))
        }
        _ => a == b,
    }
}

/// Equal snapshots, floats within four ulps.
fn same_snapshot(a: &MachineSnapshot, b: &MachineSnapshot) -> bool {
    let json = |s: &MachineSnapshot| {
        json!([
            s.context,
            s.output,
            s.pending_launches,
            s.tool_loop_state,
            s.total_cost
        ])
    };
    let rest = |s: &MachineSnapshot| MachineSnapshot {
        context: Value::Null,
        output: None,
        pending_launches: None,
        tool_loop_state: None,
        total_cost: None,
        ..s.clone()
    };
    rest(a) == rest(b) && same_json(&json(a), &json(b))
}

/// What the fake server answers next.
struct Reply {
    status: u16,
    retry_after: Option<&'static str>,
    body: Vec<u8>,
}

/// A chat-completions server on 127.0.0.1 that answers every request with the current
/// [`Reply`], keeping connections alive.
struct Server {
    reply: Arc<Mutex<Reply>>,
    runtime: tokio::runtime::Runtime,
    /// By provider (OpenAI, Anthropic, Gemini, Ollama), streaming or not, and output schema
    /// or not: `executors[provider * 4 + stream * 2 + json]`.
    executors: Vec<Arc<dyn AgentExecutor>>,
    /// One call at a time (the regression test may run on several threads).
    call: Mutex<()>,
}

fn serve(stream: TcpStream, reply: &Mutex<Reply>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            if let Some((k, v)) = trimmed.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let response = {
            let r = reply.lock().unwrap_or_else(|e| e.into_inner());
            let retry = r
                .retry_after
                .map(|v| format!("Retry-After: {v}\r\n"))
                .unwrap_or_default();
            let mut response = format!(
                "HTTP/1.1 {} Fuzz\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{retry}\r\n",
                r.status,
                r.body.len()
            )
            .into_bytes();
            response.extend_from_slice(&r.body);
            response
        };
        writer.write_all(&response)?;
        writer.flush()?;
    }
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local address").port();
        let reply = Arc::new(Mutex::new(Reply {
            status: 200,
            retry_after: None,
            body: Vec::new(),
        }));
        let shared = reply.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        let adapter = FlatAgentAdapter::with_base_url(format!("http://127.0.0.1:{port}/v1"));
        let context = AdapterContext {
            config_dir: PathBuf::from(MACHINE_DIR),
            settings: json!({}),
            machine_name: "fuzz".into(),
            profiles: None,
        };
        let executor = |provider: &str, stream: bool, output: Value| {
            let spec = AgentSpec {
                ty: "flatagent".into(),
                reference: None,
                config: Some(json!({
                    "spec": "flatagent",
                    "data": {
                        "model": {"provider": provider, "name": "fuzz-model", "timeout": 10,
                                  "stream": stream},
                        "system": "You are terse.",
                        "user": "{{ input.q }}",
                        "output": output,
                    }
                })),
                dir: PathBuf::from(MACHINE_DIR),
                profiles: None,
            };
            adapter
                .create_executor("fuzz", &spec, &context)
                .expect("a valid agent")
        };
        let mut executors = Vec::new();
        for provider in ["openai", "anthropic", "gemini", "ollama"] {
            for stream in [false, true] {
                executors.push(executor(provider, stream, json!({})));
                executors.push(executor(
                    provider,
                    stream,
                    json!({"answer": {"type": "str"}}),
                ));
            }
        }
        Server {
            reply,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime"),
            executors,
            call: Mutex::new(()),
        }
    })
}

/// (e) A model server's response body turned into an agent result by the `flatagent`
/// adapter, over a real HTTP exchange with a local server. The first byte picks the status
/// (200, 200, 429, 500), whether the agent declares an `output` schema (JSON replies), whether
/// a `Retry-After` header is sent and whether the call is a tool-loop turn; when its top two
/// bits are set, the next byte picks the provider's wire format (OpenAI, Anthropic, Gemini,
/// Ollama: bits 0–1) and streaming (bit 2: the body is read as SSE, or NDJSON for Ollama);
/// otherwise the call is OpenAI's, not streamed. The rest is the response body.
pub fn llm_reply(data: &[u8]) -> usize {
    let Some((&mode, body)) = data.split_first() else {
        return 0;
    };
    let (dialect, body) = match body.split_first() {
        Some((&d, rest)) if mode & 0xC0 != 0 => (d, rest),
        _ => (0, body),
    };
    let server = server();
    let _one = server.call.lock().unwrap_or_else(|e| e.into_inner());
    {
        let mut reply = server.reply.lock().unwrap_or_else(|e| e.into_inner());
        reply.status = [200, 200, 429, 500][usize::from(mode & 3)];
        reply.retry_after = match (mode >> 3) & 3 {
            0 => None,
            1 => Some("2"),
            2 => Some(" 0.5 "),
            _ => Some("soon"),
        };
        reply.body = body.to_vec();
    }
    let index = usize::from(dialect & 3) * 4
        + usize::from((dialect >> 2) & 1) * 2
        + usize::from(mode & 4 != 0);
    let executor = &server.executors[index];
    let input = json!({"q": "question"});
    let tools = [json!({"type": "function", "function": {"name": "look", "parameters": {}}})];
    let result = server.runtime.block_on(async {
        if mode & 32 != 0 {
            executor
                .execute_with_tools(input, ToolTurn::new(&tools, None), &json!({}))
                .await
        } else {
            executor.execute(input, &json!({})).await
        }
    });
    match result {
        Ok(r) => {
            r.output_payload().to_string().len()
                + r.tool_calls.as_ref().map_or(0, |t| t.to_string().len())
                + usize::from(r.retryable())
        }
        Err(e) => e.to_string().len(),
    }
}

//! The conformance cases (copied from `shared/conformance/cases` into `fixtures/conformance`, plus
//! the project's own `tool_loop_*` cases whose expectations follow the spec),
//! run through the interpreter exactly as `flatmachines run` runs them, against the project's own
//! scripted LLM server: same output, same requests (model, messages, params), same count.

use flatmachines::agent::FlatAgentAdapter;
use flatmachines::persistence::{CheckpointBackend, MemoryBackend, NoOpLock};
use flatmachines::{Machine, RunOptions, Runtime};
use flatmachines_testkit::FakeLlm;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn cases_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/conformance")
}

fn request_key(r: &Value) -> Value {
    serde_json::json!({"model": r["model"], "messages": r["messages"], "params": r["params"]})
}

fn canonical(v: &Value) -> String {
    // Object key order does not matter; compare sorted JSON text.
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<_> = m.keys().collect();
                keys.sort();
                Value::Object(keys.into_iter().map(|k| (k.clone(), sort(&m[k]))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(v).to_string()
}

/// How a case's machine is obtained: loaded from its file (the CLI's door), or compiled into
/// this test binary with `include_machine!`.
type Loader = fn(&Path) -> Result<Machine, flatmachines::Error>;

fn interpreted(path: &Path) -> Result<Machine, flatmachines::Error> {
    Machine::from_file(path)
}

/// The case machines compiled into this binary (checked when this file compiles).
mod compiled {
    flatmachines::include_machine!("../fixtures/conformance/bare_path_types/machine.yml");
    flatmachines::include_machine!("../fixtures/conformance/context_from_input/machine.yml");
    flatmachines::include_machine!("../fixtures/conformance/final_output_templating/machine.yml");
    flatmachines::include_machine!("../fixtures/conformance/fromjson_filter/machine.yml");
    flatmachines::include_machine!("../fixtures/conformance/linear_basic/machine.yml");
    flatmachines::include_machine!("../fixtures/conformance/on_error_string/machine.yml");
    flatmachines::include_machine!("../fixtures/conformance/writer_critic_loop/machine.yml");
    flatmachines::include_machine!("../fixtures/conformance/machine_child/machine.yml");
    flatmachines::include_machine!("../fixtures/conformance/machine_parallel/machine.yml");
    flatmachines::include_machine!("../fixtures/conformance/foreach_as_key/machine.yml");
    flatmachines::include_machine!("../fixtures/conformance/tool_loop_basic/machine.yml");
    flatmachines::include_machine!("../fixtures/conformance/tool_loop_guardrails/machine.yml");
    flatmachines::include_machine!("../fixtures/conformance/tool_loop_transition_exit/machine.yml");
    flatmachines::include_machine!("../fixtures/conformance/tool_loop_chain_reuse/machine.yml");
    flatmachines::include_machine!("../fixtures/conformance/wait_for_park/machine.yml");
    flatmachines::include_machine!("../fixtures/conformance/mdap_voting_parsing/machine.yml");
    flatmachines::include_machine!("../fixtures/conformance/mdap_voting_validation/machine.yml");
}

fn compiled(path: &Path) -> Result<Machine, flatmachines::Error> {
    let case = path
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    match case {
        "bare_path_types" => compiled::typed_outputs::machine(),
        "context_from_input" => compiled::context_seeding::machine(),
        "final_output_templating" => compiled::order_receipt::machine(),
        "fromjson_filter" => compiled::json_unpacking::machine(),
        "linear_basic" => compiled::linear_brief::machine(),
        "on_error_string" => compiled::fragile_translate::machine(),
        "writer_critic_loop" => compiled::slogan_workshop::machine(),
        "machine_child" => compiled::report_pipeline::machine(),
        "machine_parallel" => compiled::dual_review::machine(),
        "foreach_as_key" => compiled::city_facts::machine(),
        "tool_loop_basic" => compiled::tool_loop_basic::machine(),
        "tool_loop_guardrails" => compiled::tool_loop_guardrails::machine(),
        "tool_loop_transition_exit" => compiled::tool_loop_transition_exit::machine(),
        "tool_loop_chain_reuse" => compiled::tool_loop_chain_reuse::machine(),
        "wait_for_park" => compiled::approval_park::machine(),
        "mdap_voting_parsing" => compiled::mdap_parsing::machine(),
        "mdap_voting_validation" => compiled::mdap_validation::machine(),
        other => panic!("case {other} is not compiled into this test; add it to `mod compiled`"),
    }
}

#[test]
fn generated_execute_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let rt = Runtime::new();
    let fut = compiled::linear_brief::execute(&rt, serde_json::json!({}));
    assert_send(&fut);
}

/// Runs one case and returns a description of every mismatch.
async fn run_case(dir: &Path, load: Loader) -> Vec<String> {
    let case: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    let entry = case["entry"].as_str().unwrap_or("machine.yml");
    let server = FakeLlm::start(case["llm_script"].clone()).unwrap();
    // A case with a resume phase keeps its checkpoints in memory, shared by both phases (its
    // YAML may name a database file relative to the working directory, which the CLI's
    // scratch directory holds but this test's does not).
    let store: Arc<dyn CheckpointBackend> = Arc::new(MemoryBackend::new());
    let runtime = |url: String| {
        let mut b = Runtime::builder().adapter(FlatAgentAdapter::with_base_url(url));
        if case.get("resume").is_some() {
            b = b.checkpoint_backend(store.clone()).lock(Arc::new(NoOpLock));
        }
        b.build()
    };
    let rt = runtime(server.base_url());
    let opts = RunOptions {
        max_steps: case["run_options"]["max_steps"].as_u64(),
        execution_id: case["run_options"]["execution_id"]
            .as_str()
            .map(str::to_string),
        ..RunOptions::default()
    };
    let mut problems = Vec::new();
    let result = match load(&dir.join(entry)) {
        Ok(m) => rt.run_with(&m, case["input"].clone(), opts).await,
        Err(e) => Err(e),
    };
    let expect = &case["expect"];
    match (&result, expect["error"].as_bool().unwrap_or(false)) {
        (Ok(out), false) => {
            if canonical(out) != canonical(&expect["output"]) {
                problems.push(format!(
                    "output\n  got:      {out}\n  expected: {}",
                    expect["output"]
                ));
            }
        }
        (Err(_), true) => {}
        (Ok(out), true) => problems.push(format!("expected a failure, got {out}")),
        (Err(e), false) => problems.push(format!("run failed: {e}")),
    }
    let log = server.log();
    let recorded: Vec<Value> = std::fs::read_to_string(dir.join("llm_log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want = expect["llm_requests"]
        .as_u64()
        .unwrap_or(recorded.len() as u64) as usize;
    if log.len() != want {
        problems.push(format!("{} requests, expected {want}", log.len()));
    }
    let mut got: Vec<String> = log.iter().map(|r| canonical(&request_key(r))).collect();
    let mut exp: Vec<String> = recorded
        .iter()
        .map(|r| canonical(&request_key(r)))
        .collect();
    if case["request_order"] == "unordered" {
        got.sort();
        exp.sort();
    }
    for (i, (g, e)) in got.iter().zip(&exp).enumerate() {
        if g != e {
            problems.push(format!(
                "request {}\n  got:      {g}\n  expected: {e}",
                i + 1
            ));
        }
    }
    if let Some(resume) = case.get("resume") {
        let server = FakeLlm::start(resume["llm_script"].clone()).unwrap();
        let rt = runtime(server.base_url());
        let opts = RunOptions {
            resume_from: resume["resume_from"].as_str().map(str::to_string),
            max_steps: resume["max_steps"].as_u64(),
            ..RunOptions::default()
        };
        let result = match load(&dir.join(entry)) {
            Ok(m) => rt.run_with(&m, Value::Null, opts).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(out) if canonical(&out) == canonical(&resume["expect"]["output"]) => {}
            Ok(out) => problems.push(format!(
                "resume output\n  got:      {out}\n  expected: {}",
                resume["expect"]["output"]
            )),
            Err(e) => problems.push(format!("resume failed: {e}")),
        }
        let want = resume["expect"]["llm_requests"].as_u64().unwrap_or(0) as usize;
        if server.log().len() != want {
            problems.push(format!(
                "resume: {} requests, expected {want}",
                server.log().len()
            ));
        }
    }
    problems
}

async fn run_all(mode: &str, load: Loader) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    let mut failures = Vec::new();
    let mut passed = 0;
    for dir in &entries {
        let name = dir.file_name().unwrap().to_str().unwrap();
        let problems = run_case(dir, load).await;
        if problems.is_empty() {
            passed += 1;
        } else {
            failures.push(format!("== {name}\n{}", problems.join("\n")));
        }
    }
    eprintln!(
        "conformance ({mode}): {passed} passed, {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        passed >= 10,
        "expected at least 10 cases to run, ran {passed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_cases_pass_in_interpreted_mode() {
    run_all("interpreted", interpreted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_cases_pass_in_compiled_mode() {
    run_all("compiled", compiled).await;
}

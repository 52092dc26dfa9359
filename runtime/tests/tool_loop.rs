//! Tool loops end to end: machines loaded from YAML, the `flatagent` adapter talking to the
//! project's scripted OpenAI-compatible server over HTTP, and Rust tools registered on the
//! runtime (`execution.md` §9).

use flatmachines::agent::FlatAgentAdapter;
use flatmachines::hooks::{MachineHooks, MetricsHooks};
use flatmachines::tools::{Tool, ToolError, ToolProvider, ToolResult, Toolbox};
use flatmachines::{Machine, Runtime, RuntimeBuilder};
use flatmachines_testkit::{FakeLlm, TempDir};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

const AGENT: &str = r#"spec: flatagent
spec_version: "2.6.0"
data:
  name: helper
  model: {provider: openai, name: helper-model}
  system: "You help."
  user: "Task: {{ input.task }}"
"#;

/// A machine whose `work` state loops with `TOOL_LOOP` and leaves with `TRANSITIONS`.
fn machine(dir: &TempDir, tool_loop: &str, transitions: &str) -> Machine {
    dir.write("helper.yml", AGENT);
    let yaml = format!(
        r#"spec: flatmachine
spec_version: "2.6.0"
data:
  name: tooling
  context:
    task: "{{{{ input.task }}}}"
    limit: 1
  agents:
    helper: ./helper.yml
  states:
    start:
      type: initial
      agent: helper
      tool_loop: {tool_loop}
      input: {{task: "{{{{ context.task }}}}"}}
      output_to_context:
        answer: output.content
        calls: output._tool_calls_count
        turns: output._tool_loop_turns
        stop: output._tool_loop_stop
      transitions: {transitions}
    flagged:
      type: final
      output:
        via: flagged
        calls: context._tool_calls_count
        stop_left: "{{{{ context._tool_loop_stop | default('popped') }}}}"
    done:
      type: final
      output:
        answer: context.answer
        calls: context.calls
        turns: context.turns
        stop: context.stop
        chain: context._tool_loop_chain
"#
    );
    Machine::from_yaml(&yaml, dir.path()).unwrap()
}

fn runtime(server: &FakeLlm) -> RuntimeBuilder {
    Runtime::builder().adapter(FlatAgentAdapter::with_base_url(server.base_url()))
}

fn calls(list: &[(&str, &str, Value)]) -> Value {
    json!({"$tool_calls": list.iter().map(|(id, name, args)| json!({"id": id, "name": name, "arguments": args})).collect::<Vec<_>>()})
}

/// What the tools saw, in call order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn push(&self, s: String) {
        self.0.lock().unwrap().push(s);
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct AddArgs {
    /// First term.
    a: i64,
    /// Second term.
    b: i64,
}

fn toolbox(seen: &Seen) -> Toolbox {
    let s = seen.clone();
    let add = Tool::new("add", "Adds two integers", move |args: AddArgs| {
        let s = s.clone();
        async move {
            s.push(format!("add {} {}", args.a, args.b));
            Ok::<_, ToolError>((args.a + args.b).to_string())
        }
    });
    let fail = Tool::from_fn(
        "fail",
        "Always fails",
        json!({"type": "object"}),
        |_| async { Err::<String, _>("disk full") },
    );
    let boom = Tool::from_fn("boom", "Panics", json!({"type": "object"}), |_| async {
        if true {
            panic!("kaboom");
        }
        "unreachable"
    });
    let slow = Tool::from_fn("slow", "Sleeps", json!({"type": "object"}), |_| async {
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        "late"
    });
    Toolbox::new().tool(add).tool(fail).tool(boom).tool(slow)
}

fn tool_messages(request: &Value) -> Vec<(String, String)> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            (
                m["tool_call_id"].as_str().unwrap_or("").to_string(),
                m["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn rust_tools_run_and_their_errors_panics_and_timeouts_become_tool_messages() {
    let dir = TempDir::new();
    let server = FakeLlm::start(json!({"models": {"helper-model": [
        calls(&[
            ("c1", "add", json!({"a": 2, "b": 3})),
            ("c2", "fail", json!({})),
            ("c3", "boom", json!({})),
            ("c4", "add", json!("{\"a\": \"x\"}")),
            ("c5", "slow", json!({})),
            ("c6", "nope", json!({})),
        ]),
        "The sum is 5."
    ]}}))
    .unwrap();
    let seen = Seen::default();
    let m = machine(&dir, "{tool_timeout: 0.2}", "[{to: done}]");
    let rt = runtime(&server).tools(toolbox(&seen)).build();
    let out = rt.run(&m, json!({"task": "add"})).await.unwrap();
    assert_eq!(out["answer"], "The sum is 5.");
    assert_eq!(out["calls"], 6);
    assert_eq!(out["turns"], 2);
    assert_eq!(out["stop"], "complete");
    assert_eq!(seen.all(), vec!["add 2 3"]);
    let log = server.log();
    assert_eq!(log.len(), 2);
    // The first request offers the Rust tools with the schema derived from their types.
    let tools = log[0]["params"]["tools"].as_array().unwrap();
    let names: Vec<&str> = tools
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["add", "fail", "boom", "slow"]);
    assert_eq!(
        tools[0]["function"]["parameters"]["required"],
        json!(["a", "b"])
    );
    assert_eq!(
        tools[0]["function"]["parameters"]["properties"]["a"]["description"],
        "First term."
    );
    let msgs = tool_messages(&log[1]);
    assert_eq!(msgs[0], ("c1".into(), "5".into()));
    assert_eq!(
        msgs[1],
        ("c2".into(), "Error executing 'fail': disk full".into())
    );
    assert_eq!(
        msgs[2],
        (
            "c3".into(),
            "Error executing 'boom': the tool panicked: kaboom".into()
        )
    );
    assert!(
        msgs[3]
            .1
            .starts_with("Error executing 'add': invalid arguments for 'add': "),
        "{}",
        msgs[3].1
    );
    assert_eq!(
        msgs[4],
        ("c5".into(), "Tool 'slow' timed out after 0.2s".into())
    );
    assert_eq!(msgs[5], ("c6".into(), "Unknown tool: nope".into()));
}

#[tokio::test]
async fn guardrails_stop_the_loop_and_a_final_pass_asks_for_text() {
    let dir = TempDir::new();
    let server = FakeLlm::start(json!({"models": {"helper-model": [
        calls(&[("c1", "add", json!({"a": 1, "b": 1})), ("c2", "add", json!({"a": 2, "b": 2}))]),
        "Stopped early: 2."
    ]}}))
    .unwrap();
    let seen = Seen::default();
    // The limit comes from the context through a template.
    let m = machine(
        &dir,
        r#"{max_tool_calls: "{{ context.limit }}"}"#,
        "[{to: done}]",
    );
    let rt = runtime(&server).tools(toolbox(&seen)).build();
    let out = rt.run(&m, json!({"task": "t"})).await.unwrap();
    assert_eq!(out["stop"], "max_tool_calls");
    assert_eq!(out["calls"], 0);
    assert_eq!(out["answer"], "Stopped early: 2.");
    assert!(seen.all().is_empty(), "no tool runs past the limit");
    let log = server.log();
    assert_eq!(log.len(), 2);
    // The final pass sends no tools and ends with the limit message.
    assert!(log[1]["params"].get("tools").is_none());
    let last = log[1]["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["role"], "user");
    assert!(
        last["content"]
            .as_str()
            .unwrap()
            .starts_with("[System: tool use limit reached.")
    );
}

#[tokio::test]
async fn max_turns_and_allowed_and_denied_tools() {
    let dir = TempDir::new();
    let server = FakeLlm::start(json!({"models": {"helper-model": [
        calls(&[("c1", "add", json!({"a": 1, "b": 2})), ("c2", "fail", json!({})), ("c3", "boom", json!({}))]),
        "Partial."
    ]}}))
    .unwrap();
    let seen = Seen::default();
    let m = machine(
        &dir,
        "{max_turns: 1, allowed_tools: [add, fail], denied_tools: [fail]}",
        "[{to: done}]",
    );
    let rt = runtime(&server).tools(toolbox(&seen)).build();
    let out = rt.run(&m, json!({"task": "t"})).await.unwrap();
    assert_eq!(out["stop"], "max_turns");
    assert_eq!(out["turns"], 1);
    // Refused calls do not count.
    assert_eq!(out["calls"], 1);
    assert_eq!(seen.all(), vec!["add 1 2"]);
    let log = server.log();
    let msgs = tool_messages(&log[1]);
    assert_eq!(msgs[1].1, "Tool 'fail' is not allowed.");
    assert_eq!(msgs[2].1, "Tool 'boom' is not allowed.");
    assert_eq!(out["answer"], "Partial.");
}

#[tokio::test]
async fn a_conditional_transition_leaves_the_loop_after_a_tool_call() {
    let dir = TempDir::new();
    let server = FakeLlm::start(json!({"models": {"helper-model": [
        calls(&[("c1", "add", json!({"a": 1, "b": 2})), ("c2", "add", json!({"a": 5, "b": 5}))]),
        "never asked"
    ]}}))
    .unwrap();
    let seen = Seen::default();
    // The unconditional exit comes first: the loop still checks the conditional one after it.
    let m = machine(
        &dir,
        "true",
        "[{to: done}, {condition: \"context._tool_calls_count >= 1\", to: flagged}]",
    );
    let rt = runtime(&server).tools(toolbox(&seen)).build();
    let out = rt.run(&m, json!({"task": "t"})).await.unwrap();
    assert_eq!(
        out,
        json!({"via": "flagged", "calls": 1, "stop_left": "popped"})
    );
    assert_eq!(seen.all(), vec!["add 1 2"]);
    assert_eq!(server.log().len(), 1);
}

/// Hooks that steer the loop through the context keys.
struct Steer {
    seen: Seen,
}

#[flatmachines::async_trait]
impl MachineHooks for Steer {
    async fn on_tool_calls(&self, state: &str, calls: &[Value], context: &mut Value) {
        self.seen.push(format!("calls {state} {}", calls.len()));
        context["_skip_tools"] = json!(["c2"]);
    }
    async fn on_tool_result(&self, _state: &str, result: &Value, context: &mut Value) {
        self.seen.push(format!(
            "result {} {}",
            result["name"].as_str().unwrap(),
            result["is_error"]
        ));
        context["_steering_messages"] = json!([{"role": "user", "content": "Be brief."}]);
    }
}

#[tokio::test]
async fn hooks_skip_tools_and_steer_the_chain() {
    let dir = TempDir::new();
    let server = FakeLlm::start(json!({"models": {"helper-model": [
        calls(&[("c1", "add", json!({"a": 1, "b": 2})), ("c2", "add", json!({"a": 3, "b": 4}))]),
        "Done."
    ]}}))
    .unwrap();
    let seen = Seen::default();
    let m = machine(&dir, "true", "[{to: done}]");
    let rt = runtime(&server)
        .tools(toolbox(&seen))
        .hooks(Steer { seen: seen.clone() })
        .build();
    let out = rt.run(&m, json!({"task": "t"})).await.unwrap();
    assert_eq!(out["calls"], 1);
    assert_eq!(
        seen.all(),
        vec!["calls start 2", "add 1 2", "result add false"]
    );
    let messages = server.log()[1]["messages"].clone();
    let roles: Vec<&str> = messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "tool", "tool", "user"]
    );
    assert_eq!(messages[4]["content"], "Tool 'add' was skipped by policy.");
    assert_eq!(messages[5]["content"], "Be brief.");
}

/// Aborts at the first result.
struct Abort;

#[flatmachines::async_trait]
impl MachineHooks for Abort {
    async fn on_tool_result(&self, _state: &str, _result: &Value, context: &mut Value) {
        context["_abort_tool_loop"] = json!(true);
    }
}

#[tokio::test]
async fn a_hook_aborts_the_loop() {
    let dir = TempDir::new();
    let server = FakeLlm::start(json!({"models": {"helper-model": [
        calls(&[("c1", "add", json!({"a": 1, "b": 2})), ("c2", "add", json!({"a": 3, "b": 4}))]),
    ]}}))
    .unwrap();
    let seen = Seen::default();
    let m = machine(&dir, "true", "[{to: done}]");
    let rt = runtime(&server).tools(toolbox(&seen)).hooks(Abort).build();
    let out = rt.run(&m, json!({"task": "t"})).await.unwrap();
    assert_eq!(out["stop"], "aborted");
    assert_eq!(out["calls"], 1);
    assert_eq!(seen.all(), vec!["add 1 2"]);
    assert_eq!(server.log().len(), 1);
}

/// A provider chosen by the hooks for one state.
struct Provider;

#[flatmachines::async_trait]
impl ToolProvider for Provider {
    fn definitions(&self) -> Vec<Value> {
        vec![
            json!({"type": "function", "function": {"name": "lookup", "description": "from hooks", "parameters": {"type": "object"}}}),
        ]
    }
    async fn execute(&self, name: &str, id: &str, _: &Value) -> Result<ToolResult, ToolError> {
        Ok(ToolResult::ok(format!("{name} via hooks ({id})")))
    }
}

struct ProvideTools;

#[flatmachines::async_trait]
impl MachineHooks for ProvideTools {
    fn get_tool_provider(&self, state: &str) -> Option<Arc<dyn ToolProvider>> {
        (state == "start").then(|| Arc::new(Provider) as Arc<dyn ToolProvider>)
    }
}

#[tokio::test]
async fn a_hooks_provider_replaces_the_runtime_tools() {
    let dir = TempDir::new();
    let server = FakeLlm::start(json!({"models": {"helper-model": [
        calls(&[("c1", "lookup", json!({}))]),
        "ok"
    ]}}))
    .unwrap();
    let seen = Seen::default();
    let m = machine(&dir, "true", "[{to: done}]");
    let rt = runtime(&server)
        .tools(toolbox(&seen))
        .hooks(ProvideTools)
        .build();
    rt.run(&m, json!({"task": "t"})).await.unwrap();
    let log = server.log();
    assert_eq!(log[0]["params"]["tools"].as_array().unwrap().len(), 1);
    assert_eq!(tool_messages(&log[1])[0].1, "lookup via hooks (c1)");
}

#[tokio::test]
async fn tools_registered_for_a_state_win_over_machine_and_global_ones() {
    let dir = TempDir::new();
    let server = FakeLlm::start(json!({"models": {"helper-model": [
        calls(&[("c1", "who", json!({})), ("c2", "global", json!({}))]),
        "ok"
    ]}}))
    .unwrap();
    let tool = |name: &'static str, says: &'static str| {
        Tool::from_fn(
            name,
            "",
            json!({"type": "object"}),
            move |_| async move { says },
        )
    };
    let m = machine(&dir, "true", "[{to: done}]");
    let rt = runtime(&server)
        .tools(
            Toolbox::new()
                .tool(tool("who", "everyone"))
                .tool(tool("global", "g")),
        )
        .tools_for_machine("tooling", tool("who", "the machine"))
        .tools_for_state("tooling", "start", tool("who", "the state"))
        .tools_for_machine("other", tool("who", "another machine"))
        .build();
    rt.run(&m, json!({"task": "t"})).await.unwrap();
    let log = server.log();
    let names: Vec<&str> = log[0]["params"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["who", "global"]);
    let msgs = tool_messages(&log[1]);
    assert_eq!(msgs[0].1, "the state");
    assert_eq!(msgs[1].1, "g");
}

#[tokio::test]
async fn a_revisited_loop_state_continues_its_chain() {
    let dir = TempDir::new();
    dir.write("helper.yml", AGENT);
    let yaml = r#"spec: flatmachine
spec_version: "2.6.0"
data:
  name: rounds
  context: {round: 0}
  agents: {helper: ./helper.yml}
  states:
    start:
      type: initial
      agent: helper
      tool_loop: true
      input: {task: "round {{ context.round }}"}
      output_to_context:
        round: "{{ context.round | int + 1 }}"
      transitions:
        - condition: "context.round == '2'"
          to: done
        - to: start
    done:
      type: final
      output: {roles: "{{ context._tool_loop_chain | map(attribute='role') | join(',') }}"}
"#;
    let m = Machine::from_yaml(yaml, dir.path()).unwrap();
    let server = FakeLlm::start(json!({"models": {"helper-model": ["first", "second"]}})).unwrap();
    let out = runtime(&server).build().run(&m, json!({})).await.unwrap();
    assert_eq!(out["roles"], "user,assistant,assistant");
    let log = server.log();
    assert_eq!(log.len(), 2);
    // The second visit sends the saved chain and no new user message.
    let roles: Vec<&str> = log[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant"]);
}

#[tokio::test]
async fn without_a_provider_every_call_is_answered_with_the_reference_text() {
    let dir = TempDir::new();
    let server = FakeLlm::start(json!({"models": {"helper-model": [
        calls(&[("c1", "add", json!({"a": 1, "b": 2}))]),
        "ok"
    ]}}))
    .unwrap();
    let metrics = MetricsHooks::new();
    let m = machine(&dir, "true", "[{to: done}]");
    let out = runtime(&server)
        .hooks(metrics.clone())
        .build()
        .run(&m, json!({"task": "t"}))
        .await
        .unwrap();
    assert_eq!(out["calls"], 1);
    assert_eq!(
        tool_messages(&server.log()[1])[0].1,
        "No tool provider configured for 'add'"
    );
    let counted = metrics.metrics();
    assert_eq!(counted.tool_call_counts.get("add"), Some(&1));
    assert_eq!(counted.tool_error_count, 1);
}

#[tokio::test]
async fn an_agent_that_cannot_loop_fails_the_state_with_the_reference_message() {
    let dir = TempDir::new();
    let yaml = r#"spec: flatmachine
spec_version: "2.6.0"
data:
  name: echoer
  agents:
    parrot: {type: echo}
  states:
    start:
      type: initial
      agent: parrot
      tool_loop: true
      transitions: [{to: done}]
    done: {type: final}
"#;
    let m = Machine::from_yaml(yaml, dir.path()).unwrap();
    let err = Runtime::new().run(&m, json!({})).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("Agent 'parrot' (echo) does not support machine-driven tool loops"),
        "{text}"
    );
}

/// A memory store that refuses every save after its `limit`-th `tool_call` snapshot: the run
/// then stops right after that checkpoint, as a crash there would leave it.
struct StopAfterToolCalls {
    inner: Arc<flatmachines::persistence::MemoryBackend>,
    limit: usize,
    seen: std::sync::atomic::AtomicUsize,
}

#[flatmachines::async_trait]
impl flatmachines::persistence::CheckpointBackend for StopAfterToolCalls {
    async fn save(&self, key: &str, value: &[u8]) -> Result<(), PersistenceError> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.seen.load(SeqCst) >= self.limit && !key.ends_with("/latest") {
            return Err(PersistenceError::InvalidKey(format!(
                "{key} (refused by the test)"
            )));
        }
        if key.ends_with("_tool_call.json") {
            self.seen.fetch_add(1, SeqCst);
        }
        self.inner.save(key, value).await
    }
    async fn load(&self, key: &str) -> Result<Option<Vec<u8>>, PersistenceError> {
        self.inner.load(key).await
    }
    async fn delete(&self, key: &str) -> Result<(), PersistenceError> {
        self.inner.delete(key).await
    }
    async fn list_execution_ids(
        &self,
        filter: &flatmachines::persistence::ListFilter,
    ) -> Result<Vec<String>, PersistenceError> {
        self.inner.list_execution_ids(filter).await
    }
    async fn delete_execution(&self, id: &str) -> Result<(), PersistenceError> {
        self.inner.delete_execution(id).await
    }
}

use flatmachines::persistence::PersistenceError;

#[tokio::test]
async fn a_resumed_loop_that_had_left_through_a_transition_runs_no_more_calls() {
    let dir = TempDir::new();
    let server = FakeLlm::start(json!({"models": {"helper-model": [
        calls(&[("c1", "add", json!({"a": 1, "b": 2})), ("c2", "add", json!({"a": 3, "b": 4})), ("c3", "add", json!({"a": 5, "b": 6}))]),
    ]}}))
    .unwrap();
    let seen = Seen::default();
    let m = machine(
        &dir,
        "true",
        "[{condition: \"context._tool_calls_count >= 2\", to: flagged}, {to: done}]",
    );
    let store = Arc::new(flatmachines::persistence::MemoryBackend::new());
    let first = runtime(&server)
        .tools(toolbox(&seen))
        .checkpoint_backend(Arc::new(StopAfterToolCalls {
            inner: store.clone(),
            limit: 2,
            seen: Default::default(),
        }))
        .build();
    let opts = flatmachines::RunOptions {
        execution_id: Some("exit-1".into()),
        ..Default::default()
    };
    first
        .run_with(&m, json!({"task": "t"}), opts)
        .await
        .expect_err("the store refuses the snapshot after the second call");
    assert_eq!(seen.all(), vec!["add 1 2", "add 3 4"]);
    // Resumed from the second call's checkpoint: the transition holds there, so the third call
    // of the batch never runs and the model is not asked again.
    let second = runtime(&server)
        .tools(toolbox(&seen))
        .checkpoint_backend(store)
        .build();
    let opts = flatmachines::RunOptions {
        resume_from: Some("exit-1".into()),
        ..Default::default()
    };
    let out = second.run_with(&m, json!({}), opts).await.unwrap();
    assert_eq!(
        out,
        json!({"via": "flagged", "calls": 2, "stop_left": "popped"})
    );
    assert_eq!(seen.all(), vec!["add 1 2", "add 3 4"]);
    assert_eq!(server.log().len(), 1);
}

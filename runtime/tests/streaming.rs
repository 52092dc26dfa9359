//! Streaming: the events an adapter emits during a call reach the `on_agent_stream_event` hook
//! in order with the live context, `Runtime::stream` yields the run's events, runs nobody
//! watches set no stream sink, and dropping the stream cancels the run, leaving a checkpoint a
//! resume completes.

use flatmachines::agent::{AgentResult, stream};
use flatmachines::hooks::MachineHooks;
use flatmachines::persistence::local::{LocalFileBackend, LocalFileLock};
use flatmachines::{Error, Machine, RunEvent, RunOptions, Runtime};
use flatmachines_testkit::{Call, FnAdapter, TempDir};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// `f`, failing the test instead of hanging it when a broken cancellation never lets `f` end.
/// (A guard, not a timing assertion: the bound is far above any run here.)
async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(std::time::Duration::from_secs(60), f)
        .await
        .expect("still waiting after 60 s")
}

fn machine(yaml: &str) -> Machine {
    Machine::from_yaml(yaml, std::env::temp_dir()).unwrap_or_else(|e| panic!("{e}"))
}

/// `type: streamer`: streams `input.text` word by word (yielding between words, as a socket
/// read would), then usage and the end, and answers with the whole text. It records whether
/// anyone listened.
fn streamer(listened: Arc<Mutex<Vec<bool>>>) -> FnAdapter {
    FnAdapter::new("streamer", move |call: Call| {
        let listened = listened.clone();
        async move {
            listened.lock().unwrap().push(stream::is_listening());
            let text = call.input["text"].as_str().unwrap_or("").to_string();
            stream::emit(json!({"type": "message_start", "provider": "test", "model": "m"}));
            for word in text.split_inclusive(' ') {
                stream::emit(json!({"type": "text_delta", "text": word}));
                tokio::task::yield_now().await;
            }
            stream::emit(
                json!({"type": "usage", "input_tokens": 3, "output_tokens": 2,
                                "cache_read_tokens": 0, "cache_write_tokens": 0}),
            );
            stream::emit(json!({"type": "message_end", "finish_reason": "stop"}));
            Ok(AgentResult {
                content: Some(text),
                usage: Some(json!({"api_calls": 1, "input_tokens": 3, "output_tokens": 2})),
                cost: Some(json!(0.25)),
                finish_reason: Some("stop".into()),
                ..AgentResult::default()
            })
        }
    })
}

const TWO_STATES: &str = r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: storyteller
  context: {topic: "{{ input.topic }}"}
  agents:
    writer: {type: streamer}
  states:
    start:
      type: initial
      agent: writer
      input: {text: "tide pools shelter life"}
      output_to_context: {story: "{{ output.content }}"}
      transitions: [{to: polish}]
    polish:
      agent: writer
      input: {text: "{{ context.story }} indeed"}
      output_to_context: {final: "{{ output.content }}"}
      transitions: [{to: done}]
    done:
      type: final
      output: {final: "{{ context.final }}"}
"#;

/// Records every stream event with its state and the context's `topic` and `story` at the time.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(String, Value, Value, Value)>>,
}

#[flatmachines::async_trait]
impl MachineHooks for Recorder {
    fn on_agent_stream_event(&self, state: &str, event: &Value, context: &Value) {
        self.seen.lock().unwrap().push((
            state.to_string(),
            event.clone(),
            context["topic"].clone(),
            context["story"].clone(),
        ));
    }
}

fn deltas(words: &[&str]) -> Vec<Value> {
    let mut events = vec![json!({"type": "message_start", "provider": "test", "model": "m"})];
    events.extend(
        words
            .iter()
            .map(|w| json!({"type": "text_delta", "text": w})),
    );
    events.push(
        json!({"type": "usage", "input_tokens": 3, "output_tokens": 2,
                       "cache_read_tokens": 0, "cache_write_tokens": 0}),
    );
    events.push(json!({"type": "message_end", "finish_reason": "stop"}));
    events
}

#[tokio::test]
async fn the_hook_receives_each_event_in_order_with_its_state_and_the_live_context() {
    let listened = Arc::default();
    let hooks = Arc::new(Recorder::default());
    let rt = Runtime::builder()
        .adapter(streamer(listened))
        .hooks(hooks.clone())
        .build();
    let out = rt
        .run(&machine(TWO_STATES), json!({"topic": "tides"}))
        .await
        .unwrap();
    assert_eq!(out, json!({"final": "tide pools shelter life indeed"}));
    let seen = hooks.seen.lock().unwrap().clone();
    let mut expected: Vec<(String, Value, Value, Value)> = Vec::new();
    for e in deltas(&["tide ", "pools ", "shelter ", "life"]) {
        expected.push(("start".into(), e, json!("tides"), Value::Null));
    }
    let story = json!("tide pools shelter life");
    for e in deltas(&["tide ", "pools ", "shelter ", "life ", "indeed"]) {
        expected.push(("polish".into(), e, json!("tides"), story.clone()));
    }
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn parallel_samples_stream_through_the_same_hook() {
    let yaml = r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: sampler
  agents:
    writer: {type: streamer}
  states:
    start:
      type: initial
      agent: writer
      execution: {type: parallel, n_samples: 3}
      input: {text: "a b"}
      transitions: [{to: done}]
    done: {type: final, output: {ok: true}}
"#;
    let hooks = Arc::new(Recorder::default());
    let rt = Runtime::builder()
        .adapter(streamer(Arc::default()))
        .hooks(hooks.clone())
        .build();
    rt.run(&machine(yaml), json!({})).await.unwrap();
    let seen = hooks.seen.lock().unwrap();
    let count = |ty: &str| seen.iter().filter(|(_, e, ..)| e["type"] == ty).count();
    assert_eq!(count("message_start"), 3);
    assert_eq!(count("text_delta"), 6);
    assert_eq!(count("message_end"), 3);
}

#[tokio::test]
async fn a_run_nobody_watches_sets_no_stream_sink() {
    let listened = Arc::new(Mutex::new(Vec::new()));
    let rt = Runtime::builder()
        .adapter(streamer(listened.clone()))
        .build();
    rt.run(&machine(TWO_STATES), json!({})).await.unwrap();
    assert_eq!(*listened.lock().unwrap(), [false, false]);

    // Hooks or a run-event stream are listeners.
    let rt = Runtime::builder()
        .adapter(streamer(listened.clone()))
        .hooks(Recorder::default())
        .build();
    rt.run(&machine(TWO_STATES), json!({})).await.unwrap();
    let rt = Runtime::builder()
        .adapter(streamer(listened.clone()))
        .build();
    let mut events = rt.stream(&machine(TWO_STATES), json!({}));
    while events.next_event().await.is_some() {}
    assert_eq!(
        *listened.lock().unwrap(),
        [false, false, true, true, true, true]
    );
}

/// A compact form of each run event: its kind and what identifies it.
fn summary(e: &RunEvent) -> String {
    match e {
        RunEvent::Started { machine, .. } => format!("started {machine}"),
        RunEvent::StateEntered { state, step } => format!("enter {state} {step}"),
        RunEvent::StateExited { state, output } => {
            format!("exit {state} {}", output.clone().unwrap_or(Value::Null))
        }
        RunEvent::AgentStream { state, event } => {
            format!(
                "stream {state} {}",
                event["text"]
                    .as_str()
                    .unwrap_or(event["type"].as_str().unwrap())
            )
        }
        RunEvent::AgentResult {
            state,
            agent,
            cost,
            finish_reason,
            usage,
        } => format!(
            "result {state} {agent} {cost} {} {}",
            finish_reason.as_deref().unwrap_or("-"),
            usage
                .as_ref()
                .map_or(Value::Null, |u| u["output_tokens"].clone())
        ),
        RunEvent::ToolCalls { state, tool_calls } => {
            format!("tool_calls {state} {}", Value::from(tool_calls.clone()))
        }
        RunEvent::ToolResult { state, result } => format!("tool_result {state} {result}"),
        RunEvent::Waiting { channel, .. } => format!("waiting {channel}"),
        RunEvent::Output { output } => format!("output {output}"),
        RunEvent::Error { error } => format!("error {error}"),
        other => format!("{other:?}"),
    }
}

#[tokio::test]
async fn the_run_event_stream_yields_states_deltas_results_and_the_output() {
    let rt = Runtime::builder().adapter(streamer(Arc::default())).build();
    let mut events = rt.stream(&machine(TWO_STATES), json!({"topic": "tides"}));
    let id = events.execution_id().to_string();
    let mut seen = Vec::new();
    while let Some(e) = events.next_event().await {
        if let RunEvent::Started { execution_id, .. } = &e {
            assert_eq!(*execution_id, id);
        }
        seen.push(summary(&e));
    }
    assert_eq!(
        seen,
        [
            "started storyteller",
            "enter start 1",
            "stream start message_start",
            "stream start tide ",
            "stream start pools ",
            "stream start shelter ",
            "stream start life",
            "stream start usage",
            "stream start message_end",
            "result start writer 0.25 stop 2",
            r#"exit start {"content":"tide pools shelter life"}"#,
            "enter polish 2",
            "stream polish message_start",
            "stream polish tide ",
            "stream polish pools ",
            "stream polish shelter ",
            "stream polish life ",
            "stream polish indeed",
            "stream polish usage",
            "stream polish message_end",
            "result polish writer 0.25 stop 2",
            r#"exit polish {"content":"tide pools shelter life indeed"}"#,
            "enter done 3",
            r#"exit done {"final":"tide pools shelter life indeed"}"#,
            r#"output {"final":"tide pools shelter life indeed"}"#,
        ]
    );
}

#[tokio::test]
async fn tool_calls_an_agent_reports_are_run_events_and_json_lines() {
    let yaml = r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: caller
  agents:
    asker: {type: asker}
  states:
    start: {type: initial, agent: asker, transitions: [{to: done}]}
    done: {type: final, output: {ok: true}}
"#;
    let asker = FnAdapter::new("asker", |_call: Call| async move {
        Ok(AgentResult {
            content: Some("looking".into()),
            tool_calls: Some(json!([{"id": "c1", "name": "search", "arguments": {"q": "x"}}])),
            metadata: Some(
                json!({"tool_results": [{"tool_call_id": "c1", "name": "search",
                "arguments": {"q": "x"}, "content": "found", "is_error": false}]}),
            ),
            ..AgentResult::default()
        })
    });
    let rt = Runtime::builder().adapter(asker).build();
    let mut events = rt.stream(&machine(yaml), json!({}));
    let mut lines = Vec::new();
    while let Some(e) = events.next_event().await {
        lines.push(e.to_json());
    }
    let kinds: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "started",
            "state_entered",
            "agent_result",
            "tool_calls",
            "tool_result",
            "state_exited",
            "state_entered",
            "state_exited",
            "output"
        ]
    );
    assert_eq!(
        lines[3],
        json!({"event": "tool_calls", "state": "start",
               "tool_calls": [{"id": "c1", "name": "search", "arguments": {"q": "x"}}]})
    );
    assert_eq!(lines[4]["result"]["content"], "found");
    assert_eq!(lines[8], json!({"event": "output", "output": {"ok": true}}));
}

#[tokio::test]
async fn a_failed_run_ends_its_stream_with_the_error() {
    let yaml = TWO_STATES.replace("type: streamer", "type: broken");
    let rt = Runtime::builder()
        .adapter(FnAdapter::failing("broken", "ValueError", "no model"))
        .build();
    let mut events = rt.stream(&machine(&yaml), json!({}));
    let mut last = None;
    while let Some(e) = events.next_event().await {
        last = Some(e);
    }
    let Some(RunEvent::Error { error }) = last else {
        panic!("{last:?}")
    };
    assert_eq!(error.kind(), Some("ValueError"));
    let line = RunEvent::Error { error }.to_json();
    assert_eq!(line["event"], "error");
    assert_eq!(line["kind"], "ValueError");
    assert!(
        line["message"].as_str().unwrap().contains("state `start`"),
        "{line}"
    );
}

/// `type: stuck`: its first call streams one delta, says it started, and never returns; later
/// calls answer at once.
fn stuck(started: Arc<tokio::sync::Notify>) -> FnAdapter {
    FnAdapter::new("stuck", move |call: Call| {
        let started = started.clone();
        async move {
            if call.number == 1 {
                stream::emit(json!({"type": "text_delta", "text": "thinking"}));
                started.notify_one();
                std::future::pending::<()>().await;
            }
            Ok(AgentResult::with_output(json!({"answer": call.number})))
        }
    })
}

const STUCK: &str = r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: stuck_run
  agents:
    echo: {type: echo}
    thinker: {type: stuck}
  states:
    start:
      type: initial
      agent: echo
      input: {first: done}
      output_to_context: {first: "{{ output.first }}"}
      transitions: [{to: think}]
    think:
      agent: thinker
      output_to_context: {answer: "{{ output.answer }}"}
      transitions: [{to: done}]
    done:
      type: final
      output: {first: "{{ context.first }}", answer: "{{ context.answer }}"}
"#;

#[tokio::test]
async fn dropping_the_stream_cancels_the_run_and_a_resume_completes_it() {
    let dir = TempDir::new();
    let started = Arc::new(tokio::sync::Notify::new());
    let thinker = stuck(started.clone());
    let rt = Runtime::builder()
        .adapter(thinker.clone())
        .checkpoint_backend(Arc::new(
            LocalFileBackend::new(dir.join("checkpoints")).unwrap(),
        ))
        .lock(Arc::new(LocalFileLock::new(dir.join("locks")).unwrap()))
        .build();
    let m = machine(STUCK);
    let mut events = rt.stream(&m, json!({}));
    let id = events.execution_id().to_string();
    // Read up to the delta of the call that never ends, then walk away.
    bounded(async {
        loop {
            match events.next_event().await {
                Some(RunEvent::AgentStream { state, .. }) => {
                    assert_eq!(state, "think");
                    break;
                }
                Some(_) => {}
                None => panic!("the run ended before its stuck call"),
            }
        }
    })
    .await;
    started.notified().await;
    assert_eq!(thinker.in_flight(), 1);
    drop(events);

    // The run stops on its own task: the stuck call is dropped, then the lock released. (The
    // bound only turns a run that never lets go into a failure instead of a hang.)
    let mut attempts = 0;
    let resumed = loop {
        attempts += 1;
        assert!(
            attempts < 3000,
            "the dropped stream's run still holds its lock"
        );
        match rt
            .run_with(
                &m,
                json!({}),
                RunOptions {
                    resume_from: Some(id.clone()),
                    ..RunOptions::default()
                },
            )
            .await
        {
            Err(Error::Locked { .. }) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await
            }
            other => break other,
        }
    };
    assert_eq!(resumed.unwrap(), json!({"first": "done", "answer": "2"}));
    assert_eq!(thinker.calls(), 2);
    assert_eq!(thinker.in_flight(), 0);
}

#[tokio::test]
async fn cancelling_through_the_stream_ends_it_with_stopped_after_the_run_let_go() {
    let started = Arc::new(tokio::sync::Notify::new());
    let thinker = stuck(started.clone());
    let rt = Runtime::builder().adapter(thinker.clone()).build();
    let mut events = rt.stream(&machine(STUCK), json!({}));
    started.notified().await;
    events.cancel();
    let mut last = None;
    bounded(async {
        while let Some(e) = events.next_event().await {
            last = Some(e);
        }
    })
    .await;
    let Some(RunEvent::Error { error }) = last else {
        panic!("{last:?}")
    };
    match &*error {
        Error::Stopped {
            state,
            execution_id,
            ..
        } => {
            assert_eq!(state, "think");
            assert_eq!(execution_id, events.execution_id());
        }
        other => panic!("{other}"),
    }
    // The stream ended after the run had dropped the call.
    assert_eq!(thinker.in_flight(), 0);
}

//! Hooks observe and steer a run (`hooks-adapters-cli.md` §1–3).
//!
//! Methods are async (implement them with [`async_trait`](crate::async_trait)) and take the
//! context by `&mut` instead of returning a new one: the effect of the reference's "return the
//! new context" is the same, and a hook cannot end a run by accident by returning nothing (a
//! reference quirk).
//!
//! ```
//! use flatmachines::hooks::MachineHooks;
//! use serde_json::Value;
//!
//! struct Approve;
//!
//! #[flatmachines::async_trait]
//! impl MachineHooks for Approve {
//!     async fn on_action(&self, action: &str, context: &mut Value) {
//!         if action == "approve" {
//!             context["approved"] = Value::Bool(true);
//!         }
//!     }
//! }
//! ```

mod registry;

pub use registry::{HookArgs, HooksError, HooksRegistry};

use crate::tools::ToolProvider;
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Callbacks around a run. Every method has a pass-through default.
#[async_trait]
pub trait MachineHooks: Send + Sync {
    /// A fresh run starts (not on resume), after the initial context is built.
    async fn on_machine_start(&self, _context: &mut Value) {}
    /// The run ended normally; may replace the output returned to the caller.
    async fn on_machine_end(&self, _context: &Value, _output: &mut Value) {}
    /// A state is entered.
    async fn on_state_enter(&self, _state: &str, _context: &mut Value) {}
    /// A state finished without error; `output` is its final output, if any.
    async fn on_state_exit(&self, _state: &str, _context: &mut Value, _output: Option<&Value>) {}
    /// A transition was chosen; return the state to go to (`None` ends the run).
    async fn on_transition(&self, _from: &str, to: &str, _context: &mut Value) -> Option<String> {
        Some(to.to_string())
    }
    /// An in-state error that `on_error` config did not handle; return a recovery state.
    async fn on_error(
        &self,
        _state: &str,
        _kind: &str,
        _message: &str,
        _context: &mut Value,
    ) -> Option<String> {
        None
    }
    /// An `action:` state runs.
    async fn on_action(&self, action: &str, _context: &mut Value) {
        tracing::warn!("Unhandled action: {action}");
    }
    /// The model asked for tools: `tool_calls` is `[{id, name, arguments}]`. In a tool loop this
    /// runs once per reply, before the calls; set `_abort_tool_loop` or `_skip_tools` in the
    /// context to steer them (`hooks-adapters-cli.md` §1).
    async fn on_tool_calls(&self, _state: &str, _tool_calls: &[Value], _context: &mut Value) {}
    /// A tool call finished: `result` is `{tool_call_id, name, arguments, content, is_error}`.
    /// Set `_abort_tool_loop` or `_steering_messages` in the context to steer the loop.
    async fn on_tool_result(&self, _state: &str, _result: &Value, _context: &mut Value) {}
    /// The tools of the tool loop in `state`; `None` uses the runtime's (its registered Rust
    /// tools). MCP servers the agent declares are added either way.
    fn get_tool_provider(&self, _state: &str) -> Option<Arc<dyn ToolProvider>> {
        None
    }
    /// An adapter streamed `event` during an agent call of `state`: a token delta, a tool-call
    /// fragment, usage, the message's start or end (the shapes of
    /// [`agent::stream`](crate::agent::stream)). `context` is the live context; it cannot be
    /// changed here (the reference forbids it too).
    ///
    /// Called once per event, in order, on the run's task, while the call is in flight: keep it
    /// cheap and never block. It is deliberately not async: it runs per token, and awaiting it
    /// would hold back the call; the reference does not await it either (it schedules an async
    /// hook as a background task and moves on). For async work — sending to a socket, a UI —
    /// push the event into a channel here and do the work on another task.
    fn on_agent_stream_event(&self, _state: &str, _event: &Value, _context: &Value) {}
}

/// Shared hooks: keep a clone of the `Arc` to inspect them after a run.
#[async_trait]
impl<T: MachineHooks + ?Sized> MachineHooks for Arc<T> {
    async fn on_machine_start(&self, context: &mut Value) {
        (**self).on_machine_start(context).await
    }
    async fn on_machine_end(&self, context: &Value, output: &mut Value) {
        (**self).on_machine_end(context, output).await
    }
    async fn on_state_enter(&self, state: &str, context: &mut Value) {
        (**self).on_state_enter(state, context).await
    }
    async fn on_state_exit(&self, state: &str, context: &mut Value, output: Option<&Value>) {
        (**self).on_state_exit(state, context, output).await
    }
    async fn on_transition(&self, from: &str, to: &str, context: &mut Value) -> Option<String> {
        (**self).on_transition(from, to, context).await
    }
    async fn on_error(
        &self,
        state: &str,
        kind: &str,
        message: &str,
        context: &mut Value,
    ) -> Option<String> {
        (**self).on_error(state, kind, message, context).await
    }
    async fn on_action(&self, action: &str, context: &mut Value) {
        (**self).on_action(action, context).await
    }
    async fn on_tool_calls(&self, state: &str, tool_calls: &[Value], context: &mut Value) {
        (**self).on_tool_calls(state, tool_calls, context).await
    }
    async fn on_tool_result(&self, state: &str, result: &Value, context: &mut Value) {
        (**self).on_tool_result(state, result, context).await
    }
    fn get_tool_provider(&self, state: &str) -> Option<Arc<dyn ToolProvider>> {
        (**self).get_tool_provider(state)
    }
    fn on_agent_stream_event(&self, state: &str, event: &Value, context: &Value) {
        (**self).on_agent_stream_event(state, event, context)
    }
}

/// Hooks that do nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHooks;

#[async_trait]
impl MachineHooks for NoHooks {}

/// Logs every event with `tracing` at info level (the reference's `LoggingHooks`).
#[derive(Clone, Copy, Debug, Default)]
pub struct LoggingHooks;

#[async_trait]
impl MachineHooks for LoggingHooks {
    async fn on_machine_start(&self, _context: &mut Value) {
        tracing::info!("Machine execution started");
    }
    async fn on_machine_end(&self, _context: &Value, output: &mut Value) {
        tracing::info!("Machine execution ended with output: {output}");
    }
    async fn on_state_enter(&self, state: &str, _context: &mut Value) {
        tracing::info!("Entering state: {state}");
    }
    async fn on_state_exit(&self, state: &str, _context: &mut Value, _output: Option<&Value>) {
        tracing::info!("Exiting state: {state}");
    }
    async fn on_transition(&self, from: &str, to: &str, _context: &mut Value) -> Option<String> {
        tracing::info!("Transition: {from} -> {to}");
        Some(to.to_string())
    }
    fn on_agent_stream_event(&self, state: &str, event: &Value, _context: &Value) {
        let ty = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        tracing::info!("Stream event in {state}: {ty}");
    }
}

/// Counts states, transitions and errors (the reference's `MetricsHooks`).
///
/// Clone it before handing it to a runtime to read the figures afterwards: clones share counts.
#[derive(Clone, Debug, Default)]
pub struct MetricsHooks {
    inner: Arc<Mutex<Metrics>>,
}

/// What [`MetricsHooks`] counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Metrics {
    /// Entries per state name.
    pub state_counts: BTreeMap<String, u64>,
    /// Transitions per `"from->to"`.
    pub transition_counts: BTreeMap<String, u64>,
    /// States entered in total.
    pub total_states_executed: u64,
    /// Errors that reached the `on_error` hook.
    pub error_count: u64,
    /// Executed tool calls per tool name (tool loops).
    pub tool_call_counts: BTreeMap<String, u64>,
    /// Executed tool calls whose result was an error.
    pub tool_error_count: u64,
}

impl MetricsHooks {
    /// Fresh counters.
    pub fn new() -> Self {
        MetricsHooks::default()
    }

    /// A copy of the counts so far.
    pub fn metrics(&self) -> Metrics {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Metrics> {
        // A panic in another hook cannot leave the counters half-updated: keep counting.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl MachineHooks for MetricsHooks {
    async fn on_state_enter(&self, state: &str, _context: &mut Value) {
        let mut m = self.lock();
        *m.state_counts.entry(state.to_string()).or_default() += 1;
        m.total_states_executed += 1;
    }
    async fn on_transition(&self, from: &str, to: &str, _context: &mut Value) -> Option<String> {
        *self
            .lock()
            .transition_counts
            .entry(format!("{from}->{to}"))
            .or_default() += 1;
        Some(to.to_string())
    }
    async fn on_error(
        &self,
        _state: &str,
        _kind: &str,
        _message: &str,
        _context: &mut Value,
    ) -> Option<String> {
        self.lock().error_count += 1;
        None
    }
    async fn on_tool_result(&self, _state: &str, result: &Value, _context: &mut Value) {
        let mut m = self.lock();
        let name = result.get("name").and_then(Value::as_str).unwrap_or("");
        *m.tool_call_counts.entry(name.to_string()).or_default() += 1;
        if result.get("is_error").and_then(Value::as_bool) == Some(true) {
            m.tool_error_count += 1;
        }
    }
}

/// Several hooks chained in order: contexts thread through each; the first recovery state wins.
///
/// Unlike the reference, async members are awaited (the reference passes their pending
/// coroutine on as the "context").
#[derive(Clone, Default)]
pub struct CompositeHooks {
    hooks: Vec<Arc<dyn MachineHooks>>,
}

impl std::fmt::Debug for CompositeHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompositeHooks")
            .field("len", &self.hooks.len())
            .finish()
    }
}

impl CompositeHooks {
    /// Chains `hooks` in order.
    pub fn new(hooks: Vec<Arc<dyn MachineHooks>>) -> Self {
        CompositeHooks { hooks }
    }
}

#[async_trait]
impl MachineHooks for CompositeHooks {
    async fn on_machine_start(&self, context: &mut Value) {
        for h in &self.hooks {
            h.on_machine_start(context).await;
        }
    }
    async fn on_machine_end(&self, context: &Value, output: &mut Value) {
        for h in &self.hooks {
            h.on_machine_end(context, output).await;
        }
    }
    async fn on_state_enter(&self, state: &str, context: &mut Value) {
        for h in &self.hooks {
            h.on_state_enter(state, context).await;
        }
    }
    async fn on_state_exit(&self, state: &str, context: &mut Value, output: Option<&Value>) {
        for h in &self.hooks {
            h.on_state_exit(state, context, output).await;
        }
    }
    async fn on_transition(&self, from: &str, to: &str, context: &mut Value) -> Option<String> {
        let mut next = to.to_string();
        for h in &self.hooks {
            next = h.on_transition(from, &next, context).await?;
        }
        Some(next)
    }
    async fn on_error(
        &self,
        state: &str,
        kind: &str,
        message: &str,
        context: &mut Value,
    ) -> Option<String> {
        for h in &self.hooks {
            if let Some(s) = h.on_error(state, kind, message, context).await {
                return Some(s);
            }
        }
        None
    }
    async fn on_action(&self, action: &str, context: &mut Value) {
        for h in &self.hooks {
            h.on_action(action, context).await;
        }
    }
    async fn on_tool_calls(&self, state: &str, tool_calls: &[Value], context: &mut Value) {
        for h in &self.hooks {
            h.on_tool_calls(state, tool_calls, context).await;
        }
    }
    async fn on_tool_result(&self, state: &str, result: &Value, context: &mut Value) {
        for h in &self.hooks {
            h.on_tool_result(state, result, context).await;
        }
    }
    /// The first member's provider.
    fn get_tool_provider(&self, state: &str) -> Option<Arc<dyn ToolProvider>> {
        self.hooks.iter().find_map(|h| h.get_tool_provider(state))
    }
    /// Every member, in order.
    fn on_agent_stream_event(&self, state: &str, event: &Value, context: &Value) {
        for h in &self.hooks {
            h.on_agent_stream_event(state, event, context);
        }
    }
}

/// The `args` map of a `{name, args}` hooks reference, empty for a bare name.
pub(crate) fn args_of(entry: &Map<String, Value>) -> Map<String, Value> {
    entry
        .get("args")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

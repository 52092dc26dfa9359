//! What a run tells the world while it runs, and how the world stops it: [`RunEvent`]s for a
//! run-event stream, the agent stream events of each call (to the `on_agent_stream_event` hook
//! and the stream), and [`CancelHandle`].
//!
//! Everything here costs nothing to a run nobody watches: without hooks and without a
//! run-event consumer an agent call is awaited as is, with no stream scope, buffer or
//! allocation, and without a cancel handle nothing is polled beside it.

use super::{Run, StateFailure};
use crate::agent::stream::{self, StreamSink};
use crate::error::Error;
use crate::hooks::MachineHooks;
use serde_json::{Value, json};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use tokio::sync::Notify;

/// Something that happened in a run, as a run-event stream
/// ([`Runtime::stream`](crate::Runtime::stream)) delivers it, in order.
///
/// A run that starts sends [`Started`](RunEvent::Started) first (one refused before it starts,
/// for instance [`Error::Locked`], sends only its error), and every stream ends with exactly one
/// of [`Output`](RunEvent::Output) or [`Error`](RunEvent::Error). [`RunEvent::to_json`] gives the
/// JSON line `flatmachines run --stream` prints.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum RunEvent {
    /// The run started (or resumed) under this execution id.
    Started {
        /// `data.name`.
        machine: String,
        /// The execution (resume it with this id after a cancellation).
        execution_id: String,
        /// Whether it continues from a checkpoint.
        resumed: bool,
    },
    /// A state was entered, as step `step` of the run.
    StateEntered {
        /// The state.
        state: String,
        /// `context.machine.step`.
        step: u64,
    },
    /// A state finished without error. `output` is its output, if it produced one.
    StateExited {
        /// The state.
        state: String,
        /// The agent's, children's or final `output` of the state.
        output: Option<Value>,
    },
    /// An adapter streamed an event during an agent call of `state`: a token delta, a tool-call
    /// fragment, usage (the shapes of [`agent::stream`](crate::agent::stream)).
    AgentStream {
        /// The state whose agent call streams.
        state: String,
        /// The event, as the adapter emitted it.
        event: Value,
    },
    /// An agent call (one state's call with its execution type, or one tool-loop turn)
    /// returned.
    AgentResult {
        /// The state.
        state: String,
        /// The agent's name in the machine.
        agent: String,
        /// What the adapter reported as `usage`.
        usage: Option<Value>,
        /// What it cost, as added to `context.machine.total_cost`.
        cost: f64,
        /// `stop`, `length`, `tool_use`, …
        finish_reason: Option<String>,
    },
    /// The model asked for tools (`[{id, name, arguments}]`), as the `on_tool_calls` hook sees
    /// them.
    ToolCalls {
        /// The state.
        state: String,
        /// The calls.
        tool_calls: Vec<Value>,
    },
    /// A tool call finished: `{tool_call_id, name, arguments, content, is_error}`, as the
    /// `on_tool_result` hook sees it.
    ToolResult {
        /// The state.
        state: String,
        /// The result.
        result: Value,
    },
    /// A `wait_for` state parked the run; [`Output`](RunEvent::Output) follows.
    Waiting {
        /// The execution to resume after a signal.
        execution_id: String,
        /// The channel it waits on.
        channel: String,
    },
    /// The run ended: what [`Runtime::run_with`](crate::Runtime::run_with) would return.
    Output {
        /// The output.
        output: Value,
    },
    /// The run failed, or was cancelled ([`Error::Stopped`]): what
    /// [`Runtime::run_with`](crate::Runtime::run_with) would return.
    Error {
        /// The error.
        error: Arc<Error>,
    },
}

impl RunEvent {
    /// The event as one JSON object with its kind under `"event"` (`started`, `state_entered`,
    /// `state_exited`, `agent_stream`, `agent_result`, `tool_calls`, `tool_result`, `waiting`,
    /// `output`, `error`); an error has `message` and, for errors inside a state, `kind`.
    pub fn to_json(&self) -> Value {
        match self {
            RunEvent::Started {
                machine,
                execution_id,
                resumed,
            } => json!({"event": "started", "machine": machine,
                        "execution_id": execution_id, "resumed": resumed}),
            RunEvent::StateEntered { state, step } => {
                json!({"event": "state_entered", "state": state, "step": step})
            }
            RunEvent::StateExited { state, output } => {
                json!({"event": "state_exited", "state": state, "output": output})
            }
            RunEvent::AgentStream { state, event } => {
                json!({"event": "agent_stream", "state": state, "data": event})
            }
            RunEvent::AgentResult {
                state,
                agent,
                usage,
                cost,
                finish_reason,
            } => json!({"event": "agent_result", "state": state, "agent": agent,
                        "usage": usage, "cost": cost, "finish_reason": finish_reason}),
            RunEvent::ToolCalls { state, tool_calls } => {
                json!({"event": "tool_calls", "state": state, "tool_calls": tool_calls})
            }
            RunEvent::ToolResult { state, result } => {
                json!({"event": "tool_result", "state": state, "result": result})
            }
            RunEvent::Waiting {
                execution_id,
                channel,
            } => json!({"event": "waiting", "execution_id": execution_id, "channel": channel}),
            RunEvent::Output { output } => json!({"event": "output", "output": output}),
            RunEvent::Error { error } => {
                let mut e = json!({"event": "error", "message": error.to_string()});
                if let Some(kind) = error.kind() {
                    e["kind"] = json!(kind);
                }
                e
            }
        }
    }
}

/// Where a run sends its [`RunEvent`]s. Unbounded because agent stream events are produced
/// inside an adapter's poll, where nothing can wait for room; they are small, and a consumer
/// that stops reading should drop the stream, which cancels the run.
pub(crate) type EventSender = tokio::sync::mpsc::UnboundedSender<RunEvent>;

/// Cancels runs: hand a clone to [`RunOptions::cancel`](crate::RunOptions::cancel) and call
/// [`cancel`](CancelHandle::cancel) from anywhere (another task, a thread, a signal watcher).
///
/// A cancelled run stops at its next safe point — before the next state's body runs, once that
/// state's `execute` checkpoint is saved — or, when an agent call is in flight, aborts the call
/// at once (the request is dropped, nothing it returns is recorded). Either way it ends with
/// [`Error::Stopped`] naming the state a resume
/// ([`RunOptions::resume_from`](crate::RunOptions::resume_from)) runs next: the state whose call
/// was aborted runs again from its start, and no completed state runs again. Tool calls and
/// child machines in flight finish first. One handle may serve several runs; once cancelled it
/// stays cancelled (a run started with it stops at once).
#[derive(Clone, Default)]
pub struct CancelHandle {
    inner: Arc<CancelInner>,
}

#[derive(Default)]
struct CancelInner {
    cancelled: AtomicBool,
    notify: Notify,
}

impl std::fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelHandle")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl CancelHandle {
    /// A handle that is not cancelled.
    pub fn new() -> Self {
        CancelHandle::default()
    }

    /// Asks every run holding this handle to stop (see [`CancelHandle`]). Idempotent; returns at
    /// once, the runs stop on their own tasks.
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    /// Whether [`cancel`](CancelHandle::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// Completes once the handle is cancelled (at once if it already is).
    pub async fn cancelled(&self) {
        let mut notified = pin!(self.inner.notify.notified());
        // Registered before the flag is read, so a `cancel` in between still wakes us.
        notified.as_mut().enable();
        if self.is_cancelled() {
            return;
        }
        notified.await;
    }
}

/// The failure an aborted agent call leaves; the main loop turns it into [`Error::Stopped`]
/// (it never reaches `on_error`).
pub(super) const CANCELLED: &str = "CancelledError";

impl Run<'_> {
    /// Sends `event` to the run-event stream, if there is one. Events are built by the caller
    /// only after checking [`Run::observed`], so unwatched runs build none.
    pub(super) fn send(&self, event: RunEvent) {
        if let Some(tx) = &self.events {
            // A consumer that went away has cancelled the run; nothing to do here.
            let _ = tx.send(event);
        }
    }

    /// Whether a run-event consumer listens.
    pub(super) fn observed(&self) -> bool {
        self.events.is_some()
    }

    /// Whether the run was asked to stop (by [`CancelHandle`] or `run_until`'s flag).
    pub(super) fn stop_requested(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
            || self.cancel.as_ref().is_some_and(CancelHandle::is_cancelled)
    }

    /// Runs one agent call of `state`. While it runs, the events its adapter emits
    /// ([`stream::emit`]) go to the `on_agent_stream_event` hook and the run-event stream, in
    /// order; a cancellation aborts it (the call future is dropped) with a [`CANCELLED`]
    /// failure.
    ///
    /// Events are collected in a buffer the call's sink appends to and handed on after each
    /// poll of the call, on this task: the sink must be `'static`, while the hook reads the
    /// live context the call also borrows; and the hook then runs in emission order without a
    /// task or a clone of the context per token. An adapter that emits several events in one
    /// poll has them delivered as soon as that poll returns.
    pub(super) async fn agent_call<F: Future>(
        &self,
        state: &str,
        call: F,
    ) -> Result<F::Output, StateFailure> {
        let listening = self.hooks.is_some() || self.events.is_some();
        if !listening && self.cancel.is_none() {
            return Ok(call.await);
        }
        let buffer: Option<Arc<Mutex<Vec<Value>>>> = listening.then(Arc::default);
        let call = async {
            match &buffer {
                Some(buffer) => {
                    let b = buffer.clone();
                    let sink: StreamSink = Arc::new(move |event| lock(&b).push(event));
                    stream::scope(sink, call).await
                }
                None => call.await,
            }
        };
        let cancelled = async {
            match &self.cancel {
                Some(c) => c.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let (mut call, mut cancelled) = (pin!(call), pin!(cancelled));
        // Only what is `Sync` is captured, so that the run's future stays `Send`.
        let (hooks, events, context) = (self.hooks.as_deref(), self.events.as_ref(), &self.context);
        std::future::poll_fn(|cx| {
            // Checked first: a call started after the cancellation never runs.
            if cancelled.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            let polled = call.as_mut().poll(cx);
            if let Some(buffer) = &buffer {
                let emitted = std::mem::take(&mut *lock(buffer));
                for event in emitted {
                    deliver(hooks, events, state, context, event);
                }
            }
            polled.map(Some)
        })
        .await
        .ok_or_else(|| StateFailure::new(CANCELLED, "the run was cancelled during an agent call"))
    }
}

/// One agent stream event to the hook, then to the run-event stream.
fn deliver(
    hooks: Option<&dyn MachineHooks>,
    events: Option<&EventSender>,
    state: &str,
    context: &Value,
    event: Value,
) {
    if let Some(h) = hooks {
        h.on_agent_stream_event(state, &event, context);
    }
    if let Some(tx) = events {
        let _ = tx.send(RunEvent::AgentStream {
            state: state.to_string(),
            event,
        });
    }
}

fn lock(m: &Mutex<Vec<Value>>) -> std::sync::MutexGuard<'_, Vec<Value>> {
    // A panicking hook cannot leave the buffer half-written: keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

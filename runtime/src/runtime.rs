//! The runtime's entry points: building a [`Runtime`] and running machines with it. The
//! `Runtime` value itself — the adapters, hooks and backends runs share — is defined with the
//! engine (`executor/env.rs`), which reads it; this layer only assembles it.

use crate::agent::{AdapterRegistry, AgentAdapter};
use crate::error::Error;
pub use crate::executor::env::{RunOptions, Runtime};
pub use crate::executor::{CancelHandle, RunEvent};
use crate::hooks::{HooksRegistry, MachineHooks};
use crate::invoker::Invoker;
use crate::machine::Machine;
use crate::persistence::snapshot::Latest;
use crate::persistence::{CheckpointBackend, ConfigStore, ExecutionLock};
use crate::results::ResultBackend;
use crate::tools::{ToolProvider, ToolRegistry};
use serde_json::Value;
use std::sync::Arc;

impl Default for Runtime {
    fn default() -> Self {
        Runtime::new()
    }
}

impl Runtime {
    /// A runtime with the built-in adapters (`flatagent`, `echo`), the built-in hooks names
    /// (`logging`, `metrics`) for `data.hooks`, and no hooks of its own.
    pub fn new() -> Self {
        Runtime::builder().build()
    }

    /// A builder to add adapters and hooks.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder {
            adapters: AdapterRegistry::builtin(),
            hooks: None,
            hooks_registry: HooksRegistry::builtin(),
            checkpoint_backend: None,
            lock: None,
            config_store: None,
            results: None,
            invoker: None,
            tools: ToolRegistry::default(),
            signals: None,
        }
    }

    /// The runtime's signal backend: send signals here for its runs' `wait_for` states (by
    /// default a [`MemorySignalBackend`](crate::signals::MemorySignalBackend) of this runtime; a
    /// machine that checkpoints to SQLite uses its database's `signals` table instead unless a
    /// backend was given to the builder).
    pub fn signals(&self) -> &Arc<dyn crate::signals::SignalBackend> {
        &self.signals
    }

    /// The result backend child machines write to: read the results of launched machines
    /// here (`flatagents://<execution_id>/result`).
    pub fn results(&self) -> &Arc<dyn ResultBackend> {
        &self.results
    }

    /// Runs `machine` from the start with `input` and returns its output.
    pub async fn run(&self, machine: &Machine, input: Value) -> Result<Value, Error> {
        self.run_with(machine, input, RunOptions::default()).await
    }

    /// Runs `machine` with options and says how the run ended: [`Outcome::Finished`] with its
    /// output, or [`Outcome::Waiting`] when a `wait_for` state parked it (resume it later with
    /// [`RunOptions::resume_from`] set to the execution id, after a signal on the channel).
    pub async fn run_outcome(
        &self,
        machine: &Machine,
        input: Value,
        options: RunOptions,
    ) -> Result<Outcome<Value>, Error> {
        let ended = crate::executor::run_ended(self, machine, input, options).await?;
        Ok(match ended.parked_on {
            Some(channel) => Outcome::Waiting {
                execution_id: ended.execution_id,
                channel,
            },
            None => Outcome::Finished(ended.output),
        })
    }

    /// Runs `machine` from the start with `input` on a spawned task and returns the stream of
    /// its [`RunEvent`]s (see [`RunStream`]). Must be called within a tokio runtime.
    ///
    /// ```no_run
    /// # use flatmachines::{Machine, Runtime, RunEvent};
    /// # async fn demo(rt: Runtime, machine: Machine) {
    /// let mut events = rt.stream(&machine, serde_json::json!({"topic": "tides"}));
    /// while let Some(event) = events.next_event().await {
    ///     if let RunEvent::AgentStream { event, .. } = &event {
    ///         print!("{}", event["text"].as_str().unwrap_or(""));
    ///     }
    /// }
    /// # }
    /// ```
    pub fn stream(&self, machine: &Machine, input: Value) -> RunStream {
        self.stream_with(machine, input, RunOptions::default())
    }

    /// [`Runtime::stream`] with options. A cancel handle in `options` cancels the run as well
    /// as dropping the stream does.
    pub fn stream_with(&self, machine: &Machine, input: Value, options: RunOptions) -> RunStream {
        let mut options = options;
        // Known before the run starts, so that a consumer can resume a run it cancelled even
        // when it never read the `started` event.
        let execution_id = match (&options.resume_from, &options.execution_id) {
            (Some(id), _) | (None, Some(id)) => id.clone(),
            (None, None) => {
                let id = crate::py::uuid4();
                options.execution_id = Some(id.clone());
                id
            }
        };
        let cancel = options.cancel.get_or_insert_with(CancelHandle::new).clone();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (rt, machine) = (self.clone(), machine.clone());
        tokio::spawn(async move {
            let control = crate::executor::Control {
                stop: None,
                events: Some(tx.clone()),
            };
            let last = match crate::executor::run_controlled(&rt, &machine, input, options, control)
                .await
            {
                Ok(ended) => RunEvent::Output {
                    output: ended.output,
                },
                Err(error) => RunEvent::Error {
                    error: Arc::new(error),
                },
            };
            let _ = tx.send(last);
        });
        RunStream {
            events: rx,
            cancel,
            execution_id,
        }
    }

    /// Runs `machine` with options until it ends or `stop` is set (from a signal handler,
    /// another task or thread). [`RunOptions::cancel`] does the same and also aborts an agent
    /// call in flight; prefer it in new code. A run told to stop finishes the state it is in, then ends with
    /// [`Error::Stopped`] right before the next state's body runs, when that state's `execute`
    /// checkpoint is saved: resuming the execution ([`RunOptions::resume_from`]) runs that
    /// state next and no completed state again. Child machines are not interrupted.
    pub async fn run_until(
        &self,
        machine: &Machine,
        input: Value,
        options: RunOptions,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<Value, Error> {
        crate::executor::run_until(self, machine, input, options, stop).await
    }

    /// The latest checkpoint of `execution_id` in the store where `machine`, run by this
    /// runtime, keeps its checkpoints (the runtime's backend, else the one `data.persistence`
    /// names): `None` when it has none, or when the machine writes no checkpoints. Lets a
    /// caller refuse to start a fresh run under an id that already has a history.
    pub async fn latest_checkpoint(
        &self,
        machine: &Machine,
        execution_id: &str,
    ) -> Result<Option<Latest>, Error> {
        crate::executor::latest_checkpoint(self, machine, execution_id).await
    }

    /// Runs `machine` with options.
    pub async fn run_with(
        &self,
        machine: &Machine,
        input: Value,
        options: RunOptions,
    ) -> Result<Value, Error> {
        crate::executor::run(self, machine, input, options).await
    }
}

/// The [`RunEvent`]s of a run started by [`Runtime::stream`], as a
/// [`futures_core::Stream`] (use it with `futures`' or `tokio-stream`'s combinators, or poll it
/// by hand).
///
/// The run goes on on its own task whether or not the stream is read (events wait in the
/// stream). The stream ends after the run's last event, [`RunEvent::Output`] or
/// [`RunEvent::Error`]. **Dropping it cancels the run** (as [`CancelHandle::cancel`] does): the
/// run stops before its next state, or aborts its agent call in flight, and releases its lock
/// on its task shortly after; a machine that keeps checkpoints can then be resumed under
/// [`RunStream::execution_id`]. To wait for the run to have stopped, call
/// [`RunStream::cancel`] and read the stream to its end ([`Error::Stopped`]) instead.
#[derive(Debug)]
pub struct RunStream {
    events: tokio::sync::mpsc::UnboundedReceiver<RunEvent>,
    cancel: CancelHandle,
    execution_id: String,
}

impl RunStream {
    /// The next event, `None` after the last. (The same as `StreamExt::next` of `futures` or
    /// `tokio-stream`, without either.)
    pub async fn next_event(&mut self) -> Option<RunEvent> {
        self.events.recv().await
    }

    /// The run's execution id (the one to resume).
    pub fn execution_id(&self) -> &str {
        &self.execution_id
    }

    /// Cancels the run; the stream then ends with [`RunEvent::Error`] holding
    /// [`Error::Stopped`] (or with the run's own end, if it came first).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The run's cancel handle, to cancel it from elsewhere.
    pub fn cancel_handle(&self) -> &CancelHandle {
        &self.cancel
    }
}

impl futures_core::Stream for RunStream {
    type Item = RunEvent;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<RunEvent>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for RunStream {
    fn drop(&mut self) {
        // The consumer is gone: nobody wants the rest of the run.
        self.cancel.cancel();
    }
}

/// How a run of a machine that can park ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<T> {
    /// It reached its end: the output.
    Finished(T),
    /// A `wait_for` state found no signal: the run is checkpointed and stopped. Send a signal on
    /// `channel`, then resume `execution_id` (or let a dispatcher do it).
    Waiting {
        /// The execution to resume.
        execution_id: String,
        /// The channel it waits on.
        channel: String,
    },
}

impl<T> Outcome<T> {
    /// The output, if the run finished.
    pub fn finished(self) -> Option<T> {
        match self {
            Outcome::Finished(t) => Some(t),
            Outcome::Waiting { .. } => None,
        }
    }

    /// The output converted with `f`, if the run finished.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Finished(t) => Outcome::Finished(f(t)),
            Outcome::Waiting {
                execution_id,
                channel,
            } => Outcome::Waiting {
                execution_id,
                channel,
            },
        }
    }
}

/// Builds a [`Runtime`].
pub struct RuntimeBuilder {
    adapters: AdapterRegistry,
    hooks: Option<Arc<dyn MachineHooks>>,
    hooks_registry: HooksRegistry,
    checkpoint_backend: Option<Arc<dyn CheckpointBackend>>,
    lock: Option<Arc<dyn ExecutionLock>>,
    config_store: Option<Arc<dyn ConfigStore>>,
    results: Option<Arc<dyn ResultBackend>>,
    invoker: Option<Arc<dyn Invoker>>,
    tools: ToolRegistry,
    signals: Option<Arc<dyn crate::signals::SignalBackend>>,
}

impl RuntimeBuilder {
    /// Offers `provider`'s tools (a [`Tool`](crate::tools::Tool), a
    /// [`Toolbox`](crate::tools::Toolbox), or any [`ToolProvider`]) to the tool loops of every
    /// machine. Narrower registrations ([`tools_for_machine`](Self::tools_for_machine),
    /// [`tools_for_state`](Self::tools_for_state)) win a name clash.
    pub fn tools(mut self, provider: impl ToolProvider + 'static) -> Self {
        self.tools.all(Arc::new(provider));
        self
    }

    /// Offers `provider`'s tools to the tool loops of the machine named `machine` (its
    /// `data.name`, children included when they bear that name).
    pub fn tools_for_machine(
        mut self,
        machine: impl Into<String>,
        provider: impl ToolProvider + 'static,
    ) -> Self {
        self.tools.machine(machine.into(), Arc::new(provider));
        self
    }

    /// Offers `provider`'s tools to the tool loop of one state of one machine.
    pub fn tools_for_state(
        mut self,
        machine: impl Into<String>,
        state: impl Into<String>,
        provider: impl ToolProvider + 'static,
    ) -> Self {
        self.tools
            .state(machine.into(), state.into(), Arc::new(provider));
        self
    }

    /// Registers an agent adapter (replacing a built-in one of the same type name).
    pub fn adapter(mut self, adapter: impl AgentAdapter + 'static) -> Self {
        self.adapters.register(Arc::new(adapter));
        self
    }

    /// Uses `hooks` for every run; `data.hooks` in the YAML is then not consulted (as the
    /// reference's explicit `hooks=` argument).
    pub fn hooks(mut self, hooks: impl MachineHooks + 'static) -> Self {
        self.hooks = Some(Arc::new(hooks));
        self
    }

    /// Registers a hooks factory for `data.hooks` references by `name` (replacing a built-in).
    pub fn register_hooks<F>(mut self, name: impl Into<String>, factory: F) -> Self
    where
        F: Fn(&crate::hooks::HookArgs) -> Result<Arc<dyn MachineHooks>, String>
            + Send
            + Sync
            + 'static,
    {
        self.hooks_registry.register(name, factory);
        self
    }

    /// Replaces the whole `data.hooks` registry (for instance with [`HooksRegistry::empty`]).
    pub fn hooks_registry(mut self, registry: HooksRegistry) -> Self {
        self.hooks_registry = registry;
        self
    }

    /// Stores every run's checkpoints in `backend` instead of the one `data.persistence`
    /// names (as the reference's `persistence=` argument). Runs of a memory-backed machine can
    /// then be resumed within the process. A machine with `persistence: {enabled: false}`
    /// still writes nothing.
    pub fn checkpoint_backend(mut self, backend: Arc<dyn CheckpointBackend>) -> Self {
        self.checkpoint_backend = Some(backend);
        self
    }

    /// Locks every run's execution id with `lock` instead of the lock `data.persistence`
    /// implies (as the reference's `lock=` argument).
    pub fn lock(mut self, lock: Arc<dyn ExecutionLock>) -> Self {
        self.lock = Some(lock);
        self
    }

    /// Stores machine configs in `store` on the first checkpoint of each run, and writes their
    /// hash into every snapshot's `config_hash` (as the reference's `config_store=` argument).
    pub fn config_store(mut self, store: Arc<dyn ConfigStore>) -> Self {
        self.config_store = Some(store);
        self
    }

    /// Child machines write their results to `backend` (default: a new
    /// [`InMemoryResultBackend`](crate::results::InMemoryResultBackend) per runtime).
    pub fn result_backend(mut self, backend: Arc<dyn ResultBackend>) -> Self {
        self.results = Some(backend);
        self
    }

    /// `launch:` states start machines through `invoker` (default:
    /// [`InlineInvoker`](crate::invoker::InlineInvoker), a task in this process).
    pub fn invoker(mut self, invoker: impl Invoker + 'static) -> Self {
        self.invoker = Some(Arc::new(invoker));
        self
    }

    /// `wait_for` states consume signals from `backend` (default: one in-memory backend per
    /// runtime). Give every process that sends or consumes the same durable backend, e.g. a
    /// SQLite one on the checkpoint database, to park a run in one process and continue it in
    /// another.
    pub fn signal_backend(mut self, backend: Arc<dyn crate::signals::SignalBackend>) -> Self {
        self.signals = Some(backend);
        self
    }

    /// The runtime.
    pub fn build(self) -> Runtime {
        Runtime {
            adapters: self.adapters,
            hooks: self.hooks,
            hooks_registry: Arc::new(self.hooks_registry),
            checkpoint_backend: self.checkpoint_backend,
            lock: self.lock,
            config_store: self.config_store,
            id: {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
            results: self
                .results
                .unwrap_or_else(|| Arc::new(crate::results::InMemoryResultBackend::new())),
            invoker: self
                .invoker
                .unwrap_or_else(|| Arc::new(crate::invoker::InlineInvoker)),
            tools: Arc::new(self.tools),
            signals_given: self.signals.is_some(),
            signals: self
                .signals
                .unwrap_or_else(|| Arc::new(crate::signals::MemorySignalBackend::new())),
        }
    }
}

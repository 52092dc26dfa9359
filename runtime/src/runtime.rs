//! The runtime: adapters and hooks shared by every run.

use crate::agent::{AdapterRegistry, AgentAdapter};
use crate::error::Error;
use crate::hooks::{HooksRegistry, MachineHooks};
use crate::invoker::Invoker;
use crate::machine::Machine;
use crate::persistence::{CheckpointBackend, ConfigStore, ExecutionLock};
use crate::results::ResultBackend;
use serde_json::Value;
use std::sync::Arc;

/// Options of one run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// At most this many states execute (default: `settings.max_steps`, else 1000).
    pub max_steps: Option<u64>,
    /// Stop once adapters have reported this many API calls.
    pub max_agent_calls: Option<i64>,
    /// The execution id (default: a new UUID).
    pub execution_id: Option<String>,
    /// The parent's execution id, for child machines.
    pub parent_execution_id: Option<String>,
    /// Resume this execution from its latest checkpoint instead of starting afresh
    /// (`persistence.md` §8); the input is then ignored.
    pub resume_from: Option<String>,
}

/// Adapters, hooks and settings shared by runs. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) adapters: AdapterRegistry,
    pub(crate) hooks: Option<Arc<dyn MachineHooks>>,
    pub(crate) hooks_registry: Arc<HooksRegistry>,
    /// A checkpoint backend for every run, overriding `data.persistence.backend`.
    pub(crate) checkpoint_backend: Option<Arc<dyn CheckpointBackend>>,
    /// An execution lock for every run, overriding the one `data.persistence` implies.
    pub(crate) lock: Option<Arc<dyn ExecutionLock>>,
    /// A config store for every run (else the SQLite backend's own, else none).
    pub(crate) config_store: Option<Arc<dyn ConfigStore>>,
    /// Distinguishes runtimes in per-machine caches (their adapters may differ).
    pub(crate) id: u64,
    /// Where child machines write their results (`parallel-and-launch.md` §8).
    pub(crate) results: Arc<dyn ResultBackend>,
    /// Starts `launch:` machines (`parallel-and-launch.md` §7).
    pub(crate) invoker: Arc<dyn Invoker>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("adapters", &self.adapters)
            .field("hooks_registry", &self.hooks_registry)
            .finish_non_exhaustive()
    }
}

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
        }
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
}

impl RuntimeBuilder {
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
        }
    }
}

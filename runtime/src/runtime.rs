//! The runtime: adapters and hooks shared by every run.

use crate::agent::{AdapterRegistry, AgentAdapter};
use crate::error::Error;
use crate::hooks::{HooksRegistry, MachineHooks};
use crate::machine::Machine;
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
    /// Distinguishes runtimes in per-machine caches (their adapters may differ).
    pub(crate) id: u64,
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
        }
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

    /// The runtime.
    pub fn build(self) -> Runtime {
        Runtime {
            adapters: self.adapters,
            hooks: self.hooks,
            hooks_registry: Arc::new(self.hooks_registry),
            id: {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
        }
    }
}

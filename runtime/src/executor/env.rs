//! The [`Runtime`] value the engine runs with: the adapters, hooks, backends, result backend and
//! invoker that every run shares, and the [`RunOptions`] of one run. The public entry points
//! that build a runtime and start runs live one layer up, in `runtime.rs`.

use super::CancelHandle;
use crate::agent::AdapterRegistry;
use crate::hooks::{HooksRegistry, MachineHooks};
use crate::invoker::Invoker;
use crate::persistence::{CheckpointBackend, ConfigStore, ExecutionLock};
use crate::results::ResultBackend;
use crate::tools::ToolRegistry;
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
    /// The run's budget in USD, replacing `settings.max_cost`: before each agent call, a run
    /// whose `context.machine.total_cost` has reached it fails the state with `BudgetExceeded`
    /// (through `on_error`; unrecovered, the run ends with
    /// [`Error::BudgetExceeded`](crate::Error::BudgetExceeded)). Child machines are not
    /// covered: each has its own `settings.max_cost`.
    pub max_cost: Option<f64>,
    /// Cancels the run when [`CancelHandle::cancel`] is called (see [`CancelHandle`]).
    pub cancel: Option<CancelHandle>,
}

impl RunOptions {
    /// These options with `cancel` as the run's cancel handle.
    pub fn with_cancel(mut self, cancel: CancelHandle) -> Self {
        self.cancel = Some(cancel);
        self
    }

    /// These options with a budget of `max_cost` USD.
    pub fn with_max_cost(mut self, max_cost: f64) -> Self {
        self.max_cost = Some(max_cost);
        self
    }
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
    /// Tool providers registered on the builder, for tool loops.
    pub(crate) tools: Arc<ToolRegistry>,
    /// Where `wait_for` states consume signals (`Runtime::signals`).
    pub(crate) signals: Arc<dyn crate::signals::SignalBackend>,
    /// Whether `signals` was given to the builder (else a SQLite machine uses its database's).
    pub(crate) signals_given: bool,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("adapters", &self.adapters)
            .field("hooks_registry", &self.hooks_registry)
            .finish_non_exhaustive()
    }
}

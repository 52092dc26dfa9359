//! The errors a run can end with. Each names the machine and, where there is one, the state.

pub use flatmachines_ir::diagnostic::{Diagnostic, Severity};

/// Why a machine could not be loaded or a run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The machine does not pass the compiler's checks (or, for a definition built without
    /// them, cannot be instantiated).
    #[error("machine `{machine}` has errors:\n{rendered}")]
    Invalid {
        /// The machine file or name.
        machine: String,
        /// Every diagnostic, errors and warnings, in the order `flatmachines check` prints them.
        diagnostics: Vec<Diagnostic>,
        /// The diagnostics rendered as `flatmachines check` prints them (rustc style).
        rendered: String,
    },
    /// An error inside a state that no `on_error` recovered.
    #[error("machine `{machine}`, state `{state}`: {kind}: {message}")]
    State {
        /// `data.name`.
        machine: String,
        /// The state that failed.
        state: String,
        /// The error class, as `on_error` maps match it (`RuntimeError`, `ValueError`, …).
        kind: String,
        /// The message (what `context.last_error` holds).
        message: String,
    },
    /// A transition condition failed to evaluate; like the reference, this bypasses `on_error`.
    #[error("machine `{machine}`, state `{state}`: condition `{condition}` failed: {message}")]
    Condition {
        /// `data.name`.
        machine: String,
        /// The state whose transitions were evaluated.
        state: String,
        /// The condition text.
        condition: String,
        /// Why it failed.
        message: String,
    },
    /// The initial `context` did not render.
    #[error("machine `{machine}`: the initial context does not render: {message}")]
    InitialContext {
        /// `data.name`.
        machine: String,
        /// Why.
        message: String,
    },
    /// `data.hooks` could not be resolved through the runtime's hooks registry.
    #[error("machine `{machine}`: hooks: {message}")]
    Hooks {
        /// `data.name`.
        machine: String,
        /// Why.
        message: String,
    },
    /// The typed `Input` of a compiled machine did not serialize, or its output does not fit
    /// the generated `Output` (for instance a field every final state sets is missing because
    /// the run stopped before reaching one).
    #[error("machine `{machine}`: {message}")]
    Conversion {
        /// `data.name`.
        machine: String,
        /// What did not fit.
        message: String,
    },
    /// A feature the runtime does not support yet.
    #[error("machine `{machine}`, state `{state}`: {feature} is not supported yet")]
    Unsupported {
        /// `data.name`.
        machine: String,
        /// The state using it.
        state: String,
        /// What is missing.
        feature: String,
    },
    /// The execution's lock is held by another run (another process, or another run of this
    /// process).
    #[error(
        "machine `{machine}`: execution {execution_id} is running elsewhere (its lock is held)"
    )]
    Locked {
        /// `data.name`.
        machine: String,
        /// The execution id that could not be locked.
        execution_id: String,
    },
    /// Saving or loading a checkpoint, or taking the lock, failed.
    #[error("machine `{machine}`, execution {execution_id}: {source}")]
    Persistence {
        /// `data.name`.
        machine: String,
        /// The execution.
        execution_id: String,
        /// What failed, naming the file or key.
        #[source]
        source: crate::persistence::PersistenceError,
    },
    /// The run was cancelled ([`CancelHandle`](crate::CancelHandle), a dropped
    /// [`RunStream`](crate::RunStream), [`Runtime::run_until`](crate::Runtime::run_until)):
    /// it stopped before the body of `state` ran, or aborted the agent call of `state`. Its
    /// latest checkpoint (when the machine keeps them) resumes it there, running `state` from
    /// its start.
    #[error("machine `{machine}`: execution {execution_id} stopped before state `{state}`")]
    Stopped {
        /// `data.name`.
        machine: String,
        /// The execution to resume.
        execution_id: String,
        /// The state a resume runs next.
        state: String,
    },
    /// The budget (`settings.max_cost` or [`RunOptions::max_cost`](crate::RunOptions::max_cost))
    /// refused an agent call of `state`, and no `on_error` recovered (`on_error` sees the
    /// class `BudgetExceeded`).
    #[error(
        "machine `{machine}`, state `{state}`: BudgetExceeded: budget of {budget} USD (max_cost) reached: {spent} USD spent"
    )]
    BudgetExceeded {
        /// `data.name`.
        machine: String,
        /// The state whose agent call was refused.
        state: String,
        /// The budget, in USD.
        budget: f64,
        /// `context.machine.total_cost` when the call was refused.
        spent: f64,
    },
    /// `resume_from` names an execution that has no checkpoint.
    #[error("machine `{machine}`: no checkpoint found for execution {execution_id}")]
    NotFound {
        /// `data.name`.
        machine: String,
        /// The execution id asked for.
        execution_id: String,
    },
    /// The latest checkpoint does not fit the machine resuming it (for instance its state was
    /// renamed since).
    #[error("machine `{machine}`: cannot resume execution {execution_id}: {message}")]
    Resume {
        /// `data.name`.
        machine: String,
        /// The execution.
        execution_id: String,
        /// Why.
        message: String,
    },
}

impl Error {
    /// An [`Error::Invalid`] with one diagnostic and no source location.
    pub(crate) fn invalid(
        machine: impl Into<String>,
        code: &str,
        message: impl Into<String>,
    ) -> Self {
        let d = Diagnostic {
            code: code.to_string(),
            severity: Severity::Error,
            message: message.into(),
            help: None,
            file: None,
            line: None,
            column: None,
        };
        Error::Invalid {
            machine: machine.into(),
            rendered: format!("error[{}]: {}\n", d.code, d.message),
            diagnostics: vec![d],
        }
    }

    /// The error class name, for errors raised inside a state.
    pub fn kind(&self) -> Option<&str> {
        match self {
            Error::State { kind, .. } => Some(kind),
            Error::BudgetExceeded { .. } => Some("BudgetExceeded"),
            _ => None,
        }
    }
}

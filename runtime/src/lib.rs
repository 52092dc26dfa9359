//! flatmachines: LLM agent workflows written as FlatMachine YAML, checked when your crate
//! compiles.
//!
//! ```ignore
//! flatmachines::include_machine!("machines/review.yml");   // → pub mod review { … }
//!
//! assert_eq!(review::State::INITIAL.name(), "start");
//! for state in review::State::ALL { println!("{state} final={}", state.is_final()); }
//! ```
//!
//! A typo in a transition target, an unknown agent, a template that does not parse or a loop
//! with no way out is a compile error pointing into the YAML. The same checks run from the
//! command line with `flatmachines check machine.yml` (feature `cli`).

pub mod agent;
mod compiled;
pub(crate) mod condition;
mod error;
mod executor;
pub mod hooks;
pub mod invoker;
#[cfg(feature = "loader")]
mod loader;
mod machine;
mod peers;
pub mod persistence;
pub mod py;
pub mod results;
#[cfg(feature = "loader")]
mod resumer;
mod runtime;
pub mod signals;
mod state;
mod strategy;
pub(crate) mod template;
pub mod tools;
#[cfg(feature = "loader")]
mod yaml;

pub use async_trait::async_trait;
pub use error::{Diagnostic, Error, Severity};
pub use flatmachines_macros::{flatmachine, include_machine};
pub use machine::Machine;
#[cfg(feature = "loader")]
pub use resumer::ConfigStoreResumer;
pub use runtime::{
    CancelHandle, Outcome, RunEvent, RunOptions, RunStream, Runtime, RuntimeBuilder,
};
pub use state::UnknownState;

/// The front end (loading, checking, diagnostics), for tools built on flatmachines
/// (feature `loader`).
#[cfg(feature = "loader")]
pub use flatmachines_compiler as compiler;

/// The lowered machine definition the executor runs (what compiled machines carry).
pub use flatmachines_ir as ir;

/// What most programs need, in one import: `use flatmachines::prelude::*;`.
///
/// ```
/// use flatmachines::prelude::*;
///
/// # async fn demo() -> Result<(), Error> {
/// let rt: Runtime = Runtime::builder().adapter(EchoAdapter).build();
/// # let _ = rt; Ok(()) }
/// ```
pub mod prelude {
    pub use crate::agent::{
        AdapterContext, AgentAdapter, AgentExecutor, AgentFailure, AgentResult, AgentSpec,
        EchoAdapter, ToolTurn,
    };
    pub use crate::hooks::MachineHooks;
    pub use crate::tools::{Tool, ToolError, ToolProvider, ToolResult, Toolbox};
    pub use crate::{
        CancelHandle, Error, Machine, Outcome, RunEvent, RunOptions, RunStream, Runtime,
        RuntimeBuilder, async_trait, flatmachine, include_machine,
    };
}

/// The interpreter's and the snapshot format's internals — condition evaluation, the template
/// engine, the checkpoint wire format — for tools, benchmarks and tests. **No stability
/// promise**: these change with the implementation.
#[doc(hidden)]
pub mod unstable {
    /// Condition evaluation (`crate::condition`).
    pub mod condition {
        pub use crate::condition::*;
    }
    /// The template engine (`crate::template`).
    pub mod template {
        pub use crate::template::*;
    }
    /// The checkpoint wire format (`crate::persistence::snapshot`).
    pub mod snapshot {
        pub use crate::persistence::snapshot::*;
    }
}

/// Paths used by generated code; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::compiled::{
        CompiledMachine, TransitionCondition, execute_outcome, execute_typed, holds, machine,
        on_transition,
    };
    pub use crate::condition::{ConditionError, Engine, LazyCondition, NativeCondition, ops};
    pub use crate::hooks::MachineHooks;
    pub use crate::machine::NextFn;
    pub use crate::state::UnknownState;
    pub use flatmachines_ir as ir;
    pub use serde;
    pub use serde_json;
    pub use std::borrow::Cow;
    pub use std::string::String;
    pub use std::sync::OnceLock;
}

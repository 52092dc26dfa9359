//! Tools a machine-driven tool loop calls (`execution.md` §9): the [`ToolProvider`] port, the
//! result of one call, and providers made of several others.
//!
//! Providers come from three places, and a tool loop sees all of them merged:
//! * Rust functions registered on the [`Runtime`](crate::Runtime) builder (see [`Tool`] with the
//!   `schemars` feature), for every machine, one machine or one state;
//! * MCP servers declared in the agent's `data.mcp` (feature `mcp`);
//! * a hooks object's [`get_tool_provider`](crate::hooks::MachineHooks::get_tool_provider),
//!   which replaces the runtime's providers for that state, as in the reference.

#[cfg(feature = "mcp")]
mod mcp;
mod rust;

#[cfg(feature = "mcp")]
pub use mcp::{McpError, McpServers};
pub use rust::{IntoToolResult, Tool, Toolbox};

use serde_json::Value;
use std::sync::Arc;

/// The outcome of one tool call: the text the model reads in the `tool` message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolResult {
    /// The tool message's content.
    pub content: String,
    /// Whether the call failed (reported to `on_tool_result`; the model still reads `content`).
    pub is_error: bool,
}

impl ToolResult {
    /// A successful result.
    pub fn ok(content: impl Into<String>) -> Self {
        ToolResult {
            content: content.into(),
            is_error: false,
        }
    }

    /// A failed result whose text the model reads.
    pub fn error(content: impl Into<String>) -> Self {
        ToolResult {
            content: content.into(),
            is_error: true,
        }
    }
}

/// A tool call that could not run. The tool loop turns it into the tool message
/// `Error executing '<name>': <message>` with `is_error` set; a run never fails because of it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ToolError {
    /// What went wrong, as the model reads it.
    pub message: String,
}

impl ToolError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        ToolError {
            message: message.into(),
        }
    }
}

/// Supplies tool definitions and runs tool calls (the reference's `ToolProvider` protocol).
///
/// Implement it with `#[flatmachines::async_trait]`.
#[async_trait::async_trait]
pub trait ToolProvider: Send + Sync {
    /// The tools, in OpenAI function format:
    /// `{"type": "function", "function": {"name", "description", "parameters"}}`.
    fn definitions(&self) -> Vec<Value>;

    /// Runs tool `name` for the call `call_id` with the model's `arguments` (a JSON object, or
    /// `{}` when the model sent none). A tool this provider does not know returns the error
    /// result `Unknown tool: <name>`.
    async fn execute(
        &self,
        name: &str,
        call_id: &str,
        arguments: &Value,
    ) -> Result<ToolResult, ToolError>;

    /// Whether this provider declares tool `name` (by default, a scan of
    /// [`definitions`](ToolProvider::definitions); override it when that is costly).
    fn provides(&self, name: &str) -> bool {
        self.definitions()
            .iter()
            .any(|d| definition_name(d) == Some(name))
    }

    /// The `server:tool` name of tool `name` when it comes from a named source (an MCP server),
    /// which `allowed_tools` / `denied_tools` entries may use (`server:*` for all of a server's
    /// tools). `None` for tools that only have their plain name.
    fn qualified_name(&self, _name: &str) -> Option<String> {
        None
    }
}

/// Whether a guardrail list entry (`allowed_tools` / `denied_tools`) names a tool: its plain
/// name, its `server:tool` name, or `server:*` for every tool of that server.
pub(crate) fn entry_matches(entry: &str, name: &str, qualified: Option<&str>) -> bool {
    if entry == name {
        return true;
    }
    let Some(q) = qualified else { return false };
    match entry.strip_suffix('*') {
        Some(prefix) if prefix.ends_with(':') => q.starts_with(prefix),
        _ => entry == q,
    }
}

/// The name of an OpenAI-format tool definition (`function.name`).
pub fn definition_name(definition: &Value) -> Option<&str> {
    definition
        .get("function")
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str)
}

/// Several providers seen as one: definitions in order, the first provider that declares a name
/// runs its calls (so an earlier provider shadows a later one's tool of the same name).
#[derive(Clone, Default)]
pub struct ToolSet {
    providers: Vec<Arc<dyn ToolProvider>>,
}

impl std::fmt::Debug for ToolSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .definitions()
            .iter()
            .filter_map(|d| definition_name(d).map(str::to_string))
            .collect();
        f.debug_struct("ToolSet").field("tools", &names).finish()
    }
}

impl ToolSet {
    /// An empty set.
    pub fn new() -> Self {
        ToolSet::default()
    }

    /// Adds a provider after the ones already there.
    pub fn push(&mut self, provider: Arc<dyn ToolProvider>) {
        self.providers.push(provider);
    }

    /// Whether the set has no provider.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }
}

#[async_trait::async_trait]
impl ToolProvider for ToolSet {
    fn definitions(&self) -> Vec<Value> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for p in &self.providers {
            for d in p.definitions() {
                let fresh = definition_name(&d).is_none_or(|n| seen.insert(n.to_string()));
                if fresh {
                    out.push(d);
                }
            }
        }
        out
    }

    async fn execute(
        &self,
        name: &str,
        call_id: &str,
        arguments: &Value,
    ) -> Result<ToolResult, ToolError> {
        for p in &self.providers {
            if p.provides(name) {
                return p.execute(name, call_id, arguments).await;
            }
        }
        Ok(ToolResult::error(format!("Unknown tool: {name}")))
    }

    fn provides(&self, name: &str) -> bool {
        self.providers.iter().any(|p| p.provides(name))
    }

    fn qualified_name(&self, name: &str) -> Option<String> {
        self.providers
            .iter()
            .find(|p| p.provides(name))
            .and_then(|p| p.qualified_name(name))
    }
}

/// Where a registered provider applies.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Scope {
    All,
    Machine(String),
    State(String, String),
}

/// The providers registered on a runtime, each for every machine, one machine or one state.
#[derive(Clone, Default)]
pub(crate) struct ToolRegistry {
    entries: Vec<(Scope, Arc<dyn ToolProvider>)>,
}

impl ToolRegistry {
    /// Registers `provider` for every machine.
    pub(crate) fn all(&mut self, provider: Arc<dyn ToolProvider>) {
        self.entries.push((Scope::All, provider));
    }

    /// Registers `provider` for the machine named `machine` (`data.name`).
    pub(crate) fn machine(&mut self, machine: String, provider: Arc<dyn ToolProvider>) {
        self.entries.push((Scope::Machine(machine), provider));
    }

    /// Registers `provider` for one state of one machine.
    pub(crate) fn state(
        &mut self,
        machine: String,
        state: String,
        provider: Arc<dyn ToolProvider>,
    ) {
        self.entries.push((Scope::State(machine, state), provider));
    }

    /// The providers for `state` of `machine`: the state's own first, then the machine's, then
    /// those for every machine, each group in registration order (so the narrower scope wins
    /// a name clash).
    pub(crate) fn for_state(&self, machine: &str, state: &str) -> ToolSet {
        let mut set = ToolSet::new();
        for rank in 0..3 {
            for (scope, provider) in &self.entries {
                let matches = match scope {
                    Scope::State(m, s) => rank == 0 && m == machine && s == state,
                    Scope::Machine(m) => rank == 1 && m == machine,
                    Scope::All => rank == 2,
                };
                if matches {
                    set.push(provider.clone());
                }
            }
        }
        set
    }
}

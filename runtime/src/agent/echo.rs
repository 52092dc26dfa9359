//! The `echo` adapter of the benchmark machines: output = the rendered input, no I/O.

use super::{AdapterContext, AgentAdapter, AgentExecutor, AgentFailure, AgentResult, AgentSpec};
use serde_json::Value;
use std::sync::Arc;

/// Adapter for `type: echo`.
#[derive(Clone, Copy, Debug, Default)]
pub struct EchoAdapter;

struct EchoExecutor;

impl AgentAdapter for EchoAdapter {
    fn type_name(&self) -> &str {
        "echo"
    }

    fn create_executor(
        &self,
        _name: &str,
        _spec: &AgentSpec,
        _context: &AdapterContext,
    ) -> Result<Arc<dyn AgentExecutor>, AgentFailure> {
        Ok(Arc::new(EchoExecutor))
    }
}

#[async_trait::async_trait]
impl AgentExecutor for EchoExecutor {
    async fn execute(&self, input: Value, _context: &Value) -> Result<AgentResult, AgentFailure> {
        Ok(AgentResult::with_output(input))
    }
}

//! Tools written as async Rust functions.

use super::{ToolError, ToolProvider, ToolResult};
use serde_json::{Value, json};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

type Handler = dyn Fn(Value) -> Pin<Box<dyn Future<Output = Result<ToolResult, ToolError>> + Send>>
    + Send
    + Sync;

/// A tool backed by an async Rust function; it is itself a [`ToolProvider`] of one tool, so
/// register it on the runtime builder as it is, or gather several in a [`Toolbox`].
///
/// With the `schemars` feature, [`Tool::new`] takes a function of a typed argument and derives
/// the JSON schema the model sees from the type:
///
/// ```
/// # #[cfg(feature = "schemars")] {
/// use flatmachines::tools::Tool;
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Weather {
///     /// The city to look up.
///     city: String,
/// }
///
/// let tool = Tool::new("get_weather", "Current weather for a city", |args: Weather| async move {
///     Ok::<_, std::io::Error>(format!("Sunny in {}", args.city))
/// });
/// # let _ = tool; }
/// ```
///
/// A tool that returns an error, or whose arguments do not deserialize, gives the model an
/// `is_error` tool message; a panic is caught the same way by the tool loop. Neither fails the
/// run.
#[derive(Clone)]
pub struct Tool {
    name: String,
    description: String,
    parameters: Value,
    handler: Arc<Handler>,
}

impl std::fmt::Debug for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tool")
            .field("name", &self.name)
            .field("parameters", &self.parameters)
            .finish_non_exhaustive()
    }
}

/// What a tool function may return: text, JSON, a [`ToolResult`], or a `Result` of those whose
/// error becomes an error result the model reads.
pub trait IntoToolResult {
    /// The tool message.
    fn into_tool_result(self) -> Result<ToolResult, ToolError>;
}

impl IntoToolResult for ToolResult {
    fn into_tool_result(self) -> Result<ToolResult, ToolError> {
        Ok(self)
    }
}

impl IntoToolResult for String {
    fn into_tool_result(self) -> Result<ToolResult, ToolError> {
        Ok(ToolResult::ok(self))
    }
}

impl IntoToolResult for &'static str {
    fn into_tool_result(self) -> Result<ToolResult, ToolError> {
        Ok(ToolResult::ok(self))
    }
}

/// JSON is sent as its compact text (a JSON string as its bare text).
impl IntoToolResult for Value {
    fn into_tool_result(self) -> Result<ToolResult, ToolError> {
        Ok(ToolResult::ok(match self {
            Value::String(s) => s,
            other => other.to_string(),
        }))
    }
}

impl<T: IntoToolResult, E: std::fmt::Display> IntoToolResult for Result<T, E> {
    fn into_tool_result(self) -> Result<ToolResult, ToolError> {
        match self {
            Ok(v) => v.into_tool_result(),
            Err(e) => Err(ToolError::new(e.to_string())),
        }
    }
}

impl Tool {
    /// A tool whose arguments are the JSON object the model sent, described by the JSON schema
    /// `parameters` (`{"type": "object", "properties": …}`).
    pub fn from_fn<F, Fut, R>(
        name: impl Into<String>,
        description: impl Into<String>,
        parameters: Value,
        f: F,
    ) -> Tool
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoToolResult,
    {
        Tool {
            name: name.into(),
            description: description.into(),
            parameters,
            handler: Arc::new(move |args| {
                let fut = f(args);
                Box::pin(async move { fut.await.into_tool_result() })
            }),
        }
    }

    /// A tool whose arguments deserialize into `A`; the model sees `A`'s JSON schema (feature
    /// `schemars`). Arguments that do not fit `A` give the model an error naming the problem.
    #[cfg(feature = "schemars")]
    pub fn new<A, F, Fut, R>(name: impl Into<String>, description: impl Into<String>, f: F) -> Tool
    where
        A: serde::de::DeserializeOwned + schemars::JsonSchema + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoToolResult,
    {
        let name = name.into();
        let tool_name = name.clone();
        let f = Arc::new(f);
        Tool {
            parameters: schema_of::<A>(),
            description: description.into(),
            handler: Arc::new(move |args| {
                let f = f.clone();
                let tool_name = tool_name.clone();
                Box::pin(async move {
                    let args: A = serde_json::from_value(args).map_err(|e| {
                        ToolError::new(format!("invalid arguments for '{tool_name}': {e}"))
                    })?;
                    f(args).await.into_tool_result()
                })
            }),
            name,
        }
    }

    /// The tool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The definition the model sees, in OpenAI function format.
    pub fn definition(&self) -> Value {
        json!({
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            }
        })
    }

    /// Calls the function with `arguments`.
    pub async fn call(&self, arguments: Value) -> Result<ToolResult, ToolError> {
        (self.handler)(arguments).await
    }
}

/// The JSON schema of `A` as OpenAI function parameters: draft 7, every definition inlined, no
/// `$schema` or `title` keys.
#[cfg(feature = "schemars")]
fn schema_of<A: schemars::JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::draft07()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let mut schema = generator.into_root_schema_for::<A>().to_value();
    if let Some(m) = schema.as_object_mut() {
        m.remove("$schema");
        m.remove("title");
        m.entry("properties").or_insert_with(|| json!({}));
    }
    schema
}

#[async_trait::async_trait]
impl ToolProvider for Tool {
    fn definitions(&self) -> Vec<Value> {
        vec![self.definition()]
    }

    async fn execute(
        &self,
        name: &str,
        _call_id: &str,
        arguments: &Value,
    ) -> Result<ToolResult, ToolError> {
        if name != self.name {
            return Ok(ToolResult::error(format!("Unknown tool: {name}")));
        }
        self.call(arguments.clone()).await
    }

    fn provides(&self, name: &str) -> bool {
        name == self.name
    }
}

/// Several [`Tool`]s as one provider, in the order they were added (a later tool of the same
/// name replaces the earlier one).
#[derive(Clone, Debug, Default)]
pub struct Toolbox {
    tools: Vec<Tool>,
}

impl Toolbox {
    /// An empty toolbox.
    pub fn new() -> Self {
        Toolbox::default()
    }

    /// Adds `tool`.
    pub fn tool(mut self, tool: Tool) -> Self {
        match self.tools.iter_mut().find(|t| t.name == tool.name) {
            Some(slot) => *slot = tool,
            None => self.tools.push(tool),
        }
        self
    }
}

#[async_trait::async_trait]
impl ToolProvider for Toolbox {
    fn definitions(&self) -> Vec<Value> {
        self.tools.iter().map(Tool::definition).collect()
    }

    async fn execute(
        &self,
        name: &str,
        _call_id: &str,
        arguments: &Value,
    ) -> Result<ToolResult, ToolError> {
        match self.tools.iter().find(|t| t.name == name) {
            Some(t) => t.call(arguments.clone()).await,
            None => Ok(ToolResult::error(format!("Unknown tool: {name}"))),
        }
    }

    fn provides(&self, name: &str) -> bool {
        self.tools.iter().any(|t| t.name == name)
    }
}

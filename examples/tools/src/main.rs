//! A compiled machine whose agent works in a tool loop with two kinds of tools:
//!
//! * `word_count`, a Rust function registered on the runtime, whose JSON schema comes from its
//!   argument type;
//! * `lookup_note`, offered by an MCP server that the agent declares in its YAML (`data.mcp`).
//!   The server is this same program run with `--mcp-server`, so the example needs nothing
//!   installed.
//!
//! The model is the project's scripted OpenAI-compatible server, so it runs offline:
//!
//! ```text
//! cargo run -p example-tools
//! ```
//!
//! Point `OPENAI_BASE_URL` at a real endpoint (and set `OPENAI_API_KEY`) to use a real model.

use flatmachines::Runtime;
use flatmachines::agent::FlatAgentAdapter;
use flatmachines::tools::{Tool, ToolError};
use serde_json::json;

flatmachines::include_machine!("machines/research.yml");

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct WordCount {
    /// The text whose words to count.
    text: String,
}

fn main() {
    if std::env::args().any(|a| a == "--mcp-server") {
        return notes_server::run();
    }
    // The agent's YAML starts `${EXAMPLE_TOOLS_SERVER} --mcp-server`: this program.
    let me = std::env::current_exe().expect("the program knows its path");
    // SAFETY: no other thread exists yet (the async runtime starts below).
    unsafe { std::env::set_var("EXAMPLE_TOOLS_SERVER", me) };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(ask());
}

async fn ask() {
    // A scripted model: it asks for both tools in one reply, then answers from their results.
    let scripted = match std::env::var("OPENAI_BASE_URL") {
        Ok(_) => None,
        Err(_) => Some(
            flatmachines_testkit::FakeLlm::start(json!({"models": {"researcher": [
                {"$tool_calls": [
                    {"id": "call_1", "name": "lookup_note", "arguments": {"topic": "release"}},
                    {"id": "call_2", "name": "word_count", "arguments": {"text": "ship the tool loop"}}
                ]},
                "From the notes: the release ships tool loops (4 words in the plan)."
            ]}}))
            .expect("the scripted server starts"),
        ),
    };
    let adapter = match &scripted {
        Some(server) => FlatAgentAdapter::with_base_url(server.base_url()),
        None => FlatAgentAdapter::new(),
    };
    let word_count = Tool::new(
        "word_count",
        "Count the words of a text",
        |args: WordCount| async move {
            Ok::<_, ToolError>(args.text.split_whitespace().count().to_string())
        },
    );
    let rt = Runtime::builder()
        .adapter(adapter)
        .tools(word_count)
        .build();
    let output = research::execute(&rt, json!({"question": "What ships in the release?"}))
        .await
        .unwrap_or_else(|e| {
            eprintln!("the run failed: {e}");
            std::process::exit(1);
        });
    println!("{}", serde_json::to_string_pretty(&output).unwrap());
    if let Some(server) = &scripted {
        // What the model was sent: the MCP tools listed by the agent's `tool_prompt` in the
        // system prompt, and on its second turn the two tool results.
        let log = server.log();
        println!("system prompt: {}", log[0]["messages"][0]["content"]);
        for m in log[1]["messages"].as_array().into_iter().flatten() {
            if m["role"] == "tool" {
                println!("tool {}: {}", m["tool_call_id"], m["content"]);
            }
        }
    }
}

/// The MCP server the agent declares: one tool, `lookup_note`, over stdio.
mod notes_server {
    use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
    use rmcp::model::{Implementation, ServerCapabilities, ServerConfig};
    use rmcp::{ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};

    #[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
    #[schemars(crate = "rmcp::schemars")]
    struct Lookup {
        /// The topic of the note.
        topic: String,
    }

    #[derive(Clone)]
    struct Notes {
        tool_router: ToolRouter<Self>,
    }

    #[tool_router]
    impl Notes {
        #[tool(description = "Read the project's note on a topic.")]
        fn lookup_note(&self, Parameters(Lookup { topic }): Parameters<Lookup>) -> String {
            match topic.as_str() {
                "release" => "The next release ships machine-driven tool loops.".into(),
                other => format!("No note on '{other}'."),
            }
        }
    }

    #[tool_handler(router = self.tool_router)]
    impl ServerHandler for Notes {
        fn get_info(&self) -> ServerConfig {
            ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
                .with_server_info(Implementation::new("notes", env!("CARGO_PKG_VERSION")))
        }
    }

    pub(super) fn run() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        rt.block_on(async {
            let server = Notes {
                tool_router: Notes::tool_router(),
            };
            match server.serve(rmcp::transport::stdio()).await {
                Ok(running) => {
                    let _ = running.waiting().await;
                }
                Err(e) => eprintln!("notes server: {e}"),
            }
        });
    }
}

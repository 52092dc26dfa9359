//! Humans in the loop: a compiled machine drafts a change with an agent, then parks until a
//! person approves it or asks for rework, and continues — in another process, later — when the
//! answer arrives. Runs offline: the agent talks to the project's scripted server.
//!
//! ```text
//! cargo run -p example-approval -- start CHG-1 "retry uploads on 503"     # drafts, then waits
//! cargo run -p flatmachines --features cli -- signal send approval/CHG-1 \
//!     --data '{"approved": true, "by": "ada"}' --db approval.sqlite
//! cargo run -p flatmachines --features cli -- dispatch --once --db approval.sqlite
//! cargo run -p example-approval -- status CHG-1                              # the output
//! ```
//!
//! `{"approved": false, "feedback": "…"}` sends the change back to the drafter instead; the
//! dispatcher of this example (`cargo run -p example-approval -- dispatch`) then drafts again
//! with the scripted model. Checkpoints, signals and the machine's config live in
//! `approval.sqlite` in the working directory.

use flatmachines::agent::FlatAgentAdapter;
use flatmachines::persistence::sqlite::SqliteBackend;
use flatmachines::signals::{Dispatcher, SqliteSignalBackend};
use flatmachines::{ConfigStoreResumer, Outcome, Runtime};
use serde_json::json;
use std::sync::Arc;

flatmachines::include_machine!("machines/change.yml");

const DB: &str = "approval.sqlite";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["start", ticket, request] => tokio.block_on(start(ticket, request)),
        ["status", ticket] => tokio.block_on(status(ticket)),
        ["dispatch"] => tokio.block_on(dispatch()),
        _ => Err("usage: example-approval start TICKET REQUEST | status TICKET | dispatch".into()),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// A runtime whose agent talks to a scripted model (kept alive by the returned server).
fn runtime() -> Result<(Runtime, flatmachines_testkit::FakeLlm), String> {
    let model = flatmachines_testkit::FakeLlm::start(json!({"models": {"drafter": {
        "match": [{"contains": "feedback", "response": "Retry uploads on 503 with backoff (max 5 tries), logged."}],
        "default": "Retry uploads on 503."
    }}}))
    .map_err(|e| e.to_string())?;
    let rt = Runtime::builder()
        .adapter(FlatAgentAdapter::with_base_url(model.base_url()))
        .build();
    Ok((rt, model))
}

fn print(outcome: Outcome<change_approval::Output>) {
    match outcome {
        Outcome::Finished(output) => println!(
            "{}",
            serde_json::to_string_pretty(&output).expect("the output serializes")
        ),
        Outcome::Waiting {
            execution_id,
            channel,
        } => println!("execution {execution_id} waits for a signal on `{channel}`"),
    }
}

async fn start(ticket: &str, request: &str) -> Result<(), String> {
    let (rt, _model) = runtime()?;
    let input = change_approval::Input {
        ticket: Some(ticket.into()),
        request: Some(request.into()),
        ..Default::default()
    };
    // The ticket is the execution id, so `status` finds the run again.
    let machine = change_approval::machine().map_err(|e| e.to_string())?;
    let options = flatmachines::RunOptions {
        execution_id: Some(ticket.to_string()),
        ..Default::default()
    };
    let input = serde_json::to_value(input).map_err(|e| e.to_string())?;
    let outcome = rt
        .run_outcome(&machine, input, options)
        .await
        .map_err(|e| e.to_string())?;
    print(outcome.map(|v| serde_json::from_value(v).expect("a typed output")));
    Ok(())
}

async fn status(ticket: &str) -> Result<(), String> {
    let (rt, _model) = runtime()?;
    let outcome = change_approval::resume_typed(&rt, ticket)
        .await
        .map_err(|e| e.to_string())?;
    print(outcome);
    Ok(())
}

/// What `flatmachines dispatch --once` does, with this example's scripted model for reworks.
async fn dispatch() -> Result<(), String> {
    let (_, model) = runtime()?;
    let signals = Arc::new(SqliteSignalBackend::open(DB).map_err(|e| e.to_string())?);
    let backend = SqliteBackend::open(DB).map_err(|e| e.to_string())?;
    let store = Arc::new(backend.sqlite_config_store());
    let checkpoints = Arc::new(backend);
    let rt = Runtime::builder()
        .adapter(FlatAgentAdapter::with_base_url(model.base_url()))
        .checkpoint_backend(checkpoints.clone())
        .signal_backend(signals.clone())
        .build();
    let resumer = ConfigStoreResumer::new(rt, checkpoints.clone(), store);
    let resumed = Dispatcher::new(signals, checkpoints)
        .with_resumer(Arc::new(resumer))
        .dispatch_all()
        .await
        .map_err(|e| e.to_string())?;
    for (channel, ids) in resumed {
        println!("{channel}: resumed {}", ids.join(", "));
    }
    Ok(())
}

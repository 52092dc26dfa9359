//! The `flatmachines` command-line tool.

use clap::{Parser, Subcommand, ValueEnum};
use flatmachines::compiler::{
    self,
    diag::JsonDiagnostic,
    load::{Input, LoadOptions},
};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "flatmachines",
    version,
    about = "Check and run FlatMachine YAML"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a machine and print its output JSON on stdout (logs go to stderr).
    Run {
        /// The machine file.
        #[arg(short, long)]
        config: PathBuf,
        /// The input, as a JSON object.
        #[arg(short, long, default_value = "{}")]
        input: String,
        /// At most this many states run.
        #[arg(long)]
        max_steps: Option<u64>,
        /// The execution id (default: a new UUID).
        #[arg(short, long)]
        execution_id: Option<String>,
        /// The parent execution id (lineage of child machines).
        #[arg(short, long)]
        parent_id: Option<String>,
        /// Resume this execution from its last checkpoint.
        #[arg(long)]
        resume_from: Option<String>,
    },
    /// Check machine files and everything they reference; exit 1 on any error.
    Check {
        /// Machine files (`spec: flatmachine`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Treat warnings as errors.
        #[arg(long)]
        deny_warnings: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// rustc-style text.
    Text,
    /// A JSON array of `{code, severity, message, help, file, line, column}`.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            files,
            format,
            deny_warnings,
        } => check(&files, format, deny_warnings),
        Command::Run {
            config,
            input,
            max_steps,
            execution_id,
            parent_id,
            resume_from,
        } => run(
            &config,
            &input,
            max_steps,
            execution_id,
            parent_id,
            resume_from,
        ),
    }
}

/// Logs to stderr; level from `FLATAGENTS_LOG_LEVEL` (default info), format from
/// `FLATAGENTS_LOG_FORMAT` (`standard`, `simple` or `json`).
fn init_logging() {
    let level = match std::env::var("FLATAGENTS_LOG_LEVEL")
        .unwrap_or_default()
        .to_ascii_lowercase()
        .as_str()
    {
        "critical" | "fatal" | "error" => "error",
        "warning" | "warn" => "warn",
        "debug" => "debug",
        "trace" => "trace",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::new(level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match std::env::var("FLATAGENTS_LOG_FORMAT").as_deref() {
        Ok("json") => builder.json().init(),
        Ok("simple") => builder.without_time().with_target(false).init(),
        _ => builder.init(),
    }
}

fn run(
    config: &std::path::Path,
    input: &str,
    max_steps: Option<u64>,
    execution_id: Option<String>,
    parent_id: Option<String>,
    resume_from: Option<String>,
) -> ExitCode {
    init_logging();
    if resume_from.is_some() {
        eprintln!("error: --resume-from needs persistence, which is not implemented yet");
        return ExitCode::from(2);
    }
    let input: serde_json::Value = match serde_json::from_str(input) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: invalid JSON input: {e}");
            return ExitCode::from(1);
        }
    };
    let machine = match flatmachines::Machine::from_file(config) {
        Ok(m) => m,
        Err(flatmachines::Error::Invalid { diagnostics, .. }) => {
            eprint!("{diagnostics}");
            eprintln!("error: {} does not pass the checks", config.display());
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let options = flatmachines::RunOptions {
        max_steps,
        execution_id,
        parent_execution_id: parent_id,
        ..Default::default()
    };
    let rt = flatmachines::Runtime::new();
    match runtime.block_on(rt.run_with(&machine, input, options)) {
        Ok(output) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&output).unwrap_or_else(|_| "{}".into())
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let text = e.to_string();
            eprintln!("error: {}", text.lines().next().unwrap_or("run failed"));
            ExitCode::from(1)
        }
    }
}

fn check(files: &[PathBuf], format: Format, deny_warnings: bool) -> ExitCode {
    let options = LoadOptions {
        display_base: std::env::current_dir().ok(),
    };
    let mut json: Vec<JsonDiagnostic> = Vec::new();
    let (mut errors, mut warnings) = (0, 0);
    for file in files {
        let checked = compiler::check_input(Input::File(file), &options);
        errors += checked.diagnostics.error_count();
        warnings += checked.diagnostics.warning_count();
        match format {
            Format::Text => print!("{}", checked.render()),
            Format::Json => json.extend(checked.to_json()),
        }
    }
    if let Format::Json = format {
        println!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_else(|_| "[]".into())
        );
    }
    eprintln!(
        "checked {} file{}: {errors} error{}, {warnings} warning{}",
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        if errors == 1 { "" } else { "s" },
        if warnings == 1 { "" } else { "s" },
    );
    if errors > 0 || (deny_warnings && warnings > 0) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

//! The `flatmachines` command-line tool.

use clap::{Parser, Subcommand, ValueEnum};
use flatmachines::compiler::{
    self,
    diag::JsonDiagnostic,
    load::{Input, LoadOptions},
};
use flatmachines::persistence::ConfigStore;
use flatmachines::persistence::sqlite::{SqliteBackend, SqliteLeaseLock, resolve_db_path};
use flatmachines::unstable::snapshot::load_latest;
use flatmachines::{Machine, RunOptions, Runtime};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

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
        /// The machine file. May be left out with `--resume-from` when the execution's
        /// checkpoints are in a SQLite database: the config then comes from its config store.
        #[arg(short, long, required_unless_present = "resume_from")]
        config: Option<PathBuf>,
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
        /// Resume this execution from its last checkpoint (the input is then ignored).
        #[arg(long)]
        resume_from: Option<String>,
        /// The SQLite database of checkpoints, locks and configs, overriding the machine's
        /// `persistence` block (default for `--resume-from` without `--config`:
        /// `FLATMACHINES_DB_PATH`, else `flatmachines.sqlite`).
        #[arg(long)]
        db: Option<PathBuf>,
        /// Print how long the run took to stderr (`run took 41.234 ms`): from after the
        /// machine is loaded until it returns, as the benchmark rules of `shared/bench` time it.
        #[arg(long)]
        timing: bool,
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
            db,
            timing,
        } => run(RunArgs {
            config,
            input,
            max_steps,
            execution_id,
            parent_id,
            resume_from,
            db,
            timing,
        }),
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

/// The options of `flatmachines run`.
struct RunArgs {
    config: Option<PathBuf>,
    input: String,
    max_steps: Option<u64>,
    execution_id: Option<String>,
    parent_id: Option<String>,
    resume_from: Option<String>,
    db: Option<PathBuf>,
    timing: bool,
}

/// Loads and checks a machine file; the error is what to print.
fn load_machine(config: &Path) -> Result<Machine, String> {
    match Machine::from_file(config) {
        Ok(m) => Ok(m),
        Err(flatmachines::Error::Invalid { rendered, .. }) => {
            eprint!("{rendered}");
            Err(format!("{} does not pass the checks", config.display()))
        }
        Err(e) => Err(first_line(&e.to_string())),
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("run failed").to_string()
}

/// The SQLite components of `--db` (or, when resuming without `--config`, of the default
/// database), handed to the runtime so they override the machine's `persistence` block.
fn open_sqlite(path: &Path) -> Result<(SqliteBackend, SqliteLeaseLock), String> {
    let backend = SqliteBackend::open(path).map_err(|e| e.to_string())?;
    let lock = SqliteLeaseLock::open(path).map_err(|e| e.to_string())?;
    Ok((backend, lock))
}

/// The machine of execution `id`, read from the config store of `backend` by the
/// `config_hash` of its latest checkpoint.
async fn machine_from_store(backend: &SqliteBackend, id: &str) -> Result<Machine, String> {
    let db = backend.path().display();
    let latest = load_latest(backend, id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no checkpoint found for execution {id} in {db}"))?;
    let hash = latest.snapshot.config_hash.as_deref().ok_or_else(|| {
        format!(
            "the checkpoint `{}` has no config_hash; pass the machine with --config",
            latest.key
        )
    })?;
    let raw = backend
        .sqlite_config_store()
        .get(hash)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("config {hash} of execution {id} is not in {db}; pass --config"))?;
    let dir = std::env::current_dir().map_err(|e| format!("the working directory: {e}"))?;
    match Machine::from_yaml(&raw, &dir) {
        Ok(m) => Ok(m),
        Err(flatmachines::Error::Invalid { rendered, .. }) => {
            eprint!("{rendered}");
            Err(format!(
                "the stored config {hash} of execution {id} does not pass the checks"
            ))
        }
        Err(e) => Err(first_line(&e.to_string())),
    }
}

fn run(args: RunArgs) -> ExitCode {
    init_logging();
    match run_inner(args) {
        Ok(output) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&output).unwrap_or_else(|_| "{}".into())
            );
            ExitCode::SUCCESS
        }
        Err(cause) => {
            eprintln!("error: {cause}");
            ExitCode::from(1)
        }
    }
}

fn run_inner(args: RunArgs) -> Result<serde_json::Value, String> {
    let input: serde_json::Value =
        serde_json::from_str(&args.input).map_err(|e| format!("invalid JSON input: {e}"))?;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    // Without --config, a resume reads the config from the database's config store.
    let db = match (&args.db, &args.config) {
        (Some(db), _) => Some(db.clone()),
        (None, None) => Some(resolve_db_path(None).map_err(|e| e.to_string())?),
        (None, Some(_)) => None,
    };
    let sqlite = match &db {
        Some(path) => {
            if args.config.is_none() && !path.exists() {
                return Err(format!(
                    "no --config given and no checkpoint database at {} (set --db or FLATMACHINES_DB_PATH)",
                    path.display()
                ));
            }
            Some(open_sqlite(path)?)
        }
        None => None,
    };
    let machine = match (&args.config, &sqlite, &args.resume_from) {
        (Some(config), _, _) => load_machine(config)?,
        (None, Some((backend, _)), Some(id)) => tokio.block_on(machine_from_store(backend, id))?,
        // clap requires --config unless --resume-from is given.
        _ => return Err("--config is required".into()),
    };
    let mut builder = Runtime::builder();
    if let Some((backend, lock)) = sqlite {
        builder = builder
            .checkpoint_backend(Arc::new(backend))
            .lock(Arc::new(lock));
    }
    let rt = builder.build();
    let options = RunOptions {
        max_steps: args.max_steps,
        execution_id: args.execution_id,
        parent_execution_id: args.parent_id,
        resume_from: args.resume_from,
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let output = tokio.block_on(rt.run_with(&machine, input, options));
    if args.timing {
        eprintln!(
            "run took {:.3} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    output.map_err(|e| first_line(&e.to_string()))
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

//! The `flatmachines` command-line tool.

use clap::{Parser, Subcommand, ValueEnum};
use flatmachines::compiler::{
    self,
    diag::JsonDiagnostic,
    load::{Input, LoadOptions},
};
use flatmachines::persistence::sqlite::{SqliteBackend, SqliteLeaseLock, resolve_db_path};
use flatmachines::persistence::{CheckpointBackend, ConfigStore, ListFilter};
use flatmachines::signals::{
    Dispatcher, FileTrigger, NoOpTrigger, SignalBackend, SocketTrigger, SqliteSignalBackend,
    Trigger, send_and_notify,
};
use flatmachines::unstable::snapshot::load_latest;
use flatmachines::{CancelHandle, Machine, RunEvent, RunOptions, Runtime};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

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
        /// The input: a JSON object, `@FILE` to read it from a file, or `-` to read it from
        /// standard input. Integers must fit in 64 bits.
        #[arg(short, long, default_value = "{}")]
        input: String,
        /// At most this many states run.
        #[arg(long)]
        max_steps: Option<u64>,
        /// The execution id (default: a new UUID). An id that already has checkpoints is
        /// refused (use `--resume-from`), unless its execution finished: its stored output is
        /// then printed again and nothing runs.
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
        /// Run a machine that has compile-time errors, as the Python reference would: each
        /// error that has a run-time behaviour there is printed as a warning and happens when
        /// the run reaches it (an unknown agent fails its state with `ValueError`, which
        /// `on_error` can catch). Errors no run can get past are still refused.
        #[arg(long)]
        allow_errors: bool,
        /// Print the run's events as JSON lines on stderr while it runs (states entered and
        /// left, the agents' token deltas and results, tool calls, the output or the error);
        /// stdout still holds the output alone. See docs/streaming.md.
        #[arg(long)]
        stream: bool,
    },
    /// Send or list signals for parked `wait_for` states.
    Signal {
        #[command(subcommand)]
        command: SignalCommand,
    },
    /// Resume the executions that wait on channels with pending signals: once (`--once`), or
    /// then listen for socket triggers (`--listen`). The machines come from the database's
    /// config store; no machine file is needed.
    Dispatch {
        /// Drain every pending signal and exit.
        #[arg(long, conflicts_with = "listen", required_unless_present = "listen")]
        once: bool,
        /// Drain, then dispatch each channel a socket trigger names, until interrupted.
        #[arg(long)]
        listen: bool,
        /// The SQLite database of signals, checkpoints, locks and configs (default:
        /// `FLATMACHINES_DB_PATH`, else `flatmachines.sqlite`).
        #[arg(long)]
        db: Option<PathBuf>,
        /// The socket `--listen` receives channel names on.
        #[arg(long, default_value = "/tmp/flatmachines/trigger.sock")]
        socket_path: PathBuf,
        /// Only report who would be resumed (diagnostics); resumes nothing.
        #[arg(long)]
        allow_noop_resume: bool,
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

#[derive(Subcommand)]
enum SignalCommand {
    /// Store a signal on CHANNEL (printing its id), then notify the trigger.
    Send {
        /// The channel, exactly as the `wait_for` state renders it.
        channel: String,
        /// The payload, as JSON (the waiting state's output).
        #[arg(long, default_value = "null")]
        data: String,
        /// The SQLite database (default: `FLATMACHINES_DB_PATH`, else `flatmachines.sqlite`).
        #[arg(long)]
        db: Option<PathBuf>,
        /// How to wake a dispatcher: `none`, `file` (touch `<trigger-path>/trigger`) or `socket`
        /// (a datagram to `--trigger-path`, default `/tmp/flatmachines/trigger.sock`).
        #[arg(long, value_enum, default_value_t = TriggerKind::None)]
        trigger: TriggerKind,
        /// The trigger's folder (`file`) or socket (`socket`).
        #[arg(long)]
        trigger_path: Option<PathBuf>,
    },
    /// Show pending signals and the executions waiting on channels.
    List {
        /// The SQLite database (default: `FLATMACHINES_DB_PATH`, else `flatmachines.sqlite`).
        #[arg(long)]
        db: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum TriggerKind {
    /// No notification.
    None,
    /// Touch a file.
    File,
    /// Send a Unix datagram.
    Socket,
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
        Command::Signal { command } => signal(command),
        Command::Dispatch {
            once: _,
            listen,
            db,
            socket_path,
            allow_noop_resume,
        } => dispatch(listen, db, &socket_path, allow_noop_resume),
        Command::Run {
            config,
            input,
            max_steps,
            execution_id,
            parent_id,
            resume_from,
            db,
            timing,
            allow_errors,
            stream,
        } => run(RunArgs {
            config,
            input,
            max_steps,
            execution_id,
            parent_id,
            resume_from,
            db,
            timing,
            allow_errors,
            stream,
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
    allow_errors: bool,
    stream: bool,
}

/// Loads and checks a machine file; the error is what to print.
fn load_machine(config: &Path, allow_errors: bool) -> Result<Machine, String> {
    let loaded = if allow_errors {
        Machine::from_file_allowing_errors(config).map(|(machine, warnings)| {
            eprint!("{warnings}");
            machine
        })
    } else {
        Machine::from_file(config)
    };
    match loaded {
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
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Why `run` failed, and its exit code: 1, or 128 + the signal number when SIGINT (130) or
/// SIGTERM (143) stopped it.
struct Failure {
    message: String,
    code: u8,
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure { message, code: 1 }
    }
}

/// The signal that asked `run` to stop (0: none yet).
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// On the first SIGINT or SIGTERM, cancels the run through `cancel`: an agent call in flight
/// is aborted and the run ends with `Error::Stopped` at its last checkpoint, which resumes it
/// in that state (a run between states stops before the next one). On a second signal, exits
/// at once, the run resuming from its last checkpoint as after a crash.
///
/// tokio's signal streams rather than a raw handler: `CancelHandle::cancel` wakes the run,
/// which is not async-signal-safe, so the signal is turned into an event of the runtime first.
/// The watcher runs on the run's own runtime, so it is registered before the run starts.
fn cancel_on_signals(tokio: &tokio::runtime::Runtime, cancel: CancelHandle) {
    use tokio::signal::unix::{SignalKind, signal};
    let _entered = tokio.enter();
    let (mut interrupt, mut terminate) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!("cannot handle SIGINT/SIGTERM ({e}): they stop the run at once");
            return;
        }
    };
    tokio.spawn(async move {
        loop {
            let signal = tokio::select! {
                Some(()) = interrupt.recv() => libc::SIGINT,
                Some(()) = terminate.recv() => libc::SIGTERM,
                else => return,
            };
            let first = SIGNAL
                .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok();
            if !first {
                eprintln!("flatmachines: exiting at once; resume from the last checkpoint");
                std::process::exit(128 + signal);
            }
            eprintln!(
                "flatmachines: stopping; an agent call in flight is abandoned and runs again on \
                 resume (signal again to exit at once)"
            );
            cancel.cancel();
        }
    });
}

/// The name of `signal` for messages.
fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// Reads `--input`: JSON text, `@FILE` or `-` (standard input). The input must be an object,
/// and its integers must fit in 64 bits: larger ones would silently become floats.
fn read_input(arg: &str) -> Result<serde_json::Value, String> {
    let (text, source) = if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("--input -: cannot read standard input: {e}"))?;
        (text, "the input on standard input".to_string())
    } else if let Some(path) = arg.strip_prefix('@') {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--input @{path}: cannot read {path}: {e}"))?;
        (text, format!("the input in {path}"))
    } else {
        (arg.to_string(), "--input".to_string())
    };
    if let Some(integer) = integer_beyond_64_bits(text.as_bytes()) {
        return Err(format!(
            "{source}: the integer {integer} does not fit in 64 bits and would lose precision; \
             pass it as a string"
        ));
    }
    let input = flatmachines::unstable::snapshot::parse_json(text.as_bytes())
        .map_err(|e| format!("{source} is not valid JSON: {e}"))?;
    let kind = match &input {
        serde_json::Value::Object(_) => return Ok(input),
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
    };
    Err(format!(
        "{source} must be a JSON object ({{\"key\": value, ...}}), not {kind}"
    ))
}

/// The first integer literal of the JSON `text` (outside strings) that neither `i64` nor `u64`
/// holds: serde_json would read it as the nearest float.
fn integer_beyond_64_bits(text: &[u8]) -> Option<String> {
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => {
                i += 1;
                while i < text.len() && text[i] != b'"' {
                    i += if text[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < text.len()
                    && matches!(text[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let token = std::str::from_utf8(&text[start..i]).unwrap_or_default();
                let integer = !token.contains(['.', 'e', 'E']);
                if integer && token.parse::<i64>().is_err() && token.parse::<u64>().is_err() {
                    // Malformed tokens (`--1`) are left to the JSON parser to report.
                    if token
                        .trim_start_matches('-')
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                        && token.len() > 1
                    {
                        return Some(token.to_string());
                    }
                }
            }
            _ => i += 1,
        }
    }
    None
}

fn run_inner(args: RunArgs) -> Result<serde_json::Value, Failure> {
    let input = read_input(&args.input)?;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let cancel = CancelHandle::new();
    cancel_on_signals(&tokio, cancel.clone());
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
                )
                .into());
            }
            Some(open_sqlite(path)?)
        }
        None => None,
    };
    let machine = match (&args.config, &sqlite, &args.resume_from) {
        (Some(config), _, _) => load_machine(config, args.allow_errors)?,
        (None, Some((backend, _)), Some(id)) => tokio.block_on(machine_from_store(backend, id))?,
        // clap requires --config unless --resume-from is given.
        _ => return Err(String::from("--config is required").into()),
    };
    let mut builder = Runtime::builder();
    if let Some((backend, lock)) = sqlite {
        // Signals live in the same database, where `signal send` and `dispatch` find them.
        let signals = SqliteSignalBackend::open(backend.path()).map_err(|e| e.to_string())?;
        builder = builder
            .checkpoint_backend(Arc::new(backend))
            .lock(Arc::new(lock))
            .signal_backend(Arc::new(signals));
    }
    let rt = builder.build();
    // A fresh run under an id that has a history would mix the two.
    if let (None, Some(id)) = (&args.resume_from, &args.execution_id)
        && let Some(latest) = tokio
            .block_on(rt.latest_checkpoint(&machine, id))
            .map_err(|e| first_line(&e.to_string()))?
    {
        if latest.snapshot.event.as_deref() == Some("machine_end") {
            eprintln!(
                "execution {id} already finished; printing its stored output (nothing runs, \
                 the input is not used)"
            );
            return Ok(latest
                .snapshot
                .output
                .unwrap_or_else(|| serde_json::json!({})));
        }
        return Err(format!(
            "execution {id} already has checkpoints (latest `{}`, state `{}`): resume it with \
             --resume-from {id}, or choose another --execution-id",
            latest.key, latest.snapshot.current_state
        )
        .into());
    }
    let options = RunOptions {
        max_steps: args.max_steps,
        execution_id: args.execution_id,
        parent_execution_id: args.parent_id,
        resume_from: args.resume_from,
        cancel: Some(cancel),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let output = if args.stream {
        tokio
            .block_on(stream_events(&rt, &machine, input, options))
            .ok_or_else(|| String::from("the run ended without an output or an error"))?
    } else {
        tokio
            .block_on(rt.run_with(&machine, input, options))
            .map_err(Arc::new)
    };
    if args.timing {
        eprintln!(
            "run took {:.3} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    match output.as_ref().map_err(|e| &**e) {
        Ok(output) => Ok(output.clone()),
        Err(flatmachines::Error::Stopped {
            execution_id,
            state,
            ..
        }) => {
            let signal = SIGNAL.load(Ordering::SeqCst);
            let resumable = tokio
                .block_on(rt.latest_checkpoint(&machine, execution_id))
                .is_ok_and(|l| l.is_some());
            let how = if resumable {
                format!(
                    "resume it with `flatmachines run --resume-from {execution_id}` (and the \
                     same --config/--db)"
                )
            } else {
                "its checkpoints were not kept (the machine's persistence is memory or \
                 disabled), so it cannot be resumed"
                    .to_string()
            };
            Err(Failure {
                message: format!(
                    "interrupted by {}: execution {execution_id} stopped; a resume continues at \
                     state `{state}`; {how}",
                    signal_name(signal)
                ),
                code: u8::try_from(128 + signal).unwrap_or(1),
            })
        }
        Err(e) => Err(first_line(&e.to_string()).into()),
    }
}

/// `run --stream`: runs `machine` as a run-event stream, printing each event as a JSON line on
/// stderr (flushed per line, so a reader sees tokens as they come), and returns how the run
/// ended (`None` when its task panicked before saying).
async fn stream_events(
    rt: &Runtime,
    machine: &Machine,
    input: serde_json::Value,
    options: RunOptions,
) -> Option<Result<serde_json::Value, Arc<flatmachines::Error>>> {
    use std::io::Write as _;
    let mut events = rt.stream_with(machine, input, options);
    let mut ended = None;
    while let Some(event) = events.next_event().await {
        let mut line = event.to_json().to_string();
        line.push('\n');
        // A closed stderr must not stop the run: the output still goes to stdout.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
        match event {
            RunEvent::Output { output } => ended = Some(Ok(output)),
            RunEvent::Error { error } => ended = Some(Err(error)),
            _ => {}
        }
    }
    ended
}

fn tokio() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn db_path(db: Option<PathBuf>) -> Result<PathBuf, String> {
    match db {
        Some(db) => Ok(db),
        None => resolve_db_path(None).map_err(|e| e.to_string()),
    }
}

/// `flatmachines signal send|list`.
fn signal(command: SignalCommand) -> ExitCode {
    init_logging();
    let result = match command {
        SignalCommand::Send {
            channel,
            data,
            db,
            trigger,
            trigger_path,
        } => signal_send(&channel, &data, db, trigger, trigger_path),
        SignalCommand::List { db } => signal_list(db),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(cause) => {
            eprintln!("error: {cause}");
            ExitCode::from(1)
        }
    }
}

fn signal_send(
    channel: &str,
    data: &str,
    db: Option<PathBuf>,
    trigger: TriggerKind,
    trigger_path: Option<PathBuf>,
) -> Result<(), String> {
    let data: serde_json::Value =
        serde_json::from_str(data).map_err(|e| format!("invalid JSON --data: {e}"))?;
    let signals = SqliteSignalBackend::open(db_path(db)?).map_err(|e| e.to_string())?;
    let trigger: Box<dyn Trigger> = match trigger {
        TriggerKind::None => Box::new(NoOpTrigger),
        TriggerKind::File => Box::new(
            FileTrigger::new(
                trigger_path.unwrap_or_else(|| PathBuf::from(FileTrigger::DEFAULT_BASE)),
            )
            .map_err(|e| e.to_string())?,
        ),
        TriggerKind::Socket => Box::new(SocketTrigger::new(
            trigger_path.unwrap_or_else(|| PathBuf::from(SocketTrigger::DEFAULT_SOCKET)),
        )),
    };
    let id = tokio()?
        .block_on(send_and_notify(&signals, trigger.as_ref(), channel, data))
        .map_err(|e| e.to_string())?;
    println!("{id}");
    Ok(())
}

fn signal_list(db: Option<PathBuf>) -> Result<(), String> {
    let path = db_path(db)?;
    let signals = SqliteSignalBackend::open(&path).map_err(|e| e.to_string())?;
    let checkpoints = SqliteBackend::open(&path).map_err(|e| e.to_string())?;
    tokio()?.block_on(async {
        let err = |e: flatmachines::persistence::PersistenceError| e.to_string();
        println!("pending signals:");
        for channel in signals.channels().await.map_err(err)? {
            for s in signals.peek(&channel).await.map_err(err)? {
                println!("  {channel}  {}  {}  {}", s.id, s.created_at, s.data);
            }
        }
        println!("waiting executions:");
        let filter = ListFilter {
            event: Some("waiting".into()),
            ..ListFilter::default()
        };
        for id in checkpoints.list_execution_ids(&filter).await.map_err(err)? {
            let channel = load_latest(&checkpoints, &id)
                .await
                .map_err(err)?
                .and_then(|l| l.snapshot.waiting_channel)
                .unwrap_or_default();
            println!("  {id}  on {channel}");
        }
        Ok(())
    })
}

/// `flatmachines dispatch`: exit 0 on success, 1 on any error.
fn dispatch(listen: bool, db: Option<PathBuf>, socket: &Path, noop: bool) -> ExitCode {
    init_logging();
    match dispatch_inner(listen, db, socket, noop) {
        Ok(()) => ExitCode::SUCCESS,
        Err(cause) => {
            eprintln!("error: {cause}");
            ExitCode::from(1)
        }
    }
}

fn dispatch_inner(
    listen: bool,
    db: Option<PathBuf>,
    socket: &Path,
    noop: bool,
) -> Result<(), String> {
    let path = db_path(db)?;
    let signals: Arc<dyn SignalBackend> =
        Arc::new(SqliteSignalBackend::open(&path).map_err(|e| e.to_string())?);
    let (backend, lock) = open_sqlite(&path)?;
    let store = backend.sqlite_config_store();
    let checkpoints: Arc<dyn CheckpointBackend> = Arc::new(backend);
    let mut dispatcher = Dispatcher::new(signals.clone(), checkpoints.clone());
    if !noop {
        let rt = Runtime::builder()
            .checkpoint_backend(checkpoints.clone())
            .lock(Arc::new(lock))
            .signal_backend(signals)
            .build();
        let resumer = flatmachines::ConfigStoreResumer::new(rt, checkpoints, Arc::new(store));
        dispatcher = dispatcher.with_resumer(Arc::new(resumer));
    }
    let tokio = tokio()?;
    if listen {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        return tokio
            .block_on(dispatcher.listen(socket, stop))
            .map_err(|e| e.to_string());
    }
    let resumed = tokio
        .block_on(dispatcher.dispatch_all())
        .map_err(|e| e.to_string())?;
    let total: usize = resumed.values().map(Vec::len).sum();
    eprintln!(
        "Dispatch complete: {} channel(s), {total} machine(s) resumed",
        resumed.len()
    );
    for (channel, ids) in &resumed {
        let mut shown = ids.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
        if ids.len() > 3 {
            shown.push_str(", ...");
        }
        eprintln!("  {channel}: {shown}");
    }
    Ok(())
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

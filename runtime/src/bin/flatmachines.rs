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

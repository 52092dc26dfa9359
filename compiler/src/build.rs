//! The `build.rs` helper: compile machine YAML into `OUT_DIR` ahead of the crate.
//!
//! ```no_run
//! // build.rs, inside `fn main()`:
//! flatmachines_compiler::build::Builder::new()
//!     .machine("machines/review.yml")
//!     .compile()
//!     .unwrap_or_else(|e| panic!("{e}"));
//! // src/main.rs:
//! // include!(concat!(env!("OUT_DIR"), "/review.rs"));   // defines `mod review`
//! ```
//!
//! Paths are relative to `CARGO_MANIFEST_DIR`. Each generated file is named after the machine's
//! module (`slogan-workshop` → `slogan_workshop.rs`). Every file read is announced with
//! `cargo:rerun-if-changed`, warnings are shown with `cargo:warning`, and errors fail the build
//! with the same rendered diagnostics as `flatmachines check`.

use crate::codegen::{self, Options, SourceText};
use crate::load::{Input, LoadOptions};
use std::fmt;
use std::path::{Path, PathBuf};

/// Compiles one machine into `OUT_DIR`; shorthand for `Builder::new().machine(path).compile()`.
pub fn compile(path: impl AsRef<Path>) -> Result<Vec<PathBuf>, Error> {
    Builder::new().machine(path).compile()
}

/// Compiles machines into Rust files.
#[derive(Clone, Debug, Default)]
pub struct Builder {
    machines: Vec<PathBuf>,
    out_dir: Option<PathBuf>,
    base_dir: Option<PathBuf>,
    deny_warnings: bool,
    cargo_output: bool,
    features: crate::check::features::RuntimeFeatures,
}

/// The machines did not compile.
#[derive(Clone, Debug)]
pub struct Error {
    rendered: String,
}

impl Error {
    /// The rendered diagnostics (or I/O failure) as text.
    pub fn rendered(&self) -> &str {
        &self.rendered
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rendered)
    }
}

impl std::error::Error for Error {}

impl Builder {
    /// A builder writing into `OUT_DIR`, resolving paths against `CARGO_MANIFEST_DIR`, and
    /// printing `cargo:` instructions.
    pub fn new() -> Self {
        Builder {
            cargo_output: true,
            features: crate::check::features::RuntimeFeatures::ALL,
            ..Builder::default()
        }
    }

    /// Adds a machine file.
    pub fn machine(mut self, path: impl AsRef<Path>) -> Self {
        self.machines.push(path.as_ref().to_path_buf());
        self
    }

    /// Writes into `dir` instead of `OUT_DIR`.
    pub fn out_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.out_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Resolves machine paths against `dir` instead of `CARGO_MANIFEST_DIR`.
    pub fn base_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.base_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Fails the build on warnings too.
    pub fn deny_warnings(mut self, yes: bool) -> Self {
        self.deny_warnings = yes;
        self
    }

    /// Whether to print `cargo:rerun-if-changed` / `cargo:warning` lines (on by default).
    pub fn cargo_output(mut self, yes: bool) -> Self {
        self.cargo_output = yes;
        self
    }

    /// The features of the `flatmachines` runtime the generated code will link with (default:
    /// all): a machine that needs one that is off is an error (`FM0601`).
    pub fn runtime_features(mut self, features: crate::check::features::RuntimeFeatures) -> Self {
        self.features = features;
        self
    }

    /// Checks and generates every machine. Returns the files written.
    pub fn compile(self) -> Result<Vec<PathBuf>, Error> {
        let out_dir = match self
            .out_dir
            .clone()
            .or_else(|| std::env::var_os("OUT_DIR").map(PathBuf::from))
        {
            Some(d) => d,
            None => {
                return Err(Error {
                    rendered:
                        "OUT_DIR is not set: call the builder from build.rs, or set `out_dir`"
                            .into(),
                });
            }
        };
        let base = self
            .base_dir
            .clone()
            .or_else(|| std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("."));
        let mut written = Vec::new();
        let mut failures = String::new();
        for machine in &self.machines {
            let path = crate::load::normalize(&base.join(machine));
            let options = LoadOptions {
                display_base: Some(base.clone()),
            };
            let (mut checked, loaded) = codegen::check_recorded(Input::File(&path), &options);
            checked
                .diagnostics
                .extend(crate::check::features::check_features(
                    &checked.project,
                    self.features,
                ));
            checked.diagnostics.sort();
            let files = checked.project.files_read();
            if self.cargo_output {
                println!("cargo:rerun-if-changed={}", path.display());
                for f in &files {
                    println!("cargo:rerun-if-changed={}", f.display());
                }
                if let Some(dir) = path.parent() {
                    println!("cargo:rerun-if-changed={}", dir.display());
                }
            }
            let errors = checked.has_errors()
                || (self.deny_warnings && checked.diagnostics.warning_count() > 0);
            if errors {
                failures.push_str(&checked.render());
                continue;
            }
            if self.cargo_output {
                for d in checked.diagnostics.iter() {
                    for line in d.render(&checked.project.sources).lines() {
                        println!("cargo:warning={line}");
                    }
                }
            }
            let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            let tokens = codegen::generate(
                &checked.project,
                &Options {
                    source: SourceText::File(abs(&path)),
                    loaded,
                    remap: Vec::new(),
                },
            );
            let file = out_dir.join(format!("{}.rs", codegen::module_name(&checked.project)));
            std::fs::write(&file, codegen::pretty(&tokens)).map_err(|e| Error {
                rendered: format!("cannot write {}: {e}", file.display()),
            })?;
            written.push(file);
        }
        if failures.is_empty() {
            Ok(written)
        } else {
            Err(Error { rendered: failures })
        }
    }
}

//! Front end of flatmachines: loads FlatMachine YAML with every position kept, checks everything
//! that can be known before a run, and (with the `codegen` feature) generates Rust code for it.
//!
//! ```no_run
//! let checked = flatmachines_compiler::check_file("machine.yml".as_ref());
//! eprint!("{}", checked.render());
//! assert!(!checked.has_errors());
//! ```

pub mod check;
pub mod diag;
pub mod expr;
pub mod lenient;
pub mod load;
pub mod lower;
pub mod model;
pub mod naming;
pub mod source;
pub mod suggest;
pub mod yaml;

/// The lowered machine definition, which [`lower`] produces and both back ends read.
pub use flatmachines_ir as ir;
/// Python's spelling of scalars (re-exported from `flatmachines-ir`).
pub use flatmachines_ir::pyfmt;

use diag::{Diagnostics, JsonDiagnostic};
use load::{Input, LoadOptions, Project};
use std::path::Path;

/// A loaded and checked machine.
#[derive(Debug)]
pub struct Checked {
    /// The machine and everything it references.
    pub project: Project,
    /// Every diagnostic, sorted by position.
    pub diagnostics: Diagnostics,
}

impl Checked {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.has_errors()
    }

    /// The diagnostics rendered as rustc-style text.
    pub fn render(&self) -> String {
        diag::render_all(&self.diagnostics, &self.project.sources)
    }

    /// Whether the machine can run with errors allowed (`flatmachines run --allow-errors`):
    /// it loaded, and each of its errors has a run-time behaviour in the reference
    /// ([`lenient::runs_despite`]).
    pub fn runs_despite_errors(&self) -> bool {
        self.project.root().is_some() && lenient::blocking(&self.diagnostics).next().is_none()
    }

    /// The diagnostics rendered with the errors a run can get past shown as warnings.
    pub fn render_demoted(&self) -> String {
        diag::render_all(&lenient::demoted(&self.diagnostics), &self.project.sources)
    }

    /// The diagnostics as JSON objects.
    pub fn to_json(&self) -> Vec<JsonDiagnostic> {
        self.diagnostics
            .iter()
            .map(|d| d.to_json(&self.project.sources))
            .collect()
    }
}

/// Loads and checks a machine file.
pub fn check_file(path: &Path) -> Checked {
    check_input(Input::File(path), &LoadOptions::default())
}

/// Loads and checks a machine from any input.
pub fn check_input(input: Input<'_>, options: &LoadOptions) -> Checked {
    let project = load::load(input, options);
    let diagnostics = check::check_project(&project);
    Checked {
        project,
        diagnostics,
    }
}

#[cfg(feature = "codegen")]
pub mod build;
#[cfg(feature = "codegen")]
pub mod codegen;

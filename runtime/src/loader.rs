//! Machines read from YAML at run time (feature `loader`): [`Machine::from_file`], child
//! machines the compiler did not load, agent files named at run time, and configs resumed from
//! a config store. Each goes through the compiler's front end — load, check, the one lowering
//! pass — and is instantiated like a compiled machine, with its conditions interpreted.

use crate::error::Error;
use crate::machine::Machine;
use crate::peers::ChildLoadError;
use flatmachines_compiler::load::{Input, LoadOptions};
use serde_json::Value;
use std::path::Path;

/// Loads, checks and lowers `input`, refusing a machine with errors.
fn checked(input: Input<'_>, options: &LoadOptions, label: &str) -> Result<Machine, Error> {
    let checked = flatmachines_compiler::check_input(input, options);
    if checked.has_errors() {
        return Err(Error::Invalid {
            machine: label.to_string(),
            diagnostics: checked.render(),
        });
    }
    Machine::from_bundle(&flatmachines_compiler::lower::lower(&checked.project), None)
}

/// See [`Machine::from_file`].
pub(crate) fn from_file(path: &Path) -> Result<Machine, Error> {
    let options = LoadOptions {
        display_base: std::env::current_dir().ok(),
    };
    checked(Input::File(path), &options, &path.display().to_string())
}

/// See [`Machine::from_yaml`].
pub(crate) fn from_yaml(text: &str, dir: &Path) -> Result<Machine, Error> {
    let path = dir.join("machine.yml");
    checked(
        Input::Inline {
            text: text.to_string(),
            path: &path,
            origin: (1, 1),
        },
        &LoadOptions::default(),
        "<inline>",
    )
}

/// A child machine named by path that was not loaded with its parent (it runs the same checks
/// first); it inherits `profiles` when it has none of its own.
pub(crate) fn child_at_run_time(
    path: &Path,
    profiles: Option<&Value>,
) -> Result<Machine, ChildLoadError> {
    if !path.is_file() {
        return Err(ChildLoadError {
            kind: "FileNotFoundError",
            message: format!("Machine config file not found: {}", path.display()),
        });
    }
    let checked = flatmachines_compiler::check_input(Input::File(path), &LoadOptions::default());
    if checked.has_errors() {
        return Err(ChildLoadError {
            kind: "ValueError",
            message: format!(
                "machine `{}` has errors:\n{}",
                path.display(),
                checked.render()
            ),
        });
    }
    let bundle = flatmachines_compiler::lower::lower(&checked.project);
    Machine::from_bundle_inheriting(&bundle, None, profiles).map_err(|e| ChildLoadError {
        kind: "ValueError",
        message: e.to_string(),
    })
}

/// A YAML document as JSON, as the reference's `yaml.safe_load` would see it; `None` when it
/// does not parse. (Agent files and profiles named at run time, configs written by the
/// reference.)
#[cfg_attr(not(any(feature = "http", feature = "sqlite")), allow(dead_code))]
pub(crate) fn yaml_to_json(text: &str) -> Option<Value> {
    use flatmachines_compiler::source::{SourceFile, SourceMap};
    let mut map = SourceMap::new();
    let id = map.add(SourceFile::new(
        "document".into(),
        "document".into(),
        text.to_string(),
    ));
    let mut diags = flatmachines_compiler::diag::Diagnostics::new();
    flatmachines_compiler::yaml::parse(map.get(id), id, &mut diags).map(|n| n.to_json())
}

/// The `data` of a profiles document (the whole document when it has no `spec`).
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) fn profiles_from_text(text: &str) -> Option<Value> {
    let doc = yaml_to_json(text)?;
    match doc.get("data") {
        Some(d) if doc.get("spec").is_some() => Some(d.clone()),
        _ => Some(doc),
    }
}

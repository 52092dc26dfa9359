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
        return Err(invalid(label, &checked));
    }
    Machine::from_bundle(&flatmachines_compiler::lower::lower(&checked.project), None)
}

/// The checks' verdict on a refused machine, structured and rendered.
fn invalid(label: &str, checked: &flatmachines_compiler::Checked) -> Error {
    Error::Invalid {
        machine: label.to_string(),
        diagnostics: checked.to_json(),
        rendered: checked.render(),
    }
}

/// See [`Machine::from_file`].
pub(crate) fn from_file(path: &Path) -> Result<Machine, Error> {
    let options = LoadOptions {
        display_base: std::env::current_dir().ok(),
    };
    checked(Input::File(path), &options, &path.display().to_string())
}

/// See [`Machine::from_file_allowing_errors`].
pub(crate) fn from_file_allowing_errors(path: &Path) -> Result<(Machine, String), Error> {
    let options = LoadOptions {
        display_base: std::env::current_dir().ok(),
    };
    let label = path.display().to_string();
    let checked = flatmachines_compiler::check_input(Input::File(path), &options);
    if !checked.runs_despite_errors() {
        return Err(invalid(&label, &checked));
    }
    let machine =
        Machine::from_bundle_lenient(&flatmachines_compiler::lower::lower(&checked.project))?;
    Ok((machine, checked.render_demoted()))
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
        return Err(ChildLoadError::new(
            "FileNotFoundError",
            format!("Machine config file not found: {}", path.display()),
        ));
    }
    let checked = flatmachines_compiler::check_input(Input::File(path), &LoadOptions::default());
    if checked.has_errors() {
        return Err(ChildLoadError::new(
            "ValueError",
            format!(
                "machine `{}` has errors:\n{}",
                path.display(),
                checked.render()
            ),
        ));
    }
    let bundle = flatmachines_compiler::lower::lower(&checked.project);
    Machine::from_bundle_inheriting(&bundle, None, profiles)
        .map_err(|e| ChildLoadError::new("ValueError", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Severity;

    #[test]
    fn a_refused_machine_carries_its_diagnostics() {
        let yaml = "spec: flatmachine\ndata:\n  name: typo\n  states:\n    start:\n      type: initial\n      transitions:\n        - to: dnoe\n    done: {type: final}\n";
        let err = from_yaml(yaml, Path::new(".")).unwrap_err();
        let Error::Invalid {
            machine,
            diagnostics,
            rendered,
        } = &err
        else {
            panic!("{err}");
        };
        assert_eq!(machine, "<inline>");
        let d = diagnostics
            .iter()
            .find(|d| d.code == "FM0102")
            .expect("the unknown target");
        assert_eq!(d.severity, Severity::Error);
        assert_eq!((d.line, d.column), (Some(8), Some(15)));
        assert!(d.message.contains("dnoe"), "{}", d.message);
        assert_eq!(d.help.as_deref(), Some("did you mean `done`?"));
        assert!(rendered.contains("error[FM0102]"), "{rendered}");
        assert!(err.to_string().contains("error[FM0102]"), "{err}");
    }
}

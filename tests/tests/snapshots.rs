//! Snapshot tests: the rendered diagnostics of every defective machine under
//! `fixtures/defective/`, and the prettyplease-formatted expansion of several machines.
//! Snapshots live in the top-level `snapshots/` folder.

use flatmachines_compiler::codegen::{self, Options, SourceText};
use flatmachines_compiler::load::{Input, LoadOptions};
use flatmachines_compiler::{Checked, check_input};
use std::path::{Path, PathBuf};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check(path: &Path) -> Checked {
    check_input(
        Input::File(path),
        &LoadOptions {
            display_base: Some(crate_dir()),
        },
    )
}

#[test]
fn diagnostics_of_defective_machines() {
    insta::with_settings!({snapshot_path => "../../snapshots/diagnostics", prepend_module_to_snapshot => false}, {
        insta::glob!("../fixtures/defective", "*.yml", |path| {
            let checked = check(path);
            let json = serde_json::to_string_pretty(&checked.to_json()).unwrap();
            insta::assert_snapshot!(format!("{}\n--- json ---\n{json}", checked.render()));
        });
    });
}

#[test]
fn every_defective_fixture_reports_something() {
    for entry in std::fs::read_dir(crate_dir().join("fixtures/defective")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yml") && !path.ends_with("child_ok.yml") {
            let checked = check(&path);
            assert!(
                !checked.diagnostics.is_empty(),
                "{} has no diagnostics",
                path.display()
            );
        }
    }
}

/// The expansion, as the macro generates it, with machine paths made relative so snapshots do
/// not depend on the checkout.
fn expansion(path: &Path) -> String {
    let path = path.canonicalize().unwrap();
    let (checked, loaded) = codegen::check_recorded(
        Input::File(&path),
        &LoadOptions {
            display_base: Some(crate_dir()),
        },
    );
    assert!(!checked.has_errors(), "{}", checked.render());
    let root = crate_dir().parent().unwrap().canonicalize().unwrap();
    // Remapped before formatting: prettyplease wraps lines by their length, so substituting
    // afterwards would leave the layout depending on the checkout's path.
    let tokens = codegen::generate(
        &checked.project,
        &Options {
            source: SourceText::File(path),
            loaded,
            remap: vec![(root, "$WORKSPACE".into())],
        },
    );
    codegen::pretty(&tokens)
}

#[test]
fn expansion_of_machines() {
    let root = crate_dir().parent().unwrap().to_path_buf();
    let machines = [
        ("hello", root.join("examples/hello/hello.yml")),
        (
            "writer_critic_loop",
            crate_dir().join("fixtures/conformance/writer_critic_loop/machine.yml"),
        ),
        (
            "machine_parallel",
            crate_dir().join("fixtures/conformance/machine_parallel/machine.yml"),
        ),
        (
            "foreach_as_key",
            crate_dir().join("fixtures/conformance/foreach_as_key/machine.yml"),
        ),
        (
            "collisions",
            crate_dir().join("fixtures/valid/collisions.yml"),
        ),
        (
            "triage",
            crate_dir().join("fixtures/compiled/triage/machine.yml"),
        ),
    ];
    for (name, path) in machines {
        insta::with_settings!({snapshot_path => "../../snapshots/expand", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!(name, expansion(&path));
        });
    }
}

#[test]
fn every_conformance_machine_checks_without_errors() {
    let dir = crate_dir().join("fixtures/conformance");
    let mut checked_any = 0;
    for case in std::fs::read_dir(&dir).unwrap() {
        let case = case.unwrap().path();
        let entry = case.join("machine.yml");
        let checked = check(&entry);
        assert!(
            !checked.has_errors(),
            "{}:\n{}",
            entry.display(),
            checked.render()
        );
        checked_any += 1;
    }
    assert!(
        checked_any >= 10,
        "expected the conformance fixtures, found {checked_any}"
    );
}

//! Snapshots of the IR — the one lowering of a machine that both back ends read — for every
//! conformance machine, so that a change to lowering shows up as a reviewable diff
//! (`snapshots/ir/`).

use flatmachines_compiler::codegen::{self, Options, SourceText};
use flatmachines_compiler::load::{Input, LoadOptions};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The IR as JSON, paths relative to the workspace, its two JSON texts shown as JSON.
fn ir_json(path: &Path) -> String {
    let path = path.canonicalize().unwrap();
    let (checked, loaded) = codegen::check_recorded(Input::File(&path), &LoadOptions::default());
    assert!(!checked.has_errors(), "{}", checked.render());
    let root = crate_dir().parent().unwrap().canonicalize().unwrap();
    let bundle = codegen::lower(
        &checked.project,
        &Options {
            source: SourceText::File(path),
            loaded,
            remap: vec![(root, "$WORKSPACE".into())],
        },
    );
    let mut v = serde_json::to_value(&bundle).unwrap();
    for m in v["machines"].as_array_mut().unwrap() {
        let doc: Value = serde_json::from_str(m["document"].as_str().unwrap()).unwrap();
        m["document"] = doc;
        let config: Value =
            serde_json::from_str(m["persistence"]["config"].as_str().unwrap()).unwrap();
        m["persistence"]["config"] = config;
    }
    serde_json::to_string_pretty(&v).unwrap()
}

#[test]
fn ir_of_conformance_machines() {
    let mut seen = 0;
    insta::with_settings!({snapshot_path => "../../snapshots/ir", prepend_module_to_snapshot => false}, {
        insta::glob!("../fixtures/conformance", "*/machine.yml", |path| {
            insta::assert_snapshot!(ir_json(path));
            seen += 1;
        });
    });
    assert!(
        seen >= 10,
        "expected the conformance machines, found {seen}"
    );
}

/// The runtime instantiates what the lowering produced: a compiled machine's IR is the same
/// data the loader builds from the YAML at run time.
#[test]
fn the_compiled_ir_is_the_loaders_ir() {
    flatmachines::include_machine!("../../examples/hello/hello.yml");
    let path = crate_dir().join("../examples/hello/hello.yml");
    let checked = flatmachines_compiler::check_input(
        Input::File(&path.canonicalize().unwrap()),
        &LoadOptions::default(),
    );
    assert_eq!(
        flatmachines_compiler::lower::lower(&checked.project),
        slogan_workshop::IR
    );
}

//! The build.rs helper writes the same module the macro expands to, and fails with the same
//! diagnostics.

use flatmachines_compiler::build::Builder;
use flatmachines_testkit::TempDir;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// An empty output folder, removed at the end of the test.
fn scratch(name: &str) -> TempDir {
    TempDir::with_prefix(&format!("fm-build-{name}-"))
}

#[test]
fn writes_one_file_per_machine_named_after_the_module() {
    let out = scratch("ok");
    let written = Builder::new()
        .cargo_output(false)
        .base_dir(fixtures())
        .out_dir(out.path())
        .machine("conformance/linear_basic/machine.yml")
        .machine("valid/collisions.yml")
        .compile()
        .unwrap();
    let names: Vec<_> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["linear_brief.rs", "m_2_fast.rs"]);
    let text = std::fs::read_to_string(&written[1]).unwrap();
    assert!(text.contains("pub mod m_2_fast"));
    assert!(text.contains("ExtractTagline2"));
    assert!(text.contains("include_str!"));
}

#[test]
fn defects_fail_with_rendered_diagnostics() {
    let out = scratch("bad");
    let err = Builder::new()
        .cargo_output(false)
        .base_dir(fixtures())
        .out_dir(out.path())
        .machine("defective/graph.yml")
        .compile()
        .unwrap_err();
    assert!(err.rendered().contains("error[FM0102]"), "{err}");
    assert!(
        err.rendered().contains("--> defective/graph.yml:9:15"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "nothing is written for a defective machine"
    );
}

#[test]
fn warnings_can_be_denied() {
    let out = scratch("deny");
    let builder = Builder::new()
        .cargo_output(false)
        .base_dir(fixtures())
        .out_dir(out.path())
        .machine("valid/collisions.yml");
    assert!(builder.clone().compile().is_ok());
    let err = builder.deny_warnings(true).compile().unwrap_err();
    assert!(err.rendered().contains("warning[FM0112]"), "{err}");
}

/// A machine that needs a runtime feature the generated code will not link with is refused
/// where the YAML asks for it (`FM0601`); with the feature (the default: all), it compiles.
#[test]
fn runtime_features_the_machine_needs_are_checked() {
    use flatmachines_compiler::check::features::RuntimeFeatures;
    let compile = |features: RuntimeFeatures, machine: &str| {
        let out = scratch("features");
        Builder::new()
            .cargo_output(false)
            .base_dir(fixtures())
            .out_dir(out.path())
            .runtime_features(features)
            .machine(machine)
            .compile()
    };
    let no_cel = RuntimeFeatures {
        cel: false,
        ..RuntimeFeatures::ALL
    };
    let err = compile(no_cel, "compiled/triage/escalate.yml").unwrap_err();
    assert!(err.rendered().contains("error[FM0601]"), "{err}");
    assert!(
        err.rendered()
            .contains("--> compiled/triage/escalate.yml:12:22"),
        "{err}"
    );
    let no_sqlite = RuntimeFeatures {
        sqlite: false,
        ..RuntimeFeatures::ALL
    };
    let err = compile(no_sqlite, "persistence/machines/counter_sqlite.yml").unwrap_err();
    assert!(err.rendered().contains("error[FM0601]"), "{err}");
    assert!(err.rendered().contains("`sqlite` feature"), "{err}");
    // The other feature missing changes nothing.
    compile(no_sqlite, "compiled/triage/escalate.yml").unwrap();
    compile(
        RuntimeFeatures::ALL,
        "persistence/machines/counter_sqlite.yml",
    )
    .unwrap();
}

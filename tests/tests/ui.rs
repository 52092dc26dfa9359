//! trybuild UI tests of the `include_machine!` and `flatmachine!` macros.
//!
//! - `ui/fail/NAME.rs` includes `ui/fail/machines/NAME.yml` (or inline YAML) with one defect and
//!   names the generated module, so the expected `NAME.stderr` also proves that a defective
//!   machine causes no secondary errors ("cannot find module" and the like).
//! - `ui/pass/*.rs` compile and run the generated code.
//!
//! trybuild erases line numbers of every file but the test's own `.rs` file, so a `--> x.yml:9:15`
//! inside a YAML diagnostic is compared only as `--> ui/fail/machines/x.yml`. To still pin the
//! positions, each fail case lists its errors as `//~ ERROR CODE file:line:col` comments (checked
//! by hand against the YAML), and [`fail_annotations_match_compiler`] and the end of [`ui`] compare
//! them with the compiler's diagnostics and with the `.stderr` files.
//!
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test -p flatmachines-tests --test
//! ui`, then read every changed `.stderr`.

use flatmachines_compiler::check_input;
use flatmachines_compiler::load::{Input, LoadOptions};
use std::path::{Path, PathBuf};

#[test]
fn ui() {
    {
        let t = trybuild::TestCases::new();
        t.compile_fail("ui/fail/*.rs");
        t.pass("ui/pass/*.rs");
        // The cases run when `t` is dropped.
    }
    annotations_match_stderr();
}

fn fail_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ui/fail")
}

/// A fail case: its file name, source and `//~ ERROR CODE file:line:col` annotations.
struct Case {
    name: String,
    source: String,
    expected: Vec<String>,
}

fn fail_cases() -> Vec<Case> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fail_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let source = std::fs::read_to_string(&path).unwrap();
            let expected = source
                .lines()
                .filter_map(|l| l.strip_prefix("//~ ERROR "))
                .map(|l| l.trim().to_string())
                .collect();
            Case {
                name: path.file_name().unwrap().to_string_lossy().into_owned(),
                source,
                expected,
            }
        })
        .collect()
}

/// The path given to `include_machine!("…")`, if the case uses it with a string.
fn included_path(source: &str) -> Option<&str> {
    let rest = source.split("include_machine!(\"").nth(1)?;
    rest.split('"').next()
}

/// Every fail case that includes a YAML file: its error diagnostics, as `CODE file:line:col`
/// with paths relative to `ui/fail`, are exactly the annotated ones, in order. This pins the
/// YAML positions, which trybuild cannot compare.
#[test]
fn fail_annotations_match_compiler() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in fail_cases() {
        let Some(path) = included_path(&case.source) else {
            continue;
        };
        let path = fail_dir().join(path);
        if !path.is_file() {
            continue; // the macro's own "not found" error
        }
        checked += 1;
        let result = check_input(
            Input::File(&path),
            &LoadOptions {
                display_base: Some(fail_dir()),
            },
        );
        let actual: Vec<String> = result
            .to_json()
            .into_iter()
            .filter(|d| d.severity.as_str() == "error")
            .map(|d| match (d.file, d.line, d.column) {
                (Some(f), Some(l), Some(c)) => format!("{} {f}:{l}:{c}", d.code),
                _ => format!("{} (no position)", d.code),
            })
            .collect();
        if case.expected.is_empty() {
            failures.push(format!("{}: no `//~ ERROR` annotation", case.name));
        } else if actual != case.expected {
            failures.push(format!(
                "{}:\n  annotated: {:?}\n  compiler:  {:?}\n{}",
                case.name,
                case.expected,
                actual,
                result.render()
            ));
        }
    }
    assert!(
        checked >= 24,
        "only {checked} fail cases include a YAML file"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The `.stderr` of every fail case reports exactly the annotated codes, and positions inside the
/// test's own `.rs` file (inline YAML), which trybuild keeps, are the annotated ones.
fn annotations_match_stderr() {
    let mut failures = Vec::new();
    for case in fail_cases() {
        let stderr_path = fail_dir().join(case.name.replace(".rs", ".stderr"));
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let codes: Vec<&str> = stderr
            .lines()
            .filter_map(|l| l.strip_prefix("error: [FM"))
            .map(|l| &l[..4])
            .collect();
        let expected_codes: Vec<&str> = case.expected.iter().map(|e| &e["FM".len()..6]).collect();
        if codes != expected_codes {
            failures.push(format!(
                "{}: .stderr has codes FM{codes:?}, annotated FM{expected_codes:?}",
                case.name
            ));
        }
        for e in &case.expected {
            let location = e.split_once(' ').map(|x| x.1).unwrap_or_default();
            let in_own_file = location.starts_with(&format!("{}:", case.name));
            let location = if in_own_file {
                location
            } else {
                // trybuild drops the line and column of other files.
                location.split(':').next().unwrap_or_default()
            };
            if !stderr.contains(&format!("--> ui/fail/{location}\n")) {
                failures.push(format!(
                    "{}: .stderr has no `--> ui/fail/{location}`",
                    case.name
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

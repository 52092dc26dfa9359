//! The slim runtime, tested as a user meets it: a fresh crate that depends on `flatmachines`
//! with `default-features = false` and compiles a machine with `include_machine!`.
//!
//! - It links at most 40 crates (normal dependencies, proc-macros excluded), none of them the
//!   YAML parser or the checking front end.
//! - It builds with no C compiler (`CC=false`) and runs the machine.
//! - A CEL machine compiled against that runtime is a compile error (`FM0601`) pointing at the
//!   condition in the YAML, not a failure at run time.
//!
//! The probe crate is built with cargo, offline, in its own target directory under cargo's
//! temporary folder (reused between runs): a cold build takes about a minute on two cores.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Crates that must never reach a compiled machine's binary without the `loader` feature.
const FRONT_END: &[&str] = &[
    "flatmachines-compiler",
    "saphyr-parser",
    "petgraph",
    "strsim",
];

const MACHINE: &str = r#"spec: flatmachine
spec_version: "2.6.0"
data:
  name: slim
  context:
    product: input.product
  agents:
    writer: {type: echo}
  states:
    start:
      type: initial
      transitions:
        - to: write
    write:
      agent: writer
      input:
        slogan: "{{ context.product }}, compiled"
      output_to_context:
        slogan: output.slogan
      transitions:
        - condition: context.slogan != null
          to: done
    done:
      type: final
      output:
        slogan: context.slogan
"#;

const CEL_MACHINE: &str = r#"spec: flatmachine
spec_version: "2.6.0"
data:
  name: slim
  expression_engine: cel
  states:
    start:
      type: initial
      transitions:
        - condition: "context.n > 1"
          to: done
        - to: done
    done:
      type: final
"#;

const MAIN: &str = r#"flatmachines::include_machine!("../machine.yml");

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let out = rt
        .block_on(slim::execute(
            &flatmachines::Runtime::new(),
            serde_json::json!({"product": "slim"}),
        ))
        .unwrap();
    println!("{out}");
}
"#;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Writes the probe crate with `machine` and returns its folder.
fn probe(machine: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("slim-probe");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let runtime = workspace().join("runtime");
    let manifest = format!(
        r#"[package]
name = "slim-probe"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
flatmachines = {{ path = {runtime:?}, default-features = false }}
serde_json = "1"
tokio = {{ version = "1", default-features = false, features = ["rt"] }}

[workspace]
"#
    );
    write_if_changed(&dir.join("Cargo.toml"), &manifest);
    write_if_changed(&dir.join("src/main.rs"), MAIN);
    write_if_changed(&dir.join("machine.yml"), machine);
    // The workspace's lock file pins the same versions, so the probe builds offline.
    let lock = std::fs::read_to_string(workspace().join("Cargo.lock")).unwrap();
    if !dir.join("Cargo.lock").exists() {
        std::fs::write(dir.join("Cargo.lock"), lock).unwrap();
    }
    dir
}

fn write_if_changed(path: &Path, text: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(text) {
        std::fs::write(path, text).unwrap();
    }
}

fn cargo(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .arg("--offline")
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        // No C compiler: a dependency that needs one fails the build.
        .env("CC", "false")
        .env("CXX", "false")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap()
}

/// The build needs the probe's dependencies in cargo's cache, which a workspace build puts
/// there; without them (no network, nothing fetched) the test says so and skips.
fn offline_ready(out: &std::process::Output) -> bool {
    let err = String::from_utf8_lossy(&out.stderr);
    !(err.contains("--offline") && err.contains("not") && err.contains("download"))
}

#[test]
fn a_compiled_machine_links_a_slim_runtime_builds_without_cc_and_refuses_cel() {
    let dir = probe(MACHINE);

    let tree = cargo(
        &dir,
        &["tree", "-e", "normal,no-proc-macro", "--prefix", "none"],
    );
    if !offline_ready(&tree) {
        eprintln!("skipped: the probe's dependencies are not in cargo's cache (no network)");
        return;
    }
    assert!(
        tree.status.success(),
        "{}",
        String::from_utf8_lossy(&tree.stderr)
    );
    let tree = String::from_utf8_lossy(&tree.stdout).into_owned();
    let mut crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "slim-probe")
        .collect();
    crates.sort_unstable();
    crates.dedup();
    eprintln!("{} crates: {}", crates.len(), crates.join(" "));
    assert!(
        crates.len() <= 40,
        "{} crates (at most 40): {}",
        crates.len(),
        crates.join(" ")
    );
    for front in FRONT_END {
        assert!(!crates.contains(front), "`{front}` is linked: {tree}");
    }

    let build = cargo(&dir, &["build", "-q"]);
    assert!(
        build.status.success(),
        "the slim build failed (CC=false):\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let run = Command::new(dir.join("target/debug/slim-probe"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        r#"{"slogan":"slim, compiled"}"#
    );

    let dir = probe(CEL_MACHINE);
    let build = cargo(&dir, &["build", "-q"]);
    let stderr = String::from_utf8_lossy(&build.stderr);
    assert!(
        !build.status.success(),
        "a CEL machine compiled without `cel`"
    );
    assert!(stderr.contains("[FM0601]"), "{stderr}");
    assert!(stderr.contains("machine.yml:10:22"), "{stderr}");
    assert!(stderr.contains("`cel` feature"), "{stderr}");
    // Leave the probe in its buildable state for the next run.
    probe(MACHINE);
}

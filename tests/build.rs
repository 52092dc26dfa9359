//! Compiles a copy of the `machine_child` conformance case, made in `OUT_DIR`, with the build.rs
//! helper. `tests/relocated.rs` moves the copy away before running the compiled machine: a
//! compiled machine must not need its YAML files (machine, agents, child machine) at run time.

use std::path::{Path, PathBuf};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the fixture") {
        let entry = entry.expect("read the fixture");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy a fixture file");
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    let case = manifest.join("fixtures/conformance/machine_child");
    let copy = out.join("relocatable");
    let _ = std::fs::remove_dir_all(&copy);
    copy_dir(&case, &copy);
    // Watch the fixture, not the copy, which the test moves while it runs.
    println!("cargo:rerun-if-changed={}", case.display());
    println!("cargo:rerun-if-changed=build.rs");
    flatmachines_compiler::build::Builder::new()
        .cargo_output(false)
        .base_dir(&copy)
        .out_dir(&out)
        .machine("machine.yml")
        .compile()
        .unwrap_or_else(|e| panic!("\n{e}"));
}

//! Every machine document of the upstream corpus (`../shared/corpus`, present in CI and for
//! developers, absent from a user's clone) must check without errors, unless it is listed with
//! its reason in `fixtures/corpus-known-defective.txt`. A listed file that no longer has errors
//! fails the test too, so the list cannot go stale or grow silently.

use flatmachines_compiler::check_file;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus")
}

fn machine_documents(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            machine_documents(&path, out);
        } else if path
            .extension()
            .is_some_and(|e| e == "yml" || e == "yaml" || e == "json")
        {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().any(|l| l.trim_end() == "spec: flatmachine") {
                out.push(path);
            }
        }
    }
}

fn known_defective() -> BTreeMap<String, String> {
    let text = include_str!("../fixtures/corpus-known-defective.txt");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (file, reason) = l.split_once(" -- ").expect("`path -- reason` lines");
            (file.trim().to_string(), reason.trim().to_string())
        })
        .collect()
}

#[test]
fn corpus_machines_check_without_unexpected_errors() {
    let dir = corpus_dir();
    if !dir.is_dir() {
        eprintln!(
            "notice: {} is absent; skipping the corpus test",
            dir.display()
        );
        return;
    }
    let known = known_defective();
    let mut files = Vec::new();
    machine_documents(&dir, &mut files);
    assert!(
        files.len() >= 60,
        "expected the upstream corpus, found {} machines",
        files.len()
    );
    let mut unexpected = Vec::new();
    let mut stale = Vec::new();
    for file in &files {
        let rel = file
            .strip_prefix(&dir)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let checked = std::panic::catch_unwind(|| check_file(file))
            .unwrap_or_else(|_| panic!("checking {rel} panicked"));
        match (checked.has_errors(), known.contains_key(&rel)) {
            (true, false) => unexpected.push(format!("{rel}:\n{}", checked.render())),
            (false, true) => stale.push(rel),
            _ => {}
        }
    }
    for listed in known.keys() {
        assert!(
            dir.join(listed).is_file(),
            "known-defective entry `{listed}` is not a corpus file"
        );
    }
    assert!(
        unexpected.is_empty(),
        "unexpected errors:\n{}",
        unexpected.join("\n")
    );
    assert!(
        stale.is_empty(),
        "listed as defective but checks clean: {stale:?}"
    );
}

//! The front end never panics: every fixture machine, cut and corrupted at many places, still
//! yields diagnostics (or none), never a panic.

use flatmachines_compiler::check_input;
use flatmachines_compiler::load::{Input, LoadOptions};
use std::path::{Path, PathBuf};

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yml") {
            out.push(path);
        }
    }
}

/// A small deterministic generator, so a failure reproduces.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

const INSERTS: &[&str] = &[
    "{{",
    "}}",
    "{%",
    ":",
    "- ",
    "\n",
    "  ",
    "[",
    "]",
    "{",
    "}",
    "'",
    "\"",
    "|",
    ">",
    "&a",
    "*a",
    "<<: *a",
    "é",
    "\t",
    "#",
    "?",
    "!!int ",
    "to: ",
    "type: final\n",
    "condition: -",
];

#[test]
fn corrupted_machines_never_panic() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    files.sort();
    assert!(files.len() > 20);
    let mut rng = Lcg(7);
    let mut runs = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let chars: Vec<char> = text.chars().collect();
        for _ in 0..40 {
            let mut mutated = chars.clone();
            for _ in 0..1 + rng.next(3) {
                let at = rng.next(mutated.len() + 1);
                match rng.next(3) {
                    0 if at < mutated.len() => {
                        let len = 1 + rng.next(20);
                        mutated.drain(at..(at + len).min(mutated.len()));
                    }
                    1 => mutated
                        .splice(at..at, INSERTS[rng.next(INSERTS.len())].chars())
                        .for_each(drop),
                    _ => mutated.truncate(at),
                }
            }
            let text: String = mutated.into_iter().collect();
            let result = std::panic::catch_unwind(|| {
                check_input(
                    Input::Inline {
                        text: text.clone(),
                        path: file,
                        origin: (1, 1),
                    },
                    &LoadOptions::default(),
                )
                .render()
                .len()
            });
            assert!(
                result.is_ok(),
                "panic on a mutation of {}:\n{text}",
                file.display()
            );
            runs += 1;
        }
    }
    assert!(runs > 1000);
}

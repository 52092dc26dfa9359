//! The layering rule of the runtime crate (`docs/architecture.md`, "Layers"), enforced on its
//! sources: a module may use only modules of its own layer or the layers below it.
//!
//! | layer | modules |
//! |---|---|
//! | 0 definitions | `state` (and the `flatmachines-ir` crate) |
//! | 1 pure evaluation | `py`, `template`, `condition`, `yaml` |
//! | 2 ports and their backends | `agent`, `persistence`, `hooks`, `invoker`, `results`, `tools`, `signals`, `error` |
//! | 3 engine | `machine`, `peers`, `strategy`, `executor`, `loader` |
//! | 4 runtime | `runtime`, `resumer`, `compiled`, the crate root, the CLI |
//!
//! Backends (`agent::echo`, `persistence::sqlite`, `invoker::subprocess`, …) sit in layer 2 with
//! the traits they implement, so the rule also says they never reach into the engine or the
//! `Runtime`. Test code (`#[cfg(test)]` modules, `tests.rs` files) is exempt.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const LAYERS: &[(&str, u8)] = &[
    ("state", 0),
    ("py", 1),
    ("template", 1),
    ("condition", 1),
    ("yaml", 1),
    ("agent", 2),
    ("persistence", 2),
    ("hooks", 2),
    ("invoker", 2),
    ("results", 2),
    ("tools", 2),
    ("signals", 2),
    ("error", 2),
    ("machine", 3),
    ("peers", 3),
    ("strategy", 3),
    ("executor", 3),
    ("loader", 3),
    ("runtime", 4),
    ("resumer", 4),
    ("compiled", 4),
    ("lib", 4),
    ("bin", 4),
    // The root's re-exports of other crates, named through `crate::`: only the top may.
    ("async_trait", 4),
    ("flatmachine", 4),
    ("include_machine", 4),
    ("ir", 4),
    ("compiler", 4),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's code without its test module and comments.
fn code(text: &str) -> String {
    let mut end = text.len();
    for marker in ["#[cfg(test)]\nmod ", "#[cfg(all(test"] {
        if let Some(i) = text.find(marker) {
            end = end.min(i);
        }
    }
    text[..end]
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every top-level module the code names as `crate::x` or inside `crate::{x, y::z}`.
fn uses(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        // `flatmachines_crate::`-like identifiers are not `crate::`.
        let boundary = rest[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if boundary {
            if let Some(group) = after.strip_prefix('{') {
                let close = group.find('}').unwrap_or(group.len());
                for item in group[..close].split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    out.push(name);
                }
            } else {
                out.push(
                    after
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect(),
                );
            }
        }
        rest = after;
    }
    // Types re-exported at the root (`crate::Error`) name no module.
    out.retain(|n| n.chars().next().is_some_and(|c| c.is_ascii_lowercase()));
    out
}

#[test]
fn modules_use_only_their_own_layer_and_the_layers_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut violations = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        if rel
            .file_name()
            .is_some_and(|n| n == "tests.rs" || n == "contract_tests.rs")
        {
            continue;
        }
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        let own = layer(&module).unwrap_or_else(|| {
            panic!(
                "{}: module `{module}` has no layer in LAYERS",
                rel.display()
            )
        });
        let text = std::fs::read_to_string(file).unwrap();
        for used in uses(&code(&text)) {
            let Some(theirs) = layer(&used) else {
                panic!(
                    "{}: `crate::{used}` is not in LAYERS; give it a layer",
                    rel.display()
                );
            };
            if theirs > own {
                violations
                    .entry(rel.display().to_string())
                    .or_insert_with(Vec::new)
                    .push(format!("`{used}` (layer {theirs}) from layer {own}"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "modules reach up the layers:\n{}",
        violations
            .iter()
            .map(|(f, v)| format!("  {f}: {}", v.join(", ")))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_scanner_sees_plain_and_grouped_uses_but_not_comments() {
    let text = "use crate::agent::X;\nuse crate::{executor::Y, runtime};\n// crate::loader\nfn f() { crate::machine::g(); my_crate::nope(); }\n#[cfg(test)]\nmod tests { use crate::compiled; }";
    assert_eq!(
        uses(&code(text)),
        ["agent", "executor", "runtime", "machine"]
    );
}

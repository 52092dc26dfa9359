//! What a machine needs from the runtime it is compiled against (`FM06xx`). Only the doors
//! that compile a machine into a program know which runtime features it will link with: the
//! macros (the runtime forwards its features to them) and the build.rs helper (told by its
//! caller). A machine that needs a missing feature is refused where it is written, not when it
//! runs.

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::load::Project;

/// The parts of the `flatmachines` runtime a compiled machine will link with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuntimeFeatures {
    /// The `cel` feature: `expression_engine: cel` conditions can be evaluated.
    pub cel: bool,
    /// The `sqlite` feature: `persistence.backend: sqlite` is available.
    pub sqlite: bool,
    /// The `jsonschema` feature: `mdap_voting` checks candidates against
    /// `metadata.validation` (without it every candidate fails, as in the reference when its
    /// schema library is missing).
    pub jsonschema: bool,
    /// The `regex` feature: `mdap_voting` reads answers with `metadata.parsing` patterns.
    pub regex: bool,
}

/// Every feature.
impl Default for RuntimeFeatures {
    fn default() -> Self {
        RuntimeFeatures::ALL
    }
}

impl RuntimeFeatures {
    /// Every feature (what the CLI and `flatmachines check` have).
    pub const ALL: RuntimeFeatures = RuntimeFeatures {
        cel: true,
        sqlite: true,
        jsonschema: true,
        regex: true,
    };
}

/// The `FM0601` errors of every machine of `project` for a runtime with `features`.
pub fn check_features(project: &Project, features: RuntimeFeatures) -> Diagnostics {
    let mut diags = Diagnostics::new();
    for m in &project.machines {
        let data = &m.doc.data;
        let cel = data
            .expression_engine
            .as_ref()
            .is_some_and(|e| e.value == "cel");
        if cel && !features.cel {
            // The first condition the CEL engine would have to evaluate.
            let first = data
                .states
                .iter()
                .flat_map(|s| &s.transitions)
                .filter_map(|t| t.condition.as_ref())
                .find(|c| !c.value.trim().is_empty());
            if let Some(c) = first {
                diags.push(
                    Diagnostic::new(
                        Code::MissingRuntimeFeature,
                        c.span,
                        format!(
                            "condition `{}` is CEL (`expression_engine: cel`), but flatmachines \
                             is built without its `cel` feature",
                            c.value.trim()
                        ),
                    )
                    .help("enable it: `flatmachines = { version = \"…\", features = [\"cel\"] }`"),
                );
            }
        }
        if !features.sqlite
            && let Some(b) = data.persistence.as_ref().and_then(|p| p.backend.as_ref())
            && b.value == "sqlite"
        {
            diags.push(
                Diagnostic::new(
                    Code::MissingRuntimeFeature,
                    b.span,
                    "`persistence.backend: sqlite`, but flatmachines is built without its \
                     `sqlite` feature",
                )
                .help("enable it: `flatmachines = { version = \"…\", features = [\"sqlite\"] }`"),
            );
        }
        for (agent, meta) in crate::check::mdap::voting_agents(project, m) {
            for (k, v) in meta {
                let (feature, what) = match k.key_str().as_deref() {
                    Some("parsing") if !features.regex && has_pattern(v) => (
                        "regex",
                        "reads its answers with `metadata.parsing` patterns",
                    ),
                    Some("validation") if !features.jsonschema && v.as_map().is_some() => (
                        "jsonschema",
                        "checks its answers against the `metadata.validation` JSON Schema",
                    ),
                    _ => continue,
                };
                diags.push(
                    Diagnostic::new(
                        Code::MissingRuntimeFeature,
                        k.span,
                        format!(
                            "agent `{agent}` votes (`mdap_voting`) and {what}, but flatmachines \
                             is built without its `{feature}` feature"
                        ),
                    )
                    .help(format!(
                        "enable it: `flatmachines = {{ version = \"…\", features = [\"{feature}\"] }}`"
                    )),
                );
            }
        }
    }
    diags
}

/// Whether a `metadata.parsing` map has a field with a non-empty `pattern`.
fn has_pattern(parsing: &crate::yaml::Node) -> bool {
    parsing.as_map().is_some_and(|fields| {
        fields.iter().any(|(_, f)| {
            f.as_map().is_some_and(|f| {
                f.iter().any(|(k, v)| {
                    k.key_str().as_deref() == Some("pattern")
                        && v.as_str().is_some_and(|p| !p.is_empty())
                })
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Input, LoadOptions, MemoryFs, load_with};
    use std::path::Path;

    const MACHINE: &str = "spec: flatmachine\ndata:\n  name: vote\n  agents: {judge: ./judge.yml}\n  states:\n    start:\n      type: initial\n      agent: judge\n      execution: {type: mdap_voting}\n      transitions: [{to: done}]\n    done: {type: final}\n";
    const AGENT: &str = "spec: flatagent\ndata:\n  model: {provider: openai, name: m}\n  system: s\n  user: u\nmetadata:\n  parsing:\n    answer: {pattern: 'A: (\\d+)', type: int}\n  validation: {type: object}\n";

    fn missing(features: RuntimeFeatures) -> Vec<String> {
        let fs = MemoryFs::new()
            .file("/m/machine.yml", MACHINE.as_bytes().to_vec())
            .file("/m/judge.yml", AGENT.as_bytes().to_vec());
        let project = load_with(
            Input::File(Path::new("/m/machine.yml")),
            &LoadOptions {
                display_base: Some("/m".into()),
            },
            &fs,
        );
        check_features(&project, features)
            .iter()
            .map(|d| {
                let j = d.to_json(&project.sources);
                format!(
                    "{} {}:{}:{} {}",
                    j.code,
                    j.file.unwrap_or_default(),
                    j.line.unwrap_or(0),
                    j.column.unwrap_or(0),
                    j.message
                )
            })
            .collect()
    }

    #[test]
    fn voting_agents_need_the_regex_and_jsonschema_features_they_use() {
        assert!(missing(RuntimeFeatures::ALL).is_empty());
        let none = RuntimeFeatures {
            jsonschema: false,
            regex: false,
            ..RuntimeFeatures::ALL
        };
        let got = missing(none);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].starts_with("FM0601 judge.yml:7:3 "), "{got:?}");
        assert!(got[0].contains("`regex` feature"), "{got:?}");
        assert!(got[1].starts_with("FM0601 judge.yml:9:3 "), "{got:?}");
        assert!(got[1].contains("`jsonschema` feature"), "{got:?}");
    }
}

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
    }
    diags
}

//! What the checks' unit tests share.

use crate::check::check_project;
use crate::diag::JsonDiagnostic;
use crate::load::{Input, LoadOptions, MemoryFs, load_with};
use std::path::Path;

/// Checks `/m/machine.yml` with the other files next to it; every diagnostic as
/// `CODE file:line:col`, and the diagnostics themselves.
pub(super) fn check_files(files: &[(&str, &str)]) -> (Vec<String>, Vec<JsonDiagnostic>) {
    let mut fs = MemoryFs::new();
    for (name, text) in files {
        fs = fs.file(format!("/m/{name}"), text.as_bytes().to_vec());
    }
    let project = load_with(
        Input::File(Path::new("/m/machine.yml")),
        &LoadOptions {
            display_base: Some("/m".into()),
        },
        &fs,
    );
    let diags: Vec<JsonDiagnostic> = check_project(&project)
        .iter()
        .map(|d| d.to_json(&project.sources))
        .collect();
    let short = diags
        .iter()
        .map(|d| {
            format!(
                "{} {}:{}:{}",
                d.code,
                d.file.as_deref().unwrap_or("-"),
                d.line.unwrap_or(0),
                d.column.unwrap_or(0)
            )
        })
        .collect();
    (short, diags)
}

//! YAML read at run time (feature `loader`): agent files and profiles named at run time, and
//! configs the reference wrote into a config store. Pure functions over text, read with the
//! compiler's YAML parser (PyYAML's typing of scalars).

use serde_json::Value;

/// A YAML document as JSON, as the reference's `yaml.safe_load` would see it; `None` when it
/// does not parse. (Agent files and profiles named at run time, configs written by the
/// reference.)
#[cfg_attr(not(any(feature = "http", feature = "sqlite")), allow(dead_code))]
pub(crate) fn yaml_to_json(text: &str) -> Option<Value> {
    use flatmachines_compiler::source::{SourceFile, SourceMap};
    let mut map = SourceMap::new();
    let id = map.add(SourceFile::new(
        "document".into(),
        "document".into(),
        text.to_string(),
    ));
    let mut diags = flatmachines_compiler::diag::Diagnostics::new();
    flatmachines_compiler::yaml::parse(map.get(id), id, &mut diags).map(|n| n.to_json())
}

/// The `data` of a profiles document (the whole document when it has no `spec`).
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) fn profiles_from_text(text: &str) -> Option<Value> {
    let doc = yaml_to_json(text)?;
    match doc.get("data") {
        Some(d) if doc.get("spec").is_some() => Some(d.clone()),
        _ => Some(doc),
    }
}

//! YAML read at run time (feature `loader`): agent files and profiles named at run time, and
//! configs the reference wrote into a config store. Pure functions over text, read with the
//! compiler's YAML parser (PyYAML's typing of scalars).

use serde_json::Value;

/// A YAML file named at run time, read as the compiler reads files: only a regular file (a
/// FIFO would block for ever, `/dev/zero` would never end), at most
/// `flatmachines_compiler::load::MAX_FILE_BYTES`, and UTF-8.
pub(crate) fn read_file(path: &std::path::Path) -> std::io::Result<String> {
    use flatmachines_compiler::load::{MAX_FILE_BYTES, read_regular_file};
    let bytes = read_regular_file(path, MAX_FILE_BYTES)?;
    String::from_utf8(bytes).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the file is not UTF-8 text",
        )
    })
}

/// A YAML document as JSON, as the reference's `yaml.safe_load` would see it; `None` when it
/// does not parse. (Agent files and profiles named at run time, configs written by the
/// reference.) The compiler's parser bounds nesting and alias expansion
/// (`flatmachines_compiler::yaml::MAX_DEPTH`, `MAX_NODES`), so a hostile document is `None`
/// in bounded time and memory; reading the file is the caller's to bound
/// (`flatmachines_compiler::load::read_regular_file`).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_documents_are_refused_by_the_bounded_parser() {
        // An alias bomb (9^9 nodes) and 60 000 levels of nesting: both past the compiler's
        // limits, so refused instead of exhausting memory or the stack.
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for w in names.windows(2) {
            let aliases = vec![format!("*{}", w[0]); 9].join(", ");
            bomb.push_str(&format!("{}: &{} [{aliases}]\n", w[1], w[1]));
        }
        assert_eq!(yaml_to_json(&bomb), None);
        assert_eq!(yaml_to_json(&format!("{}1", "- ".repeat(60_000))), None);
        assert_eq!(
            yaml_to_json("a: [1, 2]"),
            Some(serde_json::json!({"a": [1, 2]}))
        );
    }
}

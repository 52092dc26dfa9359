//! Rust names for YAML names: the module of a machine, the variants of its `State` enum and the
//! fields of its `Input` and `Output`.
//!
//! The rules are part of the public contract (documented in `docs/generated-code.md`):
//! module names are snake_case of `data.name`, variants UpperCamelCase of the state name;
//! characters that cannot appear in an identifier are dropped, a leading digit gets a prefix
//! (`m_` for modules, `S` for variants), keywords get a trailing `_`, and when two state names
//! map to the same variant the later ones get `2`, `3`, … in document order.

use heck::{ToSnakeCase, ToUpperCamelCase};

const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "type",
    "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "try", "typeof", "unsized", "virtual", "yield", "union", "_",
];

fn identifier(raw: &str, digit_prefix: &str, empty: &str) -> String {
    let cleaned: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let mut name = if cleaned.is_empty() {
        empty.to_string()
    } else if cleaned.starts_with(|c: char| c.is_ascii_digit()) {
        format!("{digit_prefix}{cleaned}")
    } else {
        cleaned
    };
    if KEYWORDS.contains(&name.as_str()) {
        name.push('_');
    }
    name
}

/// The module name for machine `name` (`slogan-workshop` → `slogan_workshop`).
pub fn module_name(name: Option<&str>) -> String {
    let name = name.unwrap_or("unnamed-machine");
    identifier(&name.to_snake_case(), "m_", "unnamed_machine")
}

/// The `State` variant names for the states, in order, with collisions numbered.
/// Returns the names and the indices of states whose name was numbered.
pub fn variant_names<'a>(states: impl IntoIterator<Item = &'a str>) -> (Vec<String>, Vec<usize>) {
    let mut out: Vec<String> = Vec::new();
    let mut renamed = Vec::new();
    let mut unique = Unique::default();
    for (i, s) in states.into_iter().enumerate() {
        let base = identifier(&s.to_upper_camel_case(), "S", "State");
        let name = unique.take(base.clone(), |_| false);
        if name != base {
            renamed.push(i);
        }
        out.push(name);
    }
    (out, renamed)
}

/// Field names for map keys (the typed `Input` and `Output` of a machine), in order: snake_case
/// with the same cleaning as the other names (leading digit gets `f_`, keywords a trailing `_`);
/// names in `reserved` or already taken get `2`, `3`, ….
pub fn field_names<'a>(keys: impl IntoIterator<Item = &'a str>, reserved: &[&str]) -> Vec<String> {
    let mut unique = Unique::default();
    keys.into_iter()
        .map(|key| {
            let base = identifier(&key.to_snake_case(), "f_", "field");
            unique.take(base, |name| reserved.contains(&name))
        })
        .collect()
}

/// Names handed out so far. Each name is the smallest free one of `base`, `base2`, `base3`, …;
/// lookups are hashed and each base resumes its suffixes where it stopped, so a machine with
/// 100 000 states is named in linear time (a linear scan per name was quadratic).
#[derive(Default)]
struct Unique {
    taken: std::collections::HashSet<String>,
    /// The next suffix to try per base: every smaller one is taken (and stays taken).
    next: std::collections::HashMap<String, usize>,
}

impl Unique {
    fn take(&mut self, base: String, reserved: impl Fn(&str) -> bool) -> String {
        let free = |taken: &std::collections::HashSet<String>, name: &str| {
            !taken.contains(name) && !reserved(name)
        };
        let name = if free(&self.taken, &base) {
            base
        } else {
            let n = self.next.entry(base.clone()).or_insert(2);
            loop {
                let name = format!("{base}{n}");
                *n += 1;
                if free(&self.taken, &name) {
                    break name;
                }
            }
        };
        self.taken.insert(name.clone());
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names() {
        assert_eq!(module_name(Some("slogan-workshop")), "slogan_workshop");
        assert_eq!(
            module_name(Some("Writer Critic Loop")),
            "writer_critic_loop"
        );
        assert_eq!(module_name(Some("2fast")), "m_2fast");
        assert_eq!(module_name(Some("type")), "type_");
        assert_eq!(module_name(None), "unnamed_machine");
        assert_eq!(module_name(Some("---")), "unnamed_machine");
    }

    #[test]
    fn variant_names_are_unique() {
        let (names, renamed) = variant_names([
            "start",
            "extract_tagline",
            "extractTagline",
            "self",
            "1st",
            "done!",
            "ü",
        ]);
        assert_eq!(
            names,
            [
                "Start",
                "ExtractTagline",
                "ExtractTagline2",
                "Self_",
                "S1st",
                "Done",
                "State"
            ]
        );
        assert_eq!(renamed, [2]);
    }

    #[test]
    fn suffixes_are_the_smallest_free_ones() {
        let (names, renamed) = variant_names(["a", "a", "a2", "a", "a3", "a"]);
        assert_eq!(names, ["A", "A2", "A22", "A3", "A32", "A4"]);
        assert_eq!(renamed, [1, 2, 3, 4, 5]);
        let many: Vec<String> = (0..50_000).map(|_| "x".to_string()).collect();
        let (names, _) = variant_names(many.iter().map(String::as_str));
        assert_eq!(names[49_999], "X50000");
    }

    #[test]
    fn field_names_are_snake_case_and_unique() {
        assert_eq!(
            field_names(
                ["code", "userName", "user_name", "type", "2nd", "extra", "-"],
                &["extra"]
            ),
            [
                "code",
                "user_name",
                "user_name2",
                "type_",
                "f_2nd",
                "extra2",
                "field"
            ]
        );
    }
}

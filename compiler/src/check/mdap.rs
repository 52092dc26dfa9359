//! Checks of the agents `mdap_voting` states run (`execution.md` §11.4): the `metadata` the
//! strategy reads. What the reference would raise on at run time (a pattern that does not
//! compile, a misshapen `mdap` or `parsing`), or would silently never match (a pattern without a
//! capture group, a conversion `type` it does not know and reads as `str`, a `validation` that
//! is not a schema), is reported here, where the pattern was written.

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::load::{LoadedMachine, Project};
use crate::yaml::{Node, Value};
use std::collections::BTreeSet;

/// The `type`s `metadata.parsing` converts a captured group with.
const FIELD_TYPES: &[&str] = &["str", "int", "json"];

/// Checks the `metadata` of every agent one of the machine's `mdap_voting` states runs (each
/// agent once).
pub(crate) fn check_machine(project: &Project, m: &LoadedMachine, diags: &mut Diagnostics) {
    for (agent, meta) in voting_agents(project, m) {
        check_metadata(meta, agent, diags);
    }
}

/// The agents the machine's `mdap_voting` states run, each once, by the name the first such
/// state uses, with their `metadata` map (agents without one are left out).
pub(crate) fn voting_agents<'p>(
    project: &'p Project,
    m: &'p LoadedMachine,
) -> Vec<(&'p str, &'p [(Node, Node)])> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for s in &m.doc.data.states {
        let voting = s
            .execution
            .as_ref()
            .and_then(|e| e.ty.as_ref())
            .is_some_and(|t| t.value == "mdap_voting");
        let Some(agent) = s.agent.as_ref().filter(|_| voting) else {
            continue;
        };
        // An unknown agent is `FM0201`, reported with the other references.
        let Some(idx) = m
            .doc
            .data
            .agents
            .iter()
            .position(|a| a.name.value == agent.value)
        else {
            continue;
        };
        let Some(Some(id)) = m.agents.get(idx) else {
            continue;
        };
        if !seen.insert(id.0) {
            continue;
        }
        let doc = &project.agents[id.0].doc;
        if let Some(meta) = doc.metadata.as_ref().and_then(Node::as_map) {
            out.push((agent.value.as_str(), meta));
        }
    }
    out
}

fn invalid(node: &Node, message: String, help: &str) -> Diagnostic {
    Diagnostic::new(Code::InvalidMdapMetadata, node.span, message).help(help.to_string())
}

fn check_metadata(meta: &[(Node, Node)], agent: &str, diags: &mut Diagnostics) {
    for (k, v) in meta {
        match k.key_str().as_deref() {
            Some("mdap") => check_overrides(v, agent, diags),
            Some("parsing") => check_parsing(v, agent, diags),
            Some("validation") => {
                // A truthy schema that is neither a map nor `true` fails every candidate (a
                // falsy one checks nothing).
                let schema_like = match &v.value {
                    Value::Map(_) | Value::Bool(_) | Value::Null => true,
                    Value::Str(s) => s.is_empty(),
                    Value::Seq(items) => items.is_empty(),
                    Value::Int(i) => *i == 0,
                    Value::Float(f) => *f == 0.0,
                };
                if !schema_like {
                    diags.push(invalid(
                        v,
                        format!("`metadata.validation` of agent `{agent}` is {}, not a JSON Schema: every `mdap_voting` candidate would fail validation", v.kind_name()),
                        "write the JSON Schema of the parsed candidate as a map, e.g. `{type: object, required: [answer]}`",
                    ));
                }
            }
            _ => {}
        }
    }
}

/// `metadata.mdap`: a map whose `k_margin`, `max_candidates` and `max_response_tokens`, when
/// set, are positive integers.
fn check_overrides(v: &Node, agent: &str, diags: &mut Diagnostics) {
    let Some(entries) = v.as_map() else {
        diags.push(invalid(
            v,
            format!("`metadata.mdap` of agent `{agent}` is {}, not a map: `mdap_voting` fails reading it", v.kind_name()),
            "write `mdap: {k_margin: 3, max_candidates: 10}`",
        ));
        return;
    };
    for (k, n) in entries {
        let Some(key) = k.key_str() else { continue };
        if !matches!(
            key.as_str(),
            "k_margin" | "max_candidates" | "max_response_tokens"
        ) {
            continue;
        }
        // Falsy values (null, 0) are ignored by the reference: they do not override.
        let ok = match n.value {
            Value::Null => true,
            Value::Int(i) => i >= 0,
            _ => false,
        };
        if !ok {
            diags.push(invalid(
                n,
                format!("`metadata.mdap.{key}` of agent `{agent}` is not a non-negative integer"),
                "write a whole number of votes, samples or tokens",
            ));
        }
    }
}

/// `metadata.parsing`: field → `{pattern, type}`, each pattern a Python regular expression with a
/// capture group.
fn check_parsing(v: &Node, agent: &str, diags: &mut Diagnostics) {
    let Some(fields) = v.as_map() else {
        diags.push(invalid(
            v,
            format!("`metadata.parsing` of agent `{agent}` is {}, not a map: `mdap_voting` fails reading it", v.kind_name()),
            "write `parsing: {answer: {pattern: \"ANSWER: (\\\\d+)\", type: int}}`",
        ));
        return;
    };
    for (k, config) in fields {
        let field = k.key_str().unwrap_or_default();
        let Some(entries) = config.as_map() else {
            diags.push(invalid(
                config,
                format!("`metadata.parsing.{field}` of agent `{agent}` is {}, not a map of `pattern` and `type`", config.kind_name()),
                "write `{pattern: \"...(group)...\", type: str}`",
            ));
            continue;
        };
        for (k, n) in entries {
            match k.key_str().as_deref() {
                Some("pattern") => check_pattern(n, &field, agent, diags),
                Some("type") => {
                    let known = match &n.value {
                        Value::Str(t) => FIELD_TYPES.contains(&t.as_str()),
                        // `type: null` reads as `str`.
                        Value::Null => true,
                        _ => false,
                    };
                    if !known {
                        let shown = n
                            .as_str()
                            .map_or_else(|| n.kind_name().to_string(), |t| format!("`{t}`"));
                        diags.push(invalid(
                            n,
                            format!("`metadata.parsing.{field}.type` of agent `{agent}` is {shown}: the reference reads anything but `int` and `json` as `str`"),
                            "use `str`, `int` or `json`",
                        ));
                    }
                }
                _ => {}
            }
        }
    }
}

fn check_pattern(n: &Node, field: &str, agent: &str, diags: &mut Diagnostics) {
    let pattern = match &n.value {
        Value::Str(p) => p,
        // Empty values skip the field, as in the reference.
        Value::Null | Value::Bool(false) => return,
        _ => {
            diags.push(invalid(
                n,
                format!("`metadata.parsing.{field}.pattern` of agent `{agent}` is {}, not a regular expression", n.kind_name()),
                "write the pattern as a string",
            ));
            return;
        }
    };
    if pattern.is_empty() {
        return;
    }
    match flatmachines_ir::pyre::compile(pattern) {
        Err(e) => diags.push(invalid(
            n,
            format!("`metadata.parsing.{field}.pattern` of agent `{agent}` does not compile: {e}"),
            "patterns are Python regular expressions, searched with `.` matching newlines; escape literal `(`, `[`, `{` and `\\` (in YAML double quotes, `\\\\`)",
        )),
        Ok(re) if re.captures_len() < 2 => diags.push(invalid(
            n,
            format!("`metadata.parsing.{field}.pattern` of agent `{agent}` has no capture group: the value is group 1, so no response would ever yield a candidate"),
            "put the part to keep in parentheses, e.g. `ANSWER: (\\d+)`",
        )),
        Ok(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::check::test_support::check_files;

    const MACHINE: &str = "spec: flatmachine
spec_version: \"2.6.0\"
data:
  name: t
  agents:
    voter: ./voter.yml
  states:
    start:
      type: initial
      transitions: [{to: vote}]
    vote:
      agent: voter
      execution: {type: mdap_voting, k_margin: 2}
      transitions: [{to: done}]
    done:
      type: final
      output: {ok: true}
";

    /// The codes for an agent whose `metadata` (indented by 2, from line 8 on) is `meta`.
    fn codes(meta: &str) -> Vec<String> {
        let agent = format!(
            "spec: flatagent
spec_version: \"2.6.0\"
data:
  name: voter
  model: {{provider: openai, name: m}}
  user: hi
metadata:
{meta}
"
        );
        check_files(&[("machine.yml", MACHINE), ("voter.yml", &agent)])
            .0
            .into_iter()
            .filter(|c| c.starts_with("FM0412"))
            .collect()
    }

    #[test]
    fn good_metadata_passes() {
        let meta = r#"  parsing:
    move: {pattern: "move\\s*=\\s*(\\[.*?\\])", type: json}
    n: {pattern: "(?<=N=)(\\d+)$", type: int}
    note: {pattern: "NOTE: (.*)"}
  validation: {type: object, required: [move]}
  mdap: {k_margin: 3, max_candidates: 10, max_response_tokens: 0, max_steps: 20}"#;
        assert_eq!(codes(meta), Vec::<String>::new());
    }

    #[test]
    fn a_pattern_that_does_not_compile_is_pointed_at() {
        let meta = "  parsing:\n    n: {pattern: \"N=(\\\\d+\", type: int}";
        assert_eq!(codes(meta), ["FM0412 voter.yml:9:18"]);
    }

    #[test]
    fn patterns_need_a_group_and_known_types() {
        let meta =
            "  parsing:\n    a: {pattern: \"N=\\\\d+\"}\n    b: {pattern: \"(x)\", type: float}";
        assert_eq!(
            codes(meta),
            ["FM0412 voter.yml:9:18", "FM0412 voter.yml:10:31"]
        );
    }

    #[test]
    fn misshapen_sections_are_reported() {
        let meta = "  mdap: [3]\n  parsing: {a: \"(x)\"}\n  validation: \"object\"";
        assert_eq!(
            codes(meta),
            [
                "FM0412 voter.yml:8:9",
                "FM0412 voter.yml:9:16",
                "FM0412 voter.yml:10:15"
            ]
        );
        let meta = "  mdap: {k_margin: \"3\", max_candidates: 2.5}";
        assert_eq!(
            codes(meta),
            ["FM0412 voter.yml:8:20", "FM0412 voter.yml:8:41"]
        );
    }

    #[test]
    fn agents_of_other_states_are_not_checked() {
        let machine = MACHINE.replace("execution: {type: mdap_voting, k_margin: 2}", "input: {}");
        let agent = "spec: flatagent
spec_version: \"2.6.0\"
data:
  name: voter
  model: {provider: openai, name: m}
  user: hi
metadata:
  parsing: {n: {pattern: \"(\"}}
";
        let codes = check_files(&[("machine.yml", &machine), ("voter.yml", agent)]).0;
        assert!(!codes.iter().any(|c| c.starts_with("FM0412")), "{codes:?}");
    }
}

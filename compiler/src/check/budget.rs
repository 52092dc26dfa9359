//! `settings.max_cost`: the spend limit of a run, in USD (beyond the reference, which has
//! none). The runtime stops a run before the agent call that would start with the machine's
//! `total_cost` at or above it; a value it cannot compare against is a mistake the compiler can
//! point at before anything is spent.

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::load::LoadedMachine;
use crate::yaml::{Node, Value};

/// Reports a `settings.max_cost` that is not a non-negative number (`FM0413`). `null` is no
/// budget, as leaving the key out; `.inf` is a budget nothing reaches, which is allowed.
pub(crate) fn check_machine(m: &LoadedMachine, diags: &mut Diagnostics) {
    let Some(v) = m.doc.data.settings.as_ref().and_then(|s| s.get("max_cost")) else {
        return;
    };
    let problem = match &v.value {
        Value::Null => return,
        Value::Int(i) if *i >= 0 => return,
        Value::Float(f) if *f >= 0.0 => return,
        Value::Int(_) | Value::Float(_) if v.as_f64().is_some_and(f64::is_nan) => {
            "is not a number".to_string()
        }
        Value::Int(_) | Value::Float(_) => "is negative".to_string(),
        // A quoted number is text to the runtime, which would silently set no budget.
        _ => format!("is {}, not a number", Node::kind_name(v)),
    };
    let spelled = v.key_str().unwrap_or_else(|| v.kind_name().to_string());
    diags.push(
        Diagnostic::new(
            Code::InvalidBudget,
            v.span,
            format!("`settings.max_cost: {spelled}` {problem}"),
        )
        .help("write the budget in USD as a number at least 0, e.g. `max_cost: 2.5`; leave it out for no budget"),
    );
}

#[cfg(test)]
mod tests {
    use crate::check::test_support::check_files;

    /// The `FM0413` diagnostics of a machine whose `settings` block is `settings`.
    fn codes(settings: &str) -> Vec<String> {
        let machine = format!(
            "spec: flatmachine
spec_version: \"2.6.0\"
data:
  name: budgeted
  settings: {settings}
  states:
    start:
      type: initial
      transitions: [{{to: done}}]
    done:
      type: final
      output: {{ok: true}}
"
        );
        check_files(&[("machine.yml", &machine)])
            .0
            .into_iter()
            .filter(|c| c.starts_with("FM0413"))
            .collect()
    }

    #[test]
    fn non_negative_numbers_and_null_pass() {
        for ok in [
            "{max_cost: 0}",
            "{max_cost: 2.5}",
            "{max_cost: 10}",
            "{max_cost: .inf}",
            "{max_cost: null}",
            "{other: -1}",
            "{}",
        ] {
            assert_eq!(codes(ok), Vec::<String>::new(), "{ok}");
        }
    }

    #[test]
    fn negatives_text_and_other_kinds_are_pointed_at() {
        assert_eq!(codes("{max_cost: -1}"), ["FM0413 machine.yml:5:24"]);
        assert_eq!(codes("{max_cost: -0.5}"), ["FM0413 machine.yml:5:24"]);
        assert_eq!(codes("{max_cost: \"2.5\"}"), ["FM0413 machine.yml:5:24"]);
        assert_eq!(codes("{max_cost: .nan}"), ["FM0413 machine.yml:5:24"]);
        assert_eq!(codes("{max_cost: [1]}"), ["FM0413 machine.yml:5:24"]);
        assert_eq!(codes("{max_cost: true}"), ["FM0413 machine.yml:5:24"]);
    }

    #[test]
    fn the_message_names_the_value_and_the_problem() {
        let machine = "spec: flatmachine
spec_version: \"2.6.0\"
data:
  name: budgeted
  settings:
    max_cost: \"5\"
  states:
    start: {type: initial, transitions: [{to: done}]}
    done: {type: final}
";
        let (_, diags) = check_files(&[("machine.yml", machine)]);
        let d = diags.iter().find(|d| d.code == "FM0413").expect("FM0413");
        assert_eq!(
            d.message,
            "`settings.max_cost: 5` is a string, not a number"
        );
        assert!(d.is_error());
    }
}

//! Running a machine despite its errors (`flatmachines run --allow-errors`).
//!
//! The Python reference loads many defective machines without complaint and only meets the
//! defect when the run gets there: an unknown agent fails its state with `ValueError: Unknown
//! agent: x` (which `on_error` can catch), an unknown transition target is entered as an empty
//! state and ends the run with `{}`. Machines written for it may rely on that, defects
//! included. This module says which errors have such a run-time meaning; the lowering and the
//! runtime reproduce it. Everything else (a file that is not YAML, no states, two initial
//! states…) is refused by the reference too, and stays refused here.

use crate::diag::{Code, Diagnostic, Diagnostics};

/// Whether an error with this code has a run-time behaviour in the reference, which the
/// runtime reproduces when the machine is run with errors allowed.
///
/// The run-time behaviour of each, as the runtime implements it:
/// - `FM0003` (a referenced agent or machine file is missing): the state that uses it fails
///   with `FileNotFoundError` when it runs.
/// - `FM0102`, `FM0103` (unknown transition or `on_error` target): the target is entered as
///   an empty state: no work, no transitions, so the run ends there with the output so far.
/// - `FM0105` (no initial state): the run starts at `start`, else at the first state.
/// - `FM0106`, `FM0108` (no final state, or none reachable): the run ends when no transition
///   matches, with `{}`.
/// - `FM0115` (a tool loop with no transitions): the loop runs, then the run ends there.
/// - `FM0201`, `FM0202` (unknown agent or machine name): the state fails with `ValueError`
///   (`Unknown agent: <name>` / `Unknown machine reference: <name>. …`), through `on_error`.
/// - `FM0206` (unknown model profile): the agent's state fails with `ValueError`.
/// - `FM0301` (a template that does not parse): the render fails with `TemplateSyntaxError`
///   when the state runs, through `on_error`.
/// - `FM0302` (a condition that does not parse): its first evaluation raises `ValueError:
///   Invalid expression syntax: <text>`, which ends the run (conditions are outside
///   `on_error`, as in the reference).
/// - `FM0305` (a condition reads `input` or `output`): evaluating it raises `KeyError`.
/// - `FM0309` (an undefined variable in a template): the render fails with `UndefinedError`.
/// - `FM0402`, `FM0403` (negative backoff, jitter outside 0..=1): waits below zero are no
///   waits.
/// - `FM0410` (a `wait_for` whose parked run cannot be found again): the run parks anyway.
/// - `FM0413` (`settings.max_cost` not a non-negative number): no budget is set, as in the
///   reference, which has none.
/// - `FM0414` (an unknown model provider): the state that calls the agent fails with
///   `ValueError` when its executor is built (litellm fails the call with `BadRequestError`).
pub fn runs_despite(d: &Diagnostic) -> bool {
    match d.code {
        // The entry machine's own file has no span: nothing can run without it.
        Code::FileNotFound => d.span.is_some(),
        Code::UnknownTransitionTarget
        | Code::UnknownOnErrorTarget
        | Code::NoInitialState
        | Code::NoFinalState
        | Code::NoPathToFinal
        | Code::ToolLoopWithoutTransitions
        | Code::UnknownAgent
        | Code::UnknownMachine
        | Code::UnknownProfile
        | Code::TemplateSyntax
        | Code::ConditionSyntax
        | Code::ConditionScope
        | Code::UndefinedVariable
        | Code::NegativeBackoff
        | Code::JitterOutOfRange
        | Code::UnfindableWait
        | Code::InvalidBudget
        | Code::UnknownProvider => true,
        _ => false,
    }
}

/// The errors that no run can get past, even with errors allowed.
pub fn blocking(diags: &Diagnostics) -> impl Iterator<Item = &Diagnostic> {
    diags.iter().filter(|d| d.is_error() && !runs_despite(d))
}

/// The same diagnostics with every error that [`runs_despite`] turned into a warning, for
/// printing before a run that goes ahead.
pub fn demoted(diags: &Diagnostics) -> Diagnostics {
    let mut out = Diagnostics::new();
    for d in diags.iter() {
        let mut d = d.clone();
        if d.is_error() && runs_despite(&d) {
            d.severity = crate::diag::Severity::Warning;
            d.notes.push(crate::diag::Note {
                span: None,
                message: "an error: run anyway because of `--allow-errors`".into(),
            });
        }
        out.push(d);
    }
    out
}

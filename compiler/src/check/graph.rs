//! State graph checks: initial and final states, transition targets, reachability, traps.

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::model::machine::{MachineData, State};
use crate::suggest;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Bfs, Reversed};
use std::collections::HashMap;

/// Checks one machine's states and their graph.
pub(crate) fn check(data: &MachineData, diags: &mut Diagnostics) {
    let states = &data.states;
    if states.is_empty() {
        diags.push(
            Diagnostic::new(
                Code::NoStates,
                data.states_span.unwrap_or(data.span),
                "the machine has no states",
            )
            .help(
                "add a `states:` map with one `type: initial` and at least one `type: final` state",
            ),
        );
        return;
    }
    let by_name: HashMap<&str, usize> = states
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.value.as_str(), i))
        .collect();
    let names = || states.iter().map(|s| s.name.value.as_str());

    for s in states {
        if let Some(t) = &s.ty
            && !matches!(t.value.as_str(), "initial" | "final")
        {
            diags.push(
                Diagnostic::new(
                    Code::UnknownStateType,
                    t.span,
                    format!(
                        "state type `{}` is neither `initial` nor `final`; it is ignored",
                        t.value
                    ),
                )
                .help(
                    suggest::help(&t.value, ["initial", "final"])
                        .unwrap_or_else(|| "remove `type:` for an ordinary state".into()),
                ),
            );
        }
    }

    let initial = initial_state(states, diags);
    if !states.iter().any(State::is_final) {
        diags.push(
            Diagnostic::new(
                Code::NoFinalState,
                data.states_span.unwrap_or(data.span),
                "no state has `type: final`, so the machine never produces an output",
            )
            .help(
                "mark the state(s) that end the run with `type: final` and give them an `output:`",
            ),
        );
    }

    // States with a transition to an unknown target: the run would end there (already an error),
    // so they must not look like loops with no way out.
    let mut ends_unknown = vec![false; states.len()];
    // The graph holds only the transitions that can be taken.
    let mut graph: DiGraph<usize, ()> = DiGraph::with_capacity(states.len(), states.len() * 2);
    let nodes: Vec<NodeIndex> = (0..states.len()).map(|i| graph.add_node(i)).collect();
    for (i, s) in states.iter().enumerate() {
        if s.is_final() && !s.transitions.is_empty() {
            diags.push(
                Diagnostic::new(
                    Code::FinalStateTransitions,
                    s.transitions[0].span,
                    format!("final state `{}` has transitions; the run ends there, so they are never taken", s.name.value),
                )
                .help("remove the transitions, or remove `type: final`"),
            );
        }
        let mut unconditional_seen: Option<&crate::source::Span> = None;
        // During a tool loop, after each tool call, only the conditional transitions are
        // evaluated (`execution.md` §9): one after the unconditional exit can still be taken.
        let tool_loop = super::tools::runs_tool_loop(s);
        for t in &s.transitions {
            let Some(to) = &t.to else {
                diags.push(
                    Diagnostic::new(
                        Code::TransitionWithoutTarget,
                        t.span,
                        format!(
                            "a transition of state `{}` has no `to`; it is skipped",
                            s.name.value
                        ),
                    )
                    .help("add `to: <state>`"),
                );
                continue;
            };
            if let Some(first) = unconditional_seen
                && (!tool_loop || t.is_unconditional())
            {
                diags.push(
                    Diagnostic::new(
                        Code::UnreachableTransition,
                        t.span,
                        format!("transition to `{}` is never taken: an unconditional transition comes before it", to.value),
                    )
                    .note(*first, "this transition has no condition and always matches")
                    .help("move the unconditional transition last, or give it a `condition`"),
                );
                continue;
            }
            if t.is_unconditional() {
                unconditional_seen = Some(&t.span);
            }
            match by_name.get(to.value.as_str()) {
                Some(&j) => {
                    if !s.is_final() {
                        graph.add_edge(nodes[i], nodes[j], ());
                    }
                }
                None => diags.push({
                    ends_unknown[i] = true;
                    Diagnostic::new(
                        Code::UnknownTransitionTarget,
                        to.span,
                        format!("transition target `{}` is not a state", to.value),
                    )
                    .help(suggest::help(&to.value, names()).unwrap_or_else(
                        || format!("states are: {}", names().collect::<Vec<_>>().join(", ")),
                    ))
                }),
            }
        }
        if let Some(oe) = &s.on_error {
            for target in oe.targets() {
                match by_name.get(target.value.as_str()) {
                    Some(&j) => {
                        graph.add_edge(nodes[i], nodes[j], ());
                    }
                    None => diags.push(
                        Diagnostic::new(
                            Code::UnknownOnErrorTarget,
                            target.span,
                            format!("`on_error` target `{}` is not a state", target.value),
                        )
                        .help(
                            suggest::help(&target.value, names()).unwrap_or_else(|| {
                                format!("states are: {}", names().collect::<Vec<_>>().join(", "))
                            }),
                        ),
                    ),
                }
            }
        }
        // A tool loop state without transitions gets its own error (`FM0115`).
        if !s.is_final()
            && s.transitions.is_empty()
            && s.on_error.is_none()
            && !super::tools::runs_tool_loop(s)
        {
            diags.push(
                Diagnostic::new(
                    Code::DeadEndState,
                    s.name.span,
                    format!("state `{}` is not final and has no transitions: a run that gets here ends silently with no output", s.name.value),
                )
                .help("add `transitions:` to the next state, or mark it `type: final`"),
            );
        }
    }

    let Some(initial) = initial else { return };
    let mut reachable = vec![false; states.len()];
    let mut bfs = Bfs::new(&graph, nodes[initial]);
    while let Some(n) = bfs.next(&graph) {
        reachable[graph[n]] = true;
    }
    for (i, s) in states.iter().enumerate() {
        if !reachable[i] {
            diags.push(
                Diagnostic::new(
                    Code::UnreachableState,
                    s.name.span,
                    format!(
                        "state `{}` cannot be reached from the initial state `{}`",
                        s.name.value, states[initial].name.value
                    ),
                )
                .help("add a transition to it, or remove it"),
            );
        }
    }

    // A run can end in a final state or, silently, in a state with no way on; from a state that
    // reaches neither, it can only loop until `max_steps`.
    let mut can_end = vec![false; states.len()];
    let reversed = Reversed(&graph);
    for (i, s) in states.iter().enumerate() {
        let stops = s.is_final() || ends_unknown[i] || graph.neighbors(nodes[i]).next().is_none();
        if stops && !can_end[i] {
            let mut bfs = Bfs::new(reversed, nodes[i]);
            while let Some(n) = bfs.next(reversed) {
                can_end[graph[n]] = true;
            }
        }
    }
    let trapped: Vec<usize> = (0..states.len())
        .filter(|&i| reachable[i] && !can_end[i])
        .collect();
    if trapped.is_empty() {
        return;
    }
    // Report each loop once, at its first state in document order.
    for scc in petgraph::algo::tarjan_scc(&graph) {
        let mut members: Vec<usize> = scc
            .iter()
            .map(|n| graph[*n])
            .filter(|i| trapped.contains(i))
            .collect();
        if members.is_empty() {
            continue;
        }
        // Only the loops themselves: states that merely lead into a loop are covered by it.
        let leads_elsewhere = members.iter().any(|&i| {
            graph
                .neighbors(nodes[i])
                .any(|n| !scc.contains(&n) && trapped.contains(&graph[n]))
        });
        if leads_elsewhere {
            continue;
        }
        members.sort_unstable();
        let first = &states[members[0]];
        let loop_names: Vec<String> = members
            .iter()
            .map(|&i| format!("`{}`", states[i].name.value))
            .collect();
        diags.push(
            Diagnostic::new(
                Code::NoPathToFinal,
                first.name.span,
                format!(
                    "no final state can be reached from state `{}`: the run loops forever",
                    first.name.value
                ),
            )
            .note(None, format!("the loop: {}", loop_names.join(", ")))
            .help("add a conditional transition out of the loop to a final state"),
        );
    }
}

/// The initial state as the reference picks it, reporting when `type: initial` is not exactly once.
fn initial_state(states: &[State], diags: &mut Diagnostics) -> Option<usize> {
    let initials: Vec<usize> = states
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_initial())
        .map(|(i, _)| i)
        .collect();
    match initials.as_slice() {
        [one] => Some(*one),
        [] => {
            let fallback = states
                .iter()
                .position(|s| s.name.value == "start")
                .unwrap_or(0);
            diags.push(
                Diagnostic::new(
                    Code::NoInitialState,
                    states[fallback].name.span,
                    "no state has `type: initial`".to_string(),
                )
                .note(
                    None,
                    format!(
                        "the reference would start at `{}`",
                        states[fallback].name.value
                    ),
                )
                .help(format!(
                    "add `type: initial` to `{}`",
                    states[fallback].name.value
                )),
            );
            Some(fallback)
        }
        [first, rest @ ..] => {
            let mut d = Diagnostic::new(
                Code::MultipleInitialStates,
                states[rest[0]].ty.as_ref().map(|t| t.span),
                format!(
                    "more than one state has `type: initial`: `{}` and `{}`",
                    states[*first].name.value, states[rest[0]].name.value
                ),
            )
            .help("keep `type: initial` on exactly one state");
            if let Some(t) = &states[*first].ty {
                d = d.note(t.span, "the first initial state");
            }
            diags.push(d);
            Some(*first)
        }
    }
}

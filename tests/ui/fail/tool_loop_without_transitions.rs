// A tool-loop state with no transitions (only `on_error`): the loop's result has nowhere to go.
//~ ERROR FM0115 machines/tool_loop_without_transitions.yml:10:5
flatmachines::include_machine!("machines/tool_loop_without_transitions.yml");

fn main() {
    let _ = tool_loop_without_transitions::State::ALL;
}

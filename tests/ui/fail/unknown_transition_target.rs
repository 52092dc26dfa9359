// A transition to `dnoe`; the state is `done`.
//~ ERROR FM0102 machines/unknown_transition_target.yml:9:15
flatmachines::include_machine!("machines/unknown_transition_target.yml");

fn main() {
    let _ = unknown_transition_target::State::Done;
}

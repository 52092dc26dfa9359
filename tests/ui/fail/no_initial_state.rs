// No state has `type: initial` (and none is called `start`).
//~ ERROR FM0105 machines/no_initial_state.yml:6:5
flatmachines::include_machine!("machines/no_initial_state.yml");

fn main() {
    let _ = no_initial_state::State::ALL;
}

// `transitions: done` instead of a list of transitions.
//~ ERROR FM0008 machines/wrong_type.yml:8:20
flatmachines::include_machine!("machines/wrong_type.yml");

fn main() {
    let _ = wrong_type::State::ALL;
}

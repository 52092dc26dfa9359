// `states: {}`.
//~ ERROR FM0101 machines/no_states.yml:7:11
flatmachines::include_machine!("machines/no_states.yml");

fn main() {
    let _ = no_states::State::ALL;
}

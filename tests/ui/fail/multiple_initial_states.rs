// Two states have `type: initial`.
//~ ERROR FM0104 machines/multiple_initial_states.yml:11:13
flatmachines::include_machine!("machines/multiple_initial_states.yml");

fn main() {
    let _ = [
        multiple_initial_states::State::Start,
        multiple_initial_states::State::Begin,
    ];
}

// `execution: {type: retyr}`.
//~ ERROR FM0401 machines/unknown_execution_type.yml:14:15
flatmachines::include_machine!("machines/unknown_execution_type.yml");

fn main() {
    let _ = unknown_execution_type::State::ALL;
}

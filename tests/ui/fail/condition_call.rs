// A simple-engine condition calling `len(...)`.
//~ ERROR FM0302 machines/condition_call.yml:13:22
flatmachines::include_machine!("machines/condition_call.yml");

fn main() {
    let _ = condition_call::State::ALL;
}

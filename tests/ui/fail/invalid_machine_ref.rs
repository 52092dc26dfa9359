// A machine reference that is a number: one error, and the state using it gets none.
//~ ERROR FM0204 machines/invalid_machine_ref.yml:6:12
flatmachines::include_machine!("machines/invalid_machine_ref.yml");

fn main() {
    let _ = invalid_machine_ref::State::ALL;
}

// `persistence: {enabled: false}` in a machine with a `wait_for` state.
//~ ERROR FM0410 machines/wait_for_persistence_disabled.yml:8:14
flatmachines::include_machine!("machines/wait_for_persistence_disabled.yml");

fn main() {
    let _ = wait_for_persistence_disabled::State::ALL;
}

// `checkpoint_on` without `waiting` in a machine with a `wait_for` state.
//~ ERROR FM0410 machines/wait_for_checkpoint_on.yml:7:20
flatmachines::include_machine!("machines/wait_for_checkpoint_on.yml");

fn main() {
    let _ = wait_for_checkpoint_on::State::ALL;
}

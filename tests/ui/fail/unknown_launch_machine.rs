// `launch:` names `notifier`, which is not in `machines`.
//~ ERROR FM0202 machines/unknown_launch_machine.yml:11:23
flatmachines::include_machine!("machines/unknown_launch_machine.yml");

fn main() {
    let _ = unknown_launch_machine::State::ALL;
}

// `machine: chlid`; the machine is `child`.
//~ ERROR FM0202 machines/unknown_machine.yml:10:16
flatmachines::include_machine!("machines/unknown_machine.yml");

fn main() {
    let _ = unknown_machine::State::ALL;
}

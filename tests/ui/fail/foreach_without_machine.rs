// A state with `foreach` but no `machine` to run per item.
//~ ERROR FM0404 machines/foreach_without_machine.yml:10:16
flatmachines::include_machine!("machines/foreach_without_machine.yml");

fn main() {
    let _ = foreach_without_machine::State::ALL;
}

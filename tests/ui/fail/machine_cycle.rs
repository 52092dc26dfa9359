// machine_cycle.yml calls cycle/b.yml, which calls machine_cycle.yml back.
//~ ERROR FM0009 machines/cycle/b.yml:6:11
flatmachines::include_machine!("machines/machine_cycle.yml");

fn main() {
    let _ = machine_cycle::State::ALL;
}

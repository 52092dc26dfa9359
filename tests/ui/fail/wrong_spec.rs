// A machine file with `spec: flatagent`.
//~ ERROR FM0004 machines/wrong_spec.yml:1:7
flatmachines::include_machine!("machines/wrong_spec.yml");

fn main() {
    let _ = wrong_spec::State::ALL;
}

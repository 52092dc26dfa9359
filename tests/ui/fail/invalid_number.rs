// `execution: {type: parallel, n_samples: 0}`.
//~ ERROR FM0407 machines/invalid_number.yml:15:20
flatmachines::include_machine!("machines/invalid_number.yml");

fn main() {
    let _ = invalid_number::State::ALL;
}

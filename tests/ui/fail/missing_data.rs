// `name` and `states` written at the top level instead of under `data:`: one error, no cascade.
//~ ERROR FM0005 machines/missing_data.yml:1:1
flatmachines::include_machine!("machines/missing_data.yml");

fn main() {
    let _ = unnamed_machine::State::ALL;
}

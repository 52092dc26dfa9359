// A final state's output reads `{{ input.product }}`; only `context` is defined there.
//~ ERROR FM0309 machines/undefined_variable.yml:15:18
flatmachines::include_machine!("machines/undefined_variable.yml");

fn main() {
    let _ = undefined_variable::State::ALL;
}

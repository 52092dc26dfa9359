// A condition reading `output.content`: conditions see only `context`.
//~ ERROR FM0305 machines/condition_output_scope.yml:18:22
flatmachines::include_machine!("machines/condition_output_scope.yml");

fn main() {
    let _ = condition_output_scope::State::ALL;
}

// `expression_engine: cell`.
//~ ERROR FM0304 machines/unknown_expression_engine.yml:5:22
flatmachines::include_machine!("machines/unknown_expression_engine.yml");

fn main() {
    let _ = unknown_expression_engine::State::ALL;
}

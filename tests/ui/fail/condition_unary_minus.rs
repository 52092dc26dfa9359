// A simple-engine condition with a unary minus (`context.score > -1`).
//~ ERROR FM0302 machines/condition_unary_minus.yml:13:38
flatmachines::include_machine!("machines/condition_unary_minus.yml");

fn main() {
    let _ = condition_unary_minus::State::ALL;
}

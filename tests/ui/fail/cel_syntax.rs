// A CEL condition ending in a dangling `&&`.
//~ ERROR FM0303 machines/cel_syntax.yml:12:43
flatmachines::include_machine!("machines/cel_syntax.yml");

fn main() {
    let _ = cel_syntax::State::ALL;
}

// `flatmachine!(42)`: the document is not a map; that is the only error (no cascade).
//~ ERROR FM0008 inline_not_a_map.rs:3:28
flatmachines::flatmachine!(42);

fn main() {
    let _ = unnamed_machine::State::ALL;
}

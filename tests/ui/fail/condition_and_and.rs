// A simple-engine condition using `&&` instead of `and`.
//~ ERROR FM0302 machines/condition_and_and.yml:13:40
flatmachines::include_machine!("machines/condition_and_and.yml");

fn main() {
    let _ = condition_and_and::State::ALL;
}

// `mode: all` (must be `settled` or `any`).
//~ ERROR FM0405 machines/unknown_mode.yml:11:13
flatmachines::include_machine!("machines/unknown_mode.yml");

fn main() {
    let _ = unknown_mode::State::ALL;
}

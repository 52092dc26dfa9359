// `on_error: {default: retyr}` (map form); the state is `retry`.
//~ ERROR FM0103 machines/unknown_on_error_target_map.yml:14:18
flatmachines::include_machine!("machines/unknown_on_error_target_map.yml");

fn main() {
    let _ = unknown_on_error_target_map::State::ALL;
}

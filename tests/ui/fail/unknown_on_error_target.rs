// `on_error: faild` (string form); the state is `failed`.
//~ ERROR FM0103 machines/unknown_on_error_target.yml:12:17
flatmachines::include_machine!("machines/unknown_on_error_target.yml");

fn main() {
    let _ = unknown_on_error_target::State::ALL;
}

// `wait_for: {channel: ..., timeout: 0}`.
//~ ERROR FM0407 machines/wait_for_zero_timeout.yml:15:18
flatmachines::include_machine!("machines/wait_for_zero_timeout.yml");

fn main() {
    let _ = wait_for_zero_timeout::State::ALL;
}

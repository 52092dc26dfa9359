// A retry backoff of -8 seconds.
//~ ERROR FM0402 machines/negative_backoff.yml:15:23
flatmachines::include_machine!("machines/negative_backoff.yml");

fn main() {
    let _ = negative_backoff::State::ALL;
}

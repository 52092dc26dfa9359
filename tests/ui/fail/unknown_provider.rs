// A model `provider` the flatagent adapter does not speak (a typo of `anthropic`).
//~ ERROR FM0414 machines/unknown_provider.yml:10:27
flatmachines::include_machine!("machines/unknown_provider.yml");

fn main() {
    let _ = unknown_provider::State::ALL;
}

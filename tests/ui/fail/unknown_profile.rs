// The agent uses model profile `smart`; its profiles.yml defines `fast` and `smarter`.
//~ ERROR FM0206 machines/profiled/agent.yml:5:10
flatmachines::include_machine!("machines/unknown_profile.yml");

fn main() {
    let _ = unknown_profile::State::ALL;
}

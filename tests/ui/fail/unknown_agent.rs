// A state uses agent `writre`; the agent is `writer`.
//~ ERROR FM0201 machines/unknown_agent.yml:11:14
flatmachines::include_machine!("machines/unknown_agent.yml");

fn main() {
    let _ = unknown_agent::State::ALL;
}

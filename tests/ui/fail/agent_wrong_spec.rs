// `agents:` points at a file that is a flatmachine, not a flatagent.
//~ ERROR FM0004 machines/agents/not_an_agent.yml:1:7
flatmachines::include_machine!("machines/agent_wrong_spec.yml");

fn main() {
    let _ = agent_wrong_spec::State::ALL;
}

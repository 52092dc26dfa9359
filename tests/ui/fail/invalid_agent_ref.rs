// An agent reference that is a list: one error, and the state using it gets none.
//~ ERROR FM0203 machines/invalid_agent_ref.yml:6:13
flatmachines::include_machine!("machines/invalid_agent_ref.yml");

fn main() {
    let _ = invalid_agent_ref::State::ALL;
}

// `agents:` points at `./agents/writr.yml`, which does not exist (`writer.yml` does).
//~ ERROR FM0003 machines/missing_agent_file.yml:6:13
flatmachines::include_machine!("machines/missing_agent_file.yml");

fn main() {
    let _ = missing_agent_file::State::ALL;
}

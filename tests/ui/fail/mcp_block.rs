// The agent's MCP server has both `command` and `url`, and a `tool_filter` pattern has no
// `server:` part; both errors point into the agent file.
//~ ERROR FM0409 machines/tools/bad_mcp.yml:14:14
//~ ERROR FM0408 machines/tools/bad_mcp.yml:16:15
flatmachines::include_machine!("machines/mcp_block.yml");

fn main() {
    let _ = mcp_block::State::ALL;
}

// `allowed_tools` names `serch:web_search`; the agent's MCP servers are `files` and `search`.
//~ ERROR FM0209 machines/unknown_mcp_server.yml:15:57
flatmachines::include_machine!("machines/unknown_mcp_server.yml");

fn main() {
    let _ = unknown_mcp_server::State::ALL;
}

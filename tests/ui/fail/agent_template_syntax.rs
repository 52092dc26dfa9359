// The `user` prompt of the agent file has `{{ input.product }` (one closing brace): the
// error points into the agent file.
//~ ERROR FM0301 machines/agents/broken_prompt.yml:9:46
flatmachines::include_machine!("machines/agent_template_syntax.yml");

fn main() {
    let _ = agent_template_syntax::State::ALL;
}

// Paths in inline YAML are relative to this file; the defect is in the agent file.
//~ ERROR FM0301 machines/agents/broken_prompt.yml:9:46
flatmachines::flatmachine!(
    r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: inline-agent-file
  context:
    product: input.product
  agents:
    writer: ./machines/agents/broken_prompt.yml
  states:
    start:
      type: initial
      agent: writer
      input:
        product: context.product
      transitions:
        - to: done
    done:
      type: final
      output:
        ok: true
"#
);

fn main() {
    let _ = inline_agent_file::State::ALL;
}

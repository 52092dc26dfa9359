// A tool loop with a smolagents agent, which runs its own tools and cannot loop.
//~ ERROR FM0210 tool_loop_unsupported_adapter.rs:17:18
flatmachines::flatmachine!(
    r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: tool-loop-unsupported-adapter
  context:
    task: input.task
  agents:
    coder: {type: smolagents, ref: "./agents.py#build_coder"}
  states:
    start:
      type: initial
      agent: coder
      tool_loop: true
      input:
        task: context.task
      transitions:
        - to: done
    done:
      type: final
      output:
        ok: true
"#
);

fn main() {
    let _ = tool_loop_unsupported_adapter::State::ALL;
}

// An unclosed flow sequence `[{to: done}`. The parser reports it where it notices, at the next
// key (see the report: the message does not mention the unclosed `[`).
//~ ERROR FM0001 machines/yaml_syntax.yml:9:5
flatmachines::include_machine!("machines/yaml_syntax.yml");

fn main() {
    let _ = unnamed_machine::State::ALL;
}

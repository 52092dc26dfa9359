// The YAML starts on the line of the literal: the column of its first line is shifted.
//~ ERROR FM0004 inline_first_line.rs:4:14
flatmachines::flatmachine!(
    r#"spec: flatmachin
spec_version: "2.6.0"
data:
  name: inline-first-line
  states:
    start: {type: initial, transitions: [{to: done}]}
    done: {type: final, output: {ok: true}}
"#
);

fn main() {
    let _ = inline_first_line::State::INITIAL;
}

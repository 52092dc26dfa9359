// Inline YAML in a raw string: the position points into this file.
//~ ERROR FM0102 inline_unknown_target.rs:13:15
flatmachines::flatmachine!(
    r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: inline-unknown-target
  states:
    start:
      type: initial
      transitions:
        - to: review
    reviews:
      type: final
      output:
        ok: true
"#
);

fn main() {
    let _ = inline_unknown_target::State::Reviews;
}

// Indented inline YAML inside a module: the position points into this file.
//~ ERROR FM0301 inline_template_syntax.rs:20:54
mod nested {
    flatmachines::flatmachine!(
        r##"
    spec: flatmachine
    spec_version: "2.6.0"
    data:
      name: inline-template-syntax
      context:
        topic: input.topic
      states:
        start:
          type: initial
          transitions:
            - to: done
        done:
          type: final
          output:
            summary: "About {{ context.topic | title }"
    "##
    );
}

fn main() {
    let _ = nested::inline_template_syntax::State::Done;
}

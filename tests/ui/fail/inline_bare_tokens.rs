// Inline YAML as bare tokens (no string literal): the position points into this file.
//~ ERROR FM0102 inline_bare_tokens.rs:8:51
flatmachines::flatmachine! {
    spec: flatmachine
    data:
      name: inline-bare-tokens
      states:
        start: {type: initial, transitions: [{to: dnoe}]}
        done: {type: final, output: {ok: true}}
}

fn main() {
    let _ = inline_bare_tokens::State::Done;
}

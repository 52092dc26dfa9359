// Inline YAML: a raw string literal, and bare tokens.
flatmachines::flatmachine!(
    r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: ping
  states:
    start: {type: initial, transitions: [{to: pong}]}
    pong:
      transitions:
        - condition: context.count > 3
          to: done
        - to: start
    done: {type: final, output: {ok: true}}
"#
);

mod bare {
    flatmachines::flatmachine! {
        spec: flatmachine
        data:
          name: Bare Tokens
          states:
            begin: {type: initial, transitions: [{to: end}]}
            end: {type: final, output: {ok: true}}
    }
}

fn main() {
    assert_eq!(ping::NAME, "ping");
    assert!(ping::SOURCE.contains("name: ping"));
    assert_eq!(
        ping::State::ALL,
        &[ping::State::Start, ping::State::Pong, ping::State::Done]
    );
    assert_eq!(ping::State::INITIAL.to_string(), "start");
    assert!(ping::State::Done.is_final());

    use bare::bare_tokens::State;
    assert_eq!(bare::bare_tokens::NAME, "Bare Tokens");
    assert_eq!(State::ALL, &[State::Begin, State::End]);
    assert_eq!(State::INITIAL, State::Begin);
    assert_eq!("end".parse::<State>(), Ok(State::End));
    let err = "middle".parse::<State>().unwrap_err();
    assert!(err.to_string().contains("Bare Tokens"), "{err}");
}

// The transition function, typed Input/Output, compiled and interpreted conditions, and the
// `Send` futures of the generated async functions.
use flatmachines::hooks::MachineHooks;
use serde_json::{Value, json};

flatmachines::include_machine!("machines/review.yml");

flatmachines::flatmachine!(
    r#"
spec: flatmachine
data:
  name: greeter
  context:
    who: input.who
    punct: "{{ input.punct }}"
  agents:
    echo: {type: echo}
  states:
    start:
      type: initial
      agent: echo
      input:
        greeting: "Hello {{ context.who }}{{ context.punct }}"
      output_to_context:
        greeting: output.greeting
      transitions:
        - condition: context.greeting != null
          to: done
        - to: failed
    done:
      type: final
      output: {greeting: context.greeting, ok: true, count: 1}
    failed:
      type: final
      output: {ok: false}
"#
);

flatmachines::flatmachine!(
    r#"
spec: flatmachine
data:
  name: celery
  expression_engine: cel
  states:
    start:
      type: initial
      transitions:
        - condition: size(context.items) > 2
          to: big
        - to: small
    big: {type: final, output: {size: big}}
    small: {type: final, output: {size: small}}
"#
);

/// Sends `review` back to `failed` instead of `approved`.
struct Strict;

#[flatmachines::async_trait]
impl MachineHooks for Strict {
    async fn on_transition(&self, _from: &str, to: &str, context: &mut Value) -> Option<String> {
        context["seen"] = json!(to);
        Some(if to == "approved" { "failed" } else { to }.to_string())
    }
}

fn assert_send<T: Send>(_: &T) {}

fn main() {
    use code_review::{State, next_state};

    // The first transition whose compiled condition holds, in YAML order.
    let approve = json!({"verdict": "approve", "rounds": 1});
    assert_eq!(
        next_state(State::Review, &approve).unwrap(),
        Some(State::Approved)
    );
    let again = json!({"verdict": "revise", "rounds": 1});
    assert_eq!(
        next_state(State::Review, &again).unwrap(),
        Some(State::Review)
    );
    let tired = json!({"verdict": "revise", "rounds": 3});
    assert_eq!(
        next_state(State::Review, &tired).unwrap(),
        Some(State::Failed)
    );
    assert_eq!(
        next_state(State::Start, &json!({})).unwrap(),
        Some(State::Lint)
    );
    assert_eq!(next_state(State::Approved, &approve).unwrap(), None);

    // A condition that fails is the executor's error, with Python's message.
    let err = next_state(State::Review, &json!({"verdict": "x", "rounds": "3"})).unwrap_err();
    match &err {
        flatmachines::Error::Condition {
            machine,
            state,
            condition,
            message,
        } => {
            assert_eq!(
                (machine.as_str(), state.as_str()),
                ("code-review", "review")
            );
            assert_eq!(condition, "context.rounds >= 3");
            assert_eq!(
                message,
                "TypeError: '>=' not supported between instances of 'str' and 'int'"
            );
        }
        other => panic!("{other}"),
    }

    // The compiled conditions, by text.
    let sources: Vec<&str> = code_review::conditions::ALL
        .iter()
        .map(|c| c.source())
        .collect();
    assert_eq!(
        sources,
        ["context.verdict == \"approve\"", "context.rounds >= 3"]
    );
    assert!(code_review::conditions::C1.evaluate(&tired).unwrap());

    // CEL conditions are interpreted, with the same function shape.
    assert!(celery::conditions::ALL.is_empty());
    let items = json!({"items": [1, 2, 3]});
    assert_eq!(
        celery::next_state(celery::State::Start, &items).unwrap(),
        Some(celery::State::Big)
    );
    assert_eq!(
        celery::next_state(celery::State::Start, &json!({"items": []})).unwrap(),
        Some(celery::State::Small)
    );

    let tokio = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    // The async transition step goes through the hooks, which may redirect it.
    let mut ctx = approve.clone();
    let next = tokio.block_on(code_review::transition(&Strict, State::Review, &mut ctx));
    assert_eq!(next.unwrap(), Some(State::Failed));
    assert_eq!(ctx["seen"], "approved");
    let hooks: std::sync::Arc<dyn MachineHooks> = std::sync::Arc::new(Strict);
    let next = tokio.block_on(code_review::transition(&*hooks, State::Start, &mut ctx));
    assert_eq!(next.unwrap(), Some(State::Lint));

    // Typed input: bare-path reads are values, template reads optional.
    let input = greeter::Input {
        who: json!("Ada"),
        punct: Some(json!("!")),
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_value(&input).unwrap(),
        json!({"who": "Ada", "punct": "!"})
    );
    let rt = flatmachines::Runtime::new();
    let out: greeter::Output = tokio.block_on(greeter::execute_typed(&rt, input)).unwrap();
    // `ok` is in every final state and a literal boolean: a required `bool`; `greeting` and
    // `count` only in `done`.
    let greeter::Output {
        greeting,
        ok,
        count,
        extra,
    } = out;
    let (ok, count): (bool, Option<i64>) = (ok, count);
    assert!(ok);
    assert_eq!(count, Some(1));
    assert_eq!(greeting, Some(json!("Hello Ada!")));
    assert!(extra.is_empty());

    let review_input = code_review::Input {
        code: json!("fn main() {}"),
        ..Default::default()
    };
    let review_output: code_review::Output =
        serde_json::from_value(json!({"verdict": "approve"})).unwrap();
    assert_eq!(review_output.verdict, Some(json!("approve")));
    assert_eq!(review_output.error, None);

    // The futures of the generated async functions are `Send`.
    let mut ctx = json!({});
    assert_send(&code_review::transition(&Strict, State::Review, &mut ctx));
    assert_send(&code_review::transition(
        &*hooks,
        State::Review,
        &mut json!({}),
    ));
    assert_send(&code_review::execute(&rt, json!({})));
    assert_send(&code_review::execute_typed(&rt, review_input));
    assert_send(&greeter::execute_typed(&rt, greeter::Input::default()));
}

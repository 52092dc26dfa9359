// The generated module of a valid machine with an agent file, a profile and a child machine.
flatmachines::include_machine!("machines/review.yml");

use code_review::State;

fn main() {
    assert_eq!(code_review::NAME, "code-review");
    assert!(code_review::SOURCE.contains("name: code-review"));

    // Every state, in YAML order.
    assert_eq!(
        State::ALL,
        &[
            State::Start,
            State::Lint,
            State::Review,
            State::Approved,
            State::Failed
        ]
    );
    assert_eq!(State::INITIAL, State::Start);

    let names: Vec<&str> = State::ALL.iter().map(|s| s.name()).collect();
    assert_eq!(names, ["start", "lint", "review", "approved", "failed"]);
    let finals: Vec<State> = State::ALL
        .iter()
        .copied()
        .filter(|s| s.is_final())
        .collect();
    assert_eq!(finals, [State::Approved, State::Failed]);
    assert!(!State::INITIAL.is_final());

    // `name()` and `is_final()` are const.
    const REVIEW: &str = State::Review.name();
    const DONE: bool = State::Approved.is_final();
    assert_eq!(REVIEW, "review");
    assert!(DONE);

    // Display uses the YAML name and honours width and alignment.
    assert_eq!(State::Review.to_string(), "review");
    assert_eq!(format!("{:>8}|", State::Lint), "    lint|");
    assert_eq!(format!("{:<8}|", State::Lint), "lint    |");
    assert_eq!(format!("{:^8}|", State::Lint), "  lint  |");
    assert_eq!(format!("{:?}", State::Lint), "Lint");

    // FromStr and from_name take YAML names only.
    assert_eq!("approved".parse::<State>(), Ok(State::Approved));
    assert_eq!(State::from_name("failed"), Some(State::Failed));
    assert_eq!(State::from_name("Approved"), None);
    let err = "aproved".parse::<State>().unwrap_err();
    assert_eq!(err.name(), "aproved");
    assert_eq!(err.machine(), "code-review");
    let msg = err.to_string();
    assert!(
        msg.contains("aproved") && msg.contains("code-review"),
        "{msg}"
    );
    let _: &dyn std::error::Error = &err;
    let _: flatmachines::UnknownState = err;

    // Serde uses the YAML names too (checkpoints store them).
    assert_eq!(serde_json::to_string(&State::Review).unwrap(), "\"review\"");
    let back: State = serde_json::from_str("\"lint\"").unwrap();
    assert_eq!(back, State::Lint);
    let all: Vec<State> =
        serde_json::from_str(&serde_json::to_string(State::ALL).unwrap()).unwrap();
    assert_eq!(all, State::ALL);
    let err = serde_json::from_str::<State>("\"nope\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope") && err.contains("code-review"), "{err}");

    // The enum is exhaustive: a new YAML state is a compile error here.
    for s in State::ALL {
        let n = match s {
            State::Start | State::Lint | State::Review => 0,
            State::Approved | State::Failed => 1,
        };
        assert_eq!(n == 1, s.is_final());
    }
}

//! Conditions compiled to Rust give the interpreter's results: the same value or the same error
//! (class and message), for every condition of `fixtures/compiled/conditions.yml` (every
//! operator, literal kind, `None`/`True`/`False`, missing paths, type errors) over fixed and
//! generated contexts; the generated `next_state` picks the transition the interpreter picks; and
//! a run of the compiled machine matches a run of the same YAML loaded at run time.

use flatmachines::unstable::condition::{Condition, ConditionError, Engine};
use flatmachines::{Machine, Runtime};
use serde_json::{Value, json};
use std::path::PathBuf;

flatmachines::include_machine!("../fixtures/compiled/conditions.yml");

use compiled_conditions::{State, conditions};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/compiled/conditions.yml")
}

/// The condition texts of the fixture's transitions, in order, as the compiler reads them.
fn fixture_conditions() -> Vec<String> {
    let checked = flatmachines::compiler::check_file(&fixture());
    assert!(!checked.has_errors(), "{}", checked.render());
    let root = checked.project.root().unwrap();
    root.doc.data.states[0]
        .transitions
        .iter()
        .filter_map(|t| t.condition.as_ref().map(|c| c.value.clone()))
        .collect()
}

/// A result comparable across the two doors: the truth value, or the error's class and message.
type Outcome = Result<bool, (String, String)>;

fn outcome(r: Result<bool, ConditionError>) -> Outcome {
    r.map_err(|e| (e.kind().to_string(), e.message().to_string()))
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Values chosen for the edges of Python semantics: bool/int/float mixes, the integer range,
/// NaN-free float extremes, empty and non-ASCII strings, nested containers.
fn interesting() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(false),
        json!(0),
        json!(1),
        json!(2),
        json!(3),
        json!(5),
        json!(-1),
        json!(8),
        json!(255),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(0.0),
        json!(-0.0),
        json!(0.5),
        json!(1.5),
        json!(2.0),
        json!(1e308),
        json!(-1e-300),
        json!(""),
        json!("a"),
        json!("b"),
        json!("ab"),
        json!("bob"),
        json!("5"),
        json!("é"),
        json!("z"),
        json!("\u{1F600}x"),
        json!([]),
        json!([1]),
        json!([1, 2, 3]),
        json!(["a", 1, null]),
        json!([[1], [2, 3]]),
        json!([1.0, true]),
        json!({}),
        json!({"a": 1}),
        json!({"a": {"b": [1, {"c": "é"}]}}),
        json!({"b": 5, "a": {"b": 5}}),
        json!({"x": {"y": null}}),
    ]
}

const KEYS: &[&str] = &[
    "score", "round", "name", "flag", "none", "lst", "lst2", "d", "s5", "empty", "zero", "a", "n",
    "big", "f", "x", "y", "z", "w", "s", "machine", "missing",
];

/// A value from the pool, or (one time in four) a container built from pool values.
fn random_value(rng: &mut Rng, pool: &[Value], depth: usize) -> Value {
    if depth < 2 && rng.below(4) == 0 {
        let n = rng.below(4);
        if rng.below(2) == 0 {
            Value::Array((0..n).map(|_| random_value(rng, pool, depth + 1)).collect())
        } else {
            let keys = ["a", "b", "c", "x", "y"];
            Value::Object(
                (0..n)
                    .map(|_| {
                        (
                            keys[rng.below(keys.len())].to_string(),
                            random_value(rng, pool, depth + 1),
                        )
                    })
                    .collect(),
            )
        }
    } else {
        pool[rng.below(pool.len())].clone()
    }
}

/// The contexts every condition is evaluated against: the spec's B.2 context, non-map
/// contexts, and generated ones where each key is missing or holds a random value.
fn contexts() -> Vec<Value> {
    let mut out = vec![
        json!({
            "score": 8, "round": 2, "name": "bob", "flag": true, "none": null,
            "lst": [1, 2, 3], "d": {"a": {"b": 5}}, "s5": "5", "empty": "", "zero": 0,
            "machine": {"step": 4, "current_state": "start"}
        }),
        json!({"a": {"b": [1, {"c": "é"}]}, "n": -3, "big": u64::MAX, "f": 1.5}),
        json!({"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}),
        json!({}),
        Value::Null,
        json!("text"),
        json!([1, "a", null]),
        json!(5),
    ];
    let pool = interesting();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..1500 {
        let mut map = serde_json::Map::new();
        for key in KEYS {
            if rng.below(5) != 0 {
                map.insert((*key).to_string(), random_value(&mut rng, &pool, 0));
            }
        }
        out.push(Value::Object(map));
    }
    out
}

#[test]
fn every_condition_of_the_fixture_is_compiled() {
    let texts = fixture_conditions();
    assert!(texts.len() >= 140, "only {} conditions", texts.len());
    let compiled: Vec<&str> = conditions::ALL.iter().map(|c| c.source()).collect();
    for t in &texts {
        assert!(compiled.contains(&t.as_str()), "not compiled: {t}");
    }
    assert_eq!(
        compiled.len(),
        texts.len(),
        "one compiled item per distinct text"
    );
}

#[test]
fn compiled_conditions_match_the_interpreter() {
    let contexts = contexts();
    let mut checked = 0;
    let mut errors = 0;
    let mut failures = Vec::new();
    for native in conditions::ALL {
        let interpreted = Condition::compile(native.source(), Engine::Simple)
            .unwrap_or_else(|e| panic!("{}: {e}", native.source()));
        assert!(matches!(interpreted, Condition::Simple(_)));
        for ctx in &contexts {
            let want = outcome(interpreted.evaluate(ctx));
            let got = outcome(native.evaluate(ctx));
            errors += usize::from(want.is_err());
            checked += 1;
            if got != want && failures.len() < 20 {
                failures.push(format!(
                    "{}\n  context:     {ctx}\n  interpreted: {want:?}\n  compiled:    {got:?}",
                    native.source()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The generated contexts reach both outcomes for most conditions: the comparison is not
    // only over successes.
    assert!(
        errors > checked / 10 && errors < checked * 9 / 10,
        "{errors} of {checked}"
    );
}

/// Each condition that reads the context gives more than one outcome over the contexts, so the
/// comparison above exercises more than a constant; except those constant by nature.
#[test]
fn generated_contexts_reach_varied_outcomes() {
    let contexts = contexts();
    let constant: Vec<&str> = conditions::ALL
        .iter()
        .filter(|c| c.source().contains("context"))
        .filter(|c| {
            let first = outcome(c.evaluate(&contexts[0]));
            contexts.iter().all(|ctx| outcome(c.evaluate(ctx)) == first)
        })
        .map(|c| c.source())
        .collect();
    assert_eq!(
        constant,
        [
            "context.empty or 'x'",
            "context.x == 1e999 - 1e999",
            "context.x != 1e999 - 1e999",
            "context.d == context.d",
        ],
        "constant over every context"
    );
}

/// An independent oracle for `next_state(Start, ctx)`: the interpreter over the YAML's
/// transitions, in order.
fn interpreted_next(texts: &[String], ctx: &Value) -> Result<Option<&'static str>, String> {
    const TARGETS: [&str; 5] = ["a", "b", "c", "d", "e"];
    for (i, t) in texts.iter().enumerate() {
        let c = Condition::compile(t, Engine::Simple).unwrap();
        match c.evaluate(ctx) {
            Ok(true) => return Ok(Some(TARGETS[i % 5])),
            Ok(false) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(Some("fallback"))
}

#[test]
fn next_state_takes_the_first_transition_that_holds() {
    let texts = fixture_conditions();
    let mut reached = std::collections::BTreeSet::new();
    for ctx in contexts() {
        let want = interpreted_next(&texts, &ctx);
        let got = match compiled_conditions::next_state(State::Start, &ctx) {
            Ok(s) => Ok(s.map(State::name)),
            Err(flatmachines::Error::Condition {
                machine,
                state,
                message,
                ..
            }) => {
                assert_eq!(
                    (machine.as_str(), state.as_str()),
                    ("compiled-conditions", "start")
                );
                Err(message)
            }
            Err(other) => panic!("{other}"),
        };
        assert_eq!(got, want, "{ctx}");
        reached.insert(format!("{got:?}"));
    }
    assert!(reached.len() >= 4, "{reached:?}");
    for s in [
        State::A,
        State::B,
        State::C,
        State::D,
        State::E,
        State::Fallback,
    ] {
        assert_eq!(
            compiled_conditions::next_state(s, &json!({})).unwrap(),
            None
        );
    }
}

/// The executor with the compiled conditions (the generated `machine()`) and with the
/// interpreted ones (the YAML loaded at run time) take the same transitions and fail alike.
#[tokio::test]
async fn compiled_and_interpreted_runs_agree() {
    let rt = Runtime::new();
    let interpreted = Machine::from_file(fixture()).unwrap();
    let compiled = compiled_conditions::machine().unwrap();
    let mut outputs = std::collections::BTreeSet::new();
    for ctx in contexts().into_iter().filter(Value::is_object).take(300) {
        let a = rt
            .run(&interpreted, ctx.clone())
            .await
            .map_err(|e| e.to_string());
        let b = rt
            .run(&compiled, ctx.clone())
            .await
            .map_err(|e| e.to_string());
        assert_eq!(a, b, "{ctx}");
        outputs.insert(format!("{a:?}"));
    }
    assert!(outputs.len() >= 4, "{outputs:?}");
}

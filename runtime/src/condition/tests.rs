use super::*;
use serde_json::json;

/// The context of spec `templates-and-expressions.md` B.2.
fn ctx() -> Value {
    json!({
        "score": 8, "round": 2, "name": "bob", "flag": true, "none": null,
        "lst": [1, 2, 3], "d": {"a": {"b": 5}}, "s5": "5", "empty": "", "zero": 0,
        "machine": {"step": 4}
    })
}

fn compile(src: &str) -> Condition {
    Condition::compile(src, Engine::Simple).unwrap_or_else(|e| panic!("{src}: {e}"))
}

/// The value of `src` (before truthiness), as JSON.
fn value(src: &str) -> Value {
    match compile(src) {
        Condition::Simple(expr) => eval(&expr, &ctx())
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .into_json(),
        other => panic!("{src}: {other:?}"),
    }
}

fn truth(src: &str) -> bool {
    compile(src)
        .evaluate(&ctx())
        .unwrap_or_else(|e| panic!("{src}: {e}"))
}

/// The error of evaluating `src` (which must compile).
fn eval_err(src: &str) -> ConditionError {
    compile(src).evaluate(&ctx()).expect_err(src)
}

fn compile_err(src: &str) -> ConditionError {
    Condition::compile(src, Engine::Simple).expect_err(src)
}

#[test]
fn b2_comparisons_and_logic() {
    assert_eq!(value("context.score >= 8"), json!(true));
    assert_eq!(
        value("context.score >= 8 and context.round < 4"),
        json!(true)
    );
    assert_eq!(value("not context.flag"), json!(false));
    assert_eq!(value("context.name == 'bob'"), json!(true));
    assert_eq!(value("context.name == \"bob\""), json!(true));
    assert_eq!(value("1 < context.round < 3"), json!(true));
    assert_eq!(value("context.lst[0] == 1"), json!(true));
    assert_eq!(value("context.flag == true"), json!(true));
    assert_eq!(value("context.flag == 1"), json!(true));
    assert_eq!(value("context.s5 == 5"), json!(false));
    assert_eq!(value("context.zero or context.score"), json!(true));
    assert_eq!(value("'abc' < 'abd'"), json!(true));
    assert_eq!(value("1.5e3 > 1000"), json!(true));
    assert_eq!(value("0x10 == 16"), json!(true));
    assert!(truth("context.score >= 8 and context.round < 4"));
    assert!(!truth("not context.flag"));
}

#[test]
fn b2_missing_keys_and_paths() {
    assert_eq!(value("context.missing"), json!(null));
    assert!(!truth("context.missing"));
    assert_eq!(value("context.missing == null"), json!(true));
    assert_eq!(value("context.missing == None"), json!(true));
    assert_eq!(value("context.d.a.b == 5"), json!(true));
    assert_eq!(value("context.d.x.y"), json!(null));
    assert!(!truth("context.d.x.y"));
    assert_eq!(value("context.machine.step"), json!(4));
    assert_eq!(value("context['name']"), json!("bob"));
}

#[test]
fn b2_arithmetic() {
    assert_eq!(value("context.round + 1"), json!(3));
    assert_eq!(value("context.round / 4"), json!(0.5));
    assert_eq!(value("context.name + '!'"), json!("bob!"));
}

#[test]
fn b2_evaluation_errors() {
    let e = eval_err("context['missing']");
    assert_eq!((e.kind(), e.message()), ("KeyError", "'missing'"));
    let e = eval_err("context.lst[5]");
    assert_eq!(
        (e.kind(), e.message()),
        ("IndexError", "list index out of range")
    );
    let e = eval_err("context.s5 > 3");
    assert_eq!(
        (e.kind(), e.message()),
        (
            "TypeError",
            "'>' not supported between instances of 'str' and 'int'"
        )
    );
    let e = eval_err("context.missing > 3");
    assert_eq!(
        (e.kind(), e.message()),
        (
            "TypeError",
            "'>' not supported between instances of 'NoneType' and 'int'"
        )
    );
    let e = eval_err("input.x");
    assert_eq!(
        (e.kind(), e.message()),
        ("KeyError", "Unknown variable: input")
    );
    assert_eq!(e.to_string(), "KeyError: Unknown variable: input");
}

#[test]
fn b2_rejected_syntax() {
    for src in [
        "context.round > -1",
        "'b' in context.name",
        "len(context.lst)",
        "context.round % 2",
        "context.score >= 8 && context.round < 4",
    ] {
        let e = compile_err(src);
        assert_eq!(e.kind(), "ValueError", "{src}");
        assert!(
            e.message()
                .starts_with(&format!("Invalid expression syntax: {src} - ")),
            "{src}: {e}"
        );
        let parse = e.parse_error().expect(src);
        assert!(src.get(parse.span.clone()).is_some(), "{src}");
    }
}

#[test]
fn b2_empty_is_always_true() {
    for src in ["", "   ", "\n\t "] {
        for engine in [Engine::Simple, Engine::Cel] {
            let c = Condition::compile(src, engine).unwrap();
            assert!(c.is_always());
            assert!(c.evaluate(&ctx()).unwrap());
            assert!(c.evaluate(&Value::Null).unwrap());
        }
    }
}

#[test]
fn and_or_give_booleans_and_short_circuit() {
    assert_eq!(value("context.empty or 'x'"), json!(true));
    assert_eq!(value("context.score and context.name"), json!(true));
    assert_eq!(value("context.score and context.empty"), json!(false));
    assert_eq!(value("context.empty or context.zero"), json!(false));
    // The failing operand is never evaluated.
    assert_eq!(
        value("context.missing != null and context.missing > 0"),
        json!(false)
    );
    assert_eq!(value("context.flag or context.missing > 0"), json!(true));
    assert_eq!(value("context.zero and input.x"), json!(false));
    assert_eq!(eval_err("context.flag and input.x").kind(), "KeyError");
}

#[test]
fn chains_short_circuit() {
    assert_eq!(value("3 < context.round < context.missing"), json!(false));
    assert_eq!(
        eval_err("1 < context.round < context.missing").message(),
        "'<' not supported between instances of 'int' and 'NoneType'"
    );
    assert_eq!(value("1 < 2 < 3 < 4"), json!(true));
    assert_eq!(value("1 < 2 > 3"), json!(false));
    assert_eq!(value("1 == 1.0 == True"), json!(true));
}

#[test]
fn truthiness_of_results() {
    for (src, expected) in [
        ("context.zero", false),
        ("context.empty", false),
        ("context.none", false),
        ("context.lst", true),
        ("context.d", true),
        ("context.d.a.b - 5", false),
        ("0.0", false),
        ("0.5", true),
        ("''", false),
        ("'0'", true),
        ("None", false),
        ("False", false),
        ("True", true),
    ] {
        assert_eq!(truth(src), expected, "{src}");
    }
    let c = json!({"l": [], "m": {}});
    for src in ["context.l", "context.m"] {
        assert!(!compile(src).evaluate(&c).unwrap(), "{src}");
    }
}

#[test]
fn context_need_not_be_a_map() {
    let c = compile("context.x == null");
    assert!(c.evaluate(&json!(5)).unwrap());
    assert!(c.evaluate(&Value::Null).unwrap());
    assert!(compile("context").evaluate(&json!([1])).unwrap());
    assert_eq!(
        compile("context[0]")
            .evaluate(&json!(5))
            .unwrap_err()
            .message(),
        "'int' object is not subscriptable"
    );
}

#[test]
fn engine_names() {
    assert_eq!(Engine::from_name("simple"), Some(Engine::Simple));
    assert_eq!(Engine::from_name("cel"), Some(Engine::Cel));
    assert_eq!(Engine::from_name("jinja"), None);
    assert_eq!(Engine::default(), Engine::Simple);
    assert_eq!(Engine::Cel.to_string(), "cel");
}

#[test]
fn error_display_and_kinds() {
    let e = ConditionError::missing_key("it's");
    assert_eq!(e.to_string(), "KeyError: \"it's\"");
    assert_eq!(e.error_kind(), ErrorKind::KeyError);
    assert_eq!(e.parse_error(), None);
    for (kind, name) in [
        (ErrorKind::KeyError, "KeyError"),
        (ErrorKind::TypeError, "TypeError"),
        (ErrorKind::IndexError, "IndexError"),
        (ErrorKind::ValueError, "ValueError"),
        (ErrorKind::ZeroDivisionError, "ZeroDivisionError"),
        (ErrorKind::MemoryError, "MemoryError"),
    ] {
        assert_eq!(ConditionError::new(kind, "m").kind(), name);
        assert_eq!(
            ConditionError::new(kind, "m").to_string(),
            format!("{name}: m")
        );
    }
}

#[test]
fn conditions_are_send_sync_and_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Condition>();
    check::<ConditionError>();
}

/// No input text panics at compile or evaluation time, whatever the context.
#[test]
fn no_panics_on_odd_input() {
    let contexts = [
        ctx(),
        Value::Null,
        json!("text"),
        json!([1, "a", null]),
        json!({"a": {"b": [1, {"c": "é"}]}, "n": -3, "big": u64::MAX, "f": 1.5}),
    ];
    let sources = [
        "context.a.b[1].c[0]",
        "context.a.b[0 - 1]",
        "context.a.b[0 - 3]",
        "context.n * 'ab'",
        "context.big * context.big * context.big * context.big * context.big",
        "context.big + 1 > context.big",
        "context.f / 0",
        "context.n / (context.n - context.n)",
        "'x' * 99999999999999999",
        "context.a.b * 99999999999999999",
        "[context][0]",
        "context[None]",
        "context[context]",
        "context.a.b.c.d.e.f.g",
        "1e999 - 1e999 < 1",
        "not not not context",
    ];
    for c in &contexts {
        for src in sources {
            if let Ok(cond) = Condition::compile(src, Engine::Simple) {
                let _ = cond.evaluate(c);
            }
        }
    }
    let deep = format!("{}1{}", "(".repeat(1000), ")".repeat(1000));
    assert_eq!(compile_err(&deep).kind(), "ValueError");
    let long = vec!["context.x"; 5000].join(" + ");
    if let Ok(cond) = Condition::compile(&long, Engine::Simple) {
        let _ = cond.evaluate(&ctx());
    }
    let nots = format!("{}True", "not ".repeat(5000));
    if let Ok(cond) = Condition::compile(&nots, Engine::Simple) {
        let _ = cond.evaluate(&ctx());
    }
}

#[cfg(not(feature = "cel"))]
#[test]
fn cel_without_feature_is_an_error() {
    let e = Condition::compile("1 < 2", Engine::Cel).unwrap_err();
    assert_eq!(e.kind(), "ValueError");
}

/// Rough per-evaluation cost of typical conditions; run with
/// `cargo test --release -p flatmachines condition::tests::timing -- --ignored --nocapture`.
#[test]
#[ignore]
fn timing() {
    let c = json!({"n": 3, "limit": 5, "score": 9, "round": 2, "name": "bob",
                   "other": {"a": 1, "b": [1, 2, 3]}, "text": "x".repeat(1000)});
    for src in [
        "context.n == context.limit",
        "context.score >= 8 and context.round < 4",
        "context.name == 'bob' or context.other.b[2] > 2",
        "context.round + 1 < context.limit",
    ] {
        let cond = compile(src);
        let n = 1_000_000;
        let start = std::time::Instant::now();
        let mut hits = 0;
        for _ in 0..n {
            hits += usize::from(cond.evaluate(std::hint::black_box(&c)).unwrap());
        }
        let per = start.elapsed() / n;
        println!("{src:50} {per:?} per evaluation ({hits} true)");
    }
}

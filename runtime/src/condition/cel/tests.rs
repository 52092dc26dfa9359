use super::*;
use crate::condition::{Condition, Engine};
use serde_json::json;

fn ctx() -> Value {
    json!({
        "score": 8, "round": 2, "name": "bob", "flag": true, "none": null,
        "items": [1, 2, 3], "d": {"a": {"b": 5}}, "ratio": 0.5, "whole": 8.0,
        "big": u64::MAX, "neg": -4, "empty": "", "list0": [], "map0": {},
        "machine": {"step": 4}
    })
}

fn cel(src: &str) -> Condition {
    Condition::compile(src, Engine::Cel).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn truth(src: &str) -> bool {
    cel(src)
        .evaluate(&ctx())
        .unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn value(src: &str) -> CelValue {
    match cel(src) {
        Condition::Cel(c) => c
            .evaluate_value(&ctx())
            .unwrap_or_else(|e| panic!("{src}: {e}")),
        other => panic!("{other:?}"),
    }
}

fn eval_err(src: &str) -> ConditionError {
    cel(src).evaluate(&ctx()).expect_err(src)
}

#[test]
fn field_access_and_functions() {
    for src in [
        "context.score >= 8 && size(context.items) > 0",
        "has(context.name)",
        "!has(context.missing)",
        "has(context.d.a.b)",
        "context.name.startsWith(\"b\")",
        "context.name.endsWith('ob') && context.name.contains('o')",
        "context.items.exists(i, i > 2)",
        "context.items.all(i, i > 0)",
        "context.items.filter(i, i > 1).size() == 2",
        "context.items.map(i, i * 2) == [2, 4, 6]",
        "2 in context.items",
        "'name' in context",
        "context.d.a.b == 5",
        "context.d['a']['b'] == 5",
        "context.machine.step == 4",
        "context.none == null",
        "context.flag ? context.round == 2 : false",
        "context.name.matches('^b.b$')",
        "context.neg < 0 && context.neg == -4",
        "context.big == 18446744073709551615u",
        "type(context.big) == uint && type(context.score) == int",
        "type(context.ratio) == double && type(context.whole) == double",
        "1 < 2",
    ] {
        assert!(truth(src), "{src}");
    }
    for src in [
        "context.score < 8",
        "context.flag && context.round > 3",
        "context.items.exists(i, i > 5)",
    ] {
        assert!(!truth(src), "{src}");
    }
}

#[test]
fn numbers_compare_across_int_uint_and_double() {
    // `score` is the JSON integer 8 → CEL int; `whole` is 8.0 → double.
    assert!(truth("context.score == 8"));
    assert!(truth("context.score == 8.0"));
    assert!(truth("context.whole == 8"));
    assert!(truth("context.score == context.whole"));
    assert!(truth("context.score < 8.5"));
    assert!(truth("context.big > 1"));
    assert!(truth("context.ratio < 1"));
    // Arithmetic does not mix numeric types.
    let e = eval_err("context.score + 0.5 > 8");
    assert_eq!(e.kind(), "ValueError");
}

#[test]
fn results_are_converted_with_truthiness() {
    for (src, expected) in [
        ("context.score", true),
        ("context.score - 8", false),
        ("context.ratio", true),
        ("0.0", false),
        ("context.name", true),
        ("context.empty", false),
        ("context.items", true),
        ("context.list0", false),
        ("context.map0", false),
        ("context.d", true),
        ("context.none", false),
        ("0u", false),
        ("b''", false),
        ("b'x'", true),
        ("duration('0s')", false),
        ("duration('1s')", true),
        ("timestamp('2024-01-01T00:00:00Z')", true),
        ("int", true),
    ] {
        assert_eq!(truth(src), expected, "{src}");
    }
    assert_eq!(value("context.round + 1"), CelValue::Int(3));
    assert_eq!(
        value("context.name + '!'"),
        CelValue::String(Arc::new("bob!".into()))
    );
}

#[test]
fn errors_are_value_errors_with_the_reference_message() {
    let e = eval_err("context.missing > 3");
    assert_eq!(e.kind(), "ValueError");
    assert_eq!(
        e.message(),
        "CEL expression error: context.missing > 3 - No such key: missing"
    );
    for src in [
        "context.name > 3",
        "context.score / 0 == 1",
        "input.x",
        "nosuchfunction(1)",
        "context.items[10]",
    ] {
        let e = eval_err(src);
        assert_eq!(e.kind(), "ValueError", "{src}");
        assert!(
            e.message()
                .starts_with(&format!("CEL expression error: {src} - ")),
            "{src}: {e}"
        );
    }
}

#[test]
fn syntax_errors_are_value_errors() {
    for src in [
        "context.a and context.b",
        "1 +",
        "context.score >= 8 and context.round < 4",
        "(((",
    ] {
        let e = Condition::compile(src, Engine::Cel).expect_err(src);
        assert_eq!(e.kind(), "ValueError", "{src}");
        assert!(
            e.message()
                .starts_with(&format!("CEL expression error: {src} - ")),
            "{src}: {e}"
        );
    }
}

#[test]
fn deep_or_long_input_is_an_error_not_a_crash() {
    let parens = format!("{}1{}", "(".repeat(500), ")".repeat(500));
    assert_eq!(
        Condition::compile(&parens, Engine::Cel).unwrap_err().kind(),
        "ValueError"
    );
    // The parser folds runs of `!`.
    let nots = format!("{}true", "!".repeat(10_000));
    assert!(cel(&nots).evaluate(&ctx()).unwrap());
    let selects = format!("context{}", ".a".repeat(300));
    let e = Condition::compile(&selects, Engine::Cel).unwrap_err();
    assert!(e.message().contains("nested too deeply"), "{}", e.kind());
    let long = "1 + ".repeat(10_000) + "1";
    assert_eq!(
        Condition::compile(&long, Engine::Cel).unwrap_err().kind(),
        "ValueError"
    );
    let sum = "1 + ".repeat(250) + "1";
    let e = Condition::compile(&sum, Engine::Cel).unwrap_err();
    assert!(e.message().contains("nested too deeply"), "{e}");
}

/// The deepest program accepted evaluates within a small thread stack, in debug builds.
#[test]
fn deepest_accepted_program_evaluates_on_a_small_stack() {
    let mut src = "context.score".to_owned();
    let mut accepted = None;
    for _ in 0..300 {
        src = format!("{src} + 1");
        match Condition::compile(&src, Engine::Cel) {
            Ok(c) => accepted = Some(c),
            Err(_) => break,
        }
    }
    let deepest = accepted.expect("some depth is accepted");
    let Condition::Cel(inner) = &deepest else {
        panic!("{deepest:?}")
    };
    assert_eq!(inner.depth(), MAX_CEL_DEPTH);
    // The deepest program that runs on the caller's thread.
    let mut inline_src = "context.score".to_owned();
    while inline_src.matches('+').count() + 2 < INLINE_DEPTH {
        inline_src += " + 1";
    }
    let inline = cel(&inline_src);
    let Condition::Cel(c) = &inline else { panic!() };
    assert_eq!(c.depth(), INLINE_DEPTH);
    let nested = format!("{}context.items{}", "[".repeat(90), "]".repeat(90));
    let comprehension = "context.items.all(a, context.items.all(b, context.items.all(c, \
                         context.items.all(d, a + b + c + d > 0))))";
    let others: Vec<Condition> = [nested.as_str(), comprehension, &inline_src]
        .iter()
        .filter_map(|src| Condition::compile(src, Engine::Cel).ok())
        .collect();
    std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(move || {
            assert!(deepest.evaluate(&ctx()).unwrap());
            for c in others {
                assert!(c.evaluate(&ctx()).unwrap());
            }
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn deeply_nested_context_is_an_error() {
    let mut v = json!(1);
    for _ in 0..300 {
        v = json!([v]);
    }
    let e = cel("true").evaluate(&v).unwrap_err();
    assert!(e.message().contains("nested too deeply"), "{e}");
}

#[test]
fn cel_conditions_are_cheap_to_clone_and_debuggable() {
    let c = cel("context.score > 1");
    let d = c.clone();
    assert!(format!("{d:?}").contains("context.score > 1"));
    if let Condition::Cel(p) = &d {
        assert_eq!(p.source(), "context.score > 1");
        assert!(p.program().references().has_variable("context"));
    }
}

#[test]
fn depth_counts_nesting() {
    let p = Program::compile("a").unwrap();
    assert_eq!(depth(p.expression(), 100), 1);
    let p = Program::compile("a.b + 1").unwrap();
    assert_eq!(depth(p.expression(), 100), 3);
    assert_eq!(depth(p.expression(), 2), 2);
}

/// A list of `n` integers, as a context.
fn numbers(n: usize) -> Value {
    json!({"items": (0..n).collect::<Vec<_>>()})
}

fn compiled(src: &str) -> CelCondition {
    CelCondition::compile(src).unwrap_or_else(|e| panic!("{src}: {e}"))
}

#[test]
fn nested_comprehensions_run_out_of_budget_instead_of_running_for_ever() {
    let ctx = numbers(100_000);
    for src in [
        "context.items.all(x, context.items.exists(y, y == x))",
        "context.items.map(x, context.items.filter(y, y < x)).size() > 0",
        "context.items.exists_one(x, context.items.all(y, y >= 0))",
    ] {
        let e = compiled(src).evaluate(&ctx).unwrap_err();
        assert!(
            e.message()
                .contains(&format!("at most {MAX_CEL_ITERATIONS} items")),
            "{src}: {e}"
        );
    }
    // Past the budget whether the program is evaluated on the caller's thread or on the
    // helper thread of deep programs.
    let deep = format!(
        "context.items.all(x, context.items.exists(y, y == x)){}",
        " && true".repeat(60)
    );
    let c = compiled(&deep);
    assert!(c.depth() > INLINE_DEPTH);
    let e = c.evaluate(&ctx).unwrap_err();
    assert!(e.message().contains("at most"), "{e}");
    // `all()` lets a later `false` override an error: the budget's still wins.
    let e = compiled(
        "context.items.all(x, x < 50 && context.items.exists(y, y == x) || x > 99990 && false)",
    )
    .evaluate(&ctx)
    .unwrap_err();
    assert!(e.message().contains("at most"), "{e}");
}

#[test]
fn comprehensions_within_the_budget_are_untouched() {
    let ctx = numbers(900);
    // 900 + 900 × 900 items: within budget.
    assert!(
        compiled("context.items.all(x, context.items.exists(y, y == x))")
            .evaluate(&ctx)
            .unwrap()
    );
    assert_eq!(
        compiled("context.items.filter(x, x % 2 == 0).map(x, x * 2)")
            .evaluate_value(&ctx)
            .unwrap(),
        cel::Value::from(
            (0..900)
                .filter(|x| x % 2 == 0)
                .map(|x: i64| x * 2)
                .collect::<Vec<i64>>()
        )
    );
    // The budget is per evaluation: the same condition passes again and again, though two
    // evaluations together would exceed it.
    let c = compiled("context.items.all(x, x >= 0)");
    let big = numbers(MAX_CEL_ITERATIONS as usize * 3 / 5);
    for _ in 0..2 {
        assert!(c.evaluate(&big).unwrap());
    }
    // Maps charge their size too.
    assert!(
        compiled("{'a': 1, 'b': 2}.all(k, k.size() == 1)")
            .evaluate(&json!({}))
            .unwrap()
    );
    // Errors inside a comprehension are still the interpreter's own.
    let e = compiled("context.items.all(x, x.nope)")
        .evaluate(&ctx)
        .unwrap_err();
    assert!(!e.message().contains("at most"), "{e}");
}

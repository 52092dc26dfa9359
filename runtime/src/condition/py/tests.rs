use super::*;
use flatmachines_ir::expr::simple::parse;
use serde_json::json;

fn j(v: &Value) -> PyValue<'_> {
    PyValue::from_json(v)
}

fn s(text: &str) -> PyValue<'_> {
    PyValue::Str(Cow::Borrowed(text))
}

/// Evaluates `src` against `context`: the JSON value, or `Err((kind, message))`.
fn run(src: &str, context: &Value) -> Result<Value, (&'static str, String)> {
    let expr = parse(src).unwrap().unwrap();
    eval(&expr, context)
        .map(PyValue::into_json)
        .map_err(|e| (e.kind(), e.message().to_owned()))
}

fn ok(src: &str) -> Value {
    run(src, &json!({})).unwrap_or_else(|e| panic!("{src}: {e:?}"))
}

fn err(src: &str) -> (&'static str, String) {
    run(src, &json!({})).expect_err(src)
}

fn type_err(src: &str, message: &str) {
    assert_eq!(err(src), ("TypeError", message.to_owned()), "{src}");
}

#[test]
fn from_json_views() {
    let v = json!({"i": -3, "u": u64::MAX, "f": 2.5, "s": "x", "l": [1], "m": {}, "n": null, "b": false});
    assert_eq!(attr(&j(&v), "i"), PyValue::Int(-3));
    assert_eq!(attr(&j(&v), "u"), PyValue::Int(i128::from(u64::MAX)));
    assert_eq!(attr(&j(&v), "f"), PyValue::Float(2.5));
    assert_eq!(attr(&j(&v), "s"), s("x"));
    assert!(matches!(attr(&j(&v), "l"), PyValue::List(Cow::Borrowed(_))));
    assert!(matches!(attr(&j(&v), "m"), PyValue::Dict(Cow::Borrowed(_))));
    assert_eq!(attr(&j(&v), "n"), PyValue::Null);
    assert_eq!(attr(&j(&v), "b"), PyValue::Bool(false));
    assert_eq!(attr(&j(&v), "zz"), PyValue::Null);
    let names: Vec<_> = ["i", "f", "s", "l", "m", "n", "b"]
        .iter()
        .map(|k| attr(&j(&v), k).type_name())
        .collect();
    assert_eq!(
        names,
        ["int", "float", "str", "list", "dict", "NoneType", "bool"]
    );
}

#[test]
fn into_json_round_trips() {
    let v = json!({"a": [1, 2.5, "x", null, true, {"b": u64::MAX}], "n": -7});
    assert_eq!(j(&v).into_json(), v);
    assert_eq!(j(&v).into_owned().into_json(), v);
    assert_eq!(PyValue::Float(f64::INFINITY).into_json(), Value::Null);
    assert_eq!(PyValue::Float(f64::NAN).into_json(), Value::Null);
    assert_eq!(PyValue::Int(i128::MAX).into_json(), json!(i128::MAX as f64));
    assert_eq!(PyValue::Int(-5).into_json(), json!(-5));
}

#[test]
fn attribute_access() {
    let v = json!({"a": {"b": 1}, "s": "text", "l": [1]});
    assert_eq!(run("context.a.b", &v), Ok(json!(1)));
    assert_eq!(run("context.a.c", &v), Ok(Value::Null));
    // Non-maps have no attributes here (the reference returns method objects for
    // `upper`, `count`, …; documented divergence).
    assert_eq!(run("context.s.upper", &v), Ok(Value::Null));
    assert_eq!(run("context.l.count", &v), Ok(Value::Null));
    assert_eq!(run("context.a.b.c", &v), Ok(Value::Null));
    assert_eq!(json_attr(&v, "a"), &json!({"b": 1}));
    assert_eq!(json_attr(&v, "zz"), &Value::Null);
    assert_eq!(json_attr(&json!(3), "a"), &Value::Null);
}

#[test]
fn attribute_of_an_owned_map_is_copied_out() {
    // `[m] * 1` is an owned list; indexing it yields an owned map.
    let v = json!({"m": {"k": "v"}, "ms": [{"k": [1, 2]}]});
    assert_eq!(run("(context.ms * 2)[1].k[1]", &v), Ok(json!(2)));
    assert_eq!(
        run("(context.ms + context.ms)[0]['k']", &v),
        Ok(json!([1, 2]))
    );
    assert_eq!(run("(context.ms * 1)[0].zz", &v), Ok(Value::Null));
}

#[test]
fn list_indexing() {
    let v = json!({"l": [10, 20, 30]});
    assert_eq!(run("context.l[0]", &v), Ok(json!(10)));
    assert_eq!(run("context.l[2]", &v), Ok(json!(30)));
    assert_eq!(run("context.l[True]", &v), Ok(json!(20)));
    assert_eq!(run("context.l[0 - 1]", &v), Ok(json!(30)));
    assert_eq!(run("context.l[0 - 3]", &v), Ok(json!(10)));
    let oob = Err(("IndexError", "list index out of range".to_owned()));
    assert_eq!(run("context.l[3]", &v), oob);
    assert_eq!(run("context.l[0 - 4]", &v), oob);
    assert_eq!(run("context.l[99999999999999999]", &v), oob);
    for (idx, t) in [
        ("'a'", "str"),
        ("1.0", "float"),
        ("None", "NoneType"),
        ("context.l", "list"),
    ] {
        assert_eq!(
            run(&format!("context.l[{idx}]"), &v),
            Err((
                "TypeError",
                format!("list indices must be integers or slices, not {t}")
            ))
        );
    }
}

#[test]
fn string_indexing() {
    let v = json!({"s": "héllo"});
    assert_eq!(run("context.s[1]", &v), Ok(json!("é")));
    assert_eq!(run("context.s[0 - 1]", &v), Ok(json!("o")));
    assert_eq!(run("(context.s + '!')[5]", &v), Ok(json!("!")));
    assert_eq!(run("'abc'[False]", &v), Ok(json!("a")));
    let oob = Err(("IndexError", "string index out of range".to_owned()));
    assert_eq!(run("context.s[5]", &v), oob);
    assert_eq!(run("context.s[0 - 6]", &v), oob);
    assert_eq!(run("''[0]", &v), oob);
    for (idx, t) in [("'a'", "str"), ("1.0", "float"), ("None", "NoneType")] {
        assert_eq!(
            run(&format!("context.s[{idx}]"), &v),
            Err((
                "TypeError",
                format!("string indices must be integers, not '{t}'")
            ))
        );
    }
    // A character of a borrowed string borrows from it.
    let text = "abc";
    assert!(matches!(
        index(&s(text), &PyValue::Int(1)),
        Ok(PyValue::Str(Cow::Borrowed("b")))
    ));
}

#[test]
fn map_indexing() {
    let v = json!({"m": {"a": 1, "1": 2}});
    assert_eq!(run("context.m['a']", &v), Ok(json!(1)));
    assert_eq!(run("context.m['1']", &v), Ok(json!(2)));
    for (idx, msg) in [
        ("'b'", "'b'"),
        ("1", "1"),
        ("1.5", "1.5"),
        ("1.0", "1.0"),
        ("1e20", "1e+20"),
        ("None", "None"),
        ("True", "True"),
        ("False", "False"),
        ("\"it's\"", "\"it's\""),
        ("'a\\nb'", "'a\\nb'"),
        ("'q\"\\''", "'q\"\\''"),
        ("'back\\\\slash'", "'back\\\\slash'"),
        ("'\\x01'", "'\\x01'"),
    ] {
        assert_eq!(
            run(&format!("context.m[{idx}]"), &v),
            Err(("KeyError", msg.to_owned())),
            "{idx}"
        );
    }
    assert_eq!(
        run("context.m[context.m]", &v),
        Err(("TypeError", "unhashable type: 'dict'".to_owned()))
    );
    let w = json!({"m": {}, "l": []});
    assert_eq!(
        run("context.m[context.l]", &w),
        Err(("TypeError", "unhashable type: 'list'".to_owned()))
    );
}

#[test]
fn subscript_of_scalars() {
    type_err("5[0]", "'int' object is not subscriptable");
    type_err("None[0]", "'NoneType' object is not subscriptable");
    type_err("1.5[0]", "'float' object is not subscriptable");
    type_err("True[0]", "'bool' object is not subscriptable");
    type_err(
        "context.missing[0]",
        "'NoneType' object is not subscriptable",
    );
}

#[test]
fn equality() {
    for (src, expected) in [
        ("1 == 1.0", true),
        ("True == 1", true),
        ("False == 0.0", true),
        ("True == 1.5", false),
        ("'5' == 5", false),
        ("None == 0", false),
        ("None == None", true),
        ("None == False", false),
        ("'' == None", false),
        ("'a' != 'a'", false),
        ("'a' != 'b'", true),
        ("1 != 1.0", false),
        ("1e999 == 1e999", true),
        ("1e999 - 1e999 == 1e999 - 1e999", false),
        ("1e999 - 1e999 != 1e999 - 1e999", true),
        ("9007199254740993 == 9007199254740992.0", false),
        ("9007199254740992 == 9007199254740992.0", true),
    ] {
        assert_eq!(ok(src), json!(expected), "{src}");
    }
    let v = json!({"a": [1, 2.0, {"x": [true]}], "b": [1.0, 2, {"x": [1]}], "c": [1, 2],
                   "m": {"p": 1, "q": 2}, "n": {"q": 2.0, "p": 1}, "o": {"p": 1}, "r": {"p": 1, "z": 2}});
    for (src, expected) in [
        ("context.a == context.b", true),
        ("context.a == context.c", false),
        ("context.c == context.a", false),
        ("context.m == context.n", true),
        ("context.m == context.o", false),
        ("context.m == context.r", false),
        ("context.c == context.m", false),
        ("context.a != context.b", false),
    ] {
        assert_eq!(run(src, &v), Ok(json!(expected)), "{src}");
    }
}

#[test]
fn ordering() {
    for (src, expected) in [
        ("1 < 2", true),
        ("2 <= 2.0", true),
        ("True < 2", true),
        ("False >= 0", true),
        ("1.5 > 1", true),
        ("9007199254740993 > 9007199254740992.0", true),
        ("9007199254740992.0 < 9007199254740993", true),
        ("1e999 > 99999999999999999", true),
        ("1 < 1e999 - 1e999", false),
        ("1 >= 1e999 - 1e999", false),
        ("'abc' < 'abd'", true),
        ("'ab' < 'abc'", true),
        ("'B' < 'a'", true),
        ("'é' > 'z'", true),
        ("'' <= ''", true),
    ] {
        assert_eq!(ok(src), json!(expected), "{src}");
    }
    let v = json!({"a": [1, 2], "b": [1, 2, 3], "c": [1, 3], "d": [1, "x"], "e": [null], "f": [null, 1],
                   "g": [[1, 2]], "h": [[1, 3]], "m": {}, "s": "s"});
    for (src, expected) in [
        ("context.a < context.b", true),
        ("context.b < context.c", true),
        ("context.c > context.b", true),
        ("context.a <= context.a", true),
        ("context.a >= context.b", false),
        ("context.e < context.e", false),
        ("context.e < context.f", true),
        ("context.g < context.h", true),
    ] {
        assert_eq!(run(src, &v), Ok(json!(expected)), "{src}");
    }
    for (src, msg) in [
        (
            "context.d < context.c",
            "'<' not supported between instances of 'str' and 'int'",
        ),
        (
            "context.m < context.m",
            "'<' not supported between instances of 'dict' and 'dict'",
        ),
        (
            "context.a < context.s",
            "'<' not supported between instances of 'list' and 'str'",
        ),
        (
            "context.e < 1",
            "'<' not supported between instances of 'list' and 'int'",
        ),
    ] {
        assert_eq!(run(src, &v), Err(("TypeError", msg.to_owned())), "{src}");
    }
    type_err(
        "'a' < 1",
        "'<' not supported between instances of 'str' and 'int'",
    );
    type_err(
        "'a' <= 1",
        "'<=' not supported between instances of 'str' and 'int'",
    );
    type_err(
        "'a' > 1",
        "'>' not supported between instances of 'str' and 'int'",
    );
    type_err(
        "'a' >= 1",
        "'>=' not supported between instances of 'str' and 'int'",
    );
    type_err(
        "None < 1",
        "'<' not supported between instances of 'NoneType' and 'int'",
    );
    type_err(
        "True < 'a'",
        "'<' not supported between instances of 'bool' and 'str'",
    );
    type_err(
        "1.5 < None",
        "'<' not supported between instances of 'float' and 'NoneType'",
    );
    type_err(
        "None < None",
        "'<' not supported between instances of 'NoneType' and 'NoneType'",
    );
}

#[test]
fn py_cmp_directly() {
    assert_eq!(
        py_cmp(CmpOp::Lt, &PyValue::Int(1), &PyValue::Float(1.5)),
        Ok(true)
    );
    assert_eq!(py_cmp(CmpOp::Eq, &s("a"), &PyValue::Int(1)), Ok(false));
    assert_eq!(
        py_cmp(CmpOp::NotEq, &PyValue::Null, &PyValue::Int(1)),
        Ok(true)
    );
    assert!(py_cmp(CmpOp::Gt, &PyValue::Null, &PyValue::Int(1)).is_err());
}

#[test]
fn integer_and_float_arithmetic() {
    for (src, expected) in [
        ("1 + 2", json!(3)),
        ("1 + 2.5", json!(3.5)),
        ("True + True", json!(2)),
        ("True * 3", json!(3)),
        ("5 - 7", json!(-2)),
        ("2 * 3", json!(6)),
        ("2 * 1.5", json!(3.0)),
        ("7 / 2", json!(3.5)),
        ("6 / 3", json!(2.0)),
        ("True / 2", json!(0.5)),
        ("1 / 3", json!(1.0 / 3.0)),
        ("0.1 + 0.2", json!(0.1 + 0.2)),
        (
            "9223372036854775807 + 1",
            json!(9_223_372_036_854_775_808_u64),
        ),
        ("1e308 * 10", Value::Null),
    ] {
        assert_eq!(ok(src), expected, "{src}");
    }
    assert!(matches!(
        py_arith(ArithOp::Mul, &PyValue::Int(i128::MAX), &PyValue::Int(2)),
        Ok(PyValue::Float(f)) if f == i128::MAX as f64 * 2.0
    ));
    assert_eq!(
        py_arith(ArithOp::Add, &PyValue::Int(2), &PyValue::Bool(true)),
        Ok(PyValue::Int(3))
    );
    assert!(matches!(ok("6 / 3"), Value::Number(n) if n.is_f64()));
    assert!(matches!(ok("2 * 3"), Value::Number(n) if n.is_i64()));
}

#[test]
fn division_by_zero() {
    for (src, msg) in [
        ("1 / 0", "division by zero"),
        ("0 / 0", "division by zero"),
        ("True / False", "division by zero"),
        ("1.0 / 0", "float division by zero"),
        ("1 / 0.0", "float division by zero"),
        ("1.0 / 0.0", "float division by zero"),
    ] {
        assert_eq!(err(src), ("ZeroDivisionError", msg.to_owned()), "{src}");
    }
}

#[test]
fn sequence_arithmetic() {
    let v = json!({"l": [1, 2], "m": ["x"]});
    for (src, expected) in [
        ("'ab' + 'cd'", json!("abcd")),
        ("'' + ''", json!("")),
        ("'ab' * 3", json!("ababab")),
        ("3 * 'ab'", json!("ababab")),
        ("True * 'ab'", json!("ab")),
        ("'ab' * 0", json!("")),
        ("'ab' * (0 - 7)", json!("")),
        ("'' * 99999999999999999", json!("")),
        ("context.l + context.m", json!([1, 2, "x"])),
        ("context.l * 2", json!([1, 2, 1, 2])),
        ("2 * context.l", json!([1, 2, 1, 2])),
        ("context.l * 0", json!([])),
        ("context.l * (0 - 1)", json!([])),
        ("(context.l * 2)[3]", json!(2)),
        ("context.l + context.m == [1, 2, 'x']", Value::Null),
    ] {
        if expected.is_null() {
            continue; // list literals are not part of the grammar
        }
        assert_eq!(run(src, &v), Ok(expected), "{src}");
    }
    assert_eq!(
        run("context.l + context.l == context.l * 2", &v),
        Ok(json!(true))
    );
    for (src, msg) in [
        ("'a' + 1", "can only concatenate str (not \"int\") to str"),
        (
            "'a' + context.l",
            "can only concatenate str (not \"list\") to str",
        ),
        (
            "context.l + 1",
            "can only concatenate list (not \"int\") to list",
        ),
        (
            "context.l + 'a'",
            "can only concatenate list (not \"str\") to list",
        ),
        (
            "1 + 'a'",
            "unsupported operand type(s) for +: 'int' and 'str'",
        ),
        (
            "None + 1",
            "unsupported operand type(s) for +: 'NoneType' and 'int'",
        ),
        (
            "context + context",
            "unsupported operand type(s) for +: 'dict' and 'dict'",
        ),
        (
            "context.l - context.l",
            "unsupported operand type(s) for -: 'list' and 'list'",
        ),
        (
            "'a' - 1",
            "unsupported operand type(s) for -: 'str' and 'int'",
        ),
        (
            "1 - 'a'",
            "unsupported operand type(s) for -: 'int' and 'str'",
        ),
        (
            "'a' / 1",
            "unsupported operand type(s) for /: 'str' and 'int'",
        ),
        (
            "1 * None",
            "unsupported operand type(s) for *: 'int' and 'NoneType'",
        ),
        (
            "context * 2",
            "unsupported operand type(s) for *: 'dict' and 'int'",
        ),
        (
            "'a' * 1.5",
            "can't multiply sequence by non-int of type 'float'",
        ),
        (
            "1.5 * 'a'",
            "can't multiply sequence by non-int of type 'float'",
        ),
        (
            "'a' * 'b'",
            "can't multiply sequence by non-int of type 'str'",
        ),
        (
            "context.l * context.l",
            "can't multiply sequence by non-int of type 'list'",
        ),
        (
            "'a' * None",
            "can't multiply sequence by non-int of type 'NoneType'",
        ),
        (
            "None * 'a'",
            "can't multiply sequence by non-int of type 'NoneType'",
        ),
    ] {
        assert_eq!(run(src, &v), Err(("TypeError", msg.to_owned())), "{src}");
    }
}

#[test]
fn oversized_repetition_is_a_memory_error() {
    let v = json!({"l": [1, 2]});
    for src in [
        "'ab' * 99999999999999999",
        "'ab' * 9999999999",
        "context.l * 99999999999999999",
        "'x' * 16777217",
    ] {
        assert_eq!(run(src, &v).unwrap_err().0, "MemoryError", "{src}");
    }
    assert_eq!(
        run("'x' * 16777216", &v).map(|v| v.as_str().map(str::len)),
        Ok(Some(MAX_SEQUENCE_LEN))
    );
}

#[test]
fn truthiness() {
    let v = json!({"l": [], "m": {}, "l1": [0], "m1": {"a": null}});
    let t = |v: &PyValue<'_>| py_truthy(v);
    assert!(!t(&PyValue::Null));
    assert!(!t(&PyValue::Bool(false)));
    assert!(t(&PyValue::Bool(true)));
    assert!(!t(&PyValue::Int(0)));
    assert!(t(&PyValue::Int(-1)));
    assert!(!t(&PyValue::Float(0.0)));
    assert!(!t(&PyValue::Float(-0.0)));
    assert!(t(&PyValue::Float(f64::NAN)));
    assert!(!t(&s("")));
    assert!(t(&s(" ")));
    assert!(!t(&attr(&j(&v), "l")));
    assert!(!t(&attr(&j(&v), "m")));
    assert!(t(&attr(&j(&v), "l1")));
    assert!(t(&attr(&j(&v), "m1")));
}

#[test]
fn not_and_unknown_names() {
    assert_eq!(ok("not 0"), json!(true));
    assert_eq!(ok("not 'x'"), json!(false));
    assert_eq!(ok("not not 'x'"), json!(true));
    assert_eq!(err("foo"), ("KeyError", "Unknown variable: foo".to_owned()));
    assert_eq!(
        err("output.x"),
        ("KeyError", "Unknown variable: output".to_owned())
    );
    assert_eq!(
        ok("true == True and null == None and false == False"),
        json!(true)
    );
    assert!(lookup_name("context", &json!(1)).is_ok());
}

#[test]
fn errors_follow_evaluation_order() {
    // Left operand first, as Python evaluates.
    assert_eq!(err("foo + bar").1, "Unknown variable: foo");
    assert_eq!(
        err("1 + 'a' < foo").1,
        "unsupported operand type(s) for +: 'int' and 'str'"
    );
    assert_eq!(err("foo[bar]").1, "Unknown variable: foo");
}

#[test]
fn repr_of_strings() {
    assert_eq!(py_repr_str("a"), "'a'");
    assert_eq!(py_repr_str("it's"), "\"it's\"");
    assert_eq!(py_repr_str("both ' and \""), "'both \\' and \"'");
    assert_eq!(py_repr_str("tab\there\r\n"), "'tab\\there\\r\\n'");
    assert_eq!(py_repr_str("\u{7f}\u{85}é"), "'\\x7f\\x85é'");
}

#[test]
fn literals_borrow_from_the_expression() {
    let expr = parse("'bob'").unwrap().unwrap();
    let ExprKind::Literal(lit) = &expr.kind else {
        panic!()
    };
    assert!(matches!(literal(lit), PyValue::Str(Cow::Borrowed("bob"))));
}

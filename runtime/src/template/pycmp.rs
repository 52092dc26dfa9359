//! Ordering comparisons (`<`, `<=`, `>`, `>=`) as Python 3 evaluates them for Jinja2.
//!
//! minijinja orders any two values (strings after numbers, `none` before everything…), so
//! `{{ '10' > 9 }}` or `{% if context.missing > 0 %}` quietly yield a bool. Python refuses:
//! unrelated types raise `TypeError: '<' not supported between instances of 'str' and 'int'`,
//! and Jinja2's default `Undefined` raises `UndefinedError` when it is compared. The rewrite
//! (`rewrite.rs`) turns every ordering comparison into a call of [`CMP_FN`], which lands here;
//! the `lt`/`gt`/… tests (`select('>', 1)`, `x is gt 3`) use the same rules.
//!
//! What Python orders: numbers (`int`, `float`, `bool`) with each other, exactly (an integer
//! beyond 2^53 against a float is not rounded first), `str` with `str` by code point, and
//! `list` with `list` / `tuple` with `tuple` lexicographically (the first items that differ by
//! `==` are ordered with the same operator; else the lengths are). Everything else raises.

use std::cmp::Ordering;

use minijinja::value::{Rest, Value, ValueKind};
use minijinja::{Error, ErrorKind};

use super::env::{py_error, undefined_error};
use super::pyrepr::py_type_name;

/// The global an ordering comparison is rewritten into: `__fm_cmp(a, '<', b)`; a chain
/// `a < b == c` becomes `__fm_cmp(a, '<', b, '==', c)`.
pub(crate) const CMP_FN: &str = "__fm_cmp";

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    /// The operator written as in the template (and as the rewrite passes it).
    pub(crate) fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            _ => return None,
        })
    }

    fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }

    /// Whether `ord` (`None`: unordered, a NaN) satisfies the operator.
    fn holds(self, ord: Option<Ordering>) -> bool {
        match (self, ord) {
            (_, None) => self == Op::Ne,
            (Op::Lt, Some(o)) => o.is_lt(),
            (Op::Le, Some(o)) => o.is_le(),
            (Op::Gt, Some(o)) => o.is_gt(),
            (Op::Ge, Some(o)) => o.is_ge(),
            (Op::Eq, Some(o)) => o.is_eq(),
            (Op::Ne, Some(o)) => o.is_ne(),
        }
    }
}

/// `__fm_cmp(a, op, b, op, c, …)`: a comparison chain, evaluated pairwise from the left and
/// stopping at the first pair that is false, like Python's `a < b and b < c`.
pub(crate) fn chain(args: Rest<Value>) -> Result<Value, Error> {
    let args = args.0;
    if args.len() < 3 || args.len().is_multiple_of(2) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "malformed comparison chain",
        ));
    }
    for i in (1..args.len()).step_by(2) {
        let op = args[i]
            .as_str()
            .and_then(Op::parse)
            .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "unknown comparison"))?;
        if !compare(&args[i - 1], op, &args[i + 1])? {
            return Ok(Value::from(false));
        }
    }
    Ok(Value::from(true))
}

/// `a <op> b` as Python evaluates it for Jinja2. `==` and `!=` (which never raise) are
/// minijinja's, as they are where no ordering is involved.
pub(crate) fn compare(a: &Value, op: Op, b: &Value) -> Result<bool, Error> {
    match op {
        Op::Eq => return Ok(a == b),
        Op::Ne => return Ok(a != b),
        _ => {}
    }
    // Jinja2's `Undefined` raises on any ordering, on either side (Python tries the
    // reflected operator of the right operand).
    for v in [a, b] {
        if v.is_undefined() {
            return Err(undefined_error(v));
        }
    }
    if let (Some(x), Some(y)) = (number(a), number(b)) {
        return Ok(op.holds(x.cmp(y)));
    }
    if let (Some(x), Some(y)) = (a.as_str(), b.as_str())
        && a.kind() == ValueKind::String
        && b.kind() == ValueKind::String
    {
        // UTF-8 byte order is code point order, which is Python's.
        return Ok(op.holds(Some(x.cmp(y))));
    }
    // Lists with lists, tuples with tuples; Python's `range` objects and dict views are not
    // ordered (keys views compare as sets in Python; not supported here). Sized iterables
    // (`a + b` of lists, slices) are lists in Python.
    let sequence = |v: &Value| match v.kind() {
        ValueKind::Seq => v.downcast_object_ref::<super::env::PyRange>().is_none(),
        ValueKind::Iterable => {
            v.len().is_some() && v.downcast_object_ref::<super::env::DictView>().is_none()
        }
        _ => false,
    };
    if sequence(a) && sequence(b) && a.is_tuple() == b.is_tuple() {
        let (xs, ys): (Vec<Value>, Vec<Value>) = (a.try_iter()?.collect(), b.try_iter()?.collect());
        for (x, y) in xs.iter().zip(&ys) {
            if x != y {
                return compare(x, op, y);
            }
        }
        return Ok(op.holds(Some(xs.len().cmp(&ys.len()))));
    }
    Err(unsupported(op, a, b))
}

/// Python's error for operands it cannot order.
fn unsupported(op: Op, a: &Value, b: &Value) -> Error {
    py_error(
        "TypeError",
        format!(
            "'{}' not supported between instances of '{}' and '{}'",
            op.symbol(),
            py_type_name(a),
            py_type_name(b)
        ),
    )
}

/// A number as Python sees it (`bool` is an `int`).
#[derive(Clone, Copy)]
enum Num {
    Int(i128),
    /// Only integers above `i128::MAX` (minijinja's `u128`).
    Big(u128),
    Float(f64),
}

fn number(v: &Value) -> Option<Num> {
    match v.kind() {
        ValueKind::Bool => Some(Num::Int(i128::from(v.is_true()))),
        ValueKind::Number if v.is_integer() => Some(match i128::try_from(v.clone()) {
            Ok(i) => Num::Int(i),
            Err(_) => Num::Big(u128::try_from(v.clone()).ok()?),
        }),
        ValueKind::Number => f64::try_from(v.clone()).ok().map(Num::Float),
        _ => None,
    }
}

impl Num {
    /// Exact ordering; `None` when a NaN is involved.
    fn cmp(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (Num::Big(a), Num::Big(b)) => Some(a.cmp(&b)),
            (Num::Int(_), Num::Big(_)) => Some(Ordering::Less),
            (Num::Big(_), Num::Int(_)) => Some(Ordering::Greater),
            (Num::Float(a), Num::Float(b)) => a.partial_cmp(&b),
            (Num::Float(a), b) => b.cmp(Num::Float(a)).map(Ordering::reverse),
            (Num::Int(i), Num::Float(f)) => int_vs_float(i, f),
            (Num::Big(b), Num::Float(f)) => big_vs_float(b, f),
        }
    }
}

/// 2^127 and 2^128, the bounds of `i128` and `u128`, exactly representable as floats.
const TWO_127: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;
const TWO_128: f64 = 2.0 * TWO_127;

/// An integer beyond `i128::MAX` against a float, exactly.
fn big_vs_float(b: u128, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    if f >= TWO_128 {
        return Some(Ordering::Less);
    }
    if f < 0.0 {
        return Some(Ordering::Greater);
    }
    // Below 2^128 the whole part converts exactly.
    let whole = f.trunc();
    match b.cmp(&(whole as u128)) {
        Ordering::Equal => 0.0f64.partial_cmp(&(f - whole)),
        other => Some(other),
    }
}

/// An integer against a float, exactly (Python does not round the integer to a float).
fn int_vs_float(i: i128, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    // i128 spans [-2^127, 2^127); floats beyond are larger (or smaller) than every i128.
    if f >= TWO_127 {
        return Some(Ordering::Less);
    }
    if f < -TWO_127 {
        return Some(Ordering::Greater);
    }
    let whole = f.trunc();
    match i.cmp(&(whole as i128)) {
        Ordering::Equal => 0.0f64.partial_cmp(&(f - whole)),
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: Value, op: &str, b: Value) -> Result<bool, String> {
        compare(&a, Op::parse(op).unwrap(), &b).map_err(|e| e.to_string())
    }

    #[test]
    fn numbers_compare_exactly_across_int_and_float() {
        assert_eq!(cmp(Value::from(1), "<", Value::from(1.5)), Ok(true));
        assert_eq!(cmp(Value::from(true), "<", Value::from(2)), Ok(true));
        assert_eq!(cmp(Value::from(2), ">=", Value::from(2.0)), Ok(true));
        // 2^53 + 1 is not equal to the float 2^53, though it rounds to it.
        let big = Value::from(9_007_199_254_740_993_i64);
        assert_eq!(
            cmp(big.clone(), ">", Value::from(9_007_199_254_740_992.0)),
            Ok(true)
        );
        assert_eq!(
            cmp(Value::from(-3), "<", Value::from(-2.5)),
            Ok(true),
            "negative fractions"
        );
        assert_eq!(cmp(Value::from(-2), "<", Value::from(-2.5)), Ok(false));
        assert_eq!(cmp(Value::from(1), "<", Value::from(f64::NAN)), Ok(false));
        assert_eq!(cmp(Value::from(1), ">=", Value::from(f64::NAN)), Ok(false));
        assert_eq!(
            cmp(Value::from(1), "<", Value::from(f64::INFINITY)),
            Ok(true)
        );
        let huge = Value::from(u128::MAX);
        assert_eq!(cmp(huge.clone(), ">", Value::from(1e38)), Ok(true));
        assert_eq!(cmp(huge.clone(), "<", Value::from(1e39)), Ok(true));
        assert_eq!(cmp(Value::from(1.0), "<", huge), Ok(true));
    }

    #[test]
    fn strings_and_sequences_compare_like_python() {
        assert_eq!(cmp(Value::from("a"), "<", Value::from("b")), Ok(true));
        assert_eq!(cmp(Value::from("é"), ">", Value::from("z")), Ok(true));
        let l = |v: Vec<Value>| Value::from(v);
        assert_eq!(
            cmp(
                l(vec![1.into(), "a".into()]),
                "<",
                l(vec![2.into(), "b".into()])
            ),
            Ok(true),
            "decided by the first items"
        );
        assert_eq!(
            cmp(l(vec![1.into()]), "<", l(vec![1.into(), 0.into()])),
            Ok(true)
        );
        assert_eq!(cmp(l(vec![]), "<", l(vec![])), Ok(false));
        assert_eq!(
            cmp(
                l(vec![1.into(), "a".into()]),
                "<",
                l(vec![1.into(), 2.into()])
            ),
            Err("invalid operation: '<' not supported between instances of 'str' and 'int'".into())
        );
    }

    #[test]
    fn unrelated_types_raise() {
        for (a, b, names) in [
            (Value::from("a"), Value::from(1), "'str' and 'int'"),
            (Value::from(()), Value::from(1), "'NoneType' and 'int'"),
            (
                Value::from(()),
                Value::from(()),
                "'NoneType' and 'NoneType'",
            ),
            (
                Value::from(vec![Value::from(1)]),
                Value::from(1),
                "'list' and 'int'",
            ),
        ] {
            let err = cmp(a, ">", b).unwrap_err();
            assert!(
                err.contains(&format!("'>' not supported between instances of {names}")),
                "{err}"
            );
        }
        assert!(cmp(Value::UNDEFINED, "<", Value::from(1)).is_err());
        assert!(cmp(Value::from(1), "<", Value::UNDEFINED).is_err());
        // Equality never raises.
        assert_eq!(cmp(Value::from("a"), "==", Value::from(1)), Ok(false));
        assert_eq!(cmp(Value::UNDEFINED, "!=", Value::from(1)), Ok(true));
    }
}

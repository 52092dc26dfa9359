//! The simple engine's evaluator: Python values and operators over JSON.
//!
//! Everything here follows CPython 3.11 for the values a JSON context can hold (`None`,
//! `bool`, `int`, `float`, `str`, `list`, `dict`), including error classes and messages.
//! Known differences from the reference:
//!
//! * `a.b` on anything but a map is null. The reference uses Python's `getattr` with a
//!   `None` default, so names of Python methods and properties (`context.name.upper`,
//!   `context.lst.count`, `context.n.real`) give a truthy method object or a number there.
//! * Integers are `i128`, not unbounded: an arithmetic result outside `i128` becomes the
//!   nearest float instead of a big integer. Integer true division (`/`) converts both
//!   operands to `f64` first, which can be one ulp off Python's correctly rounded result
//!   when an operand exceeds 2^53.
//! * A repetition (`'ab' * n`, `[x] * n`) longer than [`MAX_SEQUENCE_LEN`] is a
//!   `MemoryError` instead of an attempt to allocate it.
//! * `repr` of a string in a `KeyError` message escapes ASCII and C1 control characters
//!   only; Python also escapes other non-printable code points (e.g. `\u200b`).
//! * Recursion over nested lists and maps (equality, ordering) follows the value's depth,
//!   with no `RecursionError`; `serde_json` parsing limits that depth to 128.

use super::{ConditionError, ErrorKind};
use flatmachines_ir::expr::simple::{ArithOp, CmpOp, Expr, ExprKind, Literal};
use flatmachines_ir::pyfmt::float_repr;
use serde_json::{Map, Value};
use std::borrow::{Borrow, Cow};
use std::cmp::Ordering;

/// Longest result of a repetition: bytes for `str * int`, elements for `list * int`.
/// Longer ones raise `MemoryError` rather than exhaust memory.
pub const MAX_SEQUENCE_LEN: usize = 1 << 24;

/// A Python value during evaluation, borrowing from the context (or the expression's
/// literals) wherever possible: only arithmetic results, and parts taken from them, own
/// their data.
///
/// The derived `PartialEq` is structural (`Int(1) != Float(1.0)`); use [`py_eq`] for
/// Python's `==`.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue<'a> {
    /// `None` (JSON null).
    Null,
    /// `True` / `False`. Counts as the integer 1 / 0 in arithmetic and comparisons.
    Bool(bool),
    /// An integer (JSON integers are `i64` or `u64`, both fit).
    Int(i128),
    /// A float, possibly infinite or NaN (`1e999`, `1e999 - 1e999`).
    Float(f64),
    /// A string.
    Str(Cow<'a, str>),
    /// A list.
    List(Cow<'a, [Value]>),
    /// A map (Python `dict`), keys in context order.
    Dict(Cow<'a, Map<String, Value>>),
}

impl<'a> PyValue<'a> {
    /// A view of a JSON value, without copying it. Integers that fit `i64` or `u64` become
    /// [`PyValue::Int`], other numbers [`PyValue::Float`].
    pub fn from_json(value: &'a Value) -> PyValue<'a> {
        match value {
            Value::Null => PyValue::Null,
            Value::Bool(b) => PyValue::Bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    PyValue::Int(i128::from(i))
                } else if let Some(u) = n.as_u64() {
                    PyValue::Int(i128::from(u))
                } else {
                    PyValue::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => PyValue::Str(Cow::Borrowed(s)),
            Value::Array(items) => PyValue::List(Cow::Borrowed(items)),
            Value::Object(map) => PyValue::Dict(Cow::Borrowed(map)),
        }
    }

    /// The same value, owning all its data.
    pub fn into_owned(self) -> PyValue<'static> {
        match self {
            PyValue::Null => PyValue::Null,
            PyValue::Bool(b) => PyValue::Bool(b),
            PyValue::Int(i) => PyValue::Int(i),
            PyValue::Float(f) => PyValue::Float(f),
            PyValue::Str(s) => PyValue::Str(Cow::Owned(s.into_owned())),
            PyValue::List(l) => PyValue::List(Cow::Owned(l.into_owned())),
            PyValue::Dict(m) => PyValue::Dict(Cow::Owned(m.into_owned())),
        }
    }

    /// The value as JSON. Integers outside `i64`/`u64` become floats; NaN and infinities,
    /// which JSON cannot hold, become null.
    pub fn into_json(self) -> Value {
        match self {
            PyValue::Null => Value::Null,
            PyValue::Bool(b) => Value::Bool(b),
            PyValue::Int(i) => {
                if let Ok(i) = i64::try_from(i) {
                    Value::from(i)
                } else if let Ok(u) = u64::try_from(i) {
                    Value::from(u)
                } else {
                    float_json(i as f64)
                }
            }
            PyValue::Float(f) => float_json(f),
            PyValue::Str(s) => Value::String(s.into_owned()),
            PyValue::List(l) => Value::Array(l.into_owned()),
            PyValue::Dict(m) => Value::Object(m.into_owned()),
        }
    }

    /// Python's type name: `NoneType`, `bool`, `int`, `float`, `str`, `list` or `dict`.
    pub fn type_name(&self) -> &'static str {
        match self {
            PyValue::Null => "NoneType",
            PyValue::Bool(_) => "bool",
            PyValue::Int(_) => "int",
            PyValue::Float(_) => "float",
            PyValue::Str(_) => "str",
            PyValue::List(_) => "list",
            PyValue::Dict(_) => "dict",
        }
    }
}

impl<'a> From<&'a Value> for PyValue<'a> {
    fn from(value: &'a Value) -> Self {
        PyValue::from_json(value)
    }
}

fn float_json(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// An element of a list or map held by `parent`: borrowed for `'a` when the parent is,
/// copied out when the parent is an owned temporary.
fn child<'a, T: ?Sized + ToOwned>(
    parent: &Cow<'a, T>,
    get: impl for<'x> Fn(&'x T) -> Option<&'x Value>,
) -> Option<PyValue<'a>> {
    match parent {
        Cow::Borrowed(p) => get(p).map(PyValue::from_json),
        Cow::Owned(p) => get(p.borrow()).map(|v| PyValue::from_json(v).into_owned()),
    }
}

// ---------------------------------------------------------------------------
// Truthiness, equality, ordering
// ---------------------------------------------------------------------------

/// Python truthiness: false for `None`, `False`, `0`, `0.0`, `""`, `[]` and `{}`; true
/// otherwise (NaN is true).
pub fn py_truthy(v: &PyValue<'_>) -> bool {
    match v {
        PyValue::Null => false,
        PyValue::Bool(b) => *b,
        PyValue::Int(i) => *i != 0,
        PyValue::Float(f) => *f != 0.0,
        PyValue::Str(s) => !s.is_empty(),
        PyValue::List(l) => !l.is_empty(),
        PyValue::Dict(m) => !m.is_empty(),
    }
}

/// A number, with `bool` counted as an integer as Python does.
#[derive(Clone, Copy)]
enum Num {
    I(i128),
    F(f64),
}

fn as_num(v: &PyValue<'_>) -> Option<Num> {
    match v {
        PyValue::Bool(b) => Some(Num::I(i128::from(*b))),
        PyValue::Int(i) => Some(Num::I(*i)),
        PyValue::Float(f) => Some(Num::F(*f)),
        _ => None,
    }
}

/// An integer usable as a sequence index or repeat count (`bool` included).
fn as_int(v: &PyValue<'_>) -> Option<i128> {
    match v {
        PyValue::Bool(b) => Some(i128::from(*b)),
        PyValue::Int(i) => Some(*i),
        _ => None,
    }
}

/// Exact comparison of an integer with a float, as Python does it (no rounding of the
/// integer to a float): `2**53 + 1 > float(2**53)`. `None` when `f` is NaN.
fn int_float_cmp(i: i128, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    // 2^127: every i128 lies in [-2^127, 2^127).
    const LIMIT: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;
    let t = f.trunc();
    if t >= LIMIT {
        return Some(Ordering::Less);
    }
    if t < -LIMIT {
        return Some(Ordering::Greater);
    }
    // In range, and integral, so the conversion is exact.
    let ti = t as i128;
    Some(match i.cmp(&ti) {
        Ordering::Equal => {
            let frac = f - t;
            if frac > 0.0 {
                Ordering::Less
            } else if frac < 0.0 {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        }
        other => other,
    })
}

fn num_cmp(a: Num, b: Num) -> Option<Ordering> {
    match (a, b) {
        (Num::I(x), Num::I(y)) => Some(x.cmp(&y)),
        (Num::F(x), Num::F(y)) => x.partial_cmp(&y),
        (Num::I(x), Num::F(y)) => int_float_cmp(x, y),
        (Num::F(x), Num::I(y)) => int_float_cmp(y, x).map(Ordering::reverse),
    }
}

/// Python's `a == b` for JSON-ish values: numbers compare across `bool`/`int`/`float`
/// (`1 == 1.0`, `True == 1`), everything else only with the same kind (`"5" == 5` is
/// false), lists and maps deeply with the same rules. NaN equals nothing.
pub fn py_eq(a: &PyValue<'_>, b: &PyValue<'_>) -> bool {
    if let (Some(x), Some(y)) = (as_num(a), as_num(b)) {
        return num_cmp(x, y) == Some(Ordering::Equal);
    }
    match (a, b) {
        (PyValue::Null, PyValue::Null) => true,
        (PyValue::Str(x), PyValue::Str(y)) => x == y,
        (PyValue::List(x), PyValue::List(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|(p, q)| py_eq(&PyValue::from_json(p), &PyValue::from_json(q)))
        }
        (PyValue::Dict(x), PyValue::Dict(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, p)| {
                    y.get(k)
                        .is_some_and(|q| py_eq(&PyValue::from_json(p), &PyValue::from_json(q)))
                })
        }
        _ => false,
    }
}

fn holds(op: CmpOp, ord: Ordering) -> bool {
    match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::NotEq => ord != Ordering::Equal,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::LtE => ord != Ordering::Greater,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::GtE => ord != Ordering::Less,
    }
}

/// Python's `a <op> b` for one comparison link.
///
/// `==` and `!=` are [`py_eq`] and never fail. The orderings accept numbers with numbers
/// (`bool` counts as an integer; any comparison with NaN is false), strings with strings
/// (by code point) and lists with lists (lexicographically: the first unequal elements
/// decide, compared with the same operator, else the lengths).
///
/// # Errors
/// `TypeError` for any other pair, e.g. `'<' not supported between instances of 'str'
/// and 'int'`, including null with a number and map with map.
pub fn py_cmp(op: CmpOp, a: &PyValue<'_>, b: &PyValue<'_>) -> Result<bool, ConditionError> {
    match op {
        CmpOp::Eq => return Ok(py_eq(a, b)),
        CmpOp::NotEq => return Ok(!py_eq(a, b)),
        _ => {}
    }
    if let (Some(x), Some(y)) = (as_num(a), as_num(b)) {
        return Ok(num_cmp(x, y).is_some_and(|ord| holds(op, ord)));
    }
    match (a, b) {
        (PyValue::Str(x), PyValue::Str(y)) => Ok(holds(op, x.as_ref().cmp(y.as_ref()))),
        (PyValue::List(x), PyValue::List(y)) => {
            for (p, q) in x.iter().zip(y.iter()) {
                let (p, q) = (PyValue::from_json(p), PyValue::from_json(q));
                if !py_eq(&p, &q) {
                    return py_cmp(op, &p, &q);
                }
            }
            Ok(holds(op, x.len().cmp(&y.len())))
        }
        _ => Err(ConditionError::type_error(format!(
            "'{}' not supported between instances of '{}' and '{}'",
            op.as_str(),
            a.type_name(),
            b.type_name()
        ))),
    }
}

// ---------------------------------------------------------------------------
// Attribute and subscript
// ---------------------------------------------------------------------------

/// `v.name`: the value of key `name` when `v` is a map (null when the key is missing);
/// null for every other value.
///
/// Differs from the reference for names of Python methods and properties on non-maps
/// (`context.name.upper` is a truthy method object there); see the module docs.
pub fn attr<'a>(v: &PyValue<'a>, name: &str) -> PyValue<'a> {
    match v {
        PyValue::Dict(map) => {
            child(map, |m: &Map<String, Value>| m.get(name)).unwrap_or(PyValue::Null)
        }
        _ => PyValue::Null,
    }
}

static NULL: Value = Value::Null;

/// [`attr`] on a JSON value: the value of key `name` when `v` is an object, otherwise (or
/// when the key is missing) null.
pub fn json_attr<'a>(v: &'a Value, name: &str) -> &'a Value {
    match v {
        Value::Object(map) => map.get(name).unwrap_or(&NULL),
        _ => &NULL,
    }
}

/// Resolves a possibly negative Python index against `len`.
fn resolve_index(i: i128, len: usize) -> Option<usize> {
    let len = i128::try_from(len).ok()?;
    let k = if i < 0 { i + len } else { i };
    if (0..len).contains(&k) {
        usize::try_from(k).ok()
    } else {
        None
    }
}

/// `v[i]`, Python's subscript:
///
/// * list: an integer (or `bool`) index, negative counting from the end;
/// * string: the character (code point) at an integer index, likewise;
/// * map: the value of a string key.
///
/// # Errors
/// `IndexError` (`list index out of range`, `string index out of range`); `KeyError` for
/// a missing key, with the key's `repr` as message (`'missing'`, `1`, `None`); `TypeError`
/// for a non-integer list or string index, an unhashable map key (list or map), or a
/// subscript of a number, `bool` or null (`'int' object is not subscriptable`).
pub fn index<'a>(v: &PyValue<'a>, i: &PyValue<'_>) -> Result<PyValue<'a>, ConditionError> {
    match v {
        PyValue::List(items) => {
            let Some(n) = as_int(i) else {
                return Err(ConditionError::type_error(format!(
                    "list indices must be integers or slices, not {}",
                    i.type_name()
                )));
            };
            resolve_index(n, items.len())
                .and_then(|k| child(items, |l: &[Value]| l.get(k)))
                .ok_or_else(|| {
                    ConditionError::new(ErrorKind::IndexError, "list index out of range")
                })
        }
        PyValue::Str(s) => {
            let Some(n) = as_int(i) else {
                return Err(ConditionError::type_error(format!(
                    "string indices must be integers, not '{}'",
                    i.type_name()
                )));
            };
            let out_of_range =
                || ConditionError::new(ErrorKind::IndexError, "string index out of range");
            let k = if n >= 0 {
                usize::try_from(n).map_err(|_| out_of_range())?
            } else {
                resolve_index(n, s.chars().count()).ok_or_else(out_of_range)?
            };
            let (start, c) = s.char_indices().nth(k).ok_or_else(out_of_range)?;
            let range = start..start + c.len_utf8();
            Ok(PyValue::Str(match s {
                Cow::Borrowed(b) => Cow::Borrowed(&b[range]),
                Cow::Owned(o) => Cow::Owned(o[range].to_owned()),
            }))
        }
        PyValue::Dict(map) => match i {
            PyValue::Str(key) => child(map, |m: &Map<String, Value>| m.get(key.as_ref()))
                .ok_or_else(|| ConditionError::missing_key(key)),
            PyValue::List(_) | PyValue::Dict(_) => Err(ConditionError::type_error(format!(
                "unhashable type: '{}'",
                i.type_name()
            ))),
            // JSON keys are strings: no other key can be present.
            PyValue::Null => Err(ConditionError::new(ErrorKind::KeyError, "None")),
            PyValue::Bool(b) => Err(ConditionError::new(
                ErrorKind::KeyError,
                if *b { "True" } else { "False" },
            )),
            PyValue::Int(n) => Err(ConditionError::new(ErrorKind::KeyError, n.to_string())),
            PyValue::Float(f) => Err(ConditionError::new(ErrorKind::KeyError, float_repr(*f))),
        },
        PyValue::Null | PyValue::Bool(_) | PyValue::Int(_) | PyValue::Float(_) => Err(
            ConditionError::type_error(format!("'{}' object is not subscriptable", v.type_name())),
        ),
    }
}

/// Python's `repr` of a string (the template module's implementation, shared so that error
/// messages and rendered text quote alike).
pub fn py_repr_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    crate::py::repr::write_str_repr(&mut out, s);
    out
}

// ---------------------------------------------------------------------------
// Arithmetic
// ---------------------------------------------------------------------------

fn unsupported(op: ArithOp, a: &PyValue<'_>, b: &PyValue<'_>) -> ConditionError {
    ConditionError::type_error(format!(
        "unsupported operand type(s) for {}: '{}' and '{}'",
        op.as_str(),
        a.type_name(),
        b.type_name()
    ))
}

fn num_arith(op: ArithOp, a: Num, b: Num) -> Result<PyValue<'static>, ConditionError> {
    if let (Num::I(x), Num::I(y)) = (a, b) {
        let exact = match op {
            ArithOp::Add => x.checked_add(y),
            ArithOp::Sub => x.checked_sub(y),
            ArithOp::Mul => x.checked_mul(y),
            ArithOp::Div => {
                if y == 0 {
                    return Err(ConditionError::new(
                        ErrorKind::ZeroDivisionError,
                        "division by zero",
                    ));
                }
                return Ok(PyValue::Float(x as f64 / y as f64));
            }
        };
        if let Some(r) = exact {
            return Ok(PyValue::Int(r));
        }
        // Beyond i128: Python would keep an exact big integer; the nearest float is the
        // closest this representation gets.
    }
    let f = |n: Num| match n {
        Num::I(i) => i as f64,
        Num::F(f) => f,
    };
    let (x, y) = (f(a), f(b));
    Ok(PyValue::Float(match op {
        ArithOp::Add => x + y,
        ArithOp::Sub => x - y,
        ArithOp::Mul => x * y,
        ArithOp::Div => {
            if y == 0.0 {
                let both_int = matches!((a, b), (Num::I(_), Num::I(_)));
                return Err(ConditionError::new(
                    ErrorKind::ZeroDivisionError,
                    if both_int {
                        "division by zero"
                    } else {
                        "float division by zero"
                    },
                ));
            }
            x / y
        }
    }))
}

/// A string or list, the operand `*` repeats.
enum Seq<'x> {
    Str(&'x str),
    List(&'x [Value]),
}

fn as_sequence<'x>(v: &'x PyValue<'_>) -> Option<Seq<'x>> {
    match v {
        PyValue::Str(s) => Some(Seq::Str(s)),
        PyValue::List(l) => Some(Seq::List(l)),
        _ => None,
    }
}

/// Repeats a string or list `n` times (`n <= 0` gives an empty one).
fn repeat(seq: Seq<'_>, n: i128) -> Result<PyValue<'static>, ConditionError> {
    let count = usize::try_from(n.max(0)).unwrap_or(usize::MAX);
    let fits = |len: usize| {
        len.checked_mul(count)
            .is_some_and(|t| t <= MAX_SEQUENCE_LEN)
    };
    let too_long = |what: &str| {
        ConditionError::new(
            ErrorKind::MemoryError,
            format!("repeated {what} is too long (limit {MAX_SEQUENCE_LEN})"),
        )
    };
    match seq {
        Seq::Str(s) if s.is_empty() || count == 0 => Ok(PyValue::Str(Cow::Owned(String::new()))),
        Seq::List(l) if l.is_empty() || count == 0 => Ok(PyValue::List(Cow::Owned(Vec::new()))),
        Seq::Str(s) if fits(s.len()) => Ok(PyValue::Str(Cow::Owned(s.repeat(count)))),
        Seq::Str(_) => Err(too_long("string")),
        Seq::List(l) if fits(l.len()) => {
            let mut out = Vec::with_capacity(l.len() * count);
            for _ in 0..count {
                out.extend_from_slice(l);
            }
            Ok(PyValue::List(Cow::Owned(out)))
        }
        Seq::List(_) => Err(too_long("list")),
    }
}

/// Python's `a <op> b` for `+ - * /`.
///
/// * numbers (`bool` counts as an integer): `int` with `int` stays `int` (except `/`,
///   true division, always a float); with a `float` the result is a float;
/// * `+` concatenates two strings or two lists;
/// * `*` repeats a string or list by an integer, on either side (`n <= 0` gives an empty
///   one).
///
/// # Errors
/// `ZeroDivisionError` (`division by zero` for two integers, `float division by zero`
/// otherwise); `TypeError` with Python's message for a type mismatch (`can only
/// concatenate str (not "int") to str`, `unsupported operand type(s) for +: 'int' and
/// 'str'`, `can't multiply sequence by non-int of type 'float'`); `MemoryError` for a
/// repetition longer than [`MAX_SEQUENCE_LEN`].
pub fn py_arith(
    op: ArithOp,
    a: &PyValue<'_>,
    b: &PyValue<'_>,
) -> Result<PyValue<'static>, ConditionError> {
    if let (Some(x), Some(y)) = (as_num(a), as_num(b)) {
        return num_arith(op, x, y);
    }
    match op {
        ArithOp::Add => match (a, b) {
            (PyValue::Str(x), PyValue::Str(y)) => {
                let mut s = String::with_capacity(x.len() + y.len());
                s.push_str(x);
                s.push_str(y);
                Ok(PyValue::Str(Cow::Owned(s)))
            }
            (PyValue::List(x), PyValue::List(y)) => {
                let mut l = Vec::with_capacity(x.len() + y.len());
                l.extend_from_slice(x);
                l.extend_from_slice(y);
                Ok(PyValue::List(Cow::Owned(l)))
            }
            (PyValue::Str(_), _) | (PyValue::List(_), _) => {
                Err(ConditionError::type_error(format!(
                    "can only concatenate {t} (not \"{}\") to {t}",
                    b.type_name(),
                    t = a.type_name()
                )))
            }
            _ => Err(unsupported(op, a, b)),
        },
        ArithOp::Mul => {
            let (seq, count) = match (as_sequence(a), as_sequence(b)) {
                (Some(seq), _) => (seq, b),
                (None, Some(seq)) => (seq, a),
                (None, None) => return Err(unsupported(op, a, b)),
            };
            match as_int(count) {
                Some(n) => repeat(seq, n),
                None => Err(ConditionError::type_error(format!(
                    "can't multiply sequence by non-int of type '{}'",
                    count.type_name()
                ))),
            }
        }
        ArithOp::Sub | ArithOp::Div => Err(unsupported(op, a, b)),
    }
}

// ---------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------

/// The value of a literal, borrowing its string.
pub fn literal(lit: &Literal) -> PyValue<'_> {
    match lit {
        Literal::Int(i) => PyValue::Int(i128::from(*i)),
        Literal::Float(f) => PyValue::Float(*f),
        Literal::Str(s) => PyValue::Str(Cow::Borrowed(s)),
        Literal::Bool(b) => PyValue::Bool(*b),
        Literal::Null => PyValue::Null,
    }
}

/// The value of a variable: `context` is the context; nothing else exists.
///
/// # Errors
/// `KeyError` `Unknown variable: <name>` for any other name.
pub fn lookup_name<'a>(name: &str, context: &'a Value) -> Result<PyValue<'a>, ConditionError> {
    if name == "context" {
        Ok(PyValue::from_json(context))
    } else {
        Err(ConditionError::unknown_variable(name))
    }
}

/// Evaluates a simple-engine expression with `context` as the only variable, returning
/// the Python value (not yet converted to a boolean: see [`py_truthy`]).
///
/// `and`/`or` short-circuit and give a boolean, not an operand; comparison chains
/// evaluate each operand at most once and stop at the first false link.
///
/// Recursion depth is bounded by the parser's
/// [`MAX_DEPTH`](flatmachines_ir::expr::simple::MAX_DEPTH); an [`Expr`] built by
/// hand deeper than that may exhaust the stack.
///
/// # Errors
/// The first error raised, as Python would raise it (see [`py_cmp`], [`py_arith`],
/// [`index`], [`lookup_name`]).
pub fn eval<'a>(expr: &'a Expr, context: &'a Value) -> Result<PyValue<'a>, ConditionError> {
    Ok(match &expr.kind {
        ExprKind::Literal(lit) => literal(lit),
        ExprKind::Name(name) => lookup_name(name, context)?,
        ExprKind::Attr(base, name) => attr(&eval(base, context)?, name),
        ExprKind::Index(base, key) => {
            let base = eval(base, context)?;
            let key = eval(key, context)?;
            index(&base, &key)?
        }
        ExprKind::Not(operand) => PyValue::Bool(!py_truthy(&eval(operand, context)?)),
        ExprKind::And(items) => {
            for item in items {
                if !py_truthy(&eval(item, context)?) {
                    return Ok(PyValue::Bool(false));
                }
            }
            PyValue::Bool(true)
        }
        ExprKind::Or(items) => {
            for item in items {
                if py_truthy(&eval(item, context)?) {
                    return Ok(PyValue::Bool(true));
                }
            }
            PyValue::Bool(false)
        }
        ExprKind::Compare { first, rest } => {
            let mut left = eval(first, context)?;
            for (op, rhs) in rest {
                let right = eval(rhs, context)?;
                if !py_cmp(*op, &left, &right)? {
                    return Ok(PyValue::Bool(false));
                }
                left = right;
            }
            PyValue::Bool(true)
        }
        ExprKind::Binary { op, lhs, rhs } => {
            let l = eval(lhs, context)?;
            let r = eval(rhs, context)?;
            py_arith(*op, &l, &r)?
        }
    })
}

#[cfg(test)]
mod tests;

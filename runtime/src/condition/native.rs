//! Conditions compiled to Rust by `include_machine!`, `flatmachine!` and the build.rs helper, and
//! the primitives the generated code is made of.
//!
//! A generated condition is straight-line Rust over the context: path lookups, then calls to
//! [`ops`], the same functions the interpreter ([`eval`](super::eval)) calls at each node of the
//! tree. The two cannot drift apart in semantics because there is only one implementation of
//! each operator; the generated code only replaces the tree walk.

use super::{Condition, ConditionError, Engine};
use serde_json::Value;
use std::fmt;
use std::sync::OnceLock;

/// A condition compiled to Rust: the context in, Python truthiness of the result out.
pub type NativeFn = fn(&Value) -> Result<bool, ConditionError>;

/// A condition compiled to Rust, with the text it was compiled from.
///
/// Generated modules list theirs in `conditions::ALL`; a compiled machine's transitions whose
/// condition text is in that list evaluate the compiled function instead of interpreting the
/// text. The text is the key because equal texts (under the `simple` engine) mean equal
/// conditions, whichever machine or state they are written in.
#[derive(Clone, Copy)]
pub struct NativeCondition {
    source: &'static str,
    eval: NativeFn,
}

impl NativeCondition {
    /// The condition `source` compiled to `eval`.
    pub const fn new(source: &'static str, eval: NativeFn) -> Self {
        NativeCondition { source, eval }
    }

    /// The condition's text, as written in the YAML.
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// Evaluates the condition; same results and errors as [`Condition::evaluate`] on the
    /// interpreted text.
    ///
    /// # Errors
    /// What the interpreter raises; see [`Condition::evaluate`].
    #[inline]
    pub fn evaluate(&self, context: &Value) -> Result<bool, ConditionError> {
        (self.eval)(context)
    }
}

impl fmt::Debug for NativeCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeCondition")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// A condition the code generator leaves to the interpreter (`expression_engine: cel`, or text
/// that does not parse in a machine with errors), parsed on first use and kept.
pub struct LazyCondition {
    source: &'static str,
    engine: Engine,
    parsed: OnceLock<Result<Condition, ConditionError>>,
}

impl LazyCondition {
    /// `source`, to be interpreted with `engine`.
    pub const fn new(source: &'static str, engine: Engine) -> Self {
        LazyCondition {
            source,
            engine,
            parsed: OnceLock::new(),
        }
    }

    /// The condition's text.
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// Parses the text on the first call, then evaluates it like [`Condition::evaluate`].
    ///
    /// # Errors
    /// The parse error (a `ValueError`, on every call), or what the evaluation raises.
    pub fn evaluate(&self, context: &Value) -> Result<bool, ConditionError> {
        match self
            .parsed
            .get_or_init(|| Condition::compile(self.source, self.engine))
        {
            Ok(condition) => condition.evaluate(context),
            Err(e) => Err(e.clone()),
        }
    }
}

impl fmt::Debug for LazyCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyCondition")
            .field("source", &self.source)
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

/// The operations of the `simple` engine, one function per construct, shared by the interpreter
/// and generated code. Each is the Python operation on JSON values with Python's errors; see
/// [`py_cmp`](super::py_cmp), [`py_arith`](super::py_arith), [`index`](super::index).
pub mod ops {
    use super::super::py::{json_attr, lookup_name, py_arith, py_cmp, py_eq, py_truthy};
    use super::ConditionError;
    use flatmachines_ir::expr::simple::{ArithOp, CmpOp};
    use serde_json::Value;
    use std::borrow::Cow;

    pub use super::super::py::{PyValue, attr, index};

    /// The result of a condition's operators.
    pub type Outcome<T> = Result<T, ConditionError>;

    /// `v.key` on JSON: the value of `key` when `v` is an object, otherwise (or when missing)
    /// null. A chain of these from `context` is how generated code reads `context.a.b`.
    #[inline]
    pub fn get<'a>(v: &'a Value, key: &str) -> &'a Value {
        json_attr(v, key)
    }

    /// A JSON value as a Python value, without copying.
    #[inline]
    pub fn val(v: &Value) -> PyValue<'_> {
        PyValue::from_json(v)
    }

    /// A variable other than `context` (which generated code reads directly).
    ///
    /// # Errors
    /// `KeyError: Unknown variable: <name>`, as the only variable is `context`.
    #[inline]
    pub fn name<'a>(name: &str, context: &'a Value) -> Outcome<PyValue<'a>> {
        lookup_name(name, context)
    }

    /// Python truthiness.
    #[inline]
    pub fn truthy(v: &PyValue<'_>) -> bool {
        py_truthy(v)
    }

    /// An integer literal.
    pub const fn int(i: i64) -> PyValue<'static> {
        PyValue::Int(i as i128)
    }

    /// A float literal.
    pub const fn float(f: f64) -> PyValue<'static> {
        PyValue::Float(f)
    }

    /// A string literal.
    pub const fn string(s: &'static str) -> PyValue<'static> {
        PyValue::Str(Cow::Borrowed(s))
    }

    /// `True` / `False`.
    pub const fn boolean(b: bool) -> PyValue<'static> {
        PyValue::Bool(b)
    }

    /// `None`.
    pub const NULL: PyValue<'static> = PyValue::Null;

    /// `a == b`.
    #[inline]
    pub fn eq(a: &PyValue<'_>, b: &PyValue<'_>) -> bool {
        py_eq(a, b)
    }

    /// `a != b`.
    #[inline]
    pub fn ne(a: &PyValue<'_>, b: &PyValue<'_>) -> bool {
        !py_eq(a, b)
    }

    /// `a < b`.
    ///
    /// # Errors
    /// `TypeError` for values that do not order (see [`py_cmp`](super::super::py_cmp)).
    #[inline]
    pub fn lt(a: &PyValue<'_>, b: &PyValue<'_>) -> Outcome<bool> {
        py_cmp(CmpOp::Lt, a, b)
    }

    /// `a <= b`.
    ///
    /// # Errors
    /// As [`lt`].
    #[inline]
    pub fn le(a: &PyValue<'_>, b: &PyValue<'_>) -> Outcome<bool> {
        py_cmp(CmpOp::LtE, a, b)
    }

    /// `a > b`.
    ///
    /// # Errors
    /// As [`lt`].
    #[inline]
    pub fn gt(a: &PyValue<'_>, b: &PyValue<'_>) -> Outcome<bool> {
        py_cmp(CmpOp::Gt, a, b)
    }

    /// `a >= b`.
    ///
    /// # Errors
    /// As [`lt`].
    #[inline]
    pub fn ge(a: &PyValue<'_>, b: &PyValue<'_>) -> Outcome<bool> {
        py_cmp(CmpOp::GtE, a, b)
    }

    /// `a + b`.
    ///
    /// # Errors
    /// See [`py_arith`](super::super::py_arith).
    #[inline]
    pub fn add(a: &PyValue<'_>, b: &PyValue<'_>) -> Outcome<PyValue<'static>> {
        py_arith(ArithOp::Add, a, b)
    }

    /// `a - b`.
    ///
    /// # Errors
    /// As [`add`].
    #[inline]
    pub fn sub(a: &PyValue<'_>, b: &PyValue<'_>) -> Outcome<PyValue<'static>> {
        py_arith(ArithOp::Sub, a, b)
    }

    /// `a * b`.
    ///
    /// # Errors
    /// As [`add`].
    #[inline]
    pub fn mul(a: &PyValue<'_>, b: &PyValue<'_>) -> Outcome<PyValue<'static>> {
        py_arith(ArithOp::Mul, a, b)
    }

    /// `a / b`.
    ///
    /// # Errors
    /// As [`add`].
    #[inline]
    pub fn div(a: &PyValue<'_>, b: &PyValue<'_>) -> Outcome<PyValue<'static>> {
        py_arith(ArithOp::Div, a, b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compiled_score(context: &Value) -> Result<bool, ConditionError> {
        Ok(
            ops::ge(&ops::val(ops::get(context, "score")), &ops::int(8))?
                && ops::lt(&ops::val(ops::get(context, "round")), &ops::int(4))?,
        )
    }

    #[test]
    fn native_condition_evaluates_its_function() {
        let c = Condition::Native(NativeCondition::new(
            "context.score >= 8 and context.round < 4",
            compiled_score,
        ));
        assert!(!c.is_always());
        assert!(c.evaluate(&json!({"score": 9, "round": 1})).unwrap());
        assert!(!c.evaluate(&json!({"score": 7, "round": 1})).unwrap());
        let e = c.evaluate(&json!({"score": "9"})).unwrap_err();
        assert_eq!(e.kind(), "TypeError");
        assert!(format!("{c:?}").contains("context.score >= 8"));
    }

    #[test]
    fn lazy_condition_parses_once_and_keeps_parse_errors() {
        let c = LazyCondition::new("context.n > 1", Engine::Simple);
        assert!(c.evaluate(&json!({"n": 2})).unwrap());
        assert!(!c.evaluate(&json!({"n": 0})).unwrap());
        let bad = LazyCondition::new("context.n > -1", Engine::Simple);
        for _ in 0..2 {
            let e = bad.evaluate(&json!({})).unwrap_err();
            assert_eq!(e.kind(), "ValueError");
            assert!(e.parse_error().is_some());
        }
        assert_eq!(bad.source(), "context.n > -1");
    }

    #[test]
    fn literals_match_the_interpreter() {
        use flatmachines_ir::expr::simple::Literal;
        assert_eq!(super::super::literal(&Literal::Int(-3)), ops::int(-3));
        assert_eq!(super::super::literal(&Literal::Float(0.5)), ops::float(0.5));
        assert_eq!(
            super::super::literal(&Literal::Str("é".into())),
            ops::string("é")
        );
        assert_eq!(
            super::super::literal(&Literal::Bool(true)),
            ops::boolean(true)
        );
        assert_eq!(super::super::literal(&Literal::Null), ops::NULL);
    }
}

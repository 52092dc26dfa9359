//! Python semantics, in one place: what the reference's behaviour depends on because it is
//! written in Python, and what templates, conditions, adapters and the executor must all agree
//! on.
//!
//! * [`truthy`]: `bool(value)` of a JSON value.
//! * [`class_name`]: `type(value).__name__` of a JSON value.
//! * [`repr`]: `str()` and `repr()`, Python's string quoting and float spelling.
//! * [`json`]: `json.dumps` with default arguments, byte for byte.
//! * [`Exception`]: the `(class, message)` pair a failure carries, which `on_error` maps match
//!   on and `context.last_error_type` / `last_error` show.
//! * [`uuid4`]: `str(uuid.uuid4())`, the ids of executions and signals.
//!
//! The condition engine's own value type (`condition::PyValue`, which also holds arithmetic
//! results) follows the same rules; tests hold the two to each other.

mod exception;
pub mod json;
pub mod repr;

pub use exception::Exception;
pub use repr::{py_repr, py_str};

use serde_json::Value;

/// Python truthiness of a JSON value: false for `None`, `False`, `0`, `0.0`, `""`, `[]` and
/// `{}`; true otherwise.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i != 0,
            (None, Some(u)) => u != 0,
            _ => n.as_f64().is_some_and(|f| f != 0.0),
        },
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Python's class name of a JSON value as the reference decodes it: `NoneType`, `bool`,
/// `int`, `float`, `str`, `list` or `dict`.
pub fn class_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// `str(uuid.uuid4())`: a random version-4 UUID in its hyphenated form.
pub fn uuid4() -> String {
    use rand::Rng;
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Seconds given as a float (a timeout, a wait: what the reference passes to `asyncio`) as a
/// `Duration`, saturating: negative or NaN is zero, too large for a `Duration` (`1e30`,
/// infinity) is `Duration::MAX`, never a panic.
pub(crate) fn saturating_secs(seconds: f64) -> std::time::Duration {
    std::time::Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(std::time::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::{PyValue, py_truthy};
    use serde_json::json;

    #[test]
    fn seconds_saturate_instead_of_panicking() {
        use std::time::Duration;
        assert_eq!(saturating_secs(2.5), Duration::from_millis(2500));
        assert_eq!(saturating_secs(-1.0), Duration::ZERO);
        assert_eq!(saturating_secs(f64::NAN), Duration::ZERO);
        assert_eq!(saturating_secs(1e30), Duration::MAX);
        assert_eq!(saturating_secs(f64::INFINITY), Duration::MAX);
    }

    fn samples() -> Vec<Value> {
        vec![
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(-1),
            json!(18446744073709551615u64),
            json!(0.0),
            json!(-0.0),
            json!(0.5),
            json!(""),
            json!("0"),
            json!([]),
            json!([0]),
            json!({}),
            json!({"a": null}),
        ]
    }

    /// The condition engine's values follow the same rules as JSON values here.
    #[test]
    fn conditions_and_json_agree_on_truth_and_class() {
        for v in samples() {
            let py = PyValue::from(&v);
            assert_eq!(truthy(&v), py_truthy(&py), "bool({v})");
            assert_eq!(class_name(&v), py.type_name(), "type({v})");
        }
    }

    #[test]
    fn truth_table() {
        let truth: Vec<bool> = samples().iter().map(truthy).collect();
        assert_eq!(
            truth,
            [
                false, true, false, false, true, true, false, false, true, false, true, false,
                true, false, true
            ]
        );
    }

    #[test]
    fn printing() {
        let v = json!({"k": [1, 2.5, "it's", null, true], "é": 1e-5});
        assert_eq!(
            py_repr(&v),
            r#"{'k': [1, 2.5, "it's", None, True], 'é': 1e-05}"#
        );
        assert_eq!(py_str(&json!("plain")), "plain");
        assert_eq!(
            json::dumps(&v),
            r#"{"k": [1, 2.5, "it's", null, true], "\u00e9": 1e-05}"#
        );
    }
}

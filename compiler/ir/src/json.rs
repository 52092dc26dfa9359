//! JSON that can be written as a `static`: the values of a machine (context, settings,
//! templates, agent documents) in a form the code generator can emit as Rust data.
//! `serde_json::Value` cannot be built in a constant (its maps allocate).

use crate::{List, Str};
use serde_json::{Map, Number, Value};
use std::borrow::Cow;

/// A JSON value whose strings and containers may be borrowed from static data.
///
/// Converts losslessly to and from `serde_json::Value` (object keys keep their order).
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A negative integer, or any integer that fits `i64`.
    Int(i64),
    /// A non-negative integer above `i64::MAX`.
    UInt(u64),
    /// A finite float.
    Float(f64),
    /// A string.
    Str(Str),
    /// An array.
    Array(List<Json>),
    /// An object, its entries in order.
    Object(List<(Str, Json)>),
}

impl Json {
    /// An empty object.
    pub const EMPTY_OBJECT: Json = Json::Object(Cow::Borrowed(&[]));

    /// The value as `serde_json::Value`.
    pub fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Int(i) => Value::from(*i),
            Json::UInt(u) => Value::from(*u),
            Json::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Json::Str(s) => Value::String(s.to_string()),
            Json::Array(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            Json::Object(entries) => {
                let mut map = Map::with_capacity(entries.len());
                for (k, v) in entries.iter() {
                    map.insert(k.to_string(), v.to_value());
                }
                Value::Object(map)
            }
        }
    }

    /// The value of a `serde_json::Value`, owned.
    pub fn from_value(value: &Value) -> Json {
        match value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => Json::Int(i),
                (None, Some(u)) => Json::UInt(u),
                _ => Json::Float(n.as_f64().unwrap_or(0.0)),
            },
            Value::String(s) => Json::Str(Cow::Owned(s.clone())),
            Value::Array(items) => Json::Array(items.iter().map(Json::from_value).collect()),
            Value::Object(map) => Json::Object(
                map.iter()
                    .map(|(k, v)| (Cow::Owned(k.clone()), Json::from_value(v)))
                    .collect(),
            ),
        }
    }

    /// The value at `key`, for an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Whether the value is an object with at least one entry.
    pub fn is_non_empty_object(&self) -> bool {
        matches!(self, Json::Object(e) if !e.is_empty())
    }
}

/// Serializes as the JSON value it is.
impl serde::Serialize for Json {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

impl From<&Value> for Json {
    fn from(value: &Value) -> Self {
        Json::from_value(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_serde_json_values_in_order() {
        let v = json!({"z": 1, "a": [true, null, -3, 18446744073709551615u64, 1.5, "s"], "m": {}});
        let j = Json::from_value(&v);
        assert_eq!(j.to_value(), v);
        let keys: Vec<_> = j.to_value().as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["z", "a", "m"]);
        assert_eq!(j.get("z"), Some(&Json::Int(1)));
    }

    #[test]
    fn borrowed_values_are_constants() {
        const C: Json = Json::Object(Cow::Borrowed(&[(
            Cow::Borrowed("k"),
            Json::Array(Cow::Borrowed(&[
                Json::Float(0.5),
                Json::Str(Cow::Borrowed("v")),
            ])),
        )]));
        assert_eq!(C.to_value(), json!({"k": [0.5, "v"]}));
        assert!(C.is_non_empty_object());
        assert!(!Json::EMPTY_OBJECT.is_non_empty_object());
    }
}

//! JSON values as template values.
//!
//! minijinja needs `'static` values while the runtime lends its context as `&serde_json::Value`,
//! so the data a template reads is copied into minijinja values for each render. What keeps
//! that cheap: only the variables a template mentions are copied, and when a variable only
//! appears as `name.key…` only those top-level keys are (`{{ context.topic }}` copies
//! `context.topic`, not the whole context; see `usage` in the parent module). Strings up to
//! 22 bytes are stored inline by minijinja, longer ones cost one allocation and a copy.
//!
//! Maps become [`PyDict`], which keeps JSON key order (minijinja's own maps are sorted without
//! its `preserve_order` feature) and looks keys up as Python dict keys.

use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectExt, ObjectRepr, Value};
use serde_json::Value as Json;

/// Maps longer than this get a sorted index for lookups; shorter ones are scanned, which is
/// faster than hashing for the handful of keys a context usually has.
const SCAN_LIMIT: usize = 16;

/// An ordered string-keyed map: a Python `dict` decoded from JSON.
///
/// `a.b` on it is key lookup. The reference (Jinja2 on a Python dict) tries attributes first,
/// so there a key named like a dict method (`items`, `keys`, `values`, `get`, …) is shadowed
/// by the method; we return the key's value instead (divergence, documented in
/// `docs/compatibility.md`).
#[derive(Debug, Default)]
pub(crate) struct PyDict {
    entries: Vec<(Value, Value)>,
    /// Entry positions sorted by key, only for maps longer than [`SCAN_LIMIT`].
    sorted: Option<Vec<u32>>,
}

impl PyDict {
    /// Builds a dict from entries whose keys are all strings.
    pub(crate) fn new(entries: Vec<(Value, Value)>) -> Self {
        let sorted = (entries.len() > SCAN_LIMIT).then(|| {
            let mut idx: Vec<u32> = (0..entries.len() as u32).collect();
            idx.sort_by(|a, b| {
                key_str(&entries[*a as usize].0).cmp(key_str(&entries[*b as usize].0))
            });
            idx
        });
        PyDict { entries, sorted }
    }

    /// The `(key, value)` pairs in insertion order.
    pub(crate) fn entries(&self) -> &[(Value, Value)] {
        &self.entries
    }

    fn lookup(&self, key: &str) -> Option<&Value> {
        match &self.sorted {
            None => self
                .entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            Some(idx) => idx
                .binary_search_by(|i| key_str(&self.entries[*i as usize].0).cmp(key))
                .ok()
                .map(|pos| &self.entries[idx[pos] as usize].1),
        }
    }
}

fn key_str(k: &Value) -> &str {
    k.as_str().unwrap_or_default()
}

impl Object for PyDict {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        // Python dict keys decoded from JSON are strings: `d[1]` never finds `"1"`.
        self.lookup(key.as_str()?).cloned()
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        self.lookup(key).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        self.mapped_key_value_enumerator(|this| {
            Box::new(this.entries.iter().map(|(k, v)| (k.clone(), v.clone())))
        })
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.entries.len())
    }

    fn is_true(self: &Arc<Self>) -> bool {
        !self.entries.is_empty()
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `~` concatenation and minijinja's own stringification print Python repr, like
        // `str(dict)` in the reference.
        let mut out = String::new();
        super::pyrepr::write_mj_repr(&mut out, &Value::from_dyn_object(self.clone()), 0);
        f.write_str(&out)
    }
}

/// Deep conversion of a JSON value.
pub(crate) fn to_value(v: &Json) -> Value {
    match v {
        Json::Null => Value::from(()),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::from(items.iter().map(to_value).collect::<Vec<_>>()),
        Json::Object(map) => Value::from_object(PyDict::new(
            map.iter()
                .map(|(k, v)| (Value::from(k.as_str()), to_value(v)))
                .collect(),
        )),
    }
}

/// A map holding only `keys` of `map` (deep-converted). Keys missing from `map` are simply
/// absent, exactly as in the full conversion; the order does not matter because a template
/// that can observe the whole map is never given a partial one.
pub(crate) fn to_partial_value(map: &serde_json::Map<String, Json>, keys: &[Box<str>]) -> Value {
    let entries = keys
        .iter()
        .filter_map(|k| map.get_key_value(&**k))
        .map(|(k, v)| (Value::from(k.as_str()), to_value(v)))
        .collect();
    Value::from_object(PyDict::new(entries))
}

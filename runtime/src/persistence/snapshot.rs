//! The checkpoint wire format (`persistence.md` §3–4): [`MachineSnapshot`], its keys, and the
//! JSON text the Python reference writes (`json.dumps` defaults), so a snapshot written by one
//! implementation resumes in the other.
//!
//! Encoding writes straight into a caller's `Vec<u8>` (the executor reuses one buffer for every
//! checkpoint of a run); decoding ignores keys it does not know, so snapshots of newer or other
//! SDKs still load, and names the first missing or mistyped required key.

use super::{CheckpointBackend, PersistenceError};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt::Write as _;

/// The key order of the wire format (Python dataclass order).
pub const SNAPSHOT_KEYS: [&str; 16] = [
    "execution_id",
    "machine_name",
    "spec_version",
    "current_state",
    "context",
    "step",
    "created_at",
    "event",
    "output",
    "total_api_calls",
    "total_cost",
    "parent_execution_id",
    "pending_launches",
    "waiting_channel",
    "tool_loop_state",
    "config_hash",
];

/// One checkpoint of an execution (`persistence.md` §4). Every field is always written, `None`
/// as JSON null.
#[derive(Clone, Debug, PartialEq)]
pub struct MachineSnapshot {
    /// The execution this snapshot belongs to.
    pub execution_id: String,
    /// `data.name` of the machine.
    pub machine_name: String,
    /// The machine's effective spec version.
    pub spec_version: String,
    /// The state to re-enter on resume (`"end"` for `machine_end`).
    pub current_state: String,
    /// The whole context, including `machine` and internal keys such as `last_error`.
    pub context: Value,
    /// The step number (0 for `machine_start`).
    pub step: u64,
    /// UTC ISO-8601 time of the write, e.g. `2026-01-05T09:30:12.123456+00:00`.
    pub created_at: String,
    /// The checkpoint event (`machine_start`, `state_enter`, `execute`, `state_exit`,
    /// `machine_end`, `waiting`, `tool_call`).
    pub event: Option<String>,
    /// The final output (`machine_end`, and `state_exit` of final states).
    pub output: Option<Value>,
    /// API calls reported by adapters so far.
    pub total_api_calls: Option<i64>,
    /// Cost reported by adapters so far.
    pub total_cost: Option<f64>,
    /// The launching machine's execution id, for child and launched machines.
    pub parent_execution_id: Option<String>,
    /// Launch intents of the outbox pattern (`{execution_id, machine, input, launched}`
    /// objects); `None` when there are none.
    pub pending_launches: Option<Vec<Value>>,
    /// The signal channel a `waiting` snapshot is blocked on.
    pub waiting_channel: Option<String>,
    /// `{chain, turns, tool_calls_count, loop_cost}` of a `tool_call` snapshot (informational).
    pub tool_loop_state: Option<Value>,
    /// SHA-256 hex digest of the machine config in the config store.
    pub config_hash: Option<String>,
}

/// Why stored bytes are not a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The bytes are not JSON (or not UTF-8).
    #[error("not valid JSON: {0}")]
    Json(String),
    /// The JSON is not an object.
    #[error("a snapshot must be a JSON object")]
    NotAnObject,
    /// Arrays and objects nest deeper than [`MAX_SNAPSHOT_DEPTH`].
    #[error("arrays and objects nest deeper than {limit} levels, the most a snapshot may hold")]
    TooDeep {
        /// The limit ([`MAX_SNAPSHOT_DEPTH`]).
        limit: usize,
    },
    /// A required key is absent.
    #[error("missing required key `{0}`")]
    Missing(&'static str),
    /// A key has a value of the wrong type.
    #[error("`{key}` must be {expected}")]
    WrongType {
        /// The key.
        key: &'static str,
        /// What it must be.
        expected: &'static str,
    },
}

impl MachineSnapshot {
    /// The JSON bytes, exactly as Python's `json.dumps(asdict(snapshot))` spells them.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.write_json(&mut out);
        out
    }

    /// Appends the JSON bytes to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        SnapshotView {
            execution_id: &self.execution_id,
            machine_name: &self.machine_name,
            spec_version: &self.spec_version,
            current_state: &self.current_state,
            context: &self.context,
            step: self.step,
            created_at: Some(&self.created_at),
            event: self.event.as_deref(),
            output: self.output.as_ref(),
            total_api_calls: self.total_api_calls,
            total_cost: self.total_cost,
            parent_execution_id: self.parent_execution_id.as_deref(),
            pending_launches: self.pending_launches.as_deref(),
            waiting_channel: self.waiting_channel.as_deref(),
            tool_loop_state: self.tool_loop_state.as_ref(),
            config_hash: self.config_hash.as_deref(),
        }
        .write(out);
    }

    /// Decodes stored bytes. Unknown keys are ignored (snapshots of other SDKs and later
    /// versions); the required keys (`execution_id`, `machine_name`, `spec_version`,
    /// `current_state`, `context`, `step`) must be present, the others default to null and
    /// `created_at` to now. Bare `NaN`/`Infinity` tokens (which Python writes for such floats)
    /// are read as null.
    pub fn from_json(bytes: &[u8]) -> Result<MachineSnapshot, SnapshotError> {
        let value: Value = match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(first) => decode_slowly(bytes, first)?,
        };
        let Value::Object(mut m) = value else {
            return Err(SnapshotError::NotAnObject);
        };
        Ok(MachineSnapshot {
            execution_id: required_string(&mut m, "execution_id")?,
            machine_name: required_string(&mut m, "machine_name")?,
            spec_version: required_string(&mut m, "spec_version")?,
            current_state: required_string(&mut m, "current_state")?,
            context: match m.remove("context") {
                None => return Err(SnapshotError::Missing("context")),
                Some(v @ Value::Object(_)) => v,
                Some(_) => {
                    return Err(SnapshotError::WrongType {
                        key: "context",
                        expected: "an object",
                    });
                }
            },
            step: match m.remove("step") {
                None => return Err(SnapshotError::Missing("step")),
                Some(v) => v.as_u64().ok_or(SnapshotError::WrongType {
                    key: "step",
                    expected: "a non-negative integer",
                })?,
            },
            created_at: optional_string(&mut m, "created_at")?.unwrap_or_else(utc_now_iso),
            event: optional_string(&mut m, "event")?,
            output: optional_value(&mut m, "output"),
            total_api_calls: match optional_value(&mut m, "total_api_calls") {
                None => None,
                Some(v) => Some(v.as_i64().ok_or(SnapshotError::WrongType {
                    key: "total_api_calls",
                    expected: "an integer or null",
                })?),
            },
            total_cost: match optional_value(&mut m, "total_cost") {
                None => None,
                Some(v) => Some(v.as_f64().ok_or(SnapshotError::WrongType {
                    key: "total_cost",
                    expected: "a number or null",
                })?),
            },
            parent_execution_id: optional_string(&mut m, "parent_execution_id")?,
            pending_launches: match optional_value(&mut m, "pending_launches") {
                None => None,
                Some(Value::Array(a)) => Some(a),
                Some(_) => {
                    return Err(SnapshotError::WrongType {
                        key: "pending_launches",
                        expected: "a list or null",
                    });
                }
            },
            waiting_channel: optional_string(&mut m, "waiting_channel")?,
            tool_loop_state: optional_value(&mut m, "tool_loop_state"),
            config_hash: optional_string(&mut m, "config_hash")?,
        })
    }

    /// This snapshot's storage key, `<execution_id>/step_<NNNNNN>_<event>.json`.
    pub fn key(&self) -> String {
        snapshot_key(
            &self.execution_id,
            self.step,
            self.event.as_deref().unwrap_or("unknown"),
        )
    }
}

/// How deeply the JSON text of a snapshot may nest arrays and objects, the snapshot object
/// itself counting as the first level (so a context may nest one level less).
///
/// `serde_json` alone stops at 128 levels; Python's `json` module at about 1,000 (its recursion
/// limit), so every snapshot the Python SDK writes is within this limit. The executor refuses to
/// write a deeper snapshot ([`PersistenceError::TooDeep`]) rather than write one that could not
/// be read back: what is written can always be resumed. The limit also bounds the recursion of
/// everything else that walks a context (templates, conditions, the JSON writer, `Drop`).
pub const MAX_SNAPSHOT_DEPTH: usize = 1_000;

/// The parse after the strict one failed: bare `NaN`/`Infinity` tokens (written by Python and by
/// this runtime for non-finite floats) become null, and documents nested deeper than
/// `serde_json` accepts are decoded without recursion, up to [`MAX_SNAPSHOT_DEPTH`].
fn decode_slowly(bytes: &[u8], first: serde_json::Error) -> Result<Value, SnapshotError> {
    std::str::from_utf8(bytes).map_err(|e| SnapshotError::Json(format!("not UTF-8: {e}")))?;
    let cleaned = super::meta::without_non_finite(bytes);
    if let Cow::Owned(_) = cleaned {
        tracing::warn!("snapshot holds NaN/Infinity numbers; they are restored as null");
    }
    // serde_json's own limit is 128 nested arrays/objects.
    if super::deep_json::nesting_depth(&cleaned, 127) > 127 {
        return super::deep_json::parse(&cleaned, MAX_SNAPSHOT_DEPTH).map_err(|e| match e {
            super::deep_json::DeepError::TooDeep { limit } => SnapshotError::TooDeep { limit },
            super::deep_json::DeepError::Syntax(message) => SnapshotError::Json(message),
        });
    }
    match cleaned {
        Cow::Owned(fixed) => {
            serde_json::from_slice(&fixed).map_err(|_| SnapshotError::Json(first.to_string()))
        }
        Cow::Borrowed(_) => Err(SnapshotError::Json(first.to_string())),
    }
}

/// Parses one JSON document as the snapshot decoder does: nested up to [`MAX_SNAPSHOT_DEPTH`]
/// levels (`serde_json` alone stops at 128), so that what a checkpoint can hold can also come
/// in, e.g. as the input of `flatmachines run`. Bare `NaN`/`Infinity` are not accepted here.
pub fn parse_json(bytes: &[u8]) -> Result<Value, SnapshotError> {
    match serde_json::from_slice(bytes) {
        Ok(v) => Ok(v),
        Err(first) if super::deep_json::nesting_depth(bytes, 127) > 127 => {
            super::deep_json::parse(bytes, MAX_SNAPSHOT_DEPTH).map_err(|e| match e {
                super::deep_json::DeepError::TooDeep { limit } => SnapshotError::TooDeep { limit },
                super::deep_json::DeepError::Syntax(message) => {
                    SnapshotError::Json(format!("{message} ({first})"))
                }
            })
        }
        Err(first) => Err(SnapshotError::Json(first.to_string())),
    }
}

/// Whether `v` nests more than `levels` arrays and objects (itself included). Recurses at most
/// `levels` deep, so it is safe on any value.
fn deeper_than(v: &Value, levels: usize) -> bool {
    match v {
        Value::Array(items) => levels == 0 || items.iter().any(|x| deeper_than(x, levels - 1)),
        Value::Object(m) => levels == 0 || m.values().any(|x| deeper_than(x, levels - 1)),
        _ => false,
    }
}

fn required_string(m: &mut Map<String, Value>, key: &'static str) -> Result<String, SnapshotError> {
    match m.remove(key) {
        None => Err(SnapshotError::Missing(key)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(SnapshotError::WrongType {
            key,
            expected: "a string",
        }),
    }
}

fn optional_string(
    m: &mut Map<String, Value>,
    key: &'static str,
) -> Result<Option<String>, SnapshotError> {
    match m.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(SnapshotError::WrongType {
            key,
            expected: "a string or null",
        }),
    }
}

fn optional_value(m: &mut Map<String, Value>, key: &str) -> Option<Value> {
    match m.remove(key) {
        None | Some(Value::Null) => None,
        Some(v) => Some(v),
    }
}

/// The key of a snapshot: `<execution_id>/step_<step, 6 digits>_<event>.json`.
pub fn snapshot_key(execution_id: &str, step: u64, event: &str) -> String {
    let mut key = String::with_capacity(execution_id.len() + event.len() + 18);
    write_snapshot_key(&mut key, execution_id, step, event);
    key
}

/// Writes the key of a snapshot into `out` (cleared first), reusing its allocation.
pub fn write_snapshot_key(out: &mut String, execution_id: &str, step: u64, event: &str) {
    out.clear();
    out.push_str(execution_id);
    out.push_str("/step_");
    if step < 1_000_000 {
        let mut digits = [b'0'; 6];
        let mut n = step;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        out.push_str(std::str::from_utf8(&digits).unwrap_or("000000"));
    } else {
        let _ = write!(out, "{step}");
    }
    out.push('_');
    out.push_str(event);
    out.push_str(".json");
}

/// The key of an execution's latest-snapshot pointer: `<execution_id>/latest`.
pub fn latest_key(execution_id: &str) -> String {
    format!("{execution_id}/latest")
}

/// The latest snapshot of an execution and the key it is stored under.
#[derive(Clone, Debug, PartialEq)]
pub struct Latest {
    /// The snapshot key the `<execution_id>/latest` pointer names.
    pub key: String,
    /// The decoded snapshot.
    pub snapshot: MachineSnapshot,
}

/// Loads the latest snapshot of `execution_id` from `backend` (`persistence.md` §4):
/// `Ok(None)` when the execution has no pointer (or an empty one). A pointer naming a missing
/// snapshot, or a snapshot that does not decode, is [`PersistenceError::Corrupt`] naming that
/// key: a damaged execution must not look like one that never started.
pub async fn load_latest(
    backend: &dyn CheckpointBackend,
    execution_id: &str,
) -> Result<Option<Latest>, PersistenceError> {
    let pointer = latest_key(execution_id);
    let Some(bytes) = backend.load(&pointer).await? else {
        return Ok(None);
    };
    let key = std::str::from_utf8(&bytes)
        .map_err(|_| PersistenceError::Corrupt {
            location: pointer.clone(),
            message: "the latest pointer is not UTF-8".into(),
        })?
        .trim()
        .to_string();
    if key.is_empty() {
        return Ok(None);
    }
    let Some(data) = backend.load(&key).await? else {
        return Err(PersistenceError::Corrupt {
            location: key,
            message: format!("`{pointer}` names this snapshot, which is missing"),
        });
    };
    let snapshot = MachineSnapshot::from_json(&data).map_err(|e| PersistenceError::Corrupt {
        location: key.clone(),
        message: e.to_string(),
    })?;
    Ok(Some(Latest { key, snapshot }))
}

/// A snapshot made of borrowed parts, so the executor serialises its live state without
/// copying the context.
pub(crate) struct SnapshotView<'a> {
    pub execution_id: &'a str,
    pub machine_name: &'a str,
    pub spec_version: &'a str,
    pub current_state: &'a str,
    pub context: &'a Value,
    pub step: u64,
    /// `None`: the current time.
    pub created_at: Option<&'a str>,
    pub event: Option<&'a str>,
    pub output: Option<&'a Value>,
    pub total_api_calls: Option<i64>,
    pub total_cost: Option<f64>,
    pub parent_execution_id: Option<&'a str>,
    pub pending_launches: Option<&'a [Value]>,
    pub waiting_channel: Option<&'a str>,
    pub tool_loop_state: Option<&'a Value>,
    pub config_hash: Option<&'a str>,
}

impl SnapshotView<'_> {
    /// Checks that the snapshot's JSON nests at most [`MAX_SNAPSHOT_DEPTH`] levels, so that
    /// what is written can be read back; `Err` names the field that is too deep and the
    /// limit. Values are checked at their depth in the document (the context sits one level
    /// in, a pending launch's input three).
    pub(crate) fn check_depth(&self) -> Result<(), PersistenceError> {
        let too_deep = |field: &'static str| PersistenceError::TooDeep {
            state: self.current_state.to_string(),
            field,
            limit: MAX_SNAPSHOT_DEPTH,
        };
        let inner = MAX_SNAPSHOT_DEPTH - 1;
        if deeper_than(self.context, inner) {
            return Err(too_deep("context"));
        }
        if self.output.is_some_and(|v| deeper_than(v, inner)) {
            return Err(too_deep("output"));
        }
        if self.tool_loop_state.is_some_and(|v| deeper_than(v, inner)) {
            return Err(too_deep("tool_loop_state"));
        }
        if (self.pending_launches.unwrap_or_default().iter()).any(|v| deeper_than(v, inner - 1)) {
            return Err(too_deep("pending_launches"));
        }
        Ok(())
    }

    /// Appends the JSON text to `out`. Returns where the `created_at` value starts and the
    /// `event` value ends in `out`: the only bytes in which the `state_enter` and `execute`
    /// snapshots of one step differ when nothing runs between them (the executor copies the
    /// rest).
    pub(crate) fn write(&self, out: &mut Vec<u8>) -> std::ops::Range<usize> {
        fn opt_str(out: &mut Vec<u8>, s: Option<&str>) {
            match s {
                Some(s) => write_str(out, s),
                None => out.extend_from_slice(b"null"),
            }
        }
        fn opt_value(out: &mut Vec<u8>, v: Option<&Value>) {
            match v {
                Some(v) => write_python_json(out, v),
                None => out.extend_from_slice(b"null"),
            }
        }
        out.extend_from_slice(b"{\"execution_id\": ");
        write_str(out, self.execution_id);
        out.extend_from_slice(b", \"machine_name\": ");
        write_str(out, self.machine_name);
        out.extend_from_slice(b", \"spec_version\": ");
        write_str(out, self.spec_version);
        out.extend_from_slice(b", \"current_state\": ");
        write_str(out, self.current_state);
        out.extend_from_slice(b", \"context\": ");
        write_python_json(out, self.context);
        out.extend_from_slice(b", \"step\": ");
        write_u64(out, self.step);
        out.extend_from_slice(b", \"created_at\": ");
        let varying = out.len();
        match self.created_at {
            Some(s) => write_str(out, s),
            None => {
                out.push(b'"');
                write_utc_now(out);
                out.push(b'"');
            }
        }
        out.extend_from_slice(b", \"event\": ");
        opt_str(out, self.event);
        let varying = varying..out.len();
        out.extend_from_slice(b", \"output\": ");
        opt_value(out, self.output);
        out.extend_from_slice(b", \"total_api_calls\": ");
        match self.total_api_calls {
            Some(n) => write_i64(out, n),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b", \"total_cost\": ");
        match self.total_cost {
            Some(f) => write_float(out, f),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b", \"parent_execution_id\": ");
        opt_str(out, self.parent_execution_id);
        out.extend_from_slice(b", \"pending_launches\": ");
        match self.pending_launches {
            Some(list) => {
                out.push(b'[');
                for (i, v) in list.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b", ");
                    }
                    write_python_json(out, v);
                }
                out.push(b']');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b", \"waiting_channel\": ");
        opt_str(out, self.waiting_channel);
        out.extend_from_slice(b", \"tool_loop_state\": ");
        opt_value(out, self.tool_loop_state);
        out.extend_from_slice(b", \"config_hash\": ");
        opt_str(out, self.config_hash);
        out.push(b'}');
        varying
    }
}

pub use crate::py::json::{dumps as to_python_json, write_dumps as write_python_json};
use crate::py::json::{write_float, write_i64, write_str, write_u64};

/// The current UTC time as Python's `datetime.now(timezone.utc).isoformat()` writes it.
pub fn utc_now_iso() -> String {
    let mut out = Vec::with_capacity(32);
    write_utc_now(&mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// [`utc_now_iso`], appended to `out`.
pub(crate) fn write_utc_now(out: &mut Vec<u8>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    write_iso(out, now.as_secs(), now.subsec_micros());
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00`; like Python, the fraction is left out when it is zero.
fn write_iso(out: &mut Vec<u8>, secs: u64, micros: u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Built on the stack and appended at once: this runs for every snapshot.
    let mut text = *b"0000-00-00T00:00:00.000000+00:00";
    let digits = |field: &mut [u8], mut n: u64| {
        for d in field.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    digits(&mut text[0..4], year.max(0) as u64);
    digits(&mut text[5..7], month as u64);
    digits(&mut text[8..10], day as u64);
    digits(&mut text[11..13], rem / 3600);
    digits(&mut text[14..16], rem / 60 % 60);
    digits(&mut text[17..19], rem % 60);
    if micros != 0 {
        digits(&mut text[20..26], u64::from(micros));
        out.extend_from_slice(&text);
    } else {
        out.extend_from_slice(&text[..19]);
        out.extend_from_slice(b"+00:00");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn py(v: &Value) -> String {
        to_python_json(v)
    }

    #[test]
    fn floats_survive_a_write_and_a_read_exactly() {
        // 17 significant digits, as Python writes them: serde_json without `float_roundtrip`
        // reads this one ulp off, and the written text then drifts again on the next read.
        let text = br#"{"execution_id": "e", "machine_name": "m", "spec_version": "2.6.0", "current_state": "s", "context": {"x": 1.66666666666666666, "y": 0.30000000000000004}, "step": 1}"#;
        let snap = MachineSnapshot::from_json(text).unwrap();
        assert_eq!(snap.context["x"].as_f64(), Some(1.6666666666666667));
        assert_eq!(snap.context["y"].as_f64(), Some(0.1 + 0.2));
        let again = MachineSnapshot::from_json(&snap.to_json()).unwrap();
        assert_eq!(again.context, snap.context);
    }

    #[test]
    fn python_json_spelling() {
        assert_eq!(
            py(&json!({"a": 1, "b": [true, null, "x"]})),
            r#"{"a": 1, "b": [true, null, "x"]}"#
        );
        assert_eq!(
            py(&json!({"z": 1, "a": 2})),
            r#"{"z": 1, "a": 2}"#,
            "key order kept"
        );
        assert_eq!(py(&json!(0.0)), "0.0");
        assert_eq!(py(&json!(-0.0)), "-0.0");
        assert_eq!(py(&json!(3.0)), "3.0");
        assert_eq!(py(&json!(0.1 + 0.2)), "0.30000000000000004");
        assert_eq!(py(&json!(1e16)), "1e+16");
        assert_eq!(py(&json!(1e-5)), "1e-05");
        assert_eq!(py(&json!(-7)), "-7");
        assert_eq!(py(&json!(u64::MAX)), "18446744073709551615");
        assert_eq!(py(&json!(i64::MIN)), "-9223372036854775808");
        assert_eq!(py(&json!([])), "[]");
        assert_eq!(py(&json!({})), "{}");
    }

    #[test]
    fn ensure_ascii_escapes() {
        assert_eq!(py(&json!("é")), r#""\u00e9""#);
        assert_eq!(py(&json!("日本")), r#""\u65e5\u672c""#);
        assert_eq!(py(&json!("😀")), r#""\ud83d\ude00""#);
        assert_eq!(py(&json!("a\"b\\c/d")), r#""a\"b\\c/d""#);
        assert_eq!(
            py(&json!("\n\r\t\u{8}\u{c}\u{1}\u{7f}")),
            r#""\n\r\t\b\f\u0001\u007f""#
        );
        assert_eq!(
            py(&json!({"ключ": "x"})),
            r#"{"\u043a\u043b\u044e\u0447": "x"}"#
        );
    }

    /// The escaping rule, one character at a time: the template side's JSON string writer,
    /// which the byte-at-a-time snapshot writer must agree with.
    fn slow_escape(s: &str) -> String {
        let mut out = String::new();
        crate::py::repr::write_json_str(&mut out, s, false);
        out
    }

    #[test]
    fn fast_escaping_matches_the_rule() {
        let alphabet: Vec<char> = "ab \"\\\n\t\u{1}\u{7f}\u{80}é✓😀~/0Z".chars().collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..40 {
            for _ in 0..50 {
                let s: String = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        alphabet[(seed % alphabet.len() as u64) as usize]
                    })
                    .collect();
                let mut out = Vec::new();
                write_str(&mut out, &s);
                assert_eq!(String::from_utf8(out).unwrap(), slow_escape(&s), "{s:?}");
            }
        }
        // Every ASCII byte and a few others, at every position of two words of plain text.
        let specials = (0u8..=0x7f)
            .map(char::from)
            .chain(['\u{80}', 'é', '✓', '😀']);
        for c in specials {
            for pos in 0..17 {
                let s = format!("{}{c}{}", "a".repeat(pos), "b".repeat(17 - pos));
                let mut out = Vec::new();
                write_str(&mut out, &s);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    slow_escape(&s),
                    "{c:?} at {pos}"
                );
            }
        }
    }

    #[test]
    fn non_finite_floats() {
        let mut out = Vec::new();
        write_float(&mut out, f64::NAN);
        out.push(b' ');
        write_float(&mut out, f64::INFINITY);
        out.push(b' ');
        write_float(&mut out, f64::NEG_INFINITY);
        assert_eq!(out, b"NaN Infinity -Infinity");
    }

    #[test]
    fn iso_times() {
        let mut out = Vec::new();
        write_iso(&mut out, 1_767_605_412, 123_456);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-01-05T09:30:12.123456+00:00"
        );
        let mut out = Vec::new();
        write_iso(&mut out, 951_782_400, 0);
        assert_eq!(String::from_utf8(out).unwrap(), "2000-02-29T00:00:00+00:00");
        let mut out = Vec::new();
        write_iso(&mut out, 0, 5);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1970-01-01T00:00:00.000005+00:00"
        );
        let now = utc_now_iso();
        assert!(now.ends_with("+00:00") && now.len() >= 25, "{now}");
    }

    #[test]
    fn keys() {
        assert_eq!(
            snapshot_key("abc", 12, "state_exit"),
            "abc/step_000012_state_exit.json"
        );
        assert_eq!(
            snapshot_key("abc", 1_234_567, "execute"),
            "abc/step_1234567_execute.json"
        );
        assert_eq!(latest_key("abc"), "abc/latest");
    }

    fn sample() -> MachineSnapshot {
        MachineSnapshot {
            execution_id: "9b1d".into(),
            machine_name: "review".into(),
            spec_version: "2.6.0".into(),
            current_state: "wait".into(),
            context: json!({"doc": "draft", "score": 7, "machine": {"step": 3, "total_cost": 0.0134}}),
            step: 3,
            created_at: "2026-01-05T09:30:12.123456+00:00".into(),
            event: Some("waiting".into()),
            output: None,
            total_api_calls: Some(2),
            total_cost: Some(0.0134),
            parent_execution_id: None,
            pending_launches: Some(vec![
                json!({"execution_id": "c2a", "machine": "notifier", "input": {"doc": "draft"}, "launched": true}),
            ]),
            waiting_channel: Some("approval/doc-17".into()),
            tool_loop_state: None,
            config_hash: Some("0e50".into()),
        }
    }

    #[test]
    fn wire_format() {
        let text = String::from_utf8(sample().to_json()).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"execution_id": "9b1d", "machine_name": "review", "spec_version": "2.6.0", "#,
                r#""current_state": "wait", "context": {"doc": "draft", "score": 7, "machine": "#,
                r#"{"step": 3, "total_cost": 0.0134}}, "step": 3, "#,
                r#""created_at": "2026-01-05T09:30:12.123456+00:00", "event": "waiting", "#,
                r#""output": null, "total_api_calls": 2, "total_cost": 0.0134, "#,
                r#""parent_execution_id": null, "pending_launches": [{"execution_id": "c2a", "#,
                r#""machine": "notifier", "input": {"doc": "draft"}, "launched": true}], "#,
                r#""waiting_channel": "approval/doc-17", "tool_loop_state": null, "#,
                r#""config_hash": "0e50"}"#
            )
        );
        let keys: Vec<String> = serde_json::from_str::<Map<String, Value>>(&text)
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, SNAPSHOT_KEYS);
        assert_eq!(sample().key(), "9b1d/step_000003_waiting.json");
    }

    #[test]
    fn round_trip_and_unknown_keys() {
        let s = sample();
        assert_eq!(MachineSnapshot::from_json(&s.to_json()).unwrap(), s);
        let mut v: Value = serde_json::from_slice(&s.to_json()).unwrap();
        v["from_the_future"] = json!({"x": 1});
        let text = serde_json::to_vec(&v).unwrap();
        assert_eq!(MachineSnapshot::from_json(&text).unwrap(), s);
    }

    #[test]
    fn optional_keys_default() {
        let s = MachineSnapshot::from_json(
            br#"{"execution_id": "x", "machine_name": "m", "spec_version": "2.6.0", "current_state": "a", "context": {}, "step": 0}"#,
        )
        .unwrap();
        assert_eq!(s.event, None);
        assert_eq!(s.total_cost, None);
        assert!(s.created_at.ends_with("+00:00"));
    }

    #[test]
    fn bad_snapshots_are_named() {
        let mut v: Value = serde_json::from_slice(&sample().to_json()).unwrap();
        v.as_object_mut().unwrap().remove("current_state");
        let err = MachineSnapshot::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert_eq!(err, SnapshotError::Missing("current_state"));
        assert_eq!(err.to_string(), "missing required key `current_state`");
        v["current_state"] = json!(3);
        assert_eq!(
            MachineSnapshot::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err(),
            SnapshotError::WrongType {
                key: "current_state",
                expected: "a string"
            }
        );
        assert!(matches!(
            MachineSnapshot::from_json(b"{\"execution_id\": \"x\", \"mach"),
            Err(SnapshotError::Json(_))
        ));
        assert_eq!(
            MachineSnapshot::from_json(b"[1]"),
            Err(SnapshotError::NotAnObject)
        );
    }

    #[test]
    fn python_non_finite_tokens_decode() {
        let text = br#"{"execution_id": "x", "machine_name": "m", "spec_version": "2.6.0", "current_state": "a", "context": {"s": "NaN in a string", "v": NaN, "w": -Infinity}, "step": 1, "total_cost": Infinity}"#;
        let s = MachineSnapshot::from_json(text).unwrap();
        assert_eq!(
            s.context,
            json!({"s": "NaN in a string", "v": null, "w": null})
        );
        assert_eq!(s.total_cost, None);
    }
}

//! What the backends need to know about the bytes they store: the few snapshot fields that
//! listings filter on and SQLite keeps in columns, and whether stored data still decodes.
//!
//! Snapshots may hold bare `NaN` / `Infinity` tokens (Python's `json.dumps` writes them and so
//! does our writer), which strict JSON parsers reject; every parse here retries without them so a
//! snapshot the decoder accepts is never reported as corrupt or left out of a listing.

use super::ListFilter;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// The snapshot fields backends look at. Non-string values count as absent, as a best-effort
/// parse should not fail over a field that only feeds an index.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SnapshotMeta {
    pub machine_name: Option<String>,
    pub event: Option<String>,
    pub current_state: Option<String>,
    pub waiting_channel: Option<String>,
}

impl<'de> Deserialize<'de> for SnapshotMeta {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "snake_case")]
        enum Field {
            MachineName,
            Event,
            CurrentState,
            WaitingChannel,
            #[serde(other)]
            Other,
        }

        struct StrOrNone(Option<String>);
        impl<'de> Deserialize<'de> for StrOrNone {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                string_or_none(d).map(StrOrNone)
            }
        }

        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SnapshotMeta;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a snapshot object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SnapshotMeta, A::Error> {
                let mut meta = SnapshotMeta::default();
                // A repeated key keeps its last value, as Python's `json.loads` does.
                while let Some(field) = map.next_key::<Field>()? {
                    let slot = match field {
                        Field::MachineName => &mut meta.machine_name,
                        Field::Event => &mut meta.event,
                        Field::CurrentState => &mut meta.current_state,
                        Field::WaitingChannel => &mut meta.waiting_channel,
                        Field::Other => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = map.next_value::<StrOrNone>()?.0;
                }
                Ok(meta)
            }
        }
        // A map, never a struct: serde would accept a JSON array for a struct.
        d.deserialize_map(V)
    }
}

impl SnapshotMeta {
    /// Whether a latest snapshot with these fields passes `filter` (exact equality, as the
    /// reference compares).
    pub(crate) fn matches(&self, filter: &ListFilter) -> bool {
        filter
            .event
            .as_deref()
            .is_none_or(|e| self.event.as_deref() == Some(e))
            && filter
                .waiting_channel
                .as_deref()
                .is_none_or(|c| self.waiting_channel.as_deref() == Some(c))
    }
}

/// Parses the indexed fields out of a snapshot; `Err` when the bytes are not a JSON object.
pub(crate) fn snapshot_meta(bytes: &[u8]) -> Result<SnapshotMeta, String> {
    lenient(bytes, |b| serde_json::from_slice::<SnapshotMeta>(b))
}

/// Checks that `bytes` are one JSON document (bare non-finite numbers allowed).
pub(crate) fn check_json(bytes: &[u8]) -> Result<(), String> {
    lenient(bytes, |b| serde_json::from_slice::<IgnoredAny>(b)).map(|_| ())
}

/// Checks a latest-pointer value: UTF-8 naming a valid key, or empty (which readers treat as
/// "no checkpoint", like the reference).
pub(crate) fn check_pointer(bytes: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("pointer is not UTF-8 ({e})"))?;
    let key = text.trim();
    if key.is_empty() {
        return Ok(());
    }
    super::validate_key(key).map_err(|_| format!("pointer names an invalid key `{key}`"))
}

/// The execution id a key belongs to: the part before the first `/`.
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
pub(crate) fn execution_id_of(key: &str) -> &str {
    key.split_once('/').map_or(key, |(id, _)| id)
}

/// Whether `key` is a latest pointer (`<id>/latest`), which some backends store apart.
pub(crate) fn is_pointer_key(key: &str) -> bool {
    key.ends_with("/latest")
}

fn lenient<T>(
    bytes: &[u8],
    parse: impl Fn(&[u8]) -> Result<T, serde_json::Error>,
) -> Result<T, String> {
    match parse(bytes) {
        Ok(v) => Ok(v),
        // The retry costs a copy, so it only happens when the strict parse failed.
        Err(first) => match without_non_finite(bytes) {
            Cow::Owned(cleaned) => parse(&cleaned).map_err(|e| e.to_string()),
            Cow::Borrowed(_) => Err(first.to_string()),
        },
    }
}

/// `bytes` with `NaN`, `Infinity` and `-Infinity` outside strings replaced by `null`.
pub(crate) fn without_non_finite(bytes: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            let step = if b == b'\\' { 2 } else { 1 };
            in_string = b != b'"';
            if let Some(out) = out.as_mut() {
                out.extend_from_slice(&bytes[i..(i + step).min(bytes.len())]);
            }
            i += step;
            continue;
        }
        let rest = &bytes[i..];
        let token = [&b"-Infinity"[..], b"Infinity", b"NaN"]
            .into_iter()
            .find(|t| rest.starts_with(t));
        match token {
            Some(t) => {
                out.get_or_insert_with(|| bytes[..i].to_vec())
                    .extend_from_slice(b"null");
                i += t.len();
            }
            None => {
                in_string = b == b'"';
                if let Some(out) = out.as_mut() {
                    out.push(b);
                }
                i += 1;
            }
        }
    }
    match out {
        Some(v) => Cow::Owned(v),
        None => Cow::Borrowed(bytes),
    }
}

fn string_or_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_indexed_fields_and_ignores_the_rest() {
        let m = snapshot_meta(
            br#"{"execution_id": "x", "machine_name": "m", "context": {"event": "inner", "a": [1, {"b": null}]},
                 "current_state": "s", "event": "waiting", "waiting_channel": "ch/1", "step": 3}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            SnapshotMeta {
                machine_name: Some("m".into()),
                event: Some("waiting".into()),
                current_state: Some("s".into()),
                waiting_channel: Some("ch/1".into()),
            }
        );
    }

    #[test]
    fn non_string_fields_are_absent() {
        let m =
            snapshot_meta(br#"{"event": 5, "waiting_channel": {"a": 1}, "machine_name": null}"#)
                .unwrap();
        assert_eq!(m, SnapshotMeta::default());
        let m = snapshot_meta(br#"{"event": "a", "event": "b"}"#).unwrap();
        assert_eq!(m.event.as_deref(), Some("b"));
    }

    #[test]
    fn bare_non_finite_numbers_are_accepted_but_not_inside_strings() {
        let text = br#"{"context": {"x": NaN, "y": -Infinity, "s": "NaN \" Infinity"}, "total_cost": Infinity, "event": "state_exit"}"#;
        assert_eq!(
            snapshot_meta(text).unwrap().event.as_deref(),
            Some("state_exit")
        );
        check_json(text).unwrap();
        assert_eq!(
            &*without_non_finite(br#"["NaN", NaN, "a\\", Infinity]"#),
            br#"["NaN", null, "a\\", null]"#
        );
        assert!(matches!(
            without_non_finite(br#"{"a": "Infinity"}"#),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn torn_documents_are_errors() {
        assert!(check_json(br#"{"execution_id": "x", "context": {"#).is_err());
        assert!(check_json(b"").is_err());
        assert!(snapshot_meta(b"[1, 2]").is_err());
        assert!(snapshot_meta(br#"{"event": NaN"#).is_err());
    }

    #[test]
    fn filters_compare_exactly() {
        let m = SnapshotMeta {
            event: Some("waiting".into()),
            waiting_channel: Some("a".into()),
            ..SnapshotMeta::default()
        };
        let f = |event: Option<&str>, channel: Option<&str>| ListFilter {
            event: event.map(str::to_string),
            waiting_channel: channel.map(str::to_string),
        };
        assert!(m.matches(&f(None, None)));
        assert!(m.matches(&f(Some("waiting"), Some("a"))));
        assert!(!m.matches(&f(Some("waiting"), Some("b"))));
        assert!(!m.matches(&f(Some("state_exit"), None)));
        assert!(!SnapshotMeta::default().matches(&f(None, Some("a"))));
    }

    #[test]
    fn pointers() {
        check_pointer(b"id/step_000001_state_enter.json").unwrap();
        check_pointer(b"").unwrap();
        assert!(check_pointer(b"../etc/passwd").is_err());
        assert!(check_pointer(&[0xff, 0xfe]).is_err());
        assert_eq!(execution_id_of("abc/latest"), "abc");
        assert_eq!(execution_id_of("abc"), "abc");
        assert!(is_pointer_key("abc/latest") && !is_pointer_key("latest"));
    }
}

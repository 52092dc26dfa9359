//! Rate-limit response headers read into an AgentResult's `rate_limit`
//! (`hooks-adapters-cli.md` §4.3): Cerebras-style per-bucket counters, OpenAI-style
//! counters with reset durations, Anthropic-style counters with reset timestamps, and
//! `retry-after` / `retry-after-ms`.

use serde_json::{Map, Value, json};

/// Response headers, names lower-cased, in arrival order.
pub(crate) type Headers = Vec<(String, String)>;

fn get<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// An integer header as Python's `int()` reads it (surrounding spaces allowed).
fn int(headers: &Headers, name: &str) -> Option<i64> {
    get(headers, name)?.trim().parse().ok()
}

/// `6m30s`, `1h`, `500ms`, `30` as whole seconds, rounded up; zero or unreadable: `None`.
pub(crate) fn duration_secs(text: &str) -> Option<i64> {
    let mut total = 0.0f64;
    let mut num = String::new();
    let mut chars = text.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        if !matches!(c, 'h' | 'm' | 's') || num.is_empty() {
            continue;
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += match c {
            'h' => n * 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                n / 1000.0
            }
            'm' => n * 60.0,
            _ => n,
        };
    }
    if !num.is_empty() {
        total += num.parse::<f64>().ok()?;
    }
    (total > 0.0 && total.is_finite()).then(|| total.ceil() as i64)
}

/// Days from 1970-01-01 to a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An ISO 8601 timestamp (`2026-01-02T03:04:05Z`, with fractional seconds or a `±HH:MM`
/// offset) as Unix seconds. A time without zone is read as UTC (the reference reads it, and
/// the `Z` forms, in the local zone: see docs/compatibility.md).
pub(crate) fn iso_timestamp(text: &str) -> Option<f64> {
    let t = text.trim();
    let (date, time) = t.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let (clock, offset) = if let Some(c) = time.strip_suffix('Z') {
        (c, 0)
    } else if let Some(i) = time.rfind(['+', '-']) {
        let (c, z) = time.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let z = z[1..].replace(':', "");
        if z.len() != 4 {
            return None;
        }
        let h: i64 = z[..2].parse().ok()?;
        let m: i64 = z[2..].parse().ok()?;
        (c, sign * (h * 3600 + m * 60))
    } else {
        (time, 0)
    };
    let mut c = clock.splitn(3, ':');
    let (h, mi) = (
        c.next()?.parse::<i64>().ok()?,
        c.next()?.parse::<i64>().ok()?,
    );
    let s: f64 = c.next()?.parse().ok()?;
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || s >= 61.0 {
        return None;
    }
    let days = days_from_civil(y, mo, da);
    Some((days * 86_400 + h * 3600 + mi * 60 - offset) as f64 + s)
}

/// The rate-limit windows the headers describe.
pub(crate) fn windows(headers: &Headers) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let window = |name: String, resource: &str, remaining: Option<i64>, limit: Option<i64>| {
        let mut w = Map::new();
        w.insert("name".into(), json!(name));
        w.insert("resource".into(), json!(resource));
        if let Some(r) = remaining {
            w.insert("remaining".into(), json!(r));
        }
        if let Some(l) = limit {
            w.insert("limit".into(), json!(l));
        }
        w
    };
    for (bucket, secs) in [("minute", 60), ("hour", 3600), ("day", 86_400)] {
        for res in ["requests", "tokens"] {
            let remaining = int(headers, &format!("x-ratelimit-remaining-{res}-{bucket}"));
            let limit = int(headers, &format!("x-ratelimit-limit-{res}-{bucket}"));
            if remaining.is_some() || limit.is_some() {
                let mut w = window(format!("{res}_per_{bucket}"), res, remaining, limit);
                w.insert("resets_in".into(), json!(secs));
                out.push(Value::Object(w));
            }
        }
    }
    for res in ["requests", "tokens"] {
        let remaining = int(headers, &format!("x-ratelimit-remaining-{res}"));
        let limit = int(headers, &format!("x-ratelimit-limit-{res}"));
        let bucketed = out.iter().any(|w| w["resource"] == res);
        if (remaining.is_some() || limit.is_some()) && !bucketed {
            let mut w = window(res.to_string(), res, remaining, limit);
            if let Some(s) =
                get(headers, &format!("x-ratelimit-reset-{res}")).and_then(duration_secs)
            {
                w.insert("resets_in".into(), json!(s));
            }
            out.push(Value::Object(w));
        }
    }
    for res in ["requests", "tokens"] {
        let remaining = int(headers, &format!("anthropic-ratelimit-{res}-remaining"));
        let limit = int(headers, &format!("anthropic-ratelimit-{res}-limit"));
        if remaining.is_some() || limit.is_some() {
            let mut w = window(res.to_string(), res, remaining, limit);
            if let Some(t) =
                get(headers, &format!("anthropic-ratelimit-{res}-reset")).and_then(iso_timestamp)
            {
                w.insert("reset_at".into(), json!(t));
            }
            out.push(Value::Object(w));
        }
    }
    out
}

/// How long the server asks to wait, in seconds: `retry-after-ms`, else a numeric
/// `retry-after` (an HTTP date is not read). Negative, NaN and infinite values are not waits.
pub(crate) fn retry_after(headers: &Headers) -> Option<f64> {
    let num = |name: &str| {
        get(headers, name)?
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    num("retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| num("retry-after"))
}

/// The `rate_limit` of a result: `{limited, retry_after?, windows?}`. `limited` is set by an
/// exhausted window or by `status_limited` (a 429).
pub(crate) fn state(headers: &Headers, retry_after: Option<f64>, status_limited: bool) -> Value {
    let windows = windows(headers);
    let limited = status_limited
        || windows
            .iter()
            .any(|w| w.get("remaining") == Some(&json!(0)));
    let mut s = Map::new();
    s.insert("limited".into(), json!(limited));
    if let Some(r) = retry_after {
        // Whole seconds print as integers, as the reference's `int` header does.
        let v = if r.fract() == 0.0 && r < 1e15 {
            json!(r as i64)
        } else {
            json!(r)
        };
        s.insert("retry_after".into(), v);
    }
    if !windows.is_empty() {
        s.insert("windows".into(), Value::Array(windows));
    }
    Value::Object(s)
}

/// Whether a header belongs in `provider_data.raw_headers`: the rate-limit family and
/// request ids (nothing that could carry a credential or a cookie).
pub(crate) fn is_reported(name: &str) -> bool {
    name.starts_with("x-ratelimit-")
        || name.starts_with("anthropic-ratelimit-")
        || name.starts_with("retry-after")
        || matches!(name, "x-request-id" | "request-id" | "openai-processing-ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_three_header_families() {
        let headers = h(&[
            ("x-ratelimit-remaining-requests-minute", "0"),
            ("x-ratelimit-limit-requests-minute", "30"),
            ("x-ratelimit-remaining-requests", "5"),
            ("x-ratelimit-remaining-tokens", "100"),
            ("x-ratelimit-limit-tokens", "nope"),
            ("x-ratelimit-reset-tokens", "6m30.5s"),
            ("anthropic-ratelimit-tokens-remaining", "9"),
            ("anthropic-ratelimit-tokens-reset", "2026-01-02T03:04:05Z"),
            ("retry-after", "7"),
        ]);
        let s = state(&headers, retry_after(&headers), false);
        assert_eq!(
            s,
            json!({"limited": true, "retry_after": 7, "windows": [
                {"name": "requests_per_minute", "resource": "requests", "remaining": 0,
                 "limit": 30, "resets_in": 60},
                {"name": "tokens", "resource": "tokens", "remaining": 100, "resets_in": 391},
                {"name": "tokens", "resource": "tokens", "remaining": 9, "reset_at": 1767323045.0}
            ]})
        );
        assert_eq!(state(&h(&[]), None, false), json!({"limited": false}));
        assert_eq!(
            retry_after(&h(&[("retry-after-ms", "1500"), ("retry-after", "9")])),
            Some(1.5)
        );
        assert_eq!(retry_after(&h(&[("retry-after", "-1")])), None);
    }

    #[test]
    fn durations_and_timestamps() {
        assert_eq!(duration_secs("1h"), Some(3600));
        assert_eq!(duration_secs("500ms"), Some(1));
        assert_eq!(duration_secs("30"), Some(30));
        assert_eq!(duration_secs("0s"), None);
        assert_eq!(iso_timestamp("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(iso_timestamp("1970-01-01T01:00:00+01:00"), Some(0.0));
        assert_eq!(iso_timestamp("2000-03-01T00:00:00.5Z"), Some(951868800.5));
        assert_eq!(iso_timestamp("2000-13-01T00:00:00Z"), None);
        assert_eq!(iso_timestamp("garbage"), None);
    }
}

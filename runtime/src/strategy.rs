//! Execution types for agent calls (`execution.md` §11): default, retry, parallel, mdap_voting.

use crate::agent::{AgentExecutor, AgentFailure, AgentResult, BoxFuture};
use crate::executor::StateFailure;
use flatmachines_ir::Execution;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

fn failure(f: AgentFailure) -> StateFailure {
    StateFailure::new(f.kind, f.message)
}

/// Runs one agent call with the state's execution type.
pub(crate) async fn run(
    exec: &Execution,
    executor: &dyn AgentExecutor,
    input: Value,
    context: &Value,
) -> Result<AgentResult, StateFailure> {
    match exec {
        Execution::Default => executor.execute(input, context).await.map_err(failure),
        Execution::Retry {
            backoffs,
            jitter,
            retry_on_empty,
        } => Ok(retry(executor, input, context, backoffs, *jitter, *retry_on_empty).await),
        Execution::Parallel { n_samples } => {
            parallel(executor, input, context, *n_samples as usize).await
        }
        Execution::MdapVoting {
            k_margin,
            max_candidates,
            max_response_tokens,
        } => {
            let mdap = Mdap::configure(
                *k_margin,
                *max_candidates,
                *max_response_tokens,
                executor.metadata(),
            )?;
            Ok(mdap.vote(executor, input, context).await)
        }
    }
}

/// The longest backoff slept, in seconds (a day). Python sleeps whatever it is told; a delay
/// beyond this (a server's huge `retry_after`) is taken as this instead of overflowing.
const MAX_SLEEP_SECS: f64 = 86_400.0;

fn jittered(d: f64, jitter: f64) -> f64 {
    use rand::Rng;
    // Saturate first, so that the random range below is finite.
    let d = if d.is_nan() {
        0.0
    } else {
        d.clamp(0.0, MAX_SLEEP_SECS)
    };
    let spread = d * jitter;
    if !(spread > 0.0 && spread.is_finite()) {
        return d;
    }
    (d + rand::rng().random_range(-spread..=spread)).clamp(0.0, MAX_SLEEP_SECS)
}

async fn sleep_secs(s: f64) {
    // `s > 0.0` is false for NaN; `min` keeps `from_secs_f64` from panicking on huge values.
    if s > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(s.min(MAX_SLEEP_SECS))).await;
    }
}

/// `_extract_cost` of the reference: `float(r.cost)` when `cost` is set (0 when that raises,
/// so a map-shaped cost counts as 0, `execution.md` §11), else `usage.cost` as a number or its
/// map `total`.
fn cost_of(r: &AgentResult) -> f64 {
    match &r.cost {
        Some(c) if !c.is_null() => match c {
            Value::Number(n) => n.as_f64().unwrap_or(0.0),
            Value::Bool(b) => f64::from(u8::from(*b)),
            Value::String(s) => flatmachines_ir::pyfmt::parse_float(s).unwrap_or(0.0),
            _ => 0.0,
        },
        _ => {
            let Some(cost) = r
                .usage
                .as_ref()
                .and_then(Value::as_object)
                .and_then(|u| u.get("cost"))
            else {
                return 0.0;
            };
            // `isinstance(x, (int, float))`, which `bool` passes too.
            let number = |v: &Value| match v {
                Value::Number(n) => n.as_f64(),
                Value::Bool(b) => Some(f64::from(u8::from(*b))),
                _ => None,
            };
            match cost {
                Value::Object(m) => m.get("total").and_then(number),
                other => number(other),
            }
            .unwrap_or(0.0)
        }
    }
}

/// `_extract_api_calls` of the reference: `int(usage.api_calls or usage.requests or usage.calls
/// or 0)`, with the exception Python's `int()` raises for a value it cannot read.
fn calls_of(r: &AgentResult) -> Result<i64, StateFailure> {
    let Some(usage) = r.usage.as_ref().and_then(Value::as_object) else {
        return Ok(0);
    };
    let picked = ["api_calls", "requests", "calls"]
        .iter()
        .filter_map(|k| usage.get(*k))
        .find(|v| crate::py::truthy(v));
    picked.map_or(Ok(0), py_int)
}

/// Python's `int(v)` of a JSON value (saturating beyond `i64`).
fn py_int(v: &Value) -> Result<i64, StateFailure> {
    match v {
        Value::Null => Ok(0),
        Value::Bool(b) => Ok(i64::from(*b)),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Ok(i),
            (None, Some(_), _) => Ok(i64::MAX),
            (None, None, Some(f)) if f.is_nan() => Err(StateFailure::new(
                "ValueError",
                "cannot convert float NaN to integer",
            )),
            (None, None, Some(f)) if f.is_infinite() => Err(StateFailure::new(
                "OverflowError",
                "cannot convert float infinity to integer",
            )),
            // `as` truncates toward zero and saturates, as `int()` truncates.
            (None, None, f) => Ok(f.unwrap_or(0.0) as i64),
        },
        Value::String(s) => flatmachines_ir::pyfmt::parse_int(s).ok_or_else(|| {
            StateFailure::new(
                "ValueError",
                format!(
                    "invalid literal for int() with base 10: {}",
                    crate::py::py_repr(v)
                ),
            )
        }),
        other => Err(StateFailure::new(
            "TypeError",
            format!(
                "int() argument must be a string, a bytes-like object or a real number, not '{}'",
                crate::py::class_name(other)
            ),
        )),
    }
}

fn merged_usage(r: &AgentResult, calls: i64) -> Option<Value> {
    if calls == 0 {
        return r.usage.clone();
    }
    let mut u = r
        .usage
        .clone()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    u["api_calls"] = json!(calls);
    Some(u)
}

async fn retry(
    executor: &dyn AgentExecutor,
    input: Value,
    context: &Value,
    backoffs: &[f64],
    jitter: f64,
    retry_on_empty: bool,
) -> AgentResult {
    let attempts = backoffs.len() + 1;
    let (mut calls, mut cost) = (0i64, 0f64);
    let mut last_exception: Option<AgentFailure> = None;
    let mut last_error: Option<AgentResult> = None;
    for i in 0..attempts {
        match executor.execute(input.clone(), context).await {
            Err(e) => {
                last_exception = Some(e);
                if i < backoffs.len() {
                    sleep_secs(jittered(backoffs[i], jitter)).await;
                }
            }
            Ok(r) => {
                // An unreadable `usage` raises inside the reference's `try`: it is retried
                // like any other exception.
                match calls_of(&r) {
                    Ok(c) => calls = calls.saturating_add(c),
                    Err(e) => {
                        last_exception = Some(AgentFailure::new(e.kind, e.message));
                        if i < backoffs.len() {
                            sleep_secs(jittered(backoffs[i], jitter)).await;
                        }
                        continue;
                    }
                }
                cost += cost_of(&r);
                if r.error.is_some() {
                    let retryable = r.retryable();
                    let retry_after = r
                        .rate_limit
                        .as_ref()
                        .and_then(|rl| rl.get("retry_after"))
                        .and_then(Value::as_f64)
                        .filter(|v| *v > 0.0);
                    last_error = Some(r);
                    if retryable && i < backoffs.len() {
                        let d = retry_after.map_or(backoffs[i], |ra| ra.max(backoffs[i]));
                        sleep_secs(jittered(d, jitter)).await;
                        continue;
                    }
                    break;
                }
                if retry_on_empty && !crate::py::truthy(&r.output_payload()) {
                    last_exception =
                        Some(AgentFailure::new("ValueError", "Empty response from agent"));
                    if i < backoffs.len() {
                        sleep_secs(jittered(backoffs[i], jitter)).await;
                    }
                    continue;
                }
                let mut out = r;
                out.usage = merged_usage(&out, calls);
                if cost != 0.0 {
                    out.cost = Some(json!(cost));
                }
                return out;
            }
        }
    }
    if let Some(mut r) = last_error {
        r.finish_reason = Some("error".into());
        r.usage = merged_usage(&r, calls);
        r.cost = (cost != 0.0).then(|| json!(cost));
        return r;
    }
    let (ty, message) = match last_exception {
        Some(e) => (
            e.kind,
            if e.message.is_empty() {
                "LLM call failed".into()
            } else {
                e.message
            },
        ),
        None => ("UnknownError".into(), "LLM call failed".into()),
    };
    let mut error =
        json!({"code": "server_error", "type": ty, "message": message, "retryable": false});
    if let Some(status) = status_in(&message) {
        error["status_code"] = json!(status);
        if status == 429 {
            error["code"] = json!("rate_limit");
        }
    }
    AgentResult {
        error: Some(error),
        finish_reason: Some("error".into()),
        ..AgentResult::default()
    }
}

/// A 4xx/5xx number standing alone as a word in an exception message.
fn status_in(message: &str) -> Option<u16> {
    message
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter_map(|w| w.parse::<u16>().ok())
        .find(|n| (400..600).contains(n))
}

/// Polls boxed futures together and returns their outputs in order.
struct JoinAll<'a, T> {
    futures: Vec<Option<BoxFuture<'a, T>>>,
    outputs: Vec<Option<T>>,
}

impl<T> Unpin for JoinAll<'_, T> {}

impl<T> Future for JoinAll<'_, T> {
    type Output = Vec<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Vec<T>> {
        let this = self.get_mut();
        let mut pending = false;
        for (slot, out) in this.futures.iter_mut().zip(this.outputs.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *out = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(this.outputs.iter_mut().filter_map(Option::take).collect())
        }
    }
}

fn join_all<T>(futures: Vec<BoxFuture<'_, T>>) -> JoinAll<'_, T> {
    let n = futures.len();
    JoinAll {
        futures: futures.into_iter().map(Some).collect(),
        outputs: (0..n).map(|_| None).collect(),
    }
}

async fn parallel(
    executor: &dyn AgentExecutor,
    input: Value,
    context: &Value,
    n: usize,
) -> Result<AgentResult, StateFailure> {
    let calls: Vec<BoxFuture<'_, Result<AgentResult, AgentFailure>>> = (0..n)
        .map(|_| executor.execute(input.clone(), context))
        .collect();
    let results: Vec<AgentResult> = join_all(calls)
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    if results.is_empty() {
        return Ok(AgentResult::default());
    }
    // Outside any `try` in the reference: an unreadable `usage` fails the state.
    let calls = results
        .iter()
        .map(calls_of)
        .try_fold(0i64, |sum, c| c.map(|c| sum.saturating_add(c)))?;
    let cost: f64 = results.iter().map(cost_of).sum();
    let payloads: Vec<Value> = results.iter().map(AgentResult::output_payload).collect();
    let n_ok = payloads.len();
    Ok(AgentResult {
        output: Some(json!({"results": payloads, "count": n_ok})),
        usage: (calls != 0).then(|| json!({"api_calls": calls})),
        cost: (cost != 0.0).then(|| json!(cost)),
        ..AgentResult::default()
    })
}

/// How `metadata.parsing` converts a captured group (`type:`; anything else reads as `str`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FieldType {
    Str,
    Int,
    Json,
}

/// The agent's `metadata.validation` schema, ready to check candidates.
enum Schema {
    /// No schema (absent or falsy): every candidate passes.
    Absent,
    /// A schema that compiled.
    #[cfg(feature = "jsonschema")]
    Compiled(Box<jsonschema::Validator>),
    /// Not a valid schema, or no schema library in this build: every candidate fails, as the
    /// reference's `except Exception: return False` has it.
    Failing,
}

impl Schema {
    fn new(schema: Option<&Value>) -> Schema {
        let Some(schema) = schema.filter(|s| crate::py::truthy(s)) else {
            return Schema::Absent;
        };
        Self::compile(schema)
    }

    #[cfg(feature = "jsonschema")]
    fn compile(schema: &Value) -> Schema {
        /// The dialects the crate knows (`$schema` without its trailing `#`).
        const KNOWN_DIALECTS: &[&str] = &[
            "http://json-schema.org/draft-04/schema",
            "http://json-schema.org/draft-06/schema",
            "http://json-schema.org/draft-07/schema",
            "https://json-schema.org/draft/2019-09/schema",
            "https://json-schema.org/draft/2020-12/schema",
        ];
        // Python's `validator_for` falls back to its latest draft (2020-12, the crate's default
        // too) for a `$schema` it does not know; the crate refuses one.
        let unknown_dialect = schema
            .get("$schema")
            .and_then(Value::as_str)
            .is_some_and(|d| !KNOWN_DIALECTS.contains(&d.trim_end_matches('#')));
        let mut without_dialect;
        let schema = if unknown_dialect {
            without_dialect = schema.clone();
            if let Some(m) = without_dialect.as_object_mut() {
                m.remove("$schema");
            }
            &without_dialect
        } else {
            schema
        };
        // Python's `jsonschema.validate` checks the schema against its meta-schema first and
        // asserts no `format` (no format checker is passed).
        match jsonschema::options()
            .should_validate_formats(false)
            .build(schema)
        {
            Ok(v) => Schema::Compiled(Box::new(v)),
            Err(e) => {
                tracing::warn!("mdap_voting: metadata.validation is not a valid schema: {e}");
                Schema::Failing
            }
        }
    }

    #[cfg(not(feature = "jsonschema"))]
    fn compile(_schema: &Value) -> Schema {
        tracing::warn!(
            "mdap_voting: metadata.validation needs the `jsonschema` feature; every candidate fails validation"
        );
        Schema::Failing
    }

    fn accepts(&self, candidate: &Value) -> bool {
        match self {
            Schema::Absent => true,
            #[cfg(feature = "jsonschema")]
            Schema::Compiled(v) => v.is_valid(candidate),
            Schema::Failing => {
                let _ = candidate;
                false
            }
        }
    }
}

/// `max_response_tokens` after the agent's override.
#[derive(Clone, Copy, Debug, PartialEq)]
enum TokenLimit {
    None,
    /// Responses whose `len(text) // 4` is above this are red-flagged.
    At(f64),
    /// Not a number: Python's comparison raises for every sample that reaches it, which drops
    /// the sample like a red flag.
    Unusable,
}

/// One `mdap_voting` run's settings, after the agent's `metadata` overrides
/// (`MDAPVotingExecution._configure_from_executor`, `execution.md` §11.4).
struct Mdap {
    /// Votes a candidate needs; `None` when the override is not a number (Python's comparison
    /// raises then, so no sample ever wins before the majority fallback).
    k_margin: Option<f64>,
    max_candidates: u64,
    max_tokens: TokenLimit,
    /// `metadata.parsing` in document order: field, compiled pattern, conversion.
    patterns: Vec<(String, Pattern, FieldType)>,
    schema: Schema,
}

/// A compiled `metadata.parsing` pattern.
#[cfg(feature = "regex")]
type Pattern = fancy_regex::Regex;

/// Without the `regex` feature no pattern compiles, so none exists.
#[cfg(not(feature = "regex"))]
enum Pattern {}

#[cfg(feature = "regex")]
fn compile_pattern(field: &str, pattern: &str) -> Result<Pattern, StateFailure> {
    // `re.error`'s class name is `error`; the message is the Rust engine's.
    flatmachines_ir::pyre::compile(pattern).map_err(|e| {
        StateFailure::new(
            "error",
            format!("metadata.parsing.{field}.pattern: {}", e.message),
        )
    })
}

#[cfg(not(feature = "regex"))]
fn compile_pattern(field: &str, _pattern: &str) -> Result<Pattern, StateFailure> {
    Err(StateFailure::new(
        "ValueError",
        format!(
            "metadata.parsing.{field}.pattern: mdap_voting parsing patterns need flatmachines' \
             `regex` feature"
        ),
    ))
}

/// The first group of the pattern's first match in `content`: `None` when there is no match
/// (the sample has no candidate), `Some(None)` when group 1 did not take part.
#[cfg(feature = "regex")]
fn group1<'c>(re: &Pattern, content: &'c str) -> Option<Option<&'c str>> {
    // An engine error (backtracking limit) counts as no match.
    let caps = re.captures(content).ok()??;
    // A pattern without group 1 raises `IndexError` in the reference, which drops the sample
    // like a format error.
    if re.captures_len() < 2 {
        return None;
    }
    Some(caps.get(1).map(|m| m.as_str()))
}

#[cfg(not(feature = "regex"))]
fn group1<'c>(re: &Pattern, _content: &'c str) -> Option<Option<&'c str>> {
    match *re {}
}

/// The exception Python raises for `value.<method>(…)` on a value that is not a dict.
fn no_attribute(value: &Value, method: &str) -> StateFailure {
    StateFailure::new(
        "AttributeError",
        format!(
            "'{}' object has no attribute '{method}'",
            crate::py::class_name(value)
        ),
    )
}

/// A number as Python compares it (`bool` is an `int`), or `None` for anything else.
fn py_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

impl Mdap {
    /// Reads the agent's `metadata` over the state's `execution` settings. Fails as the
    /// reference does when `mdap`, `parsing` or a field config is not a map, a pattern is not
    /// text or does not compile, or `max_candidates` is not an integer.
    fn configure(
        k_margin: u32,
        max_candidates: u32,
        max_response_tokens: Option<u32>,
        metadata: Option<&Value>,
    ) -> Result<Mdap, StateFailure> {
        // `metadata or {}`, then `.get(…) if isinstance(metadata, dict) else {}`.
        let meta = metadata.and_then(Value::as_object);
        let mut k = Some(f64::from(k_margin));
        let mut max = Value::from(max_candidates);
        let mut tokens = max_response_tokens.map_or(TokenLimit::None, |t| TokenLimit::At(t.into()));
        if let Some(mdap) = meta.and_then(|m| m.get("mdap")) {
            let mdap = mdap.as_object().ok_or_else(|| no_attribute(mdap, "get"))?;
            // Only truthy values override.
            let set = |key: &str| mdap.get(key).filter(|v| crate::py::truthy(v));
            if let Some(v) = set("k_margin") {
                k = py_number(v);
            }
            if let Some(v) = set("max_candidates") {
                max = v.clone();
            }
            if let Some(v) = set("max_response_tokens") {
                tokens = py_number(v).map_or(TokenLimit::Unusable, TokenLimit::At);
            }
        }
        let mut patterns = Vec::new();
        if let Some(parsing) = meta.and_then(|m| m.get("parsing")) {
            let parsing = parsing
                .as_object()
                .ok_or_else(|| no_attribute(parsing, "items"))?;
            for (field, config) in parsing {
                let config = config
                    .as_object()
                    .ok_or_else(|| no_attribute(config, "get"))?;
                let Some(pattern) = config.get("pattern").filter(|p| crate::py::truthy(p)) else {
                    continue;
                };
                let Value::String(pattern) = pattern else {
                    return Err(StateFailure::new(
                        "TypeError",
                        "first argument must be string or compiled pattern",
                    ));
                };
                let re = compile_pattern(field, pattern)?;
                let ty = match config.get("type").and_then(Value::as_str) {
                    Some("int") => FieldType::Int,
                    Some("json") => FieldType::Json,
                    _ => FieldType::Str,
                };
                patterns.push((field.clone(), re, ty));
            }
        }
        let schema = Schema::new(meta.and_then(|m| m.get("validation")));
        // `range(max_candidates)`, evaluated after the configuration is read.
        let max_candidates = match &max {
            Value::Bool(b) => u64::from(*b),
            Value::Number(n) if n.is_u64() => n.as_u64().unwrap_or(0),
            Value::Number(n) if n.is_i64() => 0,
            other => {
                return Err(StateFailure::new(
                    "TypeError",
                    format!(
                        "'{}' object cannot be interpreted as an integer",
                        crate::py::class_name(other)
                    ),
                ));
            }
        };
        Ok(Mdap {
            k_margin: k,
            max_candidates,
            max_tokens: tokens,
            patterns,
            schema,
        })
    }

    /// `_parse_response`: every pattern must match (searching, dot matching newlines) and its
    /// group 1 must convert; otherwise there is no candidate.
    fn parse(&self, content: &str) -> Option<Value> {
        let mut out = Map::new();
        for (field, re, ty) in &self.patterns {
            let group = group1(re, content)?;
            let value = match (ty, group) {
                // A group that did not take part is `None`: kept as null for `str`, a
                // `TypeError` (no candidate) for the conversions.
                (FieldType::Str, None) => Value::Null,
                (FieldType::Str, Some(g)) => Value::String(g.to_string()),
                (_, None) => return None,
                (FieldType::Int, Some(g)) => Value::from(flatmachines_ir::pyfmt::parse_int(g)?),
                (FieldType::Json, Some(g)) => serde_json::from_str(g).ok()?,
            };
            out.insert(field.clone(), value);
        }
        Some(Value::Object(out))
    }

    /// `_extract_candidate`: the candidate and the text its length is measured on.
    fn candidate(&self, r: &AgentResult) -> (Option<Value>, String) {
        let content = r.content.clone().unwrap_or_default();
        if !self.patterns.is_empty() {
            let parsed = if content.is_empty() {
                None
            } else {
                self.parse(&content)
            };
            return (parsed, content);
        }
        match &r.output {
            Some(o) if !o.is_null() => {
                let text = if content.is_empty() {
                    crate::py::json::dumps(&sort_keys(o))
                } else {
                    content
                };
                (Some(o.clone()), text)
            }
            _ if !content.is_empty() => (Some(json!({"content": content})), content),
            _ => (None, content),
        }
    }

    /// `_check_red_flags`: why a sample is discarded, if it is.
    fn red_flag(&self, candidate: Option<&Value>, text: &str) -> Option<&'static str> {
        let Some(candidate) = candidate else {
            return Some("format_error");
        };
        if !self.schema.accepts(candidate) {
            return Some("validation_failed");
        }
        let exceeded = match self.max_tokens {
            TokenLimit::None => false,
            // `len()` counts characters, not bytes.
            TokenLimit::At(limit) => (text.chars().count() / 4) as f64 > limit,
            TokenLimit::Unusable => true,
        };
        exceeded.then_some("length_exceeded")
    }

    /// Samples until a candidate has `k_margin` votes (or leads the runner-up by `k_margin`),
    /// else takes the most voted (ties: the first seen); no votes at all gives an empty result.
    /// Calls and cost of every sample that returned count.
    async fn vote(
        &self,
        executor: &dyn AgentExecutor,
        input: Value,
        context: &Value,
    ) -> AgentResult {
        let (mut calls, mut cost) = (0i64, 0f64);
        let mut tally = Tally::default();
        for _ in 0..self.max_candidates {
            let r = match executor.execute(input.clone(), context).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("mdap_voting: sample failed: {e}");
                    continue;
                }
            };
            // Inside the reference's `try`: an unreadable `usage` drops the sample before its
            // cost is added.
            match calls_of(&r) {
                Ok(c) => calls = calls.saturating_add(c),
                Err(e) => {
                    tracing::warn!("mdap_voting: sample failed: {e}");
                    continue;
                }
            }
            cost += cost_of(&r);
            let (candidate, text) = self.candidate(&r);
            if let Some(flag) = self.red_flag(candidate.as_ref(), &text) {
                tracing::debug!("mdap_voting: red flag {flag}");
                continue;
            }
            let Some(candidate) = candidate else { continue };
            let count = tally.add(candidate);
            let Some(k) = self.k_margin else { continue };
            if count as f64 >= k {
                return voted(tally.last(), calls, cost);
            }
            if let Some(leader) = tally.ahead_by(k) {
                return voted(leader, calls, cost);
            }
        }
        match tally.most_common() {
            Some(winner) => voted(winner, calls, cost),
            None => AgentResult {
                usage: (calls != 0).then(|| json!({"api_calls": calls})),
                cost: (cost != 0.0).then(|| json!(cost)),
                ..AgentResult::default()
            },
        }
    }
}

/// A copy of `v` with every map's keys sorted, for `json.dumps(…, sort_keys=True)`.
fn sort_keys(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            // Rust orders strings by UTF-8 bytes, which is Python's code-point order.
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sort_keys(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sort_keys).collect()),
        other => other.clone(),
    }
}

/// The vote key of a candidate: Python's `json.dumps(candidate, sort_keys=True)` text (so `1`,
/// `1.0` and `true` differ and non-ASCII is escaped), or the string itself for a string.
fn vote_key(candidate: &Value) -> String {
    match candidate {
        Value::String(s) => s.clone(),
        other => crate::py::json::dumps(&sort_keys(other)),
    }
}

/// The reference's `Counter` of vote keys and its `responses` map: counts in first-seen order,
/// each with the latest candidate that had the key.
#[derive(Default)]
struct Tally {
    entries: Vec<(String, u64, Value)>,
    index: HashMap<String, usize>,
    last: usize,
}

impl Tally {
    /// Counts one vote and returns the candidate's count.
    fn add(&mut self, candidate: Value) -> u64 {
        let key = vote_key(&candidate);
        let i = match self.index.get(&key) {
            Some(i) => *i,
            None => {
                self.entries.push((key.clone(), 0, Value::Null));
                self.index.insert(key, self.entries.len() - 1);
                self.entries.len() - 1
            }
        };
        let entry = &mut self.entries[i];
        entry.1 += 1;
        entry.2 = candidate;
        self.last = i;
        entry.1
    }

    /// The candidate just voted for.
    fn last(&self) -> Value {
        self.entries[self.last].2.clone()
    }

    /// The two leaders by count, ties in first-seen order (`Counter.most_common` sorts stably).
    fn top(&self) -> Vec<&(String, u64, Value)> {
        let mut sorted: Vec<&(String, u64, Value)> = self.entries.iter().collect();
        sorted.sort_by_key(|e| std::cmp::Reverse(e.1));
        sorted.truncate(2);
        sorted
    }

    /// The reference's second rule: the leader, when it is `k` votes ahead of the runner-up.
    /// (It cannot fire before the first rule does; kept so the two implementations read alike.)
    fn ahead_by(&self, k: f64) -> Option<Value> {
        match self.top().as_slice() {
            [first, second] if (first.1 - second.1) as f64 >= k => Some(first.2.clone()),
            _ => None,
        }
    }

    /// The most voted candidate, the first seen among equals.
    fn most_common(&self) -> Option<Value> {
        self.top().first().map(|e| e.2.clone())
    }
}

fn voted(candidate: Value, calls: i64, cost: f64) -> AgentResult {
    AgentResult {
        output: Some(candidate),
        usage: (calls != 0).then(|| json!({"api_calls": calls})),
        cost: (cost != 0.0).then(|| json!(cost)),
        ..AgentResult::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Returns scripted results in order.
    struct Script(Mutex<Vec<Result<AgentResult, AgentFailure>>>);

    #[async_trait::async_trait]
    impl AgentExecutor for Script {
        async fn execute(
            &self,
            _input: Value,
            _context: &Value,
        ) -> Result<AgentResult, AgentFailure> {
            // Past the script: an exception, which voting skips.
            let next = {
                let mut script = self.0.lock().unwrap();
                if script.is_empty() {
                    Err(AgentFailure::new("IndexError", "script exhausted"))
                } else {
                    script.remove(0)
                }
            };
            tokio::time::sleep(Duration::from_millis(1)).await;
            next
        }
    }

    fn ok(v: Value) -> Result<AgentResult, AgentFailure> {
        Ok(AgentResult {
            usage: Some(json!({"api_calls": 1})),
            ..AgentResult::with_output(v)
        })
    }

    #[tokio::test(start_paused = true)]
    async fn retry_retries_exceptions_then_reports_the_last() {
        let s = Script(Mutex::new(vec![
            Err(AgentFailure::new("ValueError", "HTTP 503 oops")),
            Err(AgentFailure::new("ValueError", "HTTP 503 oops")),
            Err(AgentFailure::new("ValueError", "HTTP 503 oops")),
        ]));
        let start = tokio::time::Instant::now();
        let r = retry(&s, json!({}), &json!({}), &[1.0, 2.0], 0.0, false).await;
        assert_eq!(r.error_text().unwrap(), "ValueError: HTTP 503 oops");
        assert_eq!(r.error.unwrap()["status_code"], 503);
        // Two backoffs slept (1 s + 2 s) plus three 1 ms calls.
        assert_eq!(start.elapsed(), Duration::from_millis(3003));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_stops_on_non_retryable_errors_and_sums_calls() {
        let err = |retryable| {
            Ok(AgentResult {
                error: Some(json!({"type": "X", "message": "m", "retryable": retryable})),
                usage: Some(json!({"api_calls": 1})),
                ..AgentResult::default()
            })
        };
        let s = Script(Mutex::new(vec![err(true), ok(json!({"a": 1}))]));
        let r = retry(&s, json!({}), &json!({}), &[0.0, 0.0], 0.1, false).await;
        assert_eq!(r.output, Some(json!({"a": 1})));
        assert_eq!(r.usage.unwrap()["api_calls"], 2);
        let s = Script(Mutex::new(vec![err(false), ok(json!({"a": 1}))]));
        let r = retry(&s, json!({}), &json!({}), &[0.0], 0.0, false).await;
        assert_eq!(r.error_text().unwrap(), "X: m");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_on_empty_treats_empty_output_as_failure() {
        let s = Script(Mutex::new(vec![ok(json!({})), ok(json!({"x": 1}))]));
        let r = retry(&s, json!({}), &json!({}), &[5.0], 0.0, true).await;
        assert_eq!(r.output, Some(json!({"x": 1})));
    }

    #[tokio::test(start_paused = true)]
    async fn parallel_keeps_error_results_and_drops_exceptions() {
        let s = Script(Mutex::new(vec![
            ok(json!({"a": 1})),
            Err(AgentFailure::new("ValueError", "x")),
            Ok(AgentResult {
                error: Some(json!({"type": "E"})),
                ..AgentResult::default()
            }),
        ]));
        let r = parallel(&s, json!({}), &json!({}), 3).await.unwrap();
        assert_eq!(
            r.output,
            Some(json!({"results": [{"a": 1}, {}], "count": 2}))
        );
        assert_eq!(r.usage, Some(json!({"api_calls": 1})));
    }

    #[tokio::test(start_paused = true)]
    async fn voting_takes_the_first_candidate_to_reach_k() {
        let s = Script(Mutex::new(vec![
            ok(json!({"a": 1})),
            ok(json!({"a": 2})),
            ok(json!({"a": 1})),
            ok(json!({"a": 1})),
        ]));
        let r = run(&MDAP, &s, json!({}), &json!({})).await.unwrap();
        assert_eq!(r.output, Some(json!({"a": 1})));
        assert_eq!(r.usage, Some(json!({"api_calls": 3})));
    }

    /// A scripted executor whose agent document has `metadata`.
    struct WithMeta(Script, Value);

    #[async_trait::async_trait]
    impl AgentExecutor for WithMeta {
        async fn execute(
            &self,
            input: Value,
            context: &Value,
        ) -> Result<AgentResult, AgentFailure> {
            self.0.execute(input, context).await
        }

        fn metadata(&self) -> Option<&Value> {
            Some(&self.1)
        }
    }

    fn script(results: Vec<Result<AgentResult, AgentFailure>>) -> Script {
        Script(Mutex::new(results))
    }

    fn text(content: &str) -> Result<AgentResult, AgentFailure> {
        Ok(AgentResult {
            content: Some(content.into()),
            usage: Some(json!({"api_calls": 1})),
            ..AgentResult::default()
        })
    }

    const MDAP: Execution = Execution::MdapVoting {
        k_margin: 2,
        max_candidates: 10,
        max_response_tokens: None,
    };

    async fn mdap(
        exec: &Execution,
        meta: Value,
        results: Vec<Result<AgentResult, AgentFailure>>,
    ) -> Result<AgentResult, StateFailure> {
        let ex = WithMeta(script(results), meta);
        run(exec, &ex, json!({}), &json!({})).await
    }

    #[cfg(feature = "regex")]
    #[tokio::test(start_paused = true)]
    async fn voting_parses_content_with_the_metadata_patterns() {
        let meta = json!({"parsing": {
            "move": {"pattern": "MOVE:\\s*(\\w+)"},
            "n": {"pattern": "N=(\\S+)", "type": "int"},
            "data": {"pattern": "DATA: (.*?) END", "type": "json"},
        }});
        // The dot matches newlines.
        let m = Mdap::configure(1, 1, None, Some(&meta)).unwrap();
        assert_eq!(
            m.parse("MOVE: up N=1 DATA: {\"a\":\n[1]} END"),
            Some(json!({"move": "up", "n": 1, "data": {"a": [1]}}))
        );
        let r = mdap(
            &MDAP,
            meta,
            vec![
                // The dot matches newlines; `int()` reads `1_0` and surrounding blanks.
                text("MOVE: up N=1_0 DATA: {\"a\":\n[1]} END"),
                // No `N=`: every pattern must match.
                text("MOVE: up DATA: {} END"),
                // `int()` refuses `1.5`; JSON refuses `{a}`.
                text("MOVE: up N=1.5 DATA: {\"a\": [1]} END"),
                text("MOVE: up N=10 DATA: {a} END"),
                text("xx MOVE:   up\tN=10 DATA: {\"a\": [1]} END"),
            ],
        )
        .await
        .unwrap();
        assert_eq!(
            r.output,
            Some(json!({"move": "up", "n": 10, "data": {"a": [1]}}))
        );
        // Every returned sample is counted, red-flagged or not.
        assert_eq!(r.usage, Some(json!({"api_calls": 5})));
        let keys: Vec<&String> = r
            .output
            .as_ref()
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(keys, ["move", "n", "data"]);
    }

    #[cfg(feature = "regex")]
    #[tokio::test(start_paused = true)]
    async fn voting_parsing_misses_give_no_candidate() {
        // A pattern without a group, or an empty content, never yields a candidate.
        let meta = json!({"parsing": {"x": {"pattern": "A"}}});
        let r = mdap(&MDAP, meta, vec![text("A"), text("A"), text("A")]).await;
        let r = r.unwrap();
        assert_eq!(r.output, None);
        assert_eq!(r.usage, Some(json!({"api_calls": 3})));
        // A group that does not take part is null for `str`, no candidate for `int`.
        let m = |ty: &str| {
            let meta = json!({"parsing": {"x": {"pattern": "(a)|b", "type": ty}}});
            Mdap::configure(1, 1, None, Some(&meta)).unwrap()
        };
        assert_eq!(m("str").parse("b"), Some(json!({"x": null})));
        assert_eq!(m("int").parse("b"), None);
        assert_eq!(m("float").parse("a"), Some(json!({"x": "a"})));
        // Fields with an empty pattern are skipped.
        let meta = json!({"parsing": {"x": {"pattern": ""}, "y": {"pattern": "(\\d)"}}});
        let m = Mdap::configure(1, 1, None, Some(&meta)).unwrap();
        assert_eq!(m.parse("7"), Some(json!({"y": "7"})));
    }

    #[tokio::test(start_paused = true)]
    async fn voting_reads_only_truthy_mdap_overrides() {
        let exec = Execution::MdapVoting {
            k_margin: 5,
            max_candidates: 10,
            max_response_tokens: Some(100),
        };
        let meta = json!({"mdap": {"k_margin": 2, "max_candidates": 0, "max_response_tokens": 1}});
        let m = Mdap::configure(5, 10, Some(100), Some(&meta)).unwrap();
        assert_eq!(m.k_margin, Some(2.0));
        assert_eq!(m.max_candidates, 10);
        assert_eq!(m.max_tokens, TokenLimit::At(1.0));
        // `max_response_tokens: 1` red-flags the 8-character answers (8 // 4 = 2 > 1), the
        // 4-character ones pass; `k_margin: 2` decides after two votes.
        let r = mdap(
            &exec,
            meta,
            vec![
                text("abcdefgh"),
                text("abcd"),
                text("abcdefgh"),
                text("abcd"),
            ],
        )
        .await
        .unwrap();
        assert_eq!(r.output, Some(json!({"content": "abcd"})));
        assert_eq!(r.usage, Some(json!({"api_calls": 4})));
    }

    #[test]
    fn length_is_counted_in_characters() {
        let meta = json!({"mdap": {"max_response_tokens": 1}});
        let m = Mdap::configure(1, 1, None, Some(&meta)).unwrap();
        // Seven characters (14 bytes): 7 // 4 = 1, not above 1.
        let c = json!({"content": "ééééééé"});
        assert_eq!(m.red_flag(Some(&c), "ééééééé"), None);
        assert_eq!(m.red_flag(Some(&c), "éééééééé"), Some("length_exceeded"));
        assert_eq!(m.red_flag(None, ""), Some("format_error"));
        // A limit that is not a number drops every sample that reaches it.
        let meta = json!({"mdap": {"max_response_tokens": "3"}});
        let m = Mdap::configure(1, 1, None, Some(&meta)).unwrap();
        assert_eq!(m.red_flag(Some(&c), "a"), Some("length_exceeded"));
    }

    #[test]
    fn vote_keys_are_python_sorted_json() {
        assert_eq!(
            vote_key(&json!({"b": 1, "a": [1.0, true]})),
            "{\"a\": [1.0, true], \"b\": 1}"
        );
        assert_ne!(vote_key(&json!({"a": 1})), vote_key(&json!({"a": 1.0})));
        assert_ne!(vote_key(&json!({"a": 1})), vote_key(&json!({"a": true})));
        assert_eq!(vote_key(&json!({"a": "é"})), "{\"a\": \"\\u00e9\"}");
        assert_eq!(vote_key(&json!("plain")), "plain");
    }

    #[tokio::test(start_paused = true)]
    async fn voting_falls_back_to_the_first_seen_majority() {
        let exec = Execution::MdapVoting {
            k_margin: 3,
            max_candidates: 5,
            max_response_tokens: None,
        };
        let r = mdap(
            &exec,
            json!({}),
            vec![
                ok(json!({"a": 2})),
                ok(json!({"a": 1})),
                ok(json!({"a": 1})),
                ok(json!({"a": 2})),
                ok(json!({"a": 3})),
            ],
        )
        .await
        .unwrap();
        assert_eq!(r.output, Some(json!({"a": 2})));
        // Equal keys: the latest candidate is returned (its key order).
        let r = mdap(
            &MDAP,
            json!({}),
            vec![ok(json!({"a": 1, "b": 2})), ok(json!({"b": 2, "a": 1}))],
        )
        .await
        .unwrap();
        let keys: Vec<&String> = r
            .output
            .as_ref()
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(keys, ["b", "a"]);
        // 1 and 1.0 are different answers.
        let exec = Execution::MdapVoting {
            k_margin: 2,
            max_candidates: 3,
            max_response_tokens: None,
        };
        let r = mdap(
            &exec,
            json!({}),
            vec![
                ok(json!({"a": 1.0})),
                ok(json!({"a": 1})),
                ok(json!({"a": 1})),
            ],
        )
        .await
        .unwrap();
        assert_eq!(r.output, Some(json!({"a": 1})));
        assert!(r.output.unwrap()["a"].is_u64());
    }

    #[test]
    fn the_ahead_by_rule_compares_the_two_leaders() {
        let mut t = Tally::default();
        assert_eq!(t.ahead_by(1.0), None);
        t.add(json!(1));
        t.add(json!(1));
        t.add(json!(1));
        assert_eq!(t.ahead_by(1.0), None);
        t.add(json!(2));
        assert_eq!(t.ahead_by(2.0), Some(json!(1)));
        assert_eq!(t.ahead_by(3.0), None);
    }

    #[tokio::test(start_paused = true)]
    async fn voting_without_votes_still_reports_usage_and_cost() {
        let r = mdap(
            &MDAP,
            json!({}),
            vec![
                Ok(AgentResult {
                    usage: Some(json!({"requests": 2, "cost": 0.5})),
                    ..AgentResult::default()
                }),
                Err(AgentFailure::new("ValueError", "boom")),
                Ok(AgentResult {
                    usage: Some(json!({"api_calls": 0, "calls": 3, "cost": {"total": 0.25}})),
                    ..AgentResult::default()
                }),
                Ok(AgentResult {
                    cost: Some(json!("0.125")),
                    usage: Some(json!({"api_calls": "4"})),
                    ..AgentResult::default()
                }),
                Ok(AgentResult {
                    // A map cost counts as 0 and hides `usage.cost`.
                    cost: Some(json!({"total": 9})),
                    usage: Some(json!({"api_calls": 1.9, "cost": 7})),
                    ..AgentResult::default()
                }),
                // Unreadable calls: the sample is dropped before its cost is added.
                Ok(AgentResult {
                    cost: Some(json!(100)),
                    usage: Some(json!({"api_calls": "many"})),
                    ..AgentResult::default()
                }),
            ],
        )
        .await
        .unwrap();
        assert_eq!(r.output, None);
        assert_eq!(r.usage, Some(json!({"api_calls": 10})));
        assert_eq!(r.cost, Some(json!(0.875)));
        assert_eq!(r.into_payload(), json!({}));
    }

    #[tokio::test(start_paused = true)]
    async fn voting_configuration_errors_are_the_references() {
        let err = |meta: Value| async move { mdap(&MDAP, meta, vec![]).await.unwrap_err() };
        let e = err(json!({"mdap": null})).await;
        assert_eq!(e.kind, "AttributeError");
        assert_eq!(e.message, "'NoneType' object has no attribute 'get'");
        assert_eq!(err(json!({"parsing": []})).await.kind, "AttributeError");
        assert_eq!(
            err(json!({"parsing": {"x": "a"}})).await.kind,
            "AttributeError"
        );
        assert_eq!(
            err(json!({"parsing": {"x": {"pattern": 1}}})).await.kind,
            "TypeError"
        );
        let e = err(json!({"parsing": {"x": {"pattern": "(a"}}})).await;
        if cfg!(feature = "regex") {
            assert_eq!(e.kind, "error");
        } else {
            assert_eq!(e.kind, "ValueError");
            assert!(e.message.contains("`regex` feature"), "{}", e.message);
        }
        assert!(
            e.message.starts_with("metadata.parsing.x.pattern: "),
            "{}",
            e.message
        );
        let e = err(json!({"mdap": {"max_candidates": 2.5}})).await;
        assert_eq!(
            e.message,
            "'float' object cannot be interpreted as an integer"
        );
        // A metadata that is not a map is ignored.
        assert!(
            mdap(&MDAP, json!(["x"]), vec![ok(json!(1)), ok(json!(1))])
                .await
                .is_ok()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn voting_k_margin_that_is_not_a_number_never_wins_early() {
        let meta = json!({"mdap": {"k_margin": "2", "max_candidates": 3}});
        let r = mdap(
            &MDAP,
            meta,
            vec![
                ok(json!({"a": 1})),
                ok(json!({"a": 1})),
                ok(json!({"a": 2})),
            ],
        )
        .await
        .unwrap();
        // All three samples were taken, then the majority won.
        assert_eq!(r.output, Some(json!({"a": 1})));
        assert_eq!(r.usage, Some(json!({"api_calls": 3})));
    }

    #[tokio::test(start_paused = true)]
    async fn voting_checks_the_validation_schema() {
        let meta = json!({"validation": {
            "type": "object",
            "properties": {"n": {"type": "integer", "minimum": 0}},
            "required": ["n"],
        }});
        let r = mdap(
            &MDAP,
            meta,
            vec![
                ok(json!({"n": -1})),
                ok(json!({"m": 1})),
                ok(json!({"n": -1})),
                ok(json!({"n": 4})),
                ok(json!({"n": 4})),
            ],
        )
        .await
        .unwrap();
        if cfg!(feature = "jsonschema") {
            assert_eq!(r.output, Some(json!({"n": 4})));
        } else {
            // Without a schema library every candidate fails validation.
            assert_eq!(r.output, None);
        }
        assert_eq!(r.usage, Some(json!({"api_calls": 5})));
        // A schema that is not one fails every candidate; a falsy one checks nothing.
        let bad = Mdap::configure(1, 1, None, Some(&json!({"validation": {"type": 5}}))).unwrap();
        assert!(!bad.schema.accepts(&json!({})));
        let none = Mdap::configure(1, 1, None, Some(&json!({"validation": {}}))).unwrap();
        assert!(none.schema.accepts(&json!(1)));
        if cfg!(feature = "jsonschema") {
            // An unknown `$schema` reads as the latest draft; `format` asserts nothing.
            let meta =
                json!({"validation": {"$schema": "http://example.com/s", "type": "integer"}});
            let m = Mdap::configure(1, 1, None, Some(&meta)).unwrap();
            assert!(m.schema.accepts(&json!(7.0)));
            assert!(!m.schema.accepts(&json!("x")));
            let meta = json!({"validation": {"type": "string", "format": "email"}});
            let m = Mdap::configure(1, 1, None, Some(&meta)).unwrap();
            assert!(m.schema.accepts(&json!("x")));
        }
    }

    #[test]
    fn huge_or_nan_delays_saturate() {
        assert_eq!(jittered(f64::INFINITY, 0.0), MAX_SLEEP_SECS);
        let d = jittered(f64::INFINITY, 0.1);
        assert!((MAX_SLEEP_SECS * 0.9..=MAX_SLEEP_SECS).contains(&d), "{d}");
        assert!(jittered(1e300, 1.0) <= MAX_SLEEP_SECS);
        assert_eq!(jittered(f64::NAN, 0.1), 0.0);
        assert_eq!(jittered(-3.0, 0.1), 0.0);
        assert_eq!(jittered(5.0, f64::NAN), 5.0);
    }

    #[tokio::test(start_paused = true)]
    async fn huge_sleeps_do_not_panic() {
        let start = tokio::time::Instant::now();
        sleep_secs(1e300).await;
        sleep_secs(f64::NAN).await;
        assert_eq!(start.elapsed(), Duration::from_secs_f64(MAX_SLEEP_SECS));
    }
}

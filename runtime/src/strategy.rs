//! Execution types for agent calls (`execution.md` §11): default, retry, parallel, mdap_voting.

use crate::agent::{AgentExecutor, AgentFailure, AgentResult, BoxFuture};
use crate::executor::StateFailure;
use flatmachines_ir::Execution;
use serde_json::{Value, json};
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
            Ok(parallel(executor, input, context, *n_samples as usize).await)
        }
        Execution::MdapVoting {
            k_margin,
            max_candidates,
            max_response_tokens,
        } => {
            let meta = executor
                .metadata()
                .and_then(|m| m.get("mdap"))
                .cloned()
                .unwrap_or(Value::Null);
            let pick = |k: &str, d: Option<usize>| {
                meta.get(k)
                    .and_then(Value::as_u64)
                    .filter(|v| *v > 0)
                    .map(|v| v as usize)
                    .or(d)
            };
            let k = pick("k_margin", Some(*k_margin as usize)).unwrap_or(3);
            let max = pick("max_candidates", Some(*max_candidates as usize)).unwrap_or(10);
            let tokens = pick(
                "max_response_tokens",
                max_response_tokens.map(|t| t as usize),
            );
            Ok(voting(executor, input, context, k, max, tokens).await)
        }
    }
}

fn jittered(d: f64, jitter: f64) -> f64 {
    use rand::Rng;
    let spread = d * jitter;
    if spread <= 0.0 {
        return d.max(0.0);
    }
    (d + rand::rng().random_range(-spread..=spread)).max(0.0)
}

async fn sleep_secs(s: f64) {
    if s > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(s)).await;
    }
}

fn cost_of(r: &AgentResult) -> f64 {
    match &r.cost {
        // A map-shaped cost counts as 0 here (reference quirk, `execution.md` §11).
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::Object(_)) => 0.0,
        _ => r
            .usage
            .as_ref()
            .and_then(|u| u.get("cost"))
            .and_then(|c| {
                c.as_f64()
                    .or_else(|| c.get("total").and_then(Value::as_f64))
            })
            .unwrap_or(0.0),
    }
}

fn calls_of(r: &AgentResult) -> i64 {
    let Some(u) = &r.usage else { return 0 };
    ["api_calls", "requests", "calls"]
        .iter()
        .find_map(|k| u.get(*k).and_then(Value::as_i64).filter(|v| *v != 0))
        .unwrap_or(0)
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
                calls += calls_of(&r);
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
) -> AgentResult {
    let calls: Vec<BoxFuture<'_, Result<AgentResult, AgentFailure>>> = (0..n)
        .map(|_| executor.execute(input.clone(), context))
        .collect();
    let results: Vec<AgentResult> = join_all(calls)
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    if results.is_empty() {
        return AgentResult::default();
    }
    let calls: i64 = results.iter().map(calls_of).sum();
    let cost: f64 = results.iter().map(cost_of).sum();
    let payloads: Vec<Value> = results.iter().map(AgentResult::output_payload).collect();
    let n_ok = payloads.len();
    AgentResult {
        output: Some(json!({"results": payloads, "count": n_ok})),
        usage: (calls != 0).then(|| json!({"api_calls": calls})),
        cost: (cost != 0.0).then(|| json!(cost)),
        ..AgentResult::default()
    }
}

/// JSON with sorted keys: the vote key of a candidate.
fn sorted_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{}: {}", Value::String((*k).clone()), sorted_json(&m[*k])))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(sorted_json).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

async fn voting(
    executor: &dyn AgentExecutor,
    input: Value,
    context: &Value,
    k_margin: usize,
    max_candidates: usize,
    max_tokens: Option<usize>,
) -> AgentResult {
    let (mut calls, mut cost) = (0i64, 0f64);
    let mut votes: HashMap<String, usize> = HashMap::new();
    let mut order: Vec<(String, Value)> = Vec::new();
    for _ in 0..max_candidates {
        let r = match executor.execute(input.clone(), context).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("mdap_voting sample failed: {e}");
                continue;
            }
        };
        calls += calls_of(&r);
        cost += cost_of(&r);
        let content = r.content.clone().unwrap_or_default();
        let (candidate, text) = match &r.output {
            Some(o) if !o.is_null() => (
                o.clone(),
                if content.is_empty() {
                    sorted_json(o)
                } else {
                    content
                },
            ),
            _ if !content.is_empty() => (json!({"content": content}), content),
            _ => continue, // format_error red flag
        };
        if max_tokens.is_some_and(|m| text.chars().count() / 4 > m) {
            continue; // length_exceeded red flag
        }
        let key = sorted_json(&candidate);
        let count = votes.entry(key.clone()).or_insert(0);
        *count += 1;
        if !order.iter().any(|(k, _)| *k == key) {
            order.push((key.clone(), candidate.clone()));
        }
        if *count >= k_margin {
            return voted(candidate, calls, cost);
        }
    }
    let best = order.iter().max_by(|a, b| {
        votes[&a.0]
            .cmp(&votes[&b.0])
            .then(std::cmp::Ordering::Greater)
    });
    match best {
        Some((_, c)) => voted(c.clone(), calls, cost),
        None => AgentResult::default(),
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
            let next = self.0.lock().unwrap().remove(0);
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
        let r = parallel(&s, json!({}), &json!({}), 3).await;
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
        ]));
        let r = voting(&s, json!({}), &json!({}), 2, 10, None).await;
        assert_eq!(r.output, Some(json!({"a": 1})));
        assert_eq!(r.usage, Some(json!({"api_calls": 3})));
    }
}

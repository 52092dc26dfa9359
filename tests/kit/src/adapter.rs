//! Agent adapters for tests: one [`FnAdapter`] whose agents answer with a function, with
//! constructors for the usual test doubles (echo, scripted, failing, slow) and modifiers for
//! the rest (fail the first calls or the n-th call, sleep before answering, report a cost).
//!
//! ```
//! use flatmachines_testkit::{Call, FnAdapter};
//! use flatmachines::agent::AgentResult;
//! use serde_json::json;
//!
//! // `type: shout` agents upper-case `input.text`; the first call fails like a dropped connection.
//! let shout = FnAdapter::new("shout", |call: Call| async move {
//!     let text = call.input["text"].as_str().unwrap_or("").to_uppercase();
//!     Ok(AgentResult::with_output(json!({"text": text})))
//! })
//! .fail_first(1, "ConnectionError", "reset by peer");
//! assert_eq!(shout.calls(), 0);
//! ```

use flatmachines::agent::{
    AdapterContext, AgentAdapter, AgentExecutor, AgentFailure, AgentResult, AgentSpec, BoxFuture,
};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What one agent call ends with: a result (which may itself carry an `error`), or an
/// exception of a Python class (`AgentFailure::kind`).
pub type Reply = Result<AgentResult, AgentFailure>;

/// One agent call, as an [`FnAdapter`]'s function receives it.
#[derive(Clone, Debug)]
pub struct Call {
    /// The agent's name in the machine (its key under `data.agents`).
    pub agent: Arc<str>,
    /// How the agent is declared: its `config`, `ref`, directory.
    pub spec: Arc<AgentSpec>,
    /// The rendered input.
    pub input: Value,
    /// A copy of the machine's context at the time of the call.
    pub context: Value,
    /// Which call of the adapter this is, counting from 1 over all its agents, executors and
    /// clones.
    pub number: usize,
}

type Handler = dyn Fn(Call) -> BoxFuture<'static, Reply> + Send + Sync;

/// Counters shared by an adapter, its clones and every executor it built.
#[derive(Default)]
struct Stats {
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    executors: AtomicUsize,
    inputs: Mutex<Vec<Value>>,
}

/// An agent adapter for tests: every agent of its type answers by calling one function with
/// the [`Call`].
///
/// Clones share the function and the counters ([`calls`](FnAdapter::calls),
/// [`inputs`](FnAdapter::inputs), …), so keep a clone to look at them after registering the
/// adapter with `Runtime::builder().adapter(..)`. The modifiers ([`fail_first`](FnAdapter::fail_first),
/// [`fail_at`](FnAdapter::fail_at), [`delayed`](FnAdapter::delayed),
/// [`priced`](FnAdapter::priced)) change the function of the adapter they are called on and of
/// clones made afterwards, not of clones made before.
#[derive(Clone)]
pub struct FnAdapter {
    type_name: Arc<str>,
    handler: Arc<Handler>,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for FnAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnAdapter")
            .field("type_name", &self.type_name)
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

impl FnAdapter {
    /// An adapter for agents of `type: <type_name>` that answers each call with `f(call)`.
    pub fn new<F, Fut>(type_name: &str, f: F) -> FnAdapter
    where
        F: Fn(Call) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Reply> + Send + 'static,
    {
        FnAdapter {
            type_name: type_name.into(),
            handler: Arc::new(move |call| Box::pin(f(call))),
            stats: Arc::default(),
        }
    }

    /// Agents that return their input as their output.
    pub fn echo(type_name: &str) -> FnAdapter {
        FnAdapter::new(type_name, |call: Call| async move {
            Ok(AgentResult::with_output(call.input))
        })
    }

    /// Agents that answer with `replies` in order, one per call (over all agents of the type).
    /// A call after the last reply fails with a `RuntimeError` saying the script is exhausted.
    /// [`inputs`](FnAdapter::inputs) lists what each call received.
    pub fn scripted(type_name: &str, replies: impl IntoIterator<Item = Reply>) -> FnAdapter {
        let queue: Mutex<VecDeque<Reply>> = Mutex::new(replies.into_iter().collect());
        let name = type_name.to_string();
        FnAdapter::new(type_name, move |call: Call| {
            let next = queue.lock().unwrap().pop_front().unwrap_or_else(|| {
                Err(AgentFailure::new(
                    "RuntimeError",
                    format!(
                        "scripted adapter `{name}`: no reply left for call {}",
                        call.number
                    ),
                ))
            });
            async move { next }
        })
    }

    /// [`scripted`](FnAdapter::scripted) with successful results whose outputs are `outputs`.
    pub fn outputs(type_name: &str, outputs: impl IntoIterator<Item = Value>) -> FnAdapter {
        FnAdapter::scripted(
            type_name,
            outputs.into_iter().map(|o| Ok(AgentResult::with_output(o))),
        )
    }

    /// Agents that always raise an exception of class `kind` (`ValueError`, `TimeoutError`, …)
    /// with `message`.
    pub fn failing(type_name: &str, kind: &str, message: &str) -> FnAdapter {
        let failure = AgentFailure::new(kind, message);
        FnAdapter::new(type_name, move |_call: Call| {
            let failure = failure.clone();
            async move { Err(failure) }
        })
    }

    /// Agents steered by their input, for runs with timing: each call sleeps `input.ms`
    /// milliseconds on tokio's clock (a number or a numeric string; none or 0: no sleep), then
    /// raises `input.fail` as the message of class `input.kind` (default `ValueError`) when
    /// `input.fail` is a string, else returns the input as its output.
    pub fn slow(type_name: &str) -> FnAdapter {
        FnAdapter::new(type_name, |call: Call| async move {
            let input = call.input;
            let ms = match &input["ms"] {
                Value::String(s) => s.parse().unwrap_or(0),
                v => v.as_u64().unwrap_or(0),
            };
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            if let Some(message) = input["fail"].as_str() {
                return Err(AgentFailure::new(
                    input["kind"].as_str().unwrap_or("ValueError"),
                    message,
                ));
            }
            Ok(AgentResult::with_output(input))
        })
    }

    /// Makes the first `n` calls raise `kind`/`message` instead of answering (a flaky agent, or
    /// a process that died mid-call); later calls answer as before.
    pub fn fail_first(self, n: usize, kind: &str, message: &str) -> FnAdapter {
        let failure = AgentFailure::new(kind, message);
        self.wrap(move |inner, call| {
            if call.number <= n {
                let failure = failure.clone();
                Box::pin(async move { Err(failure) })
            } else {
                inner(call)
            }
        })
    }

    /// Makes call number `number` (counting from 1) raise `kind`/`message` instead of
    /// answering; the other calls answer as before.
    pub fn fail_at(self, number: usize, kind: &str, message: &str) -> FnAdapter {
        let failure = AgentFailure::new(kind, message);
        self.wrap(move |inner, call| {
            if call.number == number {
                let failure = failure.clone();
                Box::pin(async move { Err(failure) })
            } else {
                inner(call)
            }
        })
    }

    /// Sleeps `delay` on tokio's clock before each answer (so paused-time tests advance).
    pub fn delayed(self, delay: Duration) -> FnAdapter {
        self.wrap(move |inner, call| {
            let answer = inner(call);
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                answer.await
            })
        })
    }

    /// Makes each successful result report one API call (`usage: {api_calls: 1}`) and `cost`,
    /// unless the function already set `usage` or `cost`.
    pub fn priced(self, cost: f64) -> FnAdapter {
        self.wrap(move |inner, call| {
            let answer = inner(call);
            Box::pin(async move {
                let mut result = answer.await?;
                result.usage.get_or_insert_with(|| json!({"api_calls": 1}));
                result.cost.get_or_insert_with(|| json!(cost));
                Ok(result)
            })
        })
    }

    /// Replaces the function with `f(previous function, call)`.
    fn wrap<G>(mut self, f: G) -> FnAdapter
    where
        G: Fn(&Handler, Call) -> BoxFuture<'static, Reply> + Send + Sync + 'static,
    {
        let inner = self.handler;
        self.handler = Arc::new(move |call| f(&*inner, call));
        self
    }

    /// How many calls the agents of this adapter have started.
    pub fn calls(&self) -> usize {
        self.stats.calls.load(Ordering::SeqCst)
    }

    /// How many calls are running now.
    pub fn in_flight(&self) -> usize {
        self.stats.in_flight.load(Ordering::SeqCst)
    }

    /// The most calls that ran at once so far.
    pub fn max_in_flight(&self) -> usize {
        self.stats.max_in_flight.load(Ordering::SeqCst)
    }

    /// How many executors the adapter has built (the runtime builds one per agent, machine and
    /// runtime).
    pub fn executors_built(&self) -> usize {
        self.stats.executors.load(Ordering::SeqCst)
    }

    /// The inputs of every call so far, in the order the calls started.
    pub fn inputs(&self) -> Vec<Value> {
        self.stats.inputs.lock().unwrap().clone()
    }
}

impl AgentAdapter for FnAdapter {
    fn type_name(&self) -> &str {
        &self.type_name
    }

    fn create_executor(
        &self,
        name: &str,
        spec: &AgentSpec,
        _context: &AdapterContext,
    ) -> Result<Arc<dyn AgentExecutor>, AgentFailure> {
        self.stats.executors.fetch_add(1, Ordering::SeqCst);
        Ok(Arc::new(FnExecutor {
            agent: name.into(),
            spec: Arc::new(spec.clone()),
            handler: self.handler.clone(),
            stats: self.stats.clone(),
        }))
    }
}

struct FnExecutor {
    agent: Arc<str>,
    spec: Arc<AgentSpec>,
    handler: Arc<Handler>,
    stats: Arc<Stats>,
}

/// Counts a call as running until dropped (also when the call's future is dropped unfinished).
struct InFlight<'a>(&'a Stats);

impl<'a> InFlight<'a> {
    fn enter(stats: &'a Stats) -> InFlight<'a> {
        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(stats)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[flatmachines::async_trait]
impl AgentExecutor for FnExecutor {
    async fn execute(&self, input: Value, context: &Value) -> Reply {
        let stats = &*self.stats;
        let number = stats.calls.fetch_add(1, Ordering::SeqCst) + 1;
        stats.inputs.lock().unwrap().push(input.clone());
        let _running = InFlight::enter(stats);
        let call = Call {
            agent: self.agent.clone(),
            spec: self.spec.clone(),
            input,
            context: context.clone(),
            number,
        };
        (self.handler)(call).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn executor(adapter: &FnAdapter, name: &str, config: Option<Value>) -> Arc<dyn AgentExecutor> {
        let spec = AgentSpec {
            ty: adapter.type_name().to_string(),
            reference: None,
            config,
            dir: PathBuf::new(),
            profiles: None,
        };
        let cx = AdapterContext {
            config_dir: PathBuf::new(),
            settings: Value::Null,
            machine_name: "m".into(),
            profiles: None,
        };
        adapter.create_executor(name, &spec, &cx).unwrap()
    }

    fn output(reply: Reply) -> Value {
        reply.unwrap().output.unwrap()
    }

    #[tokio::test]
    async fn the_function_sees_the_call_and_the_counters_are_shared() {
        let adapter = FnAdapter::new("probe", |call: Call| async move {
            Ok(AgentResult::with_output(json!({
                "agent": &*call.agent,
                "config": call.spec.config,
                "input": call.input,
                "context": call.context,
                "number": call.number,
            })))
        });
        let kept = adapter.clone();
        let a = executor(&adapter, "a", Some(json!({"k": 1})));
        let b = executor(&adapter, "b", None);
        let out = output(a.execute(json!({"x": 1}), &json!({"c": true})).await);
        assert_eq!(
            out,
            json!({"agent": "a", "config": {"k": 1}, "input": {"x": 1}, "context": {"c": true}, "number": 1})
        );
        assert_eq!(output(b.execute(json!(2), &json!({})).await)["number"], 2);
        assert_eq!(kept.calls(), 2);
        assert_eq!(kept.executors_built(), 2);
        assert_eq!(kept.inputs(), [json!({"x": 1}), json!(2)]);
        assert_eq!((kept.in_flight(), kept.max_in_flight()), (0, 1));
    }

    #[tokio::test]
    async fn scripted_replies_in_order_then_fails() {
        let adapter = FnAdapter::scripted(
            "s",
            [
                Ok(AgentResult::with_output(json!(1))),
                Err(AgentFailure::new("KeyError", "k")),
            ],
        );
        let e = executor(&adapter, "a", None);
        assert_eq!(output(e.execute(json!("i1"), &Value::Null).await), json!(1));
        assert_eq!(
            e.execute(json!("i2"), &Value::Null).await.unwrap_err(),
            AgentFailure::new("KeyError", "k")
        );
        let exhausted = e.execute(json!("i3"), &Value::Null).await.unwrap_err();
        assert_eq!(exhausted.kind, "RuntimeError");
        assert!(exhausted.message.contains("call 3"), "{exhausted}");
        assert_eq!(adapter.inputs(), [json!("i1"), json!("i2"), json!("i3")]);

        let outputs = FnAdapter::outputs("o", [json!("a"), json!("b")]);
        let e = executor(&outputs, "a", None);
        assert_eq!(output(e.execute(json!(0), &Value::Null).await), json!("a"));
        assert_eq!(output(e.execute(json!(0), &Value::Null).await), json!("b"));
    }

    #[tokio::test]
    async fn failing_flaky_fail_at_and_priced() {
        let e = executor(
            &FnAdapter::failing("f", "TimeoutError", "too slow"),
            "a",
            None,
        );
        assert_eq!(
            e.execute(json!(0), &Value::Null).await.unwrap_err(),
            AgentFailure::new("TimeoutError", "too slow")
        );

        let flaky = FnAdapter::echo("e").fail_first(2, "SystemExit", "died");
        let e = executor(&flaky, "a", None);
        for _ in 0..2 {
            let err = e.execute(json!(0), &Value::Null).await.unwrap_err();
            assert_eq!(err, AgentFailure::new("SystemExit", "died"));
        }
        assert_eq!(output(e.execute(json!(3), &Value::Null).await), json!(3));

        let priced = FnAdapter::echo("p")
            .priced(0.5)
            .fail_at(2, "ConnectionError", "crash");
        let e = executor(&priced, "a", None);
        let first = e.execute(json!(1), &Value::Null).await.unwrap();
        assert_eq!(first.usage, Some(json!({"api_calls": 1})));
        assert_eq!(first.cost, Some(json!(0.5)));
        assert_eq!(first.api_calls(), 1);
        assert_eq!(
            e.execute(json!(2), &Value::Null).await.unwrap_err().kind,
            "ConnectionError"
        );
        assert!(e.execute(json!(3), &Value::Null).await.is_ok());
        assert_eq!(priced.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_and_delayed_sleep_on_tokios_clock_and_count_calls_in_flight() {
        let slow = FnAdapter::slow("slow");
        let e = executor(&slow, "a", None);
        let t0 = tokio::time::Instant::now();
        let (a, b) = tokio::join!(
            e.execute(json!({"ms": 300, "v": 1}), &Value::Null),
            e.execute(
                json!({"ms": "100", "fail": "no", "kind": "KeyError"}),
                &Value::Null
            ),
        );
        assert_eq!(t0.elapsed(), Duration::from_millis(300));
        assert_eq!(output(a), json!({"ms": 300, "v": 1}));
        assert_eq!(b.unwrap_err(), AgentFailure::new("KeyError", "no"));
        assert_eq!((slow.max_in_flight(), slow.in_flight()), (2, 0));
        let err = e.execute(json!({"fail": "x"}), &Value::Null).await;
        assert_eq!(err.unwrap_err().kind, "ValueError");

        let delayed = FnAdapter::echo("d").delayed(Duration::from_secs(5));
        let e = executor(&delayed, "a", None);
        let t0 = tokio::time::Instant::now();
        assert_eq!(output(e.execute(json!(7), &Value::Null).await), json!(7));
        assert_eq!(t0.elapsed(), Duration::from_secs(5));
    }
}

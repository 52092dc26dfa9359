//! Child machines: `machine:`, `foreach:` and `launch:` (`parallel-and-launch.md`).
//!
//! * `machine: child` runs one child and waits; its failure is the state's failure.
//! * `machine: [a, b]` (names or `{name, input}` entries, each entry's `input` honoured) and
//!   `foreach:` start every child at once as tokio tasks (at most
//!   `settings.max_concurrent_children` at a time when set) and collect them by `mode`:
//!   `settled` waits for all (failures become `{_error, _error_type}` entries), `any` for the
//!   first. `timeout` bounds the wait in both modes; children still running keep running in
//!   the background and the run awaits them before it returns.
//! * `launch:` records intents in the outbox (`pending_launches`), checkpoints them, then hands
//!   each to the runtime's [`Invoker`](crate::invoker::Invoker) and checkpoints again.
//!
//! Every child gets an execution id from the parent, `parent_execution_id` = the parent's id,
//! the parent's persistence objects, and writes its result (or error entry) to
//! `flatagents://<id>/result` of the runtime's result backend.

use super::checkpoint::{self, Event};
use super::env::{RunOptions, Runtime};
use super::{Inherited, LaunchIntent, Run, StateFailure, run_inherited};
use crate::error::Error;
use crate::invoker::{InlineRun, LaunchContext, LaunchRequest};
use crate::machine::{Machine, MachineDef, StateDef};
use crate::peers::{Call, ChildLoadError, Mode};
use crate::py::uuid4 as new_execution_id;
use crate::py::{class_name, truthy};
use crate::results::result_uri;
use crate::template::Vars;
use serde_json::{Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};

/// Components a child run shares with its parent: the runtime children run with (the parent's
/// adapters, hooks registry, result backend and invoker, without the parent's explicit hooks
/// object, as in the reference).
#[derive(Clone)]
pub(crate) struct Shared {
    runtime: Arc<Runtime>,
}

/// The children of one run.
pub(crate) struct Children {
    /// Built on first use (or inherited), then shared by every child.
    runtime: Option<Arc<Runtime>>,
    /// Launched children and resumed launches, awaited before the run returns.
    background: Vec<JoinHandle<()>>,
    /// Children of `machine:`/`foreach:` calls still running after the call returned.
    leftovers: Vec<JoinSet<()>>,
    /// Launches restarted at resume; the state that is re-run claims them instead of
    /// launching again.
    claims: Vec<LaunchIntent>,
    /// The step at which `claims` may be claimed.
    claim_step: u64,
}

impl Children {
    pub(crate) fn new(_def: &MachineDef, inherited: Option<Shared>) -> Children {
        Children {
            runtime: inherited.map(|s| s.runtime),
            background: Vec::new(),
            leftovers: Vec::new(),
            claims: Vec::new(),
            claim_step: 0,
        }
    }

    /// Waits for background children before the run returns; their failures are theirs (they
    /// are in the result backend), not the run's.
    pub(crate) async fn finish(&mut self) -> Result<(), Error> {
        for handle in self.background.drain(..) {
            if let Err(e) = handle.await
                && e.is_panic()
            {
                tracing::error!("a background child machine panicked");
            }
        }
        for mut set in self.leftovers.drain(..) {
            while let Some(done) = set.join_next().await {
                if let Err(e) = done
                    && e.is_panic()
                {
                    tracing::error!("a child machine panicked");
                }
            }
        }
        Ok(())
    }

    fn keep_background(&mut self, handles: Vec<JoinHandle<()>>) {
        self.background.retain(|h| !h.is_finished());
        self.background.extend(handles);
    }
}

/// A child's failure, as the reference's exception class and message.
#[derive(Clone, Debug)]
pub(crate) struct ChildFailure {
    pub kind: String,
    pub message: String,
}

impl ChildFailure {
    fn of(e: &Error) -> ChildFailure {
        match e {
            Error::State { kind, message, .. } => ChildFailure {
                kind: kind.clone(),
                message: message.clone(),
            },
            other => ChildFailure {
                kind: "RuntimeError".into(),
                message: other.to_string(),
            },
        }
    }

    /// `{"_error": <message>, "_error_type": <class>}`.
    fn entry(&self) -> Value {
        let mut m = Map::with_capacity(2);
        m.insert("_error".into(), Value::String(self.message.clone()));
        m.insert("_error_type".into(), Value::String(self.kind.clone()));
        Value::Object(m)
    }

    fn into_state_failure(self) -> StateFailure {
        StateFailure::new(self.kind, self.message)
    }
}

impl From<ChildLoadError> for ChildFailure {
    fn from(e: ChildLoadError) -> Self {
        ChildFailure {
            kind: e.kind,
            message: e.message,
        }
    }
}

type Outcome = Result<Value, ChildFailure>;

fn entry_of(outcome: Outcome) -> Value {
    outcome.unwrap_or_else(|f| f.entry())
}

/// Runs `machine` as a child and writes its result — or its error entry — to
/// `flatagents://<id>/result` (`parallel-and-launch.md` §1). The future is boxed: child runs
/// nest, and a named type keeps the recursion finite.
pub(crate) fn run_and_write(
    rt: Arc<Runtime>,
    machine: Machine,
    input: Value,
    opts: RunOptions,
    inherited: Inherited,
) -> Pin<Box<dyn Future<Output = Outcome> + Send + 'static>> {
    Box::pin(async move {
        let id = opts.execution_id.clone().unwrap_or_default();
        let result = run_inherited(&rt, &machine, input, opts, inherited).await;
        let (outcome, stored) = match result {
            Ok(v) => {
                let stored = v.clone();
                (Ok(v), stored)
            }
            Err(e) => {
                let f = ChildFailure::of(&e);
                let stored = f.entry();
                (Err(f), stored)
            }
        };
        if let Err(e) = rt.results.write(&result_uri(&id), stored).await {
            tracing::warn!("cannot write the result of child {id}: {e}");
        }
        outcome
    })
}

/// A rendered `key` as a map key: strings as they are, other scalars as JSON prints a Python
/// dict key (`None` → `null`, `True` → `true`, `1.5` → `1.5`).
fn key_text(v: Value) -> Result<String, StateFailure> {
    match v {
        Value::String(s) => Ok(s),
        Value::Null => Ok("null".into()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(match n.as_f64() {
            Some(f) if n.is_f64() => flatmachines_ir::pyfmt::float_repr(f),
            _ => n.to_string(),
        }),
        other => Err(StateFailure::new(
            "TypeError",
            format!("unhashable type: '{}'", class_name(&other)),
        )),
    }
}

/// One child to run: the machine (or why it cannot run) and its input.
type Job = (Result<Machine, ChildFailure>, Value);

impl Run<'_> {
    /// The runtime children run with: the parent's, without its explicit hooks object.
    fn child_runtime(&mut self) -> Arc<Runtime> {
        let rt = self.rt;
        self.children
            .runtime
            .get_or_insert_with(|| {
                let mut child = rt.clone();
                child.hooks = None;
                Arc::new(child)
            })
            .clone()
    }

    fn inherited(&mut self) -> Inherited {
        Inherited {
            persist: Some(self.persist.shared()),
            children: Some(Shared {
                runtime: self.child_runtime(),
            }),
        }
    }

    pub(super) fn state_index(&self, state: &StateDef) -> Option<usize> {
        self.def.states.iter().position(|s| std::ptr::eq(s, state))
    }

    fn state_input(&self, state: &StateDef) -> Result<Value, StateFailure> {
        match &state.input {
            Some(t) => self.render_map(t),
            None => Ok(Value::Object(Map::new())),
        }
    }

    /// `machine:` / `foreach:`: runs the children and returns the state's output (`{}` when it
    /// is falsy, as `output_to_context` receives `output or {}`).
    pub(crate) async fn run_children(&mut self, state: &StateDef) -> Result<Value, StateFailure> {
        let peers = &state.peers;
        let output = match &peers.call {
            None => Value::Null,
            Some(Call::Single(name)) => self.call_single(state, name).await?,
            Some(Call::List(entries)) => self.call_list(state, entries).await?,
            Some(Call::Foreach {
                items,
                item,
                key,
                machine,
            }) => {
                self.call_foreach(state, items, item, key.as_ref(), machine)
                    .await?
            }
        };
        Ok(if truthy(&output) {
            output
        } else {
            Value::Object(Map::new())
        })
    }

    /// `machine: child`: the child's result, or its failure as the state's.
    async fn call_single(&mut self, state: &StateDef, name: &str) -> Result<Value, StateFailure> {
        let machine = self
            .def
            .children
            .machine(name)
            .map_err(|e| ChildFailure::from(e).into_state_failure())?
            .clone();
        let input = self.state_input(state)?;
        if state.peers.timeout.is_some() {
            // Through the task path, so a child that outlives the timeout keeps running.
            let mut results = self
                .run_jobs(
                    vec![(Ok(machine), input)],
                    Mode::Settled,
                    state.peers.timeout,
                )
                .await;
            let outcome = results.pop().flatten().unwrap_or_else(|| {
                Err(ChildFailure {
                    kind: "RuntimeError".into(),
                    message: format!("child machine `{name}` did not report a result"),
                })
            });
            return outcome.map_err(ChildFailure::into_state_failure);
        }
        let opts = RunOptions {
            execution_id: Some(new_execution_id()),
            parent_execution_id: Some(self.execution_id.clone()),
            ..RunOptions::default()
        };
        let rt = self.child_runtime();
        let inherited = self.inherited();
        run_and_write(rt, machine, input, opts, inherited)
            .await
            .map_err(ChildFailure::into_state_failure)
    }

    /// `machine: [a, b]`: a map keyed by machine name, in list order.
    async fn call_list(
        &mut self,
        state: &StateDef,
        entries: &[(String, Option<Value>)],
    ) -> Result<Value, StateFailure> {
        let shared_input = self.state_input(state)?;
        // One child per distinct name (the result is keyed by name); a later entry's input
        // replaces an earlier one's.
        let mut names: Vec<&str> = Vec::with_capacity(entries.len());
        let mut templates: Vec<Option<&Value>> = Vec::with_capacity(entries.len());
        for (name, input) in entries {
            match names.iter().position(|n| *n == name) {
                Some(i) => {
                    if input.is_some() {
                        templates[i] = input.as_ref();
                    }
                }
                None => {
                    names.push(name);
                    templates.push(input.as_ref());
                }
            }
        }
        let mut jobs: Vec<Job> = Vec::with_capacity(names.len());
        for (name, template) in names.iter().zip(&templates) {
            let input = match template {
                Some(t) => self.render_map(t)?,
                None => shared_input.clone(),
            };
            let machine = self
                .def
                .children
                .machine(name)
                .cloned()
                .map_err(ChildFailure::from);
            jobs.push((machine, input));
        }
        let results = self
            .run_jobs(jobs, state.peers.mode, state.peers.timeout)
            .await;
        let mut out = Map::with_capacity(names.len());
        for (name, outcome) in names.iter().zip(results) {
            if let Some(outcome) = outcome {
                out.insert((*name).to_string(), entry_of(outcome));
            }
        }
        Ok(Value::Object(out))
    }

    /// `foreach:`: one child per item; a map by rendered `key`, else a list in item order.
    async fn call_foreach(
        &mut self,
        state: &StateDef,
        items: &Value,
        item_name: &str,
        key: Option<&Value>,
        machine_name: &str,
    ) -> Result<Value, StateFailure> {
        let def = self.def;
        let templates = &def.templates;
        let rendered = templates.render_value(items, &self.state_vars())?;
        let is_template = items
            .as_str()
            .is_some_and(|s| s.contains("{{") || s.contains("{%"));
        let list = match rendered {
            Value::Array(a) => a,
            // A `{{ }}` template prints lists as JSON (warning FM0307): read it back.
            Value::String(s) if is_template => match serde_json::from_str::<Value>(&s) {
                Ok(Value::Array(a)) => a,
                _ => {
                    return Err(StateFailure::new(
                        "ValueError",
                        "foreach expression must yield a list, got <class 'str'>",
                    ));
                }
            },
            other => {
                return Err(StateFailure::new(
                    "ValueError",
                    format!(
                        "foreach expression must yield a list, got <class '{}'>",
                        class_name(&other)
                    ),
                ));
            }
        };
        let machine = def
            .children
            .machine(machine_name)
            .cloned()
            .map_err(ChildFailure::from);
        let empty = Value::Object(Map::new());
        let input_template = state.input.as_ref().unwrap_or(&empty);
        let mut jobs: Vec<Job> = Vec::with_capacity(list.len());
        // Keyed: rendered key → position in `jobs`; a later item with the same key replaces
        // the earlier one, which does not run (as in the reference).
        let mut keys: Vec<String> = Vec::new();
        let mut position: std::collections::HashMap<String, usize> =
            std::collections::HashMap::new();
        for item in &list {
            let vars = Vars::new()
                .with(item_name, item)
                .with("context", &empty)
                .with("input", &empty);
            let input = templates.render_map(input_template, &vars)?;
            let job = (machine.clone(), input);
            match key {
                None => jobs.push(job),
                Some(k) => {
                    let k = key_text(templates.render_value(k, &vars)?)?;
                    match position.get(&k) {
                        Some(&i) => jobs[i] = job,
                        None => {
                            position.insert(k.clone(), jobs.len());
                            keys.push(k);
                            jobs.push(job);
                        }
                    }
                }
            }
        }
        drop(list);
        let results = self
            .run_jobs(jobs, state.peers.mode, state.peers.timeout)
            .await;
        Ok(match key {
            Some(_) => Value::Object(
                keys.into_iter()
                    .zip(results)
                    .filter_map(|(k, r)| Some((k, entry_of(r?))))
                    .collect(),
            ),
            None => Value::Array(results.into_iter().flatten().map(entry_of).collect()),
        })
    }

    /// Starts every job as a task and collects outcomes by `mode` (`None`: not reported: still
    /// running after an `any`, or after a `timeout` in `any` mode).
    async fn run_jobs(
        &mut self,
        jobs: Vec<Job>,
        mode: Mode,
        timeout: Option<f64>,
    ) -> Vec<Option<Outcome>> {
        let n = jobs.len();
        let mut results: Vec<Option<Outcome>> = (0..n).map(|_| None).collect();
        if n == 0 {
            return results;
        }
        // Children left running by earlier calls: forget those that have finished.
        self.children.leftovers.retain_mut(|set| {
            while set.try_join_next().is_some() {}
            !set.is_empty()
        });
        let rt = self.child_runtime();
        let inherited = self.inherited();
        let parent: Arc<str> = Arc::from(self.execution_id.as_str());
        let limit = crate::peers::concurrency_limit(self.def).map(|n| Arc::new(Semaphore::new(n)));
        let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Outcome)>();
        let mut set = JoinSet::new();
        for (i, (machine, input)) in jobs.into_iter().enumerate() {
            let tx = tx.clone();
            let rt = rt.clone();
            let inherited = inherited.clone();
            let parent = parent.clone();
            let limit = limit.clone();
            // Small until polled: the child's run is boxed inside.
            set.spawn(async move {
                let outcome = match machine {
                    Err(f) => Err(f),
                    Ok(machine) => {
                        let _permit = match limit {
                            Some(s) => s.acquire_owned().await.ok(),
                            None => None,
                        };
                        let opts = RunOptions {
                            execution_id: Some(new_execution_id()),
                            parent_execution_id: Some(parent.to_string()),
                            ..RunOptions::default()
                        };
                        run_and_write(rt, machine, input, opts, inherited).await
                    }
                };
                let _ = tx.send((i, outcome));
            });
        }
        drop(tx);
        // Saturating: `timeout: 1e30` means "no deadline", not a panic in the conversion or in
        // the `Instant` addition.
        let timeout = timeout.map(crate::py::saturating_secs);
        let deadline = timeout.and_then(|t| tokio::time::Instant::now().checked_add(t));
        let mut timed_out = false;
        match mode {
            Mode::Settled => {
                let mut remaining = n;
                while remaining > 0 {
                    let next = match deadline {
                        None => rx.recv().await,
                        Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                            Ok(next) => next,
                            Err(_) => {
                                timed_out = true;
                                break;
                            }
                        },
                    };
                    // `None`: every task ended; the missing ones panicked.
                    let Some((i, outcome)) = next else { break };
                    results[i] = Some(outcome);
                    remaining -= 1;
                    // Free finished tasks as we go (10,000 children are not kept around).
                    while set.try_join_next().is_some() {}
                }
                for r in results.iter_mut().filter(|r| r.is_none()) {
                    *r = Some(Err(if timed_out {
                        ChildFailure {
                            kind: "TimeoutError".into(),
                            message: format!(
                                "child machine did not finish within {}s",
                                timeout.map_or(0.0, |t| t.as_secs_f64())
                            ),
                        }
                    } else {
                        ChildFailure {
                            kind: "RuntimeError".into(),
                            message: "child machine panicked".into(),
                        }
                    }));
                }
            }
            Mode::Any => {
                let first = match deadline {
                    None => rx.recv().await,
                    // `timeout: 0` still reports children that finish without waiting.
                    Some(_) if timeout == Some(Duration::ZERO) => {
                        tokio::task::yield_now().await;
                        rx.try_recv().ok()
                    }
                    Some(d) => tokio::time::timeout_at(d, rx.recv()).await.ok().flatten(),
                };
                if let Some((i, outcome)) = first {
                    // The first finished in list order among those done.
                    let mut best = (i, outcome);
                    while let Ok((j, o)) = rx.try_recv() {
                        if j < best.0 {
                            best = (j, o);
                        }
                    }
                    results[best.0] = Some(best.1);
                }
            }
        }
        while set.try_join_next().is_some() {}
        if !set.is_empty() {
            self.children.leftovers.push(set);
        }
        results
    }

    /// `launch:` (fire-and-forget) with the outbox pattern: the intents are in a checkpoint
    /// before any is launched, and marked launched once the invoker accepted them. The mark
    /// reaches the next regular checkpoint (`state_exit`), so a resume from anywhere inside this
    /// state sees the intents un-launched: [`Run::relaunch_pending`] then finds out whether each
    /// already ran, and the re-run of this state claims them instead of launching again.
    pub(crate) async fn launch(&mut self, state: &StateDef) -> Result<(), StateFailure> {
        let def = self.def;
        let input = match &state.peers.launch_input {
            Some(t) => self.render_map(t)?,
            None => Value::Object(Map::new()),
        };
        if self.children.claim_step != self.step {
            self.children.claims.clear();
        }
        // The launches to start (name, execution id), and the machines an invoker that runs
        // them in this process needs.
        let mut fresh: Vec<(&str, String)> = Vec::with_capacity(state.launch.len());
        let mut machines: Vec<(String, Machine)> = Vec::with_capacity(state.launch.len());
        for name in &state.launch {
            let machine = def
                .children
                .machine(name)
                .map_err(|e| ChildFailure::from(e).into_state_failure())?
                .clone();
            // Re-run after a resume: the launch that was in flight was restarted at resume.
            if let Some(pos) = self
                .children
                .claims
                .iter()
                .position(|c| c.machine == *name && c.input == input)
            {
                self.children.claims.remove(pos);
                continue;
            }
            let id = new_execution_id();
            self.pending_launches.push(LaunchIntent {
                execution_id: id.clone(),
                machine: name.clone(),
                input: input.clone(),
                launched: false,
            });
            fresh.push((name, id));
            machines.push((name.clone(), machine));
        }
        if fresh.is_empty() {
            return Ok(());
        }
        let index = self.state_index(state);
        self.save_outbox(index).await?;
        // What an invoker that runs the child in this process calls (`LaunchContext::spawn_inline`).
        let (runtime, inherited) = (self.child_runtime(), self.inherited());
        let run_inline = move |request: LaunchRequest| -> InlineRun {
            let machine = machines
                .iter()
                .find(|(n, _)| *n == request.machine_name)
                .map(|(_, m)| m.clone());
            let opts = RunOptions {
                execution_id: Some(request.execution_id),
                parent_execution_id: Some(request.parent_execution_id),
                ..RunOptions::default()
            };
            let child = machine
                .map(|m| run_and_write(runtime.clone(), m, request.input, opts, inherited.clone()));
            Box::pin(async move {
                if let Some(child) = child {
                    let _ = child.await;
                }
            })
        };
        let cx = LaunchContext {
            results: self.rt.results.clone(),
            config_dir: &def.config_dir,
            spawned: Mutex::new(Vec::new()),
            run_inline: &run_inline,
        };
        let mut failure = None;
        for (name, id) in fresh {
            let entry = def.children.get(name);
            let request = LaunchRequest {
                machine_name: name.to_string(),
                config_path: entry.and_then(|e| e.path.clone()),
                document: entry.and_then(|e| e.document.get()),
                input: input.clone(),
                execution_id: id.clone(),
                parent_execution_id: self.execution_id.clone(),
            };
            match self.rt.invoker.launch(&cx, request).await {
                Ok(()) => {
                    if let Some(intent) = self
                        .pending_launches
                        .iter_mut()
                        .rev()
                        .find(|i| i.execution_id == id)
                    {
                        intent.launched = true;
                    }
                }
                Err(e) => {
                    failure = Some(StateFailure::new(e.kind, e.message));
                    break;
                }
            }
        }
        let spawned = cx.take_spawned();
        drop(cx);
        self.children.keep_background(spawned);
        match failure {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// Checkpoints the outbox mid-state (an `execute` snapshot of the current step, so resuming
    /// from it re-runs the state, whose launches then claim the restarted intents).
    async fn save_outbox(&mut self, index: Option<usize>) -> Result<(), StateFailure> {
        self.checkpoint(Event::Execute, index, None)
            .await
            .map_err(|e| StateFailure::new("RuntimeError", e.to_string()))
    }

    /// After a resume: restarts, in this process, every restored intent that was not launched
    /// and has no result yet (`parallel-and-launch.md` §6) — resuming the child from its own
    /// checkpoint when it has one, so a launch that already started is not started again.
    pub(crate) async fn relaunch_pending(&mut self) {
        let results = self.rt.results.clone();
        let mut todo = Vec::new();
        // Only the state that was running when the checkpoint was taken leaves intents
        // un-launched: its re-run claims them all, whether restarted here or already done.
        self.children.claim_step = self.step + 1;
        for (i, intent) in self.pending_launches.iter_mut().enumerate() {
            if intent.launched {
                continue;
            }
            if results
                .exists(&result_uri(&intent.execution_id))
                .await
                .unwrap_or(false)
            {
                // It ran to the end before the crash.
                intent.launched = true;
                self.children.claims.push(intent.clone());
            } else {
                todo.push((i, intent.clone()));
            }
        }
        if todo.is_empty() {
            return;
        }
        let backend = self.persist.backend().cloned();
        let rt = self.child_runtime();
        let inherited = self.inherited();
        for (i, intent) in todo {
            let machine = match self.def.children.machine(&intent.machine) {
                Ok(m) => m.clone(),
                Err(e) => {
                    tracing::warn!(
                        "cannot re-launch {} (`{}`): {}",
                        intent.execution_id,
                        intent.machine,
                        e.message
                    );
                    continue;
                }
            };
            let started = match &backend {
                Some(b) => checkpoint::load_latest(b.as_ref(), &intent.execution_id)
                    .await
                    .ok()
                    .flatten()
                    .is_some(),
                None => false,
            };
            tracing::info!(
                "re-launching {} (`{}`){}",
                intent.execution_id,
                intent.machine,
                if started { " from its checkpoint" } else { "" }
            );
            let opts = RunOptions {
                execution_id: Some(intent.execution_id.clone()),
                parent_execution_id: Some(self.execution_id.clone()),
                resume_from: started.then(|| intent.execution_id.clone()),
                ..RunOptions::default()
            };
            let child = run_and_write(
                rt.clone(),
                machine,
                intent.input.clone(),
                opts,
                inherited.clone(),
            );
            let handle = tokio::spawn(async move {
                let _ = child.await;
            });
            self.children.keep_background(vec![handle]);
            self.pending_launches[i].launched = true;
            self.children.claims.push(intent);
        }
    }
}

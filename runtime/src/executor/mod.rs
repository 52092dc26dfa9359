//! The main loop (`execution.md` §1–8): one executor for compiled and interpreted machines.

use crate::agent::{AdapterContext, AgentExecutor};
use crate::error::Error;
use crate::hooks::MachineHooks;
use crate::machine::{Machine, MachineDef, OnErrorDef, StateDef};
use crate::strategy;
use crate::template::{Prepared, Vars};
use env::{RunOptions, Runtime};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// An error raised inside a state, before `on_error` decides what happens: a Python exception's
/// class and message.
pub(crate) use crate::py::Exception as StateFailure;

/// A template that fails to render fails the state with the template's exception class.
impl From<crate::template::TemplateError> for StateFailure {
    fn from(e: crate::template::TemplateError) -> Self {
        StateFailure::new(e.kind(), e.to_string())
    }
}

pub(crate) mod checkpoint;
mod children;
pub(crate) mod env;
mod observe;
mod tool_loop;

pub(crate) use observe::EventSender;
pub use observe::{CancelHandle, RunEvent};

pub(crate) use checkpoint::Event;

/// The run's mutable state.
pub(crate) struct Run<'a> {
    pub rt: &'a Runtime,
    pub def: &'a MachineDef,
    /// The runtime's explicit hooks, else `data.hooks` resolved; `None` skips every call.
    pub hooks: Option<Arc<dyn MachineHooks>>,
    pub execution_id: String,
    pub parent_execution_id: Option<String>,
    pub context: Value,
    pub step: u64,
    pub total_api_calls: i64,
    pub total_cost: f64,
    /// The outbox of child launches (`parallel-and-launch.md` §6), saved in every checkpoint.
    pub pending_launches: Vec<LaunchIntent>,
    /// The executors this run has used, by agent name: a machine has a handful of agents, so a
    /// scan beats hashing the name at every step.
    executors: Vec<(String, Arc<dyn AgentExecutor>)>,
    /// Checkpoint backend, lock and config store of this run (`persistence.md`).
    pub persist: checkpoint::Persist,
    /// Result backend, invoker and background children of this run.
    pub children: children::Children,
    /// The `tool_loop_state` of the `tool_call` checkpoint a resumed run starts from, with its
    /// state index: that state's loop continues from it instead of starting over.
    pub resumed_tool_loop: Option<(usize, Value)>,
    /// The channel a `wait_for` state parked on: the run stops there (`signals-and-dispatch.md`
    /// §1).
    pub parked: Option<String>,
    /// The channel the run ended parked on, for [`run_ended`].
    pub parked_on: Option<String>,
    /// MCP servers started by this run's tool loops, by agent name; shut down when it ends.
    #[cfg(feature = "mcp")]
    pub mcp: Vec<(String, Arc<crate::tools::McpServers>)>,
    /// Set from outside (`Runtime::run_until`) to stop the run at its next safe point.
    stop: Option<Arc<AtomicBool>>,
    /// `RunOptions::cancel`: stops the run at its next safe point or aborts its agent call.
    cancel: Option<CancelHandle>,
    /// The run-event stream's sender, when someone consumes one.
    events: Option<EventSender>,
    /// The spend limit (`RunOptions::max_cost`, else `settings.max_cost`), in USD.
    budget: Option<f64>,
    /// `(budget, spent)` when the budget refused the current state's agent call, so that an
    /// unrecovered failure becomes [`Error::BudgetExceeded`].
    budget_hit: Option<(f64, f64)>,
}

/// How the caller of a run watches and stops it.
#[derive(Default)]
pub(crate) struct Control {
    /// `Runtime::run_until`'s flag.
    pub stop: Option<Arc<AtomicBool>>,
    /// Where run events go.
    pub events: Option<EventSender>,
}

/// What a child run inherits from its parent (`parallel-and-launch.md` §1).
#[derive(Clone, Default)]
pub(crate) struct Inherited {
    pub persist: Option<checkpoint::Shared>,
    pub children: Option<children::Shared>,
}

/// A launch intent of the outbox pattern, in the reference's wire shape.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct LaunchIntent {
    pub execution_id: String,
    pub machine: String,
    pub input: Value,
    pub launched: bool,
}

/// Runs `machine` to the end and returns its output.
pub(crate) async fn run(
    rt: &Runtime,
    machine: &Machine,
    input: Value,
    opts: RunOptions,
) -> Result<Value, Error> {
    run_inherited(rt, machine, input, opts, Inherited::default()).await
}

/// How a run ended: its output, its execution id, and the channel it parked on (a `wait_for`
/// state without a signal), if it did.
pub(crate) struct Ended {
    pub output: Value,
    pub execution_id: String,
    pub parked_on: Option<String>,
}

/// [`run`], saying whether the run finished or parked.
pub(crate) async fn run_ended(
    rt: &Runtime,
    machine: &Machine,
    input: Value,
    opts: RunOptions,
) -> Result<Ended, Error> {
    run_detailed(
        rt,
        machine,
        input,
        opts,
        Inherited::default(),
        Control::default(),
    )
    .await
}

/// [`run_ended`] with a caller watching ([`Control`]).
pub(crate) async fn run_controlled(
    rt: &Runtime,
    machine: &Machine,
    input: Value,
    opts: RunOptions,
    control: Control,
) -> Result<Ended, Error> {
    run_detailed(rt, machine, input, opts, Inherited::default(), control).await
}

/// [`run`], stopping at the next safe point once `stop` is set: right before a state's body
/// runs, when its `execute` checkpoint is saved, so a resume re-enters that state and no
/// completed state runs again. Child machines finish the state they run in.
pub(crate) async fn run_until(
    rt: &Runtime,
    machine: &Machine,
    input: Value,
    opts: RunOptions,
    stop: Arc<AtomicBool>,
) -> Result<Value, Error> {
    Ok(run_detailed(
        rt,
        machine,
        input,
        opts,
        Inherited::default(),
        Control {
            stop: Some(stop),
            events: None,
        },
    )
    .await?
    .output)
}

/// The latest checkpoint of `execution_id` where `machine`, run by `rt`, keeps its
/// checkpoints (`None` when there is none, or the machine writes none).
pub(crate) async fn latest_checkpoint(
    rt: &Runtime,
    machine: &Machine,
    execution_id: &str,
) -> Result<Option<crate::persistence::snapshot::Latest>, Error> {
    let def = &*machine.def;
    let persist = checkpoint::Persist::new(rt, def, execution_id, None)?;
    let Some(backend) = persist.backend() else {
        return Ok(None);
    };
    crate::persistence::snapshot::load_latest(backend.as_ref(), execution_id)
        .await
        .map_err(|source| Error::Persistence {
            machine: def.name.clone(),
            execution_id: execution_id.to_string(),
            source,
        })
}

/// Runs `machine` sharing `inherited` components with a parent run.
pub(crate) async fn run_inherited(
    rt: &Runtime,
    machine: &Machine,
    input: Value,
    opts: RunOptions,
    inherited: Inherited,
) -> Result<Value, Error> {
    Ok(
        run_detailed(rt, machine, input, opts, inherited, Control::default())
            .await?
            .output,
    )
}

async fn run_detailed(
    rt: &Runtime,
    machine: &Machine,
    input: Value,
    opts: RunOptions,
    inherited: Inherited,
    control: Control,
) -> Result<Ended, Error> {
    let def = &*machine.def;
    let hooks = match (&rt.hooks, &def.hooks) {
        (Some(h), _) => Some(h.clone()),
        (None, Some(reference)) => {
            Some(
                rt.hooks_registry
                    .resolve(reference)
                    .map_err(|e| Error::Hooks {
                        machine: def.name.clone(),
                        message: e.to_string(),
                    })?,
            )
        }
        (None, None) => None,
    };
    // A resumed run continues under the id it resumes (`execution.md` §2).
    let execution_id = (opts.resume_from.clone())
        .or_else(|| opts.execution_id.clone())
        .unwrap_or_else(crate::py::uuid4);
    let persist = checkpoint::Persist::new(rt, def, &execution_id, inherited.persist)?;
    let children = children::Children::new(def, inherited.children);
    let mut run = Run {
        rt,
        def,
        hooks,
        execution_id,
        parent_execution_id: opts.parent_execution_id.clone(),
        context: Value::Null,
        step: 0,
        total_api_calls: 0,
        total_cost: 0.0,
        pending_launches: Vec::new(),
        executors: Vec::new(),
        persist,
        children,
        resumed_tool_loop: None,
        parked: None,
        parked_on: None,
        #[cfg(feature = "mcp")]
        mcp: Vec::new(),
        stop: control.stop,
        cancel: opts.cancel.clone(),
        events: control.events,
        budget: opts.max_cost.or_else(|| settings_budget(&def.settings)),
        budget_hit: None,
    };
    run.persist.acquire(&run.execution_id, &def.name).await?;
    let result = run.execute(input, &opts).await;
    // A run that stops between a `state_exit` and the next body (an error in a transition
    // condition, `max_steps`) may still hold deferred snapshots; they are saved under the lock.
    let flushed = run.flush_checkpoints().await;
    let result = result.and_then(|output| flushed.map(|()| output));
    let finished = run.children.finish().await;
    #[cfg(feature = "mcp")]
    for (_, servers) in run.mcp.drain(..) {
        servers.shutdown().await;
    }
    run.persist.release(&run.execution_id).await;
    let output = result?;
    finished?;
    Ok(Ended {
        output,
        execution_id: run.execution_id,
        parked_on: run.parked_on,
    })
}

impl Run<'_> {
    async fn execute(&mut self, input: Value, opts: &RunOptions) -> Result<Value, Error> {
        let def = self.def;
        let max_steps = opts.max_steps.or(def.limits.max_steps).unwrap_or(1000);
        let mut current = match &opts.resume_from {
            Some(id) => {
                let resumed = checkpoint::resume(self, id).await?;
                // Launches recorded but never started are restarted first
                // (`parallel-and-launch.md` §6), before the "already finished" check.
                self.relaunch_pending().await;
                match resumed {
                    checkpoint::Resumed::At(idx) => Some(idx),
                    checkpoint::Resumed::Finished(output) => return Ok(output),
                }
            }
            None => {
                self.start(input)?;
                self.checkpoint(Event::MachineStart, None, None).await?;
                if let Some(h) = &self.hooks {
                    h.on_machine_start(&mut self.context).await;
                }
                Some(def.initial)
            }
        };
        if self.observed() {
            self.send(RunEvent::Started {
                machine: def.name.clone(),
                execution_id: self.execution_id.clone(),
                resumed: opts.resume_from.is_some(),
            });
        }

        let mut final_output = Value::Object(Map::new());
        while let Some(idx) = current {
            if self.step >= max_steps {
                tracing::warn!("machine `{}` stopped at max_steps ({max_steps})", def.name);
                break;
            }
            if opts
                .max_agent_calls
                .is_some_and(|m| self.total_api_calls >= m)
            {
                break;
            }
            self.step += 1;
            self.budget_hit = None;
            let state = &def.states[idx];
            self.inject_metadata(&state.name);
            self.checkpoint_deferred(Event::StateEnter, Some(idx), None)
                .await?;
            if let Some(h) = &self.hooks {
                h.on_state_enter(&state.name, &mut self.context).await;
            }
            if self.observed() {
                self.send(RunEvent::StateEntered {
                    state: state.name.clone(),
                    step: self.step,
                });
            }
            self.checkpoint_deferred(Event::Execute, Some(idx), None)
                .await?;
            // Nothing pending may outlive this point: the body has effects outside the run.
            self.flush_checkpoints().await?;
            // The safe point to stop at: this state's `execute` checkpoint is saved and its body
            // has not started, so a resume runs it once and nothing before it again.
            if self.stop_requested() {
                return Err(Error::Stopped {
                    machine: def.name.clone(),
                    execution_id: self.execution_id.clone(),
                    state: state.name.clone(),
                });
            }
            let output = match self.run_state(state).await {
                Ok(_) if self.parked.is_some() => {
                    let channel = self.parked.take().unwrap_or_default();
                    self.checkpoint_with(
                        Event::Waiting,
                        Some(idx),
                        None,
                        checkpoint::Extras {
                            waiting_channel: Some(&channel),
                            ..checkpoint::Extras::default()
                        },
                    )
                    .await?;
                    tracing::info!(
                        "machine `{}` waits in state `{}` for a signal on `{channel}`",
                        def.name,
                        state.name
                    );
                    if def.persistence.backend == flatmachines_ir::Backend::Memory
                        && self.rt.checkpoint_backend.is_none()
                    {
                        tracing::warn!(
                            "machine `{}` parked with checkpoints in this run's own memory \
                             store, which ends with the run: nothing can resume execution {}. \
                             Use `persistence.backend: sqlite` (or `local`), or give the \
                             runtime a checkpoint backend",
                            def.name,
                            self.execution_id
                        );
                    }
                    let output = json!({"_waiting": true, "_channel": channel});
                    if self.observed() {
                        self.send(RunEvent::Waiting {
                            execution_id: self.execution_id.clone(),
                            channel: channel.clone(),
                        });
                    }
                    self.parked_on = Some(channel);
                    return Ok(output);
                }
                Ok(output) => output,
                // A cancellation is not the state's failure: no `on_error`, and the `execute`
                // checkpoint saved above resumes the run in this state.
                Err(failure) if failure.kind == observe::CANCELLED || self.stop_requested() => {
                    return Err(Error::Stopped {
                        machine: def.name.clone(),
                        execution_id: self.execution_id.clone(),
                        state: state.name.clone(),
                    });
                }
                Err(failure) => match self.recover(state, &failure).await {
                    Some(t) => {
                        tracing::warn!(
                            "state `{}` failed ({}: {}); recovering in `{}`",
                            state.name,
                            failure.kind,
                            failure.message,
                            def.states[t].name
                        );
                        current = Some(t);
                        self.inject_metadata(&def.states[t].name);
                        continue;
                    }
                    None => {
                        if let Some((budget, spent)) = self.budget_hit.take()
                            && failure.kind == BUDGET_EXCEEDED
                        {
                            return Err(Error::BudgetExceeded {
                                machine: def.name.clone(),
                                state: state.name.clone(),
                                budget,
                                spent,
                            });
                        }
                        return Err(Error::State {
                            machine: def.name.clone(),
                            state: state.name.clone(),
                            kind: failure.kind,
                            message: failure.message,
                        });
                    }
                },
            };
            if state.is_final
                && let Some(out) = &output
                && crate::py::truthy(out)
            {
                final_output = out.clone();
            }
            self.checkpoint_deferred(
                Event::StateExit,
                Some(idx),
                if state.is_final {
                    output.as_ref()
                } else {
                    None
                },
            )
            .await?;
            if let Some(h) = &self.hooks {
                h.on_state_exit(&state.name, &mut self.context, output.as_ref())
                    .await;
            }
            if self.observed() {
                self.send(RunEvent::StateExited {
                    state: state.name.clone(),
                    output: output.clone(),
                });
            }
            if opts
                .max_agent_calls
                .is_some_and(|m| self.total_api_calls >= m)
                || state.is_final
            {
                break;
            }
            current = match self.tool_loop_target(&state.name)? {
                Some(target) => Some(target),
                None => self.next_state(idx, state)?,
            };
            if let (Some(next), Some(h)) = (current, &self.hooks) {
                let target = def.states[next].name.as_str();
                current = match h
                    .on_transition(&state.name, target, &mut self.context)
                    .await
                {
                    Some(name) if name == target => Some(next),
                    Some(name) => def.states.iter().position(|s| s.name == name),
                    None => None,
                };
            }
        }
        self.checkpoint(Event::MachineEnd, None, Some(&final_output))
            .await?;
        if let Some(h) = &self.hooks {
            h.on_machine_end(&self.context, &mut final_output).await;
        }
        Ok(final_output)
    }

    /// A fresh start: the initial context from `input`, then `context.machine`.
    fn start(&mut self, input: Value) -> Result<(), Error> {
        let def = self.def;
        let input = match input {
            Value::Null => Value::Object(Map::new()),
            other => other,
        };
        self.context = def
            .templates
            .render_map(&def.context, &Vars::new().with("input", &input))
            .map_err(|e| Error::InitialContext {
                machine: def.name.clone(),
                message: e.to_string(),
            })?;
        if !self.context.is_object() {
            self.context = Value::Object(Map::new());
        }
        warn_uncaptured(&input, &self.context);
        self.inject_metadata(&def.states[def.initial].name);
        Ok(())
    }
}

/// The `on_error` class of a state whose agent call the budget refused.
pub(crate) const BUDGET_EXCEEDED: &str = "BudgetExceeded";

/// The failure of an agent call the budget refused.
pub(super) fn budget_failure(budget: f64, spent: f64) -> StateFailure {
    StateFailure::new(
        BUDGET_EXCEEDED,
        format!(
            "budget of {} USD (max_cost) reached: {} USD spent before this agent call",
            flatmachines_ir::pyfmt::float_repr(budget),
            flatmachines_ir::pyfmt::float_repr(spent)
        ),
    )
}

/// `settings.max_cost` when it is a non-negative number (anything else is `FM0413`, and sets
/// no budget in a run with errors allowed, as in the reference, which has no budgets).
fn settings_budget(settings: &Value) -> Option<f64> {
    settings
        .get("max_cost")
        .and_then(Value::as_f64)
        .filter(|b| *b >= 0.0)
}

/// The [`RunEvent::AgentResult`] of one agent call.
pub(super) fn agent_result_event(
    state: &StateDef,
    agent: &str,
    result: &crate::agent::AgentResult,
) -> RunEvent {
    RunEvent::AgentResult {
        state: state.name.clone(),
        agent: agent.to_string(),
        usage: result.usage.clone(),
        cost: result.machine_cost(),
        finish_reason: result.finish_reason.clone(),
    }
}

/// The reference logs input keys the initial context did not capture (keys starting with `_`
/// are exempt).
fn warn_uncaptured(input: &Value, context: &Value) {
    let (Some(i), Some(c)) = (input.as_object(), context.as_object()) else {
        return;
    };
    let missing: Vec<&str> = i
        .keys()
        .filter(|k| !k.starts_with('_') && !c.contains_key(*k))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        tracing::warn!(
            "input keys not captured by the initial context: {}",
            missing.join(", ")
        );
    }
}

/// The context key where a `wait_for` with a `timeout` keeps when its wait ends:
/// `{state, channel, deadline}` (seconds since the Unix epoch).
pub(crate) const WAIT_DEADLINE: &str = "_wait_for_deadline";

/// The context key where a `wait_for` state records the signal it is about to claim:
/// `{id, channel}`.
const WAIT_SIGNAL: &str = "_wait_for_signal";

/// Sets `key` without allocating the key when it already exists.
fn set_field(m: &mut Map<String, Value>, key: &str, value: Value) {
    match m.get_mut(key) {
        Some(slot) => *slot = value,
        None => {
            m.insert(key.to_string(), value);
        }
    }
}

impl Run<'_> {
    /// Writes `context.machine` (`execution.md` §4), reusing the map between steps.
    fn inject_metadata(&mut self, state: &str) {
        let ctx = self.context.as_object_mut().expect("context is a map");
        let slot = ctx.entry("machine").or_insert(Value::Null);
        if !slot.is_object() {
            *slot = json!({
                "execution_id": self.execution_id,
                "machine_name": self.def.name,
                "parent_execution_id": self.parent_execution_id,
                "spec_version": self.def.spec_version,
                "step": 0,
                "current_state": "",
                "total_api_calls": 0,
                "total_cost": 0.0,
            });
        }
        let m = slot.as_object_mut().expect("just made a map");
        // Updated in place: this runs at every step, and re-inserting would allocate keys.
        set_field(m, "step", Value::from(self.step));
        match m.get_mut("current_state") {
            Some(Value::String(s)) => {
                s.clear();
                s.push_str(state);
            }
            _ => {
                m.insert("current_state".into(), Value::String(state.to_string()));
            }
        }
        set_field(m, "total_api_calls", Value::from(self.total_api_calls));
        set_field(
            m,
            "total_cost",
            serde_json::Number::from_f64(self.total_cost).map_or(Value::Null, Value::Number),
        );
    }

    /// `on_error` handling: record the error, then pick the recovery state.
    async fn recover(&mut self, state: &StateDef, failure: &StateFailure) -> Option<usize> {
        if let Some(ctx) = self.context.as_object_mut() {
            ctx.insert("last_error".into(), Value::String(failure.message.clone()));
            ctx.insert(
                "last_error_type".into(),
                Value::String(failure.kind.clone()),
            );
        }
        let configured = match &state.on_error {
            Some(OnErrorDef::State(t)) => Some(*t),
            Some(OnErrorDef::Map(m)) => m
                .iter()
                .find(|(k, _)| *k == failure.kind)
                .or_else(|| m.iter().find(|(k, _)| k == "default"))
                .map(|(_, t)| *t),
            None => None,
        };
        if configured.is_some() {
            return configured;
        }
        let name = self
            .hooks
            .as_ref()?
            .on_error(
                &state.name,
                &failure.kind,
                &failure.message,
                &mut self.context,
            )
            .await?;
        self.def.states.iter().position(|s| s.name == name)
    }

    /// A tool loop that left through a conditional transition names its target in the
    /// context; the run goes straight there (`execution.md` §9).
    fn tool_loop_target(&mut self, from: &str) -> Result<Option<usize>, Error> {
        let Some(ctx) = self.context.as_object_mut() else {
            return Ok(None);
        };
        let Some(target) = ctx.remove("_tool_loop_next_state") else {
            return Ok(None);
        };
        ctx.remove("_tool_loop_stop");
        let name = target.as_str().unwrap_or_default();
        self.def
            .states
            .iter()
            .position(|s| s.name == name)
            .map(Some)
            .ok_or_else(|| Error::State {
                machine: self.def.name.clone(),
                state: from.to_string(),
                kind: "KeyError".into(),
                message: format!("_tool_loop_next_state names no state: {target}"),
            })
    }

    fn next_state(&self, idx: usize, state: &StateDef) -> Result<Option<usize>, Error> {
        // A compiled machine moves through its generated transition function.
        if let Some(next) = self.def.next {
            return next(idx, &self.context, false);
        }
        for t in &state.transitions {
            let matched = t
                .condition
                .evaluate(&self.context)
                .map_err(|e| Error::Condition {
                    machine: self.def.name.clone(),
                    state: state.name.clone(),
                    condition: t.source.clone(),
                    message: e.to_string(),
                })?;
            if matched {
                return Ok(Some(t.target));
            }
        }
        Ok(None)
    }

    /// One state's work in the reference's order (`execution.md` §5). Returns the final output.
    async fn run_state(&mut self, state: &StateDef) -> Result<Option<Value>, StateFailure> {
        // A falsy `wait_for` (`""`, `null`) is no wait, as in the reference.
        if let Some(wait) = state.wait_for.as_ref().filter(|w| crate::py::truthy(w)) {
            return self.wait_for(state, wait).await;
        }
        if let Some(action) = &state.action {
            match &self.hooks {
                Some(h) => h.on_action(action, &mut self.context).await,
                None => tracing::warn!("Unhandled action: {action}"),
            }
        }
        if !state.launch.is_empty() {
            self.launch(state).await?;
        }
        // The state's output: the children's, then the agent's, then a final state's `output`
        // (`execution.md` §5); a final state without `output:` returns the last of these.
        let mut output = None;
        if state.peers.call.is_some() {
            let children = self.run_children(state).await?;
            self.apply_output_to_context(state, &children)?;
            output = Some(children);
        }
        if let Some(agent) = &state.agent {
            if let Some(config) = &state.tool_loop {
                let idx = self
                    .state_index(state)
                    .expect("the state belongs to the machine");
                let payload = self.run_tool_loop(idx, state, agent, config).await?;
                self.apply_output_to_context(state, &payload)?;
                output = Some(payload);
                return self.final_output(state, output);
            }
            let input = match &state.input_plan {
                Some(plan) => self.render_prepared(plan)?,
                None => Value::Object(Map::new()),
            };
            let executor = self.executor(agent)?;
            self.check_budget()?;
            let call = strategy::run(&state.execution, executor.as_ref(), input, &self.context);
            let result = self.agent_call(&state.name, call).await??;
            if self.observed() {
                self.send(agent_result_event(state, agent, &result));
            }
            if let Some(text) = result.error_text() {
                return Err(StateFailure::new("RuntimeError", text));
            }
            self.total_api_calls += result.api_calls();
            self.total_cost += result.machine_cost();
            self.report_agent_tools(state, &result).await;
            let payload = result.into_payload();
            self.apply_output_to_context(state, &payload)?;
            output = Some(payload);
        }
        self.final_output(state, output)
    }

    /// A `wait_for` state (`execution.md` §5 step 0): consume a signal on the rendered channel
    /// and make its data the state's output, or park the run on that channel.
    async fn wait_for(
        &mut self,
        state: &StateDef,
        wait: &Value,
    ) -> Result<Option<Value>, StateFailure> {
        // The map form `{channel, timeout}` is ours; the string form is the reference's.
        let (template, timeout) = match wait {
            Value::Object(m) => (
                m.get("channel").cloned().unwrap_or(Value::Null),
                m.get("timeout").and_then(Value::as_f64),
            ),
            other => (other.clone(), None),
        };
        let channel = match self
            .def
            .templates
            .render_value(&template, &self.state_vars())?
        {
            Value::String(s) => s,
            other => crate::py::py_str(&other),
        };
        let backend = self
            .signal_backend()
            .map_err(|e| StateFailure::new("RuntimeError", e.to_string()))?;
        let signal = self.take_signal(state, &channel, backend.as_ref()).await?;
        let Some(signal) = signal else {
            if let Some(seconds) = timeout {
                self.wait_deadline(state, &channel, seconds)?;
            }
            self.parked = Some(channel);
            return Ok(None);
        };
        if let Some(ctx) = self.context.as_object_mut() {
            ctx.remove(WAIT_DEADLINE);
        }
        tracing::info!(
            "state `{}` consumed signal {} on `{channel}`",
            state.name,
            signal.id
        );
        let seen = match &signal.data {
            Value::Object(_) => signal.data.clone(),
            other => json!({"value": other}),
        };
        self.apply_output_to_context(state, &seen)?;
        Ok(Some(signal.data))
    }

    /// The oldest signal of `channel`, taken exactly once: its id is checkpointed
    /// (`context._wait_for_signal`) before it is claimed, so a run that dies right after the
    /// claim gets the same signal back when it resumes, and no other consumer can have it.
    async fn take_signal(
        &mut self,
        state: &StateDef,
        channel: &str,
        backend: &dyn crate::signals::SignalBackend,
    ) -> Result<Option<crate::signals::Signal>, StateFailure> {
        let failed = |e: &dyn std::fmt::Display| StateFailure::new("RuntimeError", e.to_string());
        let recorded = self
            .context
            .get(WAIT_SIGNAL)
            .filter(|c| c.get("channel").and_then(Value::as_str) == Some(channel))
            .and_then(|c| c.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut signal = match recorded {
            Some(id) => backend
                .claim(&id, &self.execution_id)
                .await
                .map_err(|e| failed(&e))?,
            None => None,
        };
        while signal.is_none() {
            let oldest = backend.peek(channel).await.map_err(|e| failed(&e))?;
            let Some(oldest) = oldest.into_iter().next() else {
                break;
            };
            if let Some(ctx) = self.context.as_object_mut() {
                ctx.insert(
                    WAIT_SIGNAL.into(),
                    json!({"id": oldest.id, "channel": channel}),
                );
            }
            let idx = self
                .state_index(state)
                .expect("the state belongs to the machine");
            self.checkpoint(Event::Execute, Some(idx), None)
                .await
                .map_err(|e| failed(&e))?;
            // `None`: another consumer took it between the two calls; try the next one.
            signal = backend
                .claim(&oldest.id, &self.execution_id)
                .await
                .map_err(|e| failed(&e))?;
        }
        if let Some(ctx) = self.context.as_object_mut() {
            ctx.remove(WAIT_SIGNAL);
        }
        Ok(signal)
    }

    /// A `wait_for` with a `timeout` that found no signal: the first time, records when the
    /// wait ends (`context._wait_for_deadline`, so it survives the process); once that time has
    /// passed, fails the state with `TimeoutError` (handled by `on_error`).
    fn wait_deadline(
        &mut self,
        state: &StateDef,
        channel: &str,
        seconds: f64,
    ) -> Result<(), StateFailure> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let ctx = self.context.as_object_mut().expect("the context is a map");
        let recorded = ctx.get(WAIT_DEADLINE).filter(|d| {
            d.get("state").and_then(Value::as_str) == Some(state.name.as_str())
                && d.get("channel").and_then(Value::as_str) == Some(channel)
        });
        match recorded
            .and_then(|d| d.get("deadline"))
            .and_then(Value::as_f64)
        {
            Some(deadline) if now >= deadline => {
                ctx.remove(WAIT_DEADLINE);
                Err(StateFailure::new(
                    "TimeoutError",
                    format!(
                        "no signal on '{channel}' within {}s",
                        flatmachines_ir::pyfmt::float_repr(seconds)
                    ),
                ))
            }
            Some(_) => Ok(()),
            None => {
                ctx.insert(
                    WAIT_DEADLINE.into(),
                    json!({"state": state.name, "channel": channel, "deadline": now + seconds}),
                );
                Ok(())
            }
        }
    }

    /// Where this run's `wait_for` states look for signals: the runtime's backend when one was
    /// given, else the `signals` table of the machine's SQLite database when it checkpoints
    /// there (so a signal sent from another process reaches it), else the runtime's in-memory
    /// backend.
    fn signal_backend(
        &self,
    ) -> Result<Arc<dyn crate::signals::SignalBackend>, crate::persistence::PersistenceError> {
        let p = &self.def.persistence;
        if !self.rt.signals_given
            && p.enabled
            && p.backend == flatmachines_ir::Backend::Sqlite
            && self.rt.checkpoint_backend.is_none()
        {
            return checkpoint::sqlite::signals(p.db_path.as_deref());
        }
        Ok(self.rt.signals.clone())
    }

    /// A final state's `output:` rendered, else `output`.
    fn final_output(
        &self,
        state: &StateDef,
        output: Option<Value>,
    ) -> Result<Option<Value>, StateFailure> {
        if state.is_final
            && let Some(spec) = &state.output
        {
            let out = self
                .def
                .templates
                .render_prepared(spec, &Vars::new().with("context", &self.context))?;
            return Ok(Some(out));
        }
        Ok(output)
    }

    /// A plain agent call's tool activity, for the observing hooks (`execution.md` §8 step
    /// 10): the calls it asked for, and the results of tools an adapter ran itself.
    async fn report_agent_tools(&mut self, state: &StateDef, result: &crate::agent::AgentResult) {
        if self.hooks.is_none() && !self.observed() {
            return;
        }
        if let Some(Value::Array(calls)) = &result.tool_calls
            && !calls.is_empty()
        {
            if let Some(h) = &self.hooks {
                h.on_tool_calls(&state.name, calls, &mut self.context).await;
            }
            if self.observed() {
                self.send(RunEvent::ToolCalls {
                    state: state.name.clone(),
                    tool_calls: calls.clone(),
                });
            }
        }
        if let Some(Value::Array(results)) =
            result.metadata.as_ref().and_then(|m| m.get("tool_results"))
        {
            for r in results {
                if let Some(h) = &self.hooks {
                    h.on_tool_result(&state.name, r, &mut self.context).await;
                }
                if self.observed() {
                    self.send(RunEvent::ToolResult {
                        state: state.name.clone(),
                        result: r.clone(),
                    });
                }
            }
        }
    }

    /// The budget, before an agent call: refuses the call when the machine's `total_cost` has
    /// reached it (`BudgetExceeded`, through `on_error`). The check is before each call, not
    /// a forecast of its cost, so a run can end above its budget by at most one call.
    pub(super) fn check_budget(&mut self) -> Result<(), StateFailure> {
        let Some((budget, spent)) = self.over_budget() else {
            return Ok(());
        };
        self.budget_hit = Some((budget, spent));
        Err(budget_failure(budget, spent))
    }

    /// `(budget, spent)` when the run's `total_cost` has reached its budget.
    pub(super) fn over_budget(&self) -> Option<(f64, f64)> {
        let budget = self.budget?;
        (self.total_cost >= budget).then_some((budget, self.total_cost))
    }

    /// The variables of a state's `input`: the context, also as `input`.
    pub(super) fn state_vars(&self) -> Vars<'_> {
        Vars::new()
            .with("context", &self.context)
            .with("input", &self.context)
    }

    fn render_map(&self, tmpl: &Value) -> Result<Value, StateFailure> {
        Ok(self.def.templates.render_map(tmpl, &self.state_vars())?)
    }

    /// [`Run::render_map`] of a prepared template.
    fn render_prepared(&self, plan: &Prepared) -> Result<Value, StateFailure> {
        Ok(self
            .def
            .templates
            .render_prepared(plan, &self.state_vars())?)
    }

    fn apply_output_to_context(
        &mut self,
        state: &StateDef,
        output: &Value,
    ) -> Result<(), StateFailure> {
        for (key, tmpl) in &state.output_to_context {
            let value = self.def.templates.render_prepared(
                tmpl,
                &Vars::new()
                    .with("context", &self.context)
                    .with("output", output)
                    .with("input", &self.context),
            )?;
            if let Some(ctx) = self.context.as_object_mut() {
                set_field(ctx, key, value);
            }
        }
        Ok(())
    }

    fn executor(&mut self, name: &str) -> Result<Arc<dyn AgentExecutor>, StateFailure> {
        if let Some((_, e)) = self.executors.iter().find(|(n, _)| n == name) {
            return Ok(e.clone());
        }
        let cache_key = (self.rt.id, name.to_string());
        let cached = self
            .def
            .executors
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&cache_key)
            .cloned();
        if let Some(e) = cached {
            self.executors.push((name.to_string(), e.clone()));
            return Ok(e);
        }
        let spec = self
            .def
            .agents
            .get(name)
            .ok_or_else(|| StateFailure::new("ValueError", format!("Unknown agent: {name}")))?;
        let adapter = self
            .rt
            .adapters
            .get(&spec.ty)
            .map_err(|e| StateFailure::new(e.kind, e.message))?;
        let ctx = AdapterContext {
            config_dir: self.def.config_dir.clone(),
            settings: self.def.settings.clone(),
            machine_name: self.def.name.clone(),
            profiles: self.def.profiles.clone(),
        };
        let executor = adapter
            .create_executor(name, spec, &ctx)
            .map_err(|e| StateFailure::new(e.kind, e.message))?;
        self.executors.push((name.to_string(), executor.clone()));
        self.def
            .executors
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cache_key, executor.clone());
        Ok(executor)
    }
}

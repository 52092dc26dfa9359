//! The main loop (`execution.md` §1–8): one executor for compiled and interpreted machines.

use crate::agent::{AdapterContext, AgentExecutor};
use crate::condition::{PyValue, py_truthy};
use crate::error::Error;
use crate::machine::{Machine, MachineDef, OnErrorDef, StateDef};
use crate::runtime::{RunOptions, Runtime};
use crate::strategy;
use crate::template::Vars;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// An error raised inside a state, before `on_error` decides what happens.
#[derive(Debug)]
pub(crate) struct StateFailure {
    pub kind: String,
    pub message: String,
}

impl StateFailure {
    pub(crate) fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        StateFailure {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

/// The run's mutable state.
struct Run<'a> {
    rt: &'a Runtime,
    def: &'a MachineDef,
    execution_id: String,
    parent_execution_id: Option<String>,
    context: Value,
    step: u64,
    total_api_calls: i64,
    total_cost: f64,
    executors: HashMap<String, Arc<dyn AgentExecutor>>,
}

/// Runs `machine` to the end and returns its output.
pub(crate) async fn run(
    rt: &Runtime,
    machine: &Machine,
    input: Value,
    opts: RunOptions,
) -> Result<Value, Error> {
    let def = &*machine.def;
    let max_steps = opts
        .max_steps
        .or_else(|| def.settings.get("max_steps").and_then(Value::as_u64))
        .unwrap_or(1000);
    let mut run = Run {
        rt,
        def,
        execution_id: opts.execution_id.unwrap_or_else(new_execution_id),
        parent_execution_id: opts.parent_execution_id,
        context: Value::Null,
        step: 0,
        total_api_calls: 0,
        total_cost: 0.0,
        executors: HashMap::new(),
    };
    let input = match input {
        Value::Null => Value::Object(Map::new()),
        other => other,
    };
    run.context = def
        .templates
        .render_map(&def.context, &Vars::new().with("input", &input))
        .map_err(|e| Error::InitialContext {
            machine: def.name.clone(),
            message: e.to_string(),
        })?;
    if !run.context.is_object() {
        run.context = Value::Object(Map::new());
    }
    warn_uncaptured(&input, &run.context);
    let mut current = Some(def.initial);
    run.inject_metadata(&def.states[def.initial].name);
    rt.hooks.on_machine_start(&mut run.context);

    let mut final_output = Value::Object(Map::new());
    while let Some(idx) = current {
        if run.step >= max_steps {
            tracing::warn!("machine `{}` stopped at max_steps ({max_steps})", def.name);
            break;
        }
        if opts
            .max_agent_calls
            .is_some_and(|m| run.total_api_calls >= m)
        {
            break;
        }
        run.step += 1;
        let state = &def.states[idx];
        run.inject_metadata(&state.name);
        rt.hooks.on_state_enter(&state.name, &mut run.context);
        let output = match run.run_state(state).await {
            Ok(output) => output,
            Err(failure) => {
                let target = run.recover(state, &failure);
                match target {
                    Some(t) => {
                        tracing::warn!(
                            "state `{}` failed ({}: {}); recovering in `{}`",
                            state.name,
                            failure.kind,
                            failure.message,
                            def.states[t].name
                        );
                        current = Some(t);
                        run.inject_metadata(&def.states[t].name);
                        continue;
                    }
                    None => {
                        return Err(Error::State {
                            machine: def.name.clone(),
                            state: state.name.clone(),
                            kind: failure.kind,
                            message: failure.message,
                        });
                    }
                }
            }
        };
        if state.is_final
            && let Some(out) = &output
            && py_truthy(&PyValue::from(out))
        {
            final_output = out.clone();
        }
        rt.hooks
            .on_state_exit(&state.name, &mut run.context, output.as_ref());
        if opts
            .max_agent_calls
            .is_some_and(|m| run.total_api_calls >= m)
            || state.is_final
        {
            break;
        }
        current = run.next_state(state)?;
        if let Some(next) = current {
            let target = def.states[next].name.as_str();
            current = match rt
                .hooks
                .on_transition(&state.name, target, &mut run.context)
            {
                Some(name) if name == target => Some(next),
                Some(name) => def.states.iter().position(|s| s.name == name),
                None => None,
            };
        }
    }
    rt.hooks.on_machine_end(&run.context, &mut final_output);
    Ok(final_output)
}

fn new_execution_id() -> String {
    use rand::Rng;
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
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
    fn recover(&mut self, state: &StateDef, failure: &StateFailure) -> Option<usize> {
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
        configured.or_else(|| {
            let name = self.rt.hooks.on_error(
                &state.name,
                &failure.kind,
                &failure.message,
                &mut self.context,
            )?;
            self.def.states.iter().position(|s| s.name == name)
        })
    }

    fn next_state(&self, state: &StateDef) -> Result<Option<usize>, Error> {
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
        let def = self.def;
        if state.wait_for.is_some() {
            return Err(StateFailure::new(
                "NotImplementedError",
                "wait_for is not supported yet (signals are a later issue)",
            ));
        }
        if let Some(action) = &state.action {
            self.rt.hooks.on_action(action, &mut self.context);
        }
        if !state.launch.is_empty() || state.has_children {
            return Err(StateFailure::new(
                "NotImplementedError",
                "child machines (`machine`, `foreach`, `launch`) are not supported yet",
            ));
        }
        if let Some(agent) = &state.agent {
            if state.tool_loop {
                return Err(StateFailure::new(
                    "NotImplementedError",
                    "tool loops are not supported yet",
                ));
            }
            let input = match &state.input {
                Some(tmpl) => self.render_map(tmpl)?,
                None => Value::Object(Map::new()),
            };
            let executor = self.executor(agent)?;
            let result =
                strategy::run(&state.execution, executor.as_ref(), input, &self.context).await?;
            if let Some(text) = result.error_text() {
                return Err(StateFailure::new("RuntimeError", text));
            }
            self.total_api_calls += result.api_calls();
            self.total_cost += result.machine_cost();
            let output = result.into_payload();
            self.apply_output_to_context(state, &output)?;
        }
        if state.is_final
            && let Some(spec) = &state.output
            && spec.as_object().is_some_and(|o| !o.is_empty())
        {
            let out = def
                .templates
                .render_map(spec, &Vars::new().with("context", &self.context))
                .map_err(|e| StateFailure::new(e.kind(), e.to_string()))?;
            return Ok(Some(out));
        }
        Ok(None)
    }

    fn render_map(&self, tmpl: &Value) -> Result<Value, StateFailure> {
        self.def
            .templates
            .render_map(
                tmpl,
                &Vars::new()
                    .with("context", &self.context)
                    .with("input", &self.context),
            )
            .map_err(|e| StateFailure::new(e.kind(), e.to_string()))
    }

    fn apply_output_to_context(
        &mut self,
        state: &StateDef,
        output: &Value,
    ) -> Result<(), StateFailure> {
        for (key, tmpl) in &state.output_to_context {
            let value = self
                .def
                .templates
                .render_value(
                    tmpl,
                    &Vars::new()
                        .with("context", &self.context)
                        .with("output", output)
                        .with("input", &self.context),
                )
                .map_err(|e| StateFailure::new(e.kind(), e.to_string()))?;
            if let Some(ctx) = self.context.as_object_mut() {
                set_field(ctx, key, value);
            }
        }
        Ok(())
    }

    fn executor(&mut self, name: &str) -> Result<Arc<dyn AgentExecutor>, StateFailure> {
        if let Some(e) = self.executors.get(name) {
            return Ok(e.clone());
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
        self.executors.insert(name.to_string(), executor.clone());
        Ok(executor)
    }
}

//! Machine-driven tool loops (`execution.md` §9): the agent is called with tools, the tools it
//! asks for run one at a time, each result is checkpointed, and the chat goes back to the agent
//! until it answers with text, a guardrail stops it, a hook aborts it or a conditional
//! transition takes the run elsewhere.
//!
//! Two deviations from the reference, both in `docs/compatibility.md`:
//! * a stale `_tool_loop_stop` left in the context by an earlier loop is cleared when a loop
//!   starts (the reference stops the new loop after its first batch of calls);
//! * a run resumed from a `tool_call` checkpoint continues the loop from that checkpoint's
//!   `tool_loop_state` (the reference re-runs the whole state), so a tool call whose result was
//!   checkpointed never runs again.

use super::checkpoint::{Event, Extras};
use super::{Run, RunEvent, StateFailure, set_field};
use crate::agent::{AgentResult, ToolTurn};
use crate::machine::StateDef;
#[cfg(feature = "mcp")]
use crate::template::Vars;
use crate::tools::{ToolProvider, ToolResult, ToolSet, definition_name, entry_matches};
use flatmachines_ir as ir;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Instant;

/// The user message of the final pass after a guardrail stopped a loop that had no text yet.
const LIMIT_REACHED: &str = "[System: tool use limit reached. Provide your final response now \
                             using the information gathered so far.]";

/// The guardrails of one loop, rendered and converted.
struct Guardrails {
    max_turns: i64,
    max_tool_calls: i64,
    tool_timeout: f64,
    total_timeout: f64,
    max_cost: Option<f64>,
}

/// The tools one loop offers: the provider that runs them (if any), the definitions the model
/// sees, and the rendered `tool_prompt` of the agent's MCP block.
struct Offer {
    provider: Option<Arc<dyn ToolProvider>>,
    definitions: Vec<Value>,
    tools_prompt: String,
}

/// The loop's progress, as a `tool_call` checkpoint records it.
#[derive(Default)]
struct Progress {
    chain: Vec<Value>,
    turns: i64,
    tool_calls_count: i64,
    loop_cost: f64,
}

impl Progress {
    fn to_value(&self) -> Value {
        json!({
            "chain": self.chain,
            "turns": self.turns,
            "tool_calls_count": self.tool_calls_count,
            "loop_cost": self.loop_cost,
        })
    }

    fn from_value(v: &Value) -> Option<Progress> {
        Some(Progress {
            chain: v.get("chain")?.as_array()?.clone(),
            turns: v.get("turns").and_then(Value::as_i64).unwrap_or(0),
            tool_calls_count: v
                .get("tool_calls_count")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            loop_cost: v.get("loop_cost").and_then(Value::as_f64).unwrap_or(0.0),
        })
    }

    /// The calls of the last assistant message that have no tool message yet: the batch a
    /// crash interrupted.
    fn unanswered(&self) -> Vec<Value> {
        let Some(at) = self
            .chain
            .iter()
            .rposition(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
        else {
            return Vec::new();
        };
        let answered: Vec<&Value> = self.chain[at + 1..]
            .iter()
            .filter(|m| m.get("role").and_then(Value::as_str) == Some("tool"))
            .filter_map(|m| m.get("tool_call_id"))
            .collect();
        let Some(calls) = self.chain[at].get("tool_calls").and_then(Value::as_array) else {
            return Vec::new();
        };
        calls
            .iter()
            .filter(|c| !answered.contains(&c.get("id").unwrap_or(&Value::Null)))
            .map(|c| {
                let f = c.get("function");
                let arguments = match f.and_then(|f| f.get("arguments")) {
                    Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(json!({})),
                    Some(other) => other.clone(),
                    None => json!({}),
                };
                json!({
                    "id": c.get("id").cloned().unwrap_or(Value::Null),
                    "name": f.and_then(|f| f.get("name")).cloned().unwrap_or(Value::Null),
                    "arguments": arguments,
                })
            })
            .collect()
    }
}

/// How the loop ended, when it did not simply get text back.
fn stop_of(context: &Value) -> Option<&Value> {
    context
        .get("_tool_loop_stop")
        .filter(|v| crate::py::truthy(v))
}

impl Run<'_> {
    /// Runs the tool loop of `state` (index `idx`) and returns its output
    /// `{content, _tool_calls_count, _tool_loop_turns, _tool_loop_cost, _tool_loop_stop}`.
    pub(super) async fn run_tool_loop(
        &mut self,
        idx: usize,
        state: &StateDef,
        agent: &str,
        config: &ir::ToolLoop,
    ) -> Result<Value, StateFailure> {
        let guard = self.guardrails(config)?;
        let executor = self.executor(agent)?;
        if !executor.supports_tool_loop() {
            let ty = self
                .def
                .agents
                .get(agent)
                .map_or("unknown", |a| a.ty.as_str());
            return Err(StateFailure::new(
                "RuntimeError",
                format!(
                    "Agent '{agent}' ({ty}) does not support machine-driven tool loops. \
                     Implement execute_with_tools on the adapter or remove tool_loop from \
                     state '{}'.",
                    state.name
                ),
            ));
        }
        let offer = self.tool_offer(state, agent).await?;
        let input = match &state.input_plan {
            Some(plan) => self.render_prepared(plan)?,
            None => Value::Object(Map::new()),
        };

        let ctx = self.context_mut();
        let saved_chain = ctx.remove("_tool_loop_chain");
        let saved_state = ctx.remove("_tool_loop_chain_state");
        let saved_agent = ctx.remove("_tool_loop_chain_agent");
        // Deviation: a stop reason left by an earlier loop would end this one early.
        ctx.remove("_tool_loop_stop");
        ctx.remove("_tool_loop_next_state");
        let mut progress = Progress::default();
        let mut has_prior_chain = false;
        if let Some(Value::Array(chain)) = saved_chain
            && !chain.is_empty()
            && saved_state.as_ref().and_then(Value::as_str) == Some(state.name.as_str())
            && saved_agent.as_ref().and_then(Value::as_str) == Some(agent)
        {
            progress.chain = chain;
            has_prior_chain = true;
        }
        // A run resumed from a `tool_call` checkpoint of this state continues that loop.
        let mut pending = None;
        let mut resumed = false;
        if let Some((at, saved)) = self.resumed_tool_loop.take()
            && at == idx
            && let Some(p) = Progress::from_value(&saved)
        {
            progress = p;
            has_prior_chain = true;
            resumed = true;
            pending = Some(progress.unanswered()).filter(|c| !c.is_empty());
            // The checkpoint was written before the loop looked at an abort or a conditional
            // transition; look now, so the rest of the batch runs only if it would have.
            if pending.is_some() && self.stops_after_call(idx, state)? {
                pending = None;
            }
            tracing::info!(
                "state `{}`: resuming its tool loop after turn {} and {} tool calls",
                state.name,
                progress.turns,
                progress.tool_calls_count
            );
        }

        let started = Instant::now();
        // A resumed loop's last reply is the last assistant message (whose empty text stood
        // for a reply without any).
        let mut last_content: Option<String> = progress
            .chain
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
            .filter(|_| resumed)
            .and_then(|m| m.get("content"))
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map(str::to_string);
        loop {
            // Only a resumed loop can start stopped (its checkpoint said so).
            if stop_of(&self.context).is_some() {
                break;
            }
            let calls = match pending.take() {
                // The interrupted batch: `on_tool_calls` already ran for it.
                Some(calls) => calls,
                None => {
                    let ctx = self.context_mut();
                    if started.elapsed().as_secs_f64() >= guard.total_timeout {
                        set_field(ctx, "_tool_loop_stop", json!("timeout"));
                        break;
                    }
                    if progress.turns >= guard.max_turns {
                        set_field(ctx, "_tool_loop_stop", json!("max_turns"));
                        break;
                    }
                    if guard.max_cost.is_some_and(|m| progress.loop_cost >= m) {
                        set_field(ctx, "_tool_loop_stop", json!("cost_limit"));
                        break;
                    }
                    let first = progress.turns == 0 && !has_prior_chain;
                    let turn = ToolTurn::new(
                        &offer.definitions,
                        (!first).then_some(progress.chain.as_slice()),
                    )
                    .with_tools_prompt(&offer.tools_prompt);
                    let turn_input = if first {
                        input.clone()
                    } else {
                        Value::Object(Map::new())
                    };
                    self.check_budget()?;
                    let began = Instant::now();
                    let call = executor.execute_with_tools(turn_input, turn, &self.context);
                    let r = self
                        .agent_call(&state.name, call)
                        .await?
                        .map_err(|e| StateFailure::new(e.kind, e.message))?;
                    if self.observed() {
                        self.send(super::agent_result_event(state, agent, &r));
                    }
                    progress.turns += 1;
                    self.total_api_calls += r.api_calls();
                    self.total_cost += r.machine_cost();
                    progress.loop_cost += loop_cost_of(&r);
                    tracing::debug!(
                        state = %state.name,
                        turn = progress.turns,
                        tool_calls = r.tool_calls.as_ref().and_then(|c| c.as_array()).map_or(0, |c| c.len()),
                        elapsed_ms = began.elapsed().as_secs_f64() * 1000.0,
                        "tool loop turn"
                    );
                    let ctx = self.context_mut();
                    set_field(ctx, "_tool_loop_turns", json!(progress.turns));
                    set_field(ctx, "_tool_loop_cost", json!(progress.loop_cost));
                    set_field(ctx, "_tool_calls_count", json!(progress.tool_calls_count));
                    set_field(ctx, "_tool_loop_content", json!(r.content));
                    set_field(
                        ctx,
                        "_tool_loop_usage",
                        r.usage.clone().unwrap_or(Value::Null),
                    );
                    if let Some(text) = r.error_text() {
                        return Err(StateFailure::new("RuntimeError", text));
                    }
                    if progress.turns == 1
                        && !has_prior_chain
                        && let Some(prompt) =
                            r.rendered_user_prompt.as_ref().filter(|p| !p.is_empty())
                    {
                        progress
                            .chain
                            .push(json!({"role": "user", "content": prompt}));
                    }
                    progress.chain.push(assistant_message(&r));
                    last_content.clone_from(&r.content);
                    if r.finish_reason.as_deref() != Some("tool_use") {
                        break;
                    }
                    let calls = match r.tool_calls {
                        Some(Value::Array(calls)) => calls,
                        _ => Vec::new(),
                    };
                    if progress.tool_calls_count + calls.len() as i64 > guard.max_tool_calls {
                        set_field(
                            self.context_mut(),
                            "_tool_loop_stop",
                            json!("max_tool_calls"),
                        );
                        break;
                    }
                    if let Some(h) = &self.hooks {
                        h.on_tool_calls(&state.name, &calls, &mut self.context)
                            .await;
                    }
                    if self.observed() {
                        self.send(RunEvent::ToolCalls {
                            state: state.name.clone(),
                            tool_calls: calls.clone(),
                        });
                    }
                    if self
                        .context
                        .get("_abort_tool_loop")
                        .is_some_and(crate::py::truthy)
                    {
                        set_field(self.context_mut(), "_tool_loop_stop", json!("aborted"));
                        break;
                    }
                    calls
                }
            };
            self.run_tool_batch(idx, state, config, &guard, &offer, &calls, &mut progress)
                .await?;
            if stop_of(&self.context).is_some() {
                break;
            }
            if let Some(Value::Array(steering)) = self.context_mut().remove("_steering_messages") {
                progress.chain.extend(steering);
            }
        }

        // A guardrail stopped a loop that had no text yet: one last call without tools asks for
        // a final answer. Its failures are logged, not raised.
        let stop = stop_of(&self.context)
            .and_then(Value::as_str)
            .map(str::to_string);
        if matches!(
            stop.as_deref(),
            Some("max_tool_calls" | "max_turns" | "timeout" | "cost_limit")
        ) && last_content.as_deref().is_none_or(|c| c.trim().is_empty())
        {
            progress
                .chain
                .push(json!({"role": "user", "content": LIMIT_REACHED}));
            let turn = ToolTurn::new(&[], Some(progress.chain.as_slice()));
            // Like the pass's other failures, a refusal by the budget or a cancellation is
            // logged, not raised: the next agent call meets them again.
            let outcome = match self.over_budget() {
                Some((budget, spent)) => Err(super::budget_failure(budget, spent)),
                None => {
                    let call =
                        executor.execute_with_tools(Value::Object(Map::new()), turn, &self.context);
                    self.agent_call(&state.name, call)
                        .await
                        .and_then(|r| r.map_err(|e| StateFailure::new(e.kind, e.message)))
                }
            };
            match outcome {
                Ok(r) => {
                    if self.observed() {
                        self.send(super::agent_result_event(state, agent, &r));
                    }
                    self.total_api_calls += r.api_calls();
                    self.total_cost += r.machine_cost();
                    if let Some(text) = r.content.as_ref().filter(|c| !c.trim().is_empty()) {
                        progress.chain.push(assistant_message(&r));
                        last_content = Some(text.clone());
                        let ctx = self.context_mut();
                        set_field(ctx, "_tool_loop_content", json!(text));
                        set_field(
                            ctx,
                            "_tool_loop_usage",
                            r.usage.clone().unwrap_or(Value::Null),
                        );
                    }
                }
                Err(e) => tracing::warn!("Final response pass failed: {}", e.message),
            }
        }

        let ctx = self.context_mut();
        let stop = ctx
            .get("_tool_loop_stop")
            .cloned()
            .unwrap_or(json!("complete"));
        set_field(ctx, "_tool_loop_chain", Value::Array(progress.chain));
        set_field(ctx, "_tool_loop_chain_state", json!(state.name));
        set_field(ctx, "_tool_loop_chain_agent", json!(agent));
        Ok(json!({
            "content": last_content,
            "_tool_calls_count": progress.tool_calls_count,
            "_tool_loop_turns": progress.turns,
            "_tool_loop_cost": progress.loop_cost,
            "_tool_loop_stop": stop,
        }))
    }

    /// Runs one batch of tool calls in order, each answered in the chain, reported to
    /// `on_tool_result` and checkpointed before the next; stops early on an abort or when a
    /// conditional transition holds.
    #[allow(clippy::too_many_arguments)]
    async fn run_tool_batch(
        &mut self,
        idx: usize,
        state: &StateDef,
        config: &ir::ToolLoop,
        guard: &Guardrails,
        offer: &Offer,
        calls: &[Value],
        progress: &mut Progress,
    ) -> Result<(), StateFailure> {
        let skip: Vec<Value> = match self.context_mut().remove("_skip_tools") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        for call in calls {
            let name = call
                .get("name")
                .filter(|v| crate::py::truthy(v))
                .or_else(|| call.get("tool"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let id = call.get("id").cloned().unwrap_or(Value::Null);
            let arguments = match call.get("arguments") {
                Some(v) if !v.is_null() => v.clone(),
                _ => json!({}),
            };
            let qualified = offer
                .provider
                .as_ref()
                .and_then(|p| p.qualified_name(&name));
            let listed = |list: &[ir::Str]| {
                list.iter()
                    .any(|e| entry_matches(e, &name, qualified.as_deref()))
            };
            let refused = if skip.contains(&id) || skip.iter().any(|s| s.as_str() == Some(&name)) {
                Some(format!("Tool '{name}' was skipped by policy."))
            } else if listed(&config.denied_tools)
                || (!config.allowed_tools.is_empty() && !listed(&config.allowed_tools))
            {
                Some(format!("Tool '{name}' is not allowed."))
            } else {
                None
            };
            if let Some(text) = refused {
                progress
                    .chain
                    .push(json!({"role": "tool", "tool_call_id": id, "content": text}));
                continue;
            }
            let began = Instant::now();
            let result = call_tool(
                offer.provider.as_ref(),
                &name,
                id.as_str().unwrap_or(""),
                &arguments,
                guard.tool_timeout,
            )
            .await;
            tracing::debug!(
                state = %state.name,
                tool = %name,
                is_error = result.is_error,
                elapsed_ms = began.elapsed().as_secs_f64() * 1000.0,
                "tool call"
            );
            progress.tool_calls_count += 1;
            progress
                .chain
                .push(json!({"role": "tool", "tool_call_id": id, "content": result.content}));
            set_field(
                self.context_mut(),
                "_tool_calls_count",
                json!(progress.tool_calls_count),
            );
            if self.hooks.is_some() || self.observed() {
                let reported = json!({
                    "tool_call_id": id,
                    "name": name,
                    "arguments": arguments,
                    "content": result.content,
                    "is_error": result.is_error,
                });
                if let Some(h) = &self.hooks {
                    h.on_tool_result(&state.name, &reported, &mut self.context)
                        .await;
                }
                if self.observed() {
                    self.send(RunEvent::ToolResult {
                        state: state.name.clone(),
                        result: reported,
                    });
                }
            }
            if self.checkpoints(Event::ToolCall) {
                let saved = progress.to_value();
                self.checkpoint_with(
                    Event::ToolCall,
                    Some(idx),
                    None,
                    Extras {
                        tool_loop_state: Some(&saved),
                        ..Extras::default()
                    },
                )
                .await
                .map_err(|e| StateFailure::new("RuntimeError", e.to_string()))?;
            }
            if self.stops_after_call(idx, state)? {
                break;
            }
        }
        Ok(())
    }

    /// What the loop checks after each tool call: an abort from the hooks, then the first
    /// conditional transition that holds. Either one records the stop reason (and the target)
    /// in the context and returns `true`.
    fn stops_after_call(&mut self, idx: usize, state: &StateDef) -> Result<bool, StateFailure> {
        if self
            .context
            .get("_abort_tool_loop")
            .is_some_and(crate::py::truthy)
        {
            set_field(self.context_mut(), "_tool_loop_stop", json!("aborted"));
            return Ok(true);
        }
        let Some(next) = self.loop_exit(idx, state)? else {
            return Ok(false);
        };
        let target = self.def.states[next].name.clone();
        let ctx = self.context_mut();
        set_field(ctx, "_tool_loop_stop", json!("transition"));
        set_field(ctx, "_tool_loop_next_state", json!(target));
        Ok(true)
    }

    /// The first conditional transition of `state` that holds, as a tool loop checks them.
    fn loop_exit(&self, idx: usize, state: &StateDef) -> Result<Option<usize>, StateFailure> {
        let failed = |e: crate::error::Error| StateFailure::new("RuntimeError", e.to_string());
        if let Some(next) = self.def.next {
            return next(idx, &self.context, true).map_err(failed);
        }
        for t in &state.loop_exits {
            let holds = t.condition.evaluate(&self.context).map_err(|e| {
                StateFailure::new(
                    "RuntimeError",
                    format!("condition `{}` of state `{}`: {e}", t.source, state.name),
                )
            })?;
            if holds {
                return Ok(Some(t.target));
            }
        }
        Ok(None)
    }

    /// The guardrails, templates rendered with the context and converted as Python would.
    fn guardrails(&self, config: &ir::ToolLoop) -> Result<Guardrails, StateFailure> {
        Ok(Guardrails {
            max_turns: self.guard_int(&config.max_turns)?,
            max_tool_calls: self.guard_int(&config.max_tool_calls)?,
            tool_timeout: self.guard_float(&config.tool_timeout)?,
            total_timeout: self.guard_float(&config.total_timeout)?,
            max_cost: config
                .max_cost
                .as_ref()
                .map(|g| self.guard_float(g))
                .transpose()?,
        })
    }

    fn guard_value(&self, g: &ir::Guard) -> Result<Value, StateFailure> {
        match g {
            ir::Guard::Number(n) => Ok(json!(n)),
            ir::Guard::Template(t) => Ok(self
                .def
                .templates
                .render_value(&Value::String(t.to_string()), &self.state_vars())?),
        }
    }

    fn guard_int(&self, g: &ir::Guard) -> Result<i64, StateFailure> {
        match self.guard_value(g)? {
            Value::Number(n) => Ok(n
                .as_i64()
                .unwrap_or_else(|| n.as_f64().unwrap_or(0.0) as i64)),
            Value::Bool(b) => Ok(i64::from(b)),
            Value::String(s) => flatmachines_ir::pyfmt::parse_int(&s).ok_or_else(|| {
                StateFailure::new(
                    "ValueError",
                    format!(
                        "invalid literal for int() with base 10: {}",
                        crate::py::py_repr(&json!(s))
                    ),
                )
            }),
            other => Err(StateFailure::new(
                "TypeError",
                format!(
                    "int() argument must be a string, a bytes-like object or a real number, not '{}'",
                    crate::py::class_name(&other)
                ),
            )),
        }
    }

    fn guard_float(&self, g: &ir::Guard) -> Result<f64, StateFailure> {
        match self.guard_value(g)? {
            Value::Number(n) => Ok(n.as_f64().unwrap_or(0.0)),
            Value::Bool(b) => Ok(if b { 1.0 } else { 0.0 }),
            Value::String(s) => flatmachines_ir::pyfmt::parse_float(&s).ok_or_else(|| {
                StateFailure::new(
                    "ValueError",
                    format!(
                        "could not convert string to float: {}",
                        crate::py::py_repr(&json!(s))
                    ),
                )
            }),
            other => Err(StateFailure::new(
                "TypeError",
                format!(
                    "float() argument must be a string or a real number, not '{}'",
                    crate::py::class_name(&other)
                ),
            )),
        }
    }

    /// The tools of the loop in `state`: the hooks' provider, else the runtime's registered
    /// tools, then the MCP servers the agent declares; definitions merged with the agent's
    /// `data.tools` (`execution.md` §9 step 4).
    async fn tool_offer(&mut self, state: &StateDef, agent: &str) -> Result<Offer, StateFailure> {
        let mut set = ToolSet::new();
        match self
            .hooks
            .as_ref()
            .and_then(|h| h.get_tool_provider(&state.name))
        {
            Some(p) => set.push(p),
            None => {
                let registered = self.rt.tools.for_state(&self.def.name, &state.name);
                if !registered.is_empty() {
                    set.push(Arc::new(registered));
                }
            }
        }
        let document = self.agent_document(agent);
        let mcp = document
            .as_ref()
            .and_then(|d| d.pointer("/data/mcp"))
            .filter(|m| m.get("servers").is_some_and(crate::py::truthy))
            .cloned();
        let mut tools_prompt = String::new();
        if let Some(mcp) = mcp {
            let (servers, prompt) = self.mcp_servers(agent, &mcp).await?;
            set.push(servers);
            tools_prompt = prompt;
        }
        let provider: Option<Arc<dyn ToolProvider>> =
            (!set.is_empty()).then(|| Arc::new(set) as Arc<dyn ToolProvider>);
        let provided = provider
            .as_ref()
            .map(|p| p.definitions())
            .unwrap_or_default();
        let declared: Vec<Value> = document
            .as_ref()
            .and_then(|d| d.pointer("/data/tools"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let definitions = if provided.is_empty() {
            declared
        } else {
            let names: Vec<&str> = provided.iter().filter_map(definition_name).collect();
            let extra: Vec<Value> = declared
                .iter()
                .filter(|d| definition_name(d).is_none_or(|n| !names.contains(&n)))
                .cloned()
                .collect();
            let mut all = provided.clone();
            all.extend(extra);
            all
        };
        Ok(Offer {
            provider,
            definitions,
            tools_prompt,
        })
    }

    /// The agent's flatagent document: the one the compiler embedded, else its file.
    fn agent_document(&self, agent: &str) -> Option<Value> {
        let spec = self.def.agents.get(agent)?;
        match (&spec.config, &spec.reference) {
            (Some(c), _) if c.get("data").is_some() => Some(c.clone()),
            (_, Some(r)) if spec.ty == "flatagent" => read_agent_file(&spec.dir.join(r)),
            (Some(c), None) => Some(c.clone()),
            _ => None,
        }
    }

    /// The agent's MCP servers, started on first use in this run, and its rendered
    /// `tool_prompt`.
    #[cfg(feature = "mcp")]
    async fn mcp_servers(
        &mut self,
        agent: &str,
        mcp: &Value,
    ) -> Result<(Arc<dyn ToolProvider>, String), StateFailure> {
        let servers = match self.mcp.iter().find(|(a, _)| a == agent) {
            Some((_, s)) => s.clone(),
            None => {
                let dir = self
                    .def
                    .agents
                    .get(agent)
                    .map(|a| a.dir.clone())
                    .unwrap_or_else(|| self.def.config_dir.clone());
                let started = crate::tools::McpServers::start(mcp, &dir)
                    .await
                    .map_err(|e| StateFailure::new("RuntimeError", e.to_string()))?;
                let started = Arc::new(started);
                self.mcp.push((agent.to_string(), started.clone()));
                started
            }
        };
        let prompt = match mcp.get("tool_prompt").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => {
                let tools = Value::Array(servers.prompt_tools());
                crate::template::Templates::for_prompts()
                    .render_str(t, &Vars::new().with("tools", &tools))?
            }
            _ => String::new(),
        };
        Ok((servers, prompt))
    }

    /// Without the `mcp` feature, an agent that declares MCP servers cannot loop.
    #[cfg(not(feature = "mcp"))]
    async fn mcp_servers(
        &mut self,
        agent: &str,
        _mcp: &Value,
    ) -> Result<(Arc<dyn ToolProvider>, String), StateFailure> {
        Err(StateFailure::new(
            "RuntimeError",
            format!(
                "agent '{agent}' declares MCP servers (data.mcp), and flatmachines was built \
                 without its `mcp` feature"
            ),
        ))
    }

    fn context_mut(&mut self) -> &mut Map<String, Value> {
        self.context.as_object_mut().expect("the context is a map")
    }
}

/// Runs one tool call on its own task, so a panic or a timeout becomes an error result and
/// never reaches the run.
async fn call_tool(
    provider: Option<&Arc<dyn ToolProvider>>,
    name: &str,
    id: &str,
    arguments: &Value,
    timeout: f64,
) -> ToolResult {
    let Some(provider) = provider.cloned() else {
        return ToolResult::error(format!("No tool provider configured for '{name}'"));
    };
    let (tool, call_id, args) = (name.to_string(), id.to_string(), arguments.clone());
    let task = tokio::spawn(async move { provider.execute(&tool, &call_id, &args).await });
    let abort = task.abort_handle();
    let limit = crate::py::saturating_secs(timeout);
    match tokio::time::timeout(limit, task).await {
        Err(_) => {
            abort.abort();
            ToolResult::error(format!(
                "Tool '{name}' timed out after {}s",
                flatmachines_ir::pyfmt::float_repr(timeout)
            ))
        }
        Ok(Ok(Ok(result))) => result,
        Ok(Ok(Err(e))) => ToolResult::error(format!("Error executing '{name}': {e}")),
        Ok(Err(join)) => {
            let why = if join.is_panic() {
                let payload = join.into_panic();
                let text = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_string());
                format!("the tool panicked: {text}")
            } else {
                "the tool was cancelled".to_string()
            };
            ToolResult::error(format!("Error executing '{name}': {why}"))
        }
    }
}

/// The assistant message a reply adds to the chain. Arguments the model sent as objects are
/// sent back as Python's `json.dumps` text, as the reference does.
fn assistant_message(r: &AgentResult) -> Value {
    let mut msg = json!({"role": "assistant", "content": r.content.clone().unwrap_or_default()});
    if let Some(Value::Array(calls)) = &r.tool_calls
        && !calls.is_empty()
    {
        let calls: Vec<Value> = calls
            .iter()
            .map(|tc| {
                let arguments = match tc.get("arguments") {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => crate::py::json::dumps(v),
                    None => "{}".to_string(),
                };
                json!({
                    "id": tc.get("id").cloned().unwrap_or(json!("")),
                    "type": "function",
                    "function": {
                        "name": tc.get("name").cloned().unwrap_or(json!("")),
                        "arguments": arguments,
                    }
                })
            })
            .collect();
        msg["tool_calls"] = Value::Array(calls);
    }
    msg
}

/// A loop's cost of one reply: `cost` as a number or its map's numeric `total`, else the same
/// read of `usage.cost`.
fn loop_cost_of(r: &AgentResult) -> f64 {
    fn number(v: &Value) -> Option<f64> {
        match v {
            Value::Number(n) => n.as_f64(),
            Value::Object(m) => m.get("total").and_then(Value::as_f64),
            _ => None,
        }
    }
    r.cost
        .as_ref()
        .and_then(number)
        .or_else(|| {
            r.usage
                .as_ref()
                .and_then(|u| u.get("cost"))
                .and_then(number)
        })
        .unwrap_or(0.0)
}

#[cfg(feature = "loader")]
fn read_agent_file(path: &std::path::Path) -> Option<Value> {
    crate::yaml::yaml_to_json(&crate::yaml::read_file(path).ok()?)
}

#[cfg(not(feature = "loader"))]
fn read_agent_file(_: &std::path::Path) -> Option<Value> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guardrail_entries_match_plain_qualified_and_server_wide_names() {
        assert!(entry_matches("read", "read", None));
        assert!(entry_matches("files:read", "read", Some("files:read")));
        assert!(entry_matches("files:*", "files_read", Some("files:read")));
        assert!(!entry_matches("web:*", "read", Some("files:read")));
        assert!(!entry_matches("files:read", "read", None));
        assert!(!entry_matches("*", "read", Some("files:read")));
    }

    #[test]
    fn assistant_messages_resend_arguments_as_python_json() {
        let r = AgentResult {
            content: None,
            tool_calls: Some(json!([
                {"id": "a", "name": "w", "arguments": {"city": "Tromsø"}},
                {"id": "b", "name": "m", "arguments": "{\"raw\":1}"}
            ])),
            ..AgentResult::default()
        };
        let m = assistant_message(&r);
        assert_eq!(m["content"], "");
        assert_eq!(
            m["tool_calls"][0]["function"]["arguments"],
            "{\"city\": \"Troms\\u00f8\"}"
        );
        assert_eq!(m["tool_calls"][1]["function"]["arguments"], "{\"raw\":1}");
        assert_eq!(m["tool_calls"][1]["type"], "function");
    }

    #[test]
    fn unanswered_calls_are_those_after_the_last_tool_message() {
        let p = Progress {
            chain: vec![
                json!({"role": "user", "content": "go"}),
                json!({"role": "assistant", "content": "", "tool_calls": [
                    {"id": "1", "type": "function", "function": {"name": "a", "arguments": "{\"x\": 1}"}},
                    {"id": "2", "type": "function", "function": {"name": "b", "arguments": "{}"}}
                ]}),
                json!({"role": "tool", "tool_call_id": "1", "content": "done"}),
            ],
            ..Progress::default()
        };
        assert_eq!(
            p.unanswered(),
            vec![json!({"id": "2", "name": "b", "arguments": {}})]
        );
    }

    #[test]
    fn loop_cost_falls_back_to_usage() {
        let r = AgentResult {
            cost: Some(json!({"input": 1})),
            usage: Some(json!({"cost": 0.25})),
            ..AgentResult::default()
        };
        assert_eq!(loop_cost_of(&r), 0.25);
    }
}

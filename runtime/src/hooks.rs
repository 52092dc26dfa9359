//! Hooks observe and steer a run (`hooks-adapters-cli.md` §1).
//!
//! Methods take the context by `&mut` instead of returning a new one: the effect of the
//! reference's "return the new context" is the same, and a hook cannot end a run by accident by
//! returning nothing (a reference quirk).

use serde_json::Value;
use std::borrow::Cow;
use std::sync::Arc;

/// Callbacks around a run. Every method has a pass-through default.
pub trait MachineHooks: Send + Sync {
    /// A fresh run starts (not on resume), after the initial context is built.
    fn on_machine_start(&self, _context: &mut Value) {}
    /// The run ended normally; may replace the output returned to the caller.
    fn on_machine_end(&self, _context: &Value, _output: &mut Value) {}
    /// A state is entered.
    fn on_state_enter(&self, _state: &str, _context: &mut Value) {}
    /// A state finished without error; `output` is its final output, if any.
    fn on_state_exit(&self, _state: &str, _context: &mut Value, _output: Option<&Value>) {}
    /// A transition was chosen; return the state to go to (`None` ends the run).
    fn on_transition<'a>(
        &self,
        _from: &str,
        to: &'a str,
        _context: &mut Value,
    ) -> Option<Cow<'a, str>> {
        Some(Cow::Borrowed(to))
    }
    /// An in-state error that `on_error` config did not handle; return a recovery state.
    fn on_error(
        &self,
        _state: &str,
        _kind: &str,
        _message: &str,
        _context: &mut Value,
    ) -> Option<String> {
        None
    }
    /// An `action:` state runs.
    fn on_action(&self, action: &str, _context: &mut Value) {
        tracing::warn!("Unhandled action: {action}");
    }
}

/// Hooks that do nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHooks;

impl MachineHooks for NoHooks {}

/// Logs every event with `tracing` (the reference's `LoggingHooks`).
#[derive(Clone, Copy, Debug, Default)]
pub struct LoggingHooks;

impl MachineHooks for LoggingHooks {
    fn on_machine_start(&self, _context: &mut Value) {
        tracing::info!("Machine execution started");
    }
    fn on_machine_end(&self, _context: &Value, output: &mut Value) {
        tracing::info!("Machine execution ended with output: {output}");
    }
    fn on_state_enter(&self, state: &str, _context: &mut Value) {
        tracing::info!("Entering state: {state}");
    }
    fn on_state_exit(&self, state: &str, _context: &mut Value, _output: Option<&Value>) {
        tracing::info!("Exiting state: {state}");
    }
    fn on_transition<'a>(
        &self,
        from: &str,
        to: &'a str,
        _context: &mut Value,
    ) -> Option<Cow<'a, str>> {
        tracing::info!("Transition: {from} -> {to}");
        Some(Cow::Borrowed(to))
    }
}

/// Several hooks chained in order: contexts thread through each; the first recovery state wins.
#[derive(Clone, Default)]
pub struct CompositeHooks {
    hooks: Vec<Arc<dyn MachineHooks>>,
}

impl CompositeHooks {
    /// Chains `hooks` in order.
    pub fn new(hooks: Vec<Arc<dyn MachineHooks>>) -> Self {
        CompositeHooks { hooks }
    }
}

impl MachineHooks for CompositeHooks {
    fn on_machine_start(&self, context: &mut Value) {
        self.hooks.iter().for_each(|h| h.on_machine_start(context));
    }
    fn on_machine_end(&self, context: &Value, output: &mut Value) {
        self.hooks
            .iter()
            .for_each(|h| h.on_machine_end(context, output));
    }
    fn on_state_enter(&self, state: &str, context: &mut Value) {
        self.hooks
            .iter()
            .for_each(|h| h.on_state_enter(state, context));
    }
    fn on_state_exit(&self, state: &str, context: &mut Value, output: Option<&Value>) {
        self.hooks
            .iter()
            .for_each(|h| h.on_state_exit(state, context, output));
    }
    fn on_transition<'a>(
        &self,
        from: &str,
        to: &'a str,
        context: &mut Value,
    ) -> Option<Cow<'a, str>> {
        let mut next = Cow::Borrowed(to);
        for h in &self.hooks {
            next = match next {
                Cow::Borrowed(n) => h.on_transition(from, n, context)?,
                Cow::Owned(n) => Cow::Owned(h.on_transition(from, &n, context)?.into_owned()),
            };
        }
        Some(next)
    }
    fn on_error(
        &self,
        state: &str,
        kind: &str,
        message: &str,
        context: &mut Value,
    ) -> Option<String> {
        self.hooks
            .iter()
            .find_map(|h| h.on_error(state, kind, message, context))
    }
    fn on_action(&self, action: &str, context: &mut Value) {
        self.hooks.iter().for_each(|h| h.on_action(action, context));
    }
}

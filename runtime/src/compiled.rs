//! Machines compiled by `include_machine!`, `flatmachine!` and the build.rs helper: what a
//! generated module hands the runtime, and the helpers behind its functions
//! (`docs/generated-code.md`).
//!
//! A compiled machine carries its lowered definition as Rust data (an [`ir::Bundle`] in a
//! `static`) and one generated transition function per machine of the bundle: starting it
//! parses no YAML and runs no check, and the executor moves between states by calling the
//! generated code.

use crate::condition::{ConditionError, LazyCondition, NativeCondition};
use crate::error::Error;
use crate::hooks::MachineHooks;
use crate::machine::{Machine, NextFn};
use crate::runtime::Outcome;
use crate::runtime::Runtime;
use flatmachines_ir as ir;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::OnceLock;

/// Everything a generated module's `machine()` builds the [`Machine`] from.
#[derive(Debug)]
pub struct CompiledMachine {
    /// The machine and its children, lowered at compile time.
    pub bundle: &'static ir::Bundle,
    /// The generated transition function of each machine of [`CompiledMachine::bundle`], by
    /// index.
    pub next: &'static [NextFn],
}

impl CompiledMachine {
    /// Instantiates the machine from its compiled definition: no file is read, nothing is
    /// parsed or checked again.
    ///
    /// # Errors
    /// [`Error::Invalid`] only for a definition the compile-time checks did not accept (for
    /// instance a CEL condition when the runtime was built without `cel`).
    pub fn load(&'static self) -> Result<Machine, Error> {
        Machine::from_bundle(self.bundle, Some(self.next))
    }
}

/// The machine of a generated module, loaded once into `cell` and cloned (cheaply) after that.
/// A failed load is not kept: each call reports it again.
///
/// # Errors
/// See [`CompiledMachine::load`].
pub fn machine(
    cell: &'static OnceLock<Machine>,
    compiled: &'static CompiledMachine,
) -> Result<Machine, Error> {
    if let Some(m) = cell.get() {
        return Ok(m.clone());
    }
    let loaded = compiled.load()?;
    Ok(cell.get_or_init(|| loaded).clone())
}

/// Runs `machine` with a typed input and converts its output.
///
/// # Errors
/// What the run fails with, or [`Error::Conversion`] when the input does not serialize or the
/// output does not deserialize into `O`.
pub async fn execute_typed<I, O>(
    rt: &Runtime,
    machine: Result<Machine, Error>,
    input: I,
) -> Result<O, Error>
where
    I: Serialize + Send,
    O: DeserializeOwned,
{
    let machine = machine?;
    let input = typed_input(&machine, &input)?;
    let output = rt.run(&machine, input).await?;
    typed_output(&machine, &output)
}

/// A typed input as the JSON a run takes.
fn typed_input<I: Serialize>(machine: &Machine, input: &I) -> Result<Value, Error> {
    serde_json::to_value(input).map_err(|e| Error::Conversion {
        machine: machine.name().to_string(),
        message: format!("the input does not serialize: {e}"),
    })
}

/// A run's output as the machine's typed `Output`.
fn typed_output<O: DeserializeOwned>(machine: &Machine, output: &Value) -> Result<O, Error> {
    O::deserialize(output).map_err(|e| Error::Conversion {
        machine: machine.name().to_string(),
        message: format!("the output does not fit `Output`: {e}; output: {output}"),
    })
}

/// [`execute_typed`] for a machine that can park: the run's [`Outcome`], its output converted
/// when it finished. With `resume_from`, resumes that execution instead (the input is then
/// ignored).
///
/// # Errors
/// As [`execute_typed`].
pub async fn execute_outcome<I, O>(
    rt: &Runtime,
    machine: Result<Machine, Error>,
    input: I,
    resume_from: Option<String>,
) -> Result<Outcome<O>, Error>
where
    I: Serialize + Send,
    O: DeserializeOwned,
{
    let machine = machine?;
    let input = typed_input(&machine, &input)?;
    let options = crate::RunOptions {
        resume_from,
        ..crate::RunOptions::default()
    };
    match rt.run_outcome(&machine, input, options).await? {
        Outcome::Finished(output) => typed_output(&machine, &output).map(Outcome::Finished),
        Outcome::Waiting {
            execution_id,
            channel,
        } => Ok(Outcome::Waiting {
            execution_id,
            channel,
        }),
    }
}

/// A condition in a generated module: compiled, or left to the interpreter.
pub trait TransitionCondition {
    /// The condition's text.
    fn source(&self) -> &'static str;

    /// Evaluates it against `context`.
    ///
    /// # Errors
    /// What the condition raises.
    fn evaluate(&self, context: &Value) -> Result<bool, ConditionError>;
}

impl TransitionCondition for NativeCondition {
    fn source(&self) -> &'static str {
        NativeCondition::source(self)
    }

    #[inline]
    fn evaluate(&self, context: &Value) -> Result<bool, ConditionError> {
        NativeCondition::evaluate(self, context)
    }
}

impl TransitionCondition for LazyCondition {
    fn source(&self) -> &'static str {
        LazyCondition::source(self)
    }

    fn evaluate(&self, context: &Value) -> Result<bool, ConditionError> {
        LazyCondition::evaluate(self, context)
    }
}

/// Whether the transition condition `condition` of `state` holds, failing as the executor does.
///
/// # Errors
/// [`Error::Condition`] naming the machine, state and condition, with the executor's message.
#[inline]
pub fn holds(
    condition: &impl TransitionCondition,
    context: &Value,
    machine: &str,
    state: &str,
) -> Result<bool, Error> {
    condition.evaluate(context).map_err(|e| Error::Condition {
        machine: machine.to_string(),
        state: state.to_string(),
        condition: condition.source().to_string(),
        message: e.to_string(),
    })
}

/// The executor's step after choosing the transition `from` → `to`: the hooks may redirect it
/// (a state name) or end the run (`None`).
pub async fn on_transition<H: MachineHooks + ?Sized>(
    hooks: &H,
    from: &str,
    to: &str,
    context: &mut Value,
) -> Option<String> {
    hooks.on_transition(from, to, context).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::borrow::Cow::Borrowed as B;

    fn state(
        name: &'static str,
        is_final: bool,
        transitions: &'static [ir::Transition],
    ) -> ir::StateIr {
        ir::StateIr {
            name: B(name),
            is_final,
            agent: None,
            execution: ir::Execution::Default,
            tool_loop: None,
            loop_exits: B(&[]),
            input: None,
            output_to_context: B(&[]),
            output: None,
            transitions: B(transitions),
            on_error: None,
            action: None,
            wait_for: None,
            call: None,
            mode: ir::Mode::Settled,
            timeout: None,
            launch: B(&[]),
            launch_input: None,
        }
    }

    /// The IR of a machine `start → (other | done)` whose transition text says `done` when
    /// `context.go == 'yes'`.
    fn bundle() -> &'static ir::Bundle {
        static BUNDLE: OnceLock<ir::Bundle> = OnceLock::new();
        BUNDLE.get_or_init(|| {
            let mut other = state("other", true, &[]);
            other.output = Some(ir::Json::Object(B(&[(
                B("took"),
                ir::Json::Str(B("other")),
            )])));
            let mut done = state("done", true, &[]);
            done.output = Some(ir::Json::Object(B(&[(
                B("took"),
                ir::Json::Str(B("done")),
            )])));
            ir::Bundle {
                machines: vec![ir::MachineIr {
                    name: B("ping"),
                    spec_version: B("2.6.0"),
                    path: None,
                    dir: B("/nowhere"),
                    engine: ir::Engine::Simple,
                    context: ir::Json::Object(B(&[(B("go"), ir::Json::Str(B("input.go")))])),
                    settings: ir::Json::Null,
                    limits: ir::Limits::default(),
                    hooks: None,
                    states: vec![
                        state(
                            "start",
                            false,
                            &[
                                ir::Transition {
                                    condition: Some(0),
                                    target: 2,
                                },
                                ir::Transition {
                                    condition: None,
                                    target: 1,
                                },
                            ],
                        ),
                        other,
                        done,
                    ]
                    .into(),
                    initial: 0,
                    conditions: B(&[B("context.go == 'yes'")]),
                    agents: B(&[]),
                    profiles: None,
                    persistence: ir::Persistence {
                        enabled: true,
                        backend: ir::Backend::Memory,
                        db_path: None,
                        checkpoint_on: None,
                        config: B("null\n"),
                    },
                    machines: B(&[]),
                    document: B("null"),
                }]
                .into(),
                profiles: B(&[]),
            }
        })
    }

    /// A "generated" transition function that disagrees with the condition text.
    fn always_other(from: usize, _: &Value, _: bool) -> Result<Option<usize>, Error> {
        Ok((from == 0).then_some(1))
    }

    /// The generated function is what runs, not the condition text: the text says `done`
    /// for `go: yes`, the function says `other`.
    #[tokio::test]
    async fn the_generated_transition_function_decides() {
        let compiled: &'static CompiledMachine = Box::leak(Box::new(CompiledMachine {
            bundle: bundle(),
            next: &[always_other],
        }));
        let rt = Runtime::new();
        let m = compiled.load().unwrap();
        let out = rt.run(&m, json!({"go": "yes"})).await.unwrap();
        assert_eq!(out, json!({"took": "other"}));
        assert!(m.def.states[0].transitions.is_empty());
        // The same IR without the generated code interprets the text.
        let interpreted = Machine::from_bundle(bundle(), None).unwrap();
        let out = rt.run(&interpreted, json!({"go": "yes"})).await.unwrap();
        assert_eq!(out, json!({"took": "done"}));
    }

    /// A parent calling the machine of [`bundle`] as its child `helper` with `go: yes`.
    fn family() -> &'static ir::Bundle {
        static FAMILY: OnceLock<ir::Bundle> = OnceLock::new();
        FAMILY.get_or_init(|| {
            let child = bundle().machines[0].clone();
            let mut start = state(
                "start",
                false,
                &[ir::Transition {
                    condition: None,
                    target: 1,
                }],
            );
            start.call = Some(ir::Call::Single(B("helper")));
            start.input = Some(ir::Json::Object(B(&[(B("go"), ir::Json::Str(B("yes")))])));
            start.output_to_context = B(&[(B("took"), ir::Json::Str(B("output.took")))]);
            let mut done = state("done", true, &[]);
            done.output = Some(ir::Json::Object(B(&[(
                B("took"),
                ir::Json::Str(B("context.took")),
            )])));
            let parent = ir::MachineIr {
                name: B("parent"),
                context: ir::Json::EMPTY_OBJECT,
                states: vec![start, done].into(),
                conditions: B(&[]),
                machines: B(&[ir::Child {
                    name: B("helper"),
                    path: None,
                    inline: None,
                    machine: Some(1),
                }]),
                ..child.clone()
            };
            ir::Bundle {
                machines: vec![parent, child].into(),
                profiles: B(&[]),
            }
        })
    }

    fn parent_next(from: usize, _: &Value, _: bool) -> Result<Option<usize>, Error> {
        Ok((from == 0).then_some(1))
    }

    /// A child of a compiled parent moves through its own generated function too.
    #[tokio::test]
    async fn children_of_a_compiled_machine_run_their_generated_functions() {
        let compiled: &'static CompiledMachine = Box::leak(Box::new(CompiledMachine {
            bundle: family(),
            next: &[parent_next, always_other],
        }));
        let rt = Runtime::new();
        let out = rt.run(&compiled.load().unwrap(), json!({})).await.unwrap();
        assert_eq!(out, json!({"took": "other"}));
        // Interpreted, the child's condition text decides.
        let interpreted = Machine::from_bundle(family(), None).unwrap();
        let out = rt.run(&interpreted, json!({})).await.unwrap();
        assert_eq!(out, json!({"took": "done"}));
    }

    #[test]
    fn machine_is_loaded_once() {
        static CELL: OnceLock<Machine> = OnceLock::new();
        let compiled: &'static CompiledMachine = Box::leak(Box::new(CompiledMachine {
            bundle: bundle(),
            next: &[always_other],
        }));
        let a = machine(&CELL, compiled).unwrap();
        let b = machine(&CELL, compiled).unwrap();
        assert!(std::sync::Arc::ptr_eq(&a.def, &b.def));
    }
}

//! Machines compiled by `include_machine!`, `flatmachine!` and the build.rs helper: what a
//! generated module hands the runtime, and the helpers behind its functions
//! (`docs/generated-code.md`).
//!
//! A compiled machine is self-contained: it carries every file the compiler read (through
//! `include_bytes!`, so editing one rebuilds the crate) and replays the compiler's load from
//! them in memory, so a binary runs without its YAML files. Its `simple`-engine conditions are
//! Rust functions, attached while lowering.

use crate::condition::{ConditionError, LazyCondition, NativeCondition};
use crate::error::Error;
use crate::hooks::MachineHooks;
use crate::machine::Machine;
use crate::runtime::Runtime;
use flatmachines_compiler::load::{Input, LoadOptions, MachineId, MemoryFs, load_with};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::Path;
use std::sync::OnceLock;

/// Where a compiled machine's own YAML comes from.
#[derive(Debug)]
pub enum Entry {
    /// A file, named as the compiler loaded it; its text is one of [`CompiledMachine::files`].
    File(&'static str),
    /// YAML written inside a Rust file (`flatmachine!`).
    Inline {
        /// The YAML.
        text: &'static str,
        /// The directory its references resolve against.
        dir: &'static str,
        /// Line of the YAML's first character in the Rust file.
        line: u32,
        /// Column of the YAML's first character in the Rust file.
        column: u32,
    },
}

/// A file the compiler read, embedded in the binary.
#[derive(Debug)]
pub struct EmbeddedFile {
    /// The path the compiler read it from, which is how the loader asks for it again.
    pub path: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
}

/// Everything a generated module's `machine()` builds the [`Machine`] from.
#[derive(Debug)]
pub struct CompiledMachine {
    /// `data.name`, for errors.
    pub name: &'static str,
    /// The machine's own YAML.
    pub entry: Entry,
    /// Every file the compiler read: the machine (unless inline), agents, child machines and
    /// profiles.
    pub files: &'static [EmbeddedFile],
    /// Paths that canonicalized to another path when compiled (symbolic links), so that the
    /// replayed load identifies files exactly as the compiler did.
    pub aliases: &'static [(&'static str, &'static str)],
    /// The `simple`-engine conditions of every machine in the project, compiled to Rust.
    pub conditions: &'static [NativeCondition],
}

/// The name an inline machine's text is given in the replayed load; only its directory matters.
const INLINE_FILE: &str = "inline.yml";

impl CompiledMachine {
    /// Loads the machine from the embedded files, without touching the file system, and lowers
    /// it with the compiled conditions. The checks ran when the crate compiled, so only the
    /// loader's own problems (none, unless the embedded files disagree with the transcript) are
    /// reported.
    ///
    /// # Errors
    /// [`Error::Invalid`] if the embedded files do not load.
    pub fn load(&'static self) -> Result<Machine, Error> {
        let mut fs = MemoryFs::new();
        for f in self.files {
            fs = fs.file(f.path, f.bytes);
        }
        for (path, canonical) in self.aliases {
            fs = fs.alias(*path, *canonical);
        }
        let options = LoadOptions::default();
        let project = match &self.entry {
            Entry::File(path) => load_with(Input::File(Path::new(path)), &options, &fs),
            Entry::Inline {
                text,
                dir,
                line,
                column,
            } => load_with(
                Input::Inline {
                    text: (*text).to_string(),
                    path: &Path::new(dir).join(INLINE_FILE),
                    origin: (*line, *column),
                },
                &options,
                &fs,
            ),
        };
        if project.diags.has_errors() {
            return Err(Error::Invalid {
                machine: self.name.to_string(),
                diagnostics: flatmachines_compiler::diag::render_all(
                    &project.diags,
                    &project.sources,
                ),
            });
        }
        Machine::from_project_with(&project, MachineId(0), self.conditions)
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
    let conversion = |message: String| Error::Conversion {
        machine: machine.name().to_string(),
        message,
    };
    let input = serde_json::to_value(&input)
        .map_err(|e| conversion(format!("the input does not serialize: {e}")))?;
    let output = rt.run(&machine, input).await?;
    O::deserialize(&output).map_err(|e| {
        conversion(format!(
            "the output does not fit `Output`: {e}; output: {output}"
        ))
    })
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

    fn always_false(_: &Value) -> Result<bool, ConditionError> {
        Ok(false)
    }

    static NATIVES: [NativeCondition; 1] =
        [NativeCondition::new("context.go == 'yes'", always_false)];

    static PING: CompiledMachine = CompiledMachine {
        name: "ping",
        entry: Entry::File("/nowhere/ping/machine.yml"),
        files: &[
            EmbeddedFile {
                path: "/nowhere/ping/machine.yml",
                bytes: b"spec: flatmachine\ndata:\n  name: ping\n  agents:\n    echo: ./agent.yml\n  states:\n    start:\n      type: initial\n      transitions:\n        - condition: \"context.go == 'yes'\"\n          to: done\n        - to: other\n    other:\n      type: final\n      output: {took: other}\n    done:\n      type: final\n      output: {took: done}\n",
            },
            EmbeddedFile {
                path: "/nowhere/ping/agent.yml",
                bytes: b"spec: flatagent\ndata:\n  model: {provider: x, name: y}\n  user: hi\n",
            },
        ],
        aliases: &[],
        conditions: &NATIVES,
    };

    /// The compiled function is what runs, not the text: it says false where the text says true.
    #[tokio::test]
    async fn loads_from_memory_and_runs_the_compiled_conditions() {
        let rt = Runtime::new();
        let m = PING.load().unwrap();
        let out = rt.run(&m, json!({})).await.unwrap();
        assert_eq!(out, json!({"took": "other"}));
        assert!(matches!(
            m.def.states[0].transitions[0].condition,
            crate::condition::Condition::Native(_)
        ));
        assert!(m.def.agents.contains_key("echo"));
    }

    const PARENT: &str = r#"
spec: flatmachine
data:
  name: parent
  machines:
    helper: ./sub/child.yml
  states:
    start:
      type: initial
      machine: helper
      input: {go: "yes"}
      output_to_context:
        took: output.took
      transitions:
        - to: done
    done:
      type: final
      output: {took: context.took}
"#;

    const CHILD: &str = r#"
spec: flatmachine
data:
  name: child
  context: {go: input.go}
  states:
    start:
      type: initial
      transitions:
        - condition: "context.go == 'yes'"
          to: done
        - to: other
    other: {type: final, output: {took: other}}
    done: {type: final, output: {took: done}}
"#;

    static FAMILY: CompiledMachine = CompiledMachine {
        name: "parent",
        entry: Entry::Inline {
            text: PARENT,
            dir: "/nowhere/family",
            line: 1,
            column: 1,
        },
        files: &[EmbeddedFile {
            path: "/nowhere/family/sub/child.yml",
            bytes: CHILD.as_bytes(),
        }],
        aliases: &[],
        conditions: &NATIVES,
    };

    /// Child machines loaded at compile time run with the compiled conditions too.
    #[tokio::test]
    async fn child_machines_use_the_compiled_conditions() {
        let rt = Runtime::new();
        let m = FAMILY.load().unwrap();
        let out = rt.run(&m, json!({})).await.unwrap();
        assert_eq!(out, json!({"took": "other"}));
    }

    #[test]
    fn a_missing_embedded_file_is_an_invalid_machine() {
        static BROKEN: CompiledMachine = CompiledMachine {
            name: "broken",
            entry: Entry::File("/nowhere/broken.yml"),
            files: &[],
            aliases: &[],
            conditions: &[],
        };
        let err = BROKEN.load().unwrap_err();
        assert!(
            matches!(&err, Error::Invalid { machine, .. } if machine == "broken"),
            "{err}"
        );
        assert!(err.to_string().contains("cannot be read"), "{err}");
    }

    #[test]
    fn machine_is_loaded_once() {
        static CELL: OnceLock<Machine> = OnceLock::new();
        let a = machine(&CELL, &PING).unwrap();
        let b = machine(&CELL, &PING).unwrap();
        assert!(std::sync::Arc::ptr_eq(&a.def, &b.def));
    }
}

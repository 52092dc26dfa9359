//! Peer machines lowered for the executor: the child machines of `data.machines` (lowered once,
//! with the parent, from the compiler's [`Project`]) and what a state asks of them (`machine:`,
//! `foreach:`, `launch:`; `parallel-and-launch.md`).

use crate::error::Error;
use crate::machine::{Machine, MachineDef};
use flatmachines_compiler::load::{Input, LoadOptions, LoadedMachine, MachineId, Project};
use flatmachines_compiler::model::machine::{MachineCall, MachineRef, State};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The `settings` key bounding how many children of one `machine:` list or `foreach:` run at
/// once (default: unbounded, like the reference).
pub(crate) const MAX_CONCURRENT_CHILDREN: &str = "max_concurrent_children";

/// Lowers one machine document to a definition (conditions compiled, templates cached). The
/// interpreter passes `machine::lower`; generated code may pass a variant with compiled
/// conditions, and children are lowered with the same function.
pub(crate) type LowerFn<'a> = &'a dyn Fn(&Project, &LoadedMachine) -> Result<MachineDef, Error>;

/// The entries of `data.machines`, in document order.
#[derive(Debug, Default)]
pub(crate) struct ChildMachines {
    entries: Vec<ChildEntry>,
}

/// One entry of `data.machines`.
#[derive(Debug)]
pub(crate) struct ChildEntry {
    /// The name states use.
    pub name: String,
    /// The file the child comes from (`None` for an inline document).
    pub path: Option<PathBuf>,
    /// The child's document as JSON (what a subprocess or a queue worker runs).
    pub document: Option<Arc<Value>>,
    /// The lowered child: set when the parent is built, or on first use for a child the
    /// compiler did not load.
    machine: OnceLock<Result<Machine, ChildLoadError>>,
    /// Profiles a child loaded at run time inherits when it has none of its own.
    inherited_profiles: Option<Value>,
}

/// Why a child machine cannot be used, as the reference's exception class and message.
#[derive(Clone, Debug)]
pub(crate) struct ChildLoadError {
    pub kind: &'static str,
    pub message: String,
}

impl ChildMachines {
    /// The entry named `name` (the first one, as in a YAML map with unique keys).
    pub(crate) fn get(&self, name: &str) -> Option<&ChildEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The lowered machine named `name`, loading it from disk if the compiler did not.
    pub(crate) fn machine(&self, name: &str) -> Result<&Machine, ChildLoadError> {
        let entry = self.get(name).ok_or_else(|| ChildLoadError {
            kind: "ValueError",
            message: format!(
                "Unknown machine reference: {name}. Check 'machines:' section in config."
            ),
        })?;
        entry.machine().as_ref().map_err(Clone::clone)
    }
}

impl ChildEntry {
    fn machine(&self) -> &Result<Machine, ChildLoadError> {
        self.machine.get_or_init(|| match &self.path {
            Some(path) => load_at_run_time(path, self.inherited_profiles.as_ref()),
            None => Err(ChildLoadError {
                kind: "ValueError",
                message: format!("machine `{}` could not be loaded", self.name),
            }),
        })
    }
}

/// Loads a child machine the compiler did not load (it runs the same checks first).
fn load_at_run_time(path: &Path, profiles: Option<&Value>) -> Result<Machine, ChildLoadError> {
    if !path.is_file() {
        return Err(ChildLoadError {
            kind: "FileNotFoundError",
            message: format!("Machine config file not found: {}", path.display()),
        });
    }
    let checked = flatmachines_compiler::check_input(Input::File(path), &LoadOptions::default());
    if checked.has_errors() {
        return Err(ChildLoadError {
            kind: "ValueError",
            message: format!(
                "machine `{}` has errors:\n{}",
                path.display(),
                checked.render()
            ),
        });
    }
    let lower: LowerFn<'_> = &|p, m| crate::machine::lower(p, m, &[]);
    let mut builder = Builder {
        project: &checked.project,
        lower,
        memo: HashMap::new(),
        stack: Vec::new(),
    };
    builder
        .build(MachineId(0), profiles.cloned())
        .map_err(|e| ChildLoadError {
            kind: "ValueError",
            message: e.to_string(),
        })
}

/// Lowers machine `id` of `project` with every child machine the compiler loaded, each lowered
/// once however many machines name it.
pub(crate) fn lower_tree(
    project: &Project,
    id: MachineId,
    lower: LowerFn<'_>,
) -> Result<Machine, Error> {
    Builder {
        project,
        lower,
        memo: HashMap::new(),
        stack: Vec::new(),
    }
    .build(id, None)
}

struct Builder<'p> {
    project: &'p Project,
    lower: LowerFn<'p>,
    /// By machine and the profiles it inherits (`None`: it has its own, or none anywhere).
    memo: HashMap<(usize, Option<usize>), Machine>,
    /// Machines being lowered; a reference back into one of them is left to run time (the
    /// checks report such cycles, so only machines built despite errors get here).
    stack: Vec<usize>,
}

impl Builder<'_> {
    /// `inherited`: the effective profiles of the parent (the reference falls back to them when
    /// a child has no `profiles.yml` of its own).
    fn build(&mut self, id: MachineId, inherited: Option<Value>) -> Result<Machine, Error> {
        self.build_with(id, inherited, None)
    }

    fn build_with(
        &mut self,
        id: MachineId,
        inherited: Option<Value>,
        inherited_idx: Option<usize>,
    ) -> Result<Machine, Error> {
        let project = self.project;
        let m = project.machines.get(id.0).ok_or_else(|| Error::Invalid {
            machine: "<unknown>".into(),
            diagnostics: "the machine could not be loaded".into(),
        })?;
        let mut def = (self.lower)(project, m)?;
        let effective_idx = m.profiles.or(inherited_idx);
        if def.profiles.is_none() {
            def.profiles = inherited;
        }
        self.stack.push(id.0);
        let mut entries = Vec::with_capacity(m.doc.data.machines.len());
        for (i, entry) in m.doc.data.machines.iter().enumerate() {
            let resolved = m.machines.get(i).copied().flatten();
            let (path, document) = match &entry.reference {
                MachineRef::Path(p) => {
                    let path = flatmachines_compiler::load::normalize(&m.dir.join(&p.value));
                    (Some(path), None)
                }
                MachineRef::Inline(n) => (None, Some(Arc::new(n.to_json()))),
                MachineRef::Invalid(_) => (None, None),
            };
            let machine = OnceLock::new();
            let mut document = document;
            if let Some(cid) = resolved
                && !self.stack.contains(&cid.0)
            {
                let child = &project.machines[cid.0];
                document.get_or_insert_with(|| Arc::new(child.doc.root.to_json()));
                let key = (cid.0, child.profiles.map_or(effective_idx, |_| None));
                let lowered = match self.memo.get(&key) {
                    Some(done) => done.clone(),
                    None => {
                        let built = self.build_with(cid, def.profiles.clone(), effective_idx)?;
                        self.memo.insert(key, built.clone());
                        built
                    }
                };
                let _ = machine.set(Ok(lowered));
            }
            entries.push(ChildEntry {
                name: entry.name.value.clone(),
                path,
                document,
                machine,
                inherited_profiles: def.profiles.clone(),
            });
        }
        self.stack.pop();
        def.children = ChildMachines { entries };
        Ok(Machine { def: Arc::new(def) })
    }
}

/// `mode:` of a parallel `machine:` list or a `foreach:`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Wait for every child (the default).
    #[default]
    Settled,
    /// Wait for the first child to finish.
    Any,
}

/// What a state asks of peer machines, besides the `launch` names kept on the state.
#[derive(Debug, Default)]
pub(crate) struct PeerCalls {
    /// `machine:` / `foreach:`, if the state has one.
    pub call: Option<Call>,
    /// `mode`.
    pub mode: Mode,
    /// `timeout` in seconds.
    pub timeout: Option<f64>,
    /// `launch_input`.
    pub launch_input: Option<Value>,
}

/// A blocking child invocation.
#[derive(Debug)]
pub(crate) enum Call {
    /// `machine: child`.
    Single(String),
    /// `machine: [a, b]` or `[{name, input}]`: each name with its own input template, if any.
    List(Vec<(String, Option<Value>)>),
    /// `foreach:`.
    Foreach {
        /// The expression yielding the items.
        items: Value,
        /// `as` (default `item`).
        item: String,
        /// `key`.
        key: Option<Value>,
        /// The machine each item runs (the first of a list).
        machine: String,
    },
}

/// Lowers the peer-machine fields of a state.
pub(crate) fn lower_calls(s: &State) -> PeerCalls {
    let call = match (&s.foreach, &s.machine) {
        (Some(items), Some(m)) => m.names().first().map(|name| Call::Foreach {
            items: items.to_json(),
            item: s
                .as_name
                .as_ref()
                .map_or_else(|| "item".to_string(), |a| a.value.clone()),
            key: s.key.as_ref().map(|k| k.to_json()),
            machine: name.value.clone(),
        }),
        // `foreach` without `machine` is refused by the checks.
        (Some(_), None) => None,
        (None, Some(MachineCall::Single(name))) => Some(Call::Single(name.value.clone())),
        (None, Some(MachineCall::List(list))) if !list.is_empty() => Some(Call::List(
            list.iter()
                .map(|m| (m.name.value.clone(), m.input.as_ref().map(|i| i.to_json())))
                .collect(),
        )),
        (None, _) => None,
    };
    PeerCalls {
        call,
        mode: match s.mode.as_ref().map(|m| m.value.as_str()) {
            Some("any") => Mode::Any,
            // Other values are refused by the checks (FM0405).
            _ => Mode::Settled,
        },
        timeout: s.timeout.as_ref().map(|t| t.value),
        launch_input: s.launch_input.as_ref().map(|n| n.to_json()),
    }
}

/// `settings.max_concurrent_children` of a machine, if set to a positive integer.
pub(crate) fn concurrency_limit(def: &MachineDef) -> Option<usize> {
    def.settings
        .get(MAX_CONCURRENT_CHILDREN)
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
        .map(|n| n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::{Condition, ConditionError, NativeCondition};

    fn always(_: &Value) -> Result<bool, ConditionError> {
        Ok(true)
    }

    static NATIVES: [NativeCondition; 1] = [NativeCondition::new("context.go == 1", always)];

    const CHILD: &str = r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: child
  states:
    start:
      type: initial
      transitions: [{condition: "context.go == 1", to: done}, {to: done}]
    done: {type: final}
"#;

    fn project(dir: &Path) -> Project {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("child.yml"), CHILD).unwrap();
        std::fs::write(
            dir.join("machine.yml"),
            r#"
spec: flatmachine
spec_version: "2.6.0"
data:
  name: parent
  machines: {a: ./child.yml, b: ./child.yml}
  states:
    start: {type: initial, machine: [a, b], transitions: [{to: done}]}
    done: {type: final}
"#,
        )
        .unwrap();
        let checked = flatmachines_compiler::check_file(&dir.join("machine.yml"));
        assert!(!checked.has_errors(), "{}", checked.render());
        checked.project
    }

    #[test]
    fn children_are_lowered_once_with_the_parents_compiled_conditions() {
        let dir = std::env::temp_dir().join(format!("fm-peers-{}", std::process::id()));
        let project = project(&dir);
        let lower: LowerFn<'_> = &|p, m| crate::machine::lower(p, m, &NATIVES);
        let parent = lower_tree(&project, MachineId(0), lower).unwrap();
        let a = parent.def.children.machine("a").unwrap();
        let b = parent.def.children.machine("b").unwrap();
        // The same file, lowered once.
        assert!(Arc::ptr_eq(&a.def, &b.def));
        // The child's condition is the compiled one.
        assert!(matches!(
            a.def.states[0].transitions[0].condition,
            Condition::Native(_)
        ));
        assert_eq!(
            parent.def.children.get("a").unwrap().path.as_deref(),
            Some(dir.join("child.yml").as_path())
        );
        let unknown = parent.def.children.machine("c").unwrap_err();
        assert_eq!(unknown.kind, "ValueError");
        assert_eq!(
            unknown.message,
            "Unknown machine reference: c. Check 'machines:' section in config."
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_child_the_compiler_did_not_load_is_loaded_on_first_use() {
        let entry = ChildEntry {
            name: "late".into(),
            path: Some(PathBuf::from("/nonexistent/late.yml")),
            document: None,
            machine: OnceLock::new(),
            inherited_profiles: None,
        };
        let err = entry.machine().as_ref().unwrap_err();
        assert_eq!(err.kind, "FileNotFoundError");
        assert_eq!(
            err.message,
            "Machine config file not found: /nonexistent/late.yml"
        );
        let dir = std::env::temp_dir().join(format!("fm-peers-late-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("late.yml"), CHILD).unwrap();
        // The failure is kept; a new entry loads the file once it exists.
        let entry = ChildEntry {
            path: Some(dir.join("late.yml")),
            machine: OnceLock::new(),
            ..entry
        };
        assert_eq!(entry.machine().as_ref().unwrap().name(), "child");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

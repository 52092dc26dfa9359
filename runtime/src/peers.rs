//! Peer machines for the executor: the child machines of `data.machines` (instantiated with
//! the parent from its IR bundle, see `machine.rs`) and what a state asks of them (`machine:`,
//! `foreach:`, `launch:`; `parallel-and-launch.md`).

use crate::machine::{Machine, MachineDef};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// The entries of `data.machines`, in document order.
#[derive(Debug, Default)]
pub(crate) struct ChildMachines {
    pub entries: Vec<ChildEntry>,
}

/// One entry of `data.machines`.
#[derive(Debug)]
pub(crate) struct ChildEntry {
    /// The name states use.
    pub name: String,
    /// The file the child comes from (`None` for an inline document).
    pub path: Option<PathBuf>,
    /// The child's document (what a subprocess or a queue worker runs), parsed from the IR's
    /// text on first use.
    pub document: ChildDocument,
    /// The lowered child: set when the parent is built, or on first use for a child the
    /// compiler did not load.
    pub machine: OnceLock<Result<Machine, ChildLoadError>>,
    /// Profiles a child loaded at run time inherits when it has none of its own.
    pub inherited_profiles: Option<Value>,
}

/// A child's document: JSON text from the IR, parsed when a launch first needs it.
#[derive(Debug, Default)]
pub(crate) struct ChildDocument {
    /// Borrowed from a compiled machine's static data, or owned.
    text: Option<flatmachines_ir::Str>,
    parsed: OnceLock<Option<Arc<Value>>>,
}

impl ChildDocument {
    /// A document given as JSON text.
    pub(crate) fn from_text(text: flatmachines_ir::Str) -> Self {
        ChildDocument {
            text: Some(text),
            parsed: OnceLock::new(),
        }
    }

    /// A document already parsed.
    pub(crate) fn from_value(value: Value) -> Self {
        let parsed = OnceLock::new();
        let _ = parsed.set(Some(Arc::new(value)));
        ChildDocument { text: None, parsed }
    }

    /// The document, if there is one.
    pub(crate) fn get(&self) -> Option<Arc<Value>> {
        self.parsed
            .get_or_init(|| {
                let text = self.text.as_ref()?;
                serde_json::from_str(text).ok().map(Arc::new)
            })
            .clone()
    }
}

/// Why a child machine cannot be used, as the reference's exception class and message.
pub(crate) use crate::py::Exception as ChildLoadError;

impl ChildMachines {
    /// The entry named `name` (the first one, as in a YAML map with unique keys).
    pub(crate) fn get(&self, name: &str) -> Option<&ChildEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The lowered machine named `name`, loading it from disk if the compiler did not.
    pub(crate) fn machine(&self, name: &str) -> Result<&Machine, ChildLoadError> {
        let entry = self.get(name).ok_or_else(|| {
            ChildLoadError::new(
                "ValueError",
                format!("Unknown machine reference: {name}. Check 'machines:' section in config."),
            )
        })?;
        entry.machine().as_ref().map_err(Clone::clone)
    }
}

impl ChildEntry {
    fn machine(&self) -> &Result<Machine, ChildLoadError> {
        self.machine.get_or_init(|| match &self.path {
            Some(path) => load_at_run_time(path, self.inherited_profiles.as_ref()),
            None => Err(ChildLoadError::new(
                "ValueError",
                format!("machine `{}` could not be loaded", self.name),
            )),
        })
    }
}

/// Loads a child machine the compiler did not load (it runs the same checks first).
#[cfg(feature = "loader")]
fn load_at_run_time(
    path: &std::path::Path,
    profiles: Option<&Value>,
) -> Result<Machine, ChildLoadError> {
    crate::loader::child_at_run_time(path, profiles)
}

/// Without the loader, only the children compiled with their parent can run.
#[cfg(not(feature = "loader"))]
fn load_at_run_time(
    path: &std::path::Path,
    _profiles: Option<&Value>,
) -> Result<Machine, ChildLoadError> {
    Err(ChildLoadError::new(
        "ValueError",
        format!(
            "machine `{}` was not compiled with its parent, and flatmachines was built without \
             the `loader` feature that reads machines at run time",
            path.display()
        ),
    ))
}

/// `mode:` of a parallel `machine:` list or a `foreach:`; the IR's type.
pub(crate) use flatmachines_ir::Mode;

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

/// `settings.max_concurrent_children` of a machine, if set to a positive integer.
pub(crate) fn concurrency_limit(def: &MachineDef) -> Option<usize> {
    def.limits.max_concurrent_children.map(|n| n as usize)
}

#[cfg(all(test, feature = "loader"))]
mod tests {
    use super::*;
    use std::path::Path;

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

    fn parent(dir: &Path) -> Machine {
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
        Machine::from_file(dir.join("machine.yml")).unwrap()
    }

    #[test]
    fn children_are_instantiated_once() {
        let dir = std::env::temp_dir().join(format!("fm-peers-{}", std::process::id()));
        let parent = parent(&dir);
        let a = parent.def.children.machine("a").unwrap();
        let b = parent.def.children.machine("b").unwrap();
        // The same file, instantiated once.
        assert!(Arc::ptr_eq(&a.def, &b.def));
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
            document: ChildDocument::default(),
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

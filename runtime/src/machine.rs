//! A machine ready to run: the IR ([`flatmachines_ir`]) instantiated for the executor. Values
//! become JSON, templates are prepared once, and transitions are either interpreted from their
//! condition text or — for a compiled machine — decided by the generated transition function.
//!
//! Nothing here interprets YAML: the compiler's one lowering pass produced the IR, at compile
//! time for a compiled machine, or through the loader (feature `loader`) at run time.

use crate::agent::AgentSpec;
use crate::condition::{Condition, Engine};
use crate::error::Error;
use crate::executor::checkpoint::PersistenceDef;
use crate::peers::{Call, ChildDocument, ChildEntry, ChildMachines, PeerCalls};
use crate::template::{Prepared, Templates};
use flatmachines_ir::{self as ir, Json};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// A compiled machine's transition function: the state the machine moves to from state
/// `from` (by index) given the context, as the executor chooses it. With `loop_exit`, only
/// the conditional transitions a tool loop checks after each tool call
/// ([`ir::StateIr::loop_exits`]).
pub type NextFn = fn(from: usize, context: &Value, loop_exit: bool) -> Result<Option<usize>, Error>;

/// A loaded, checked machine. Cheap to clone; share it between runs.
#[derive(Clone)]
pub struct Machine {
    pub(crate) def: Arc<MachineDef>,
}

/// A summary: name, states, agent and child names. The definition itself is not printed: its
/// profiles, agent configs and stored config text may hold credentials written in the YAML.
impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = &self.def;
        let mut agents: Vec<&str> = d.agents.keys().map(String::as_str).collect();
        agents.sort_unstable();
        f.debug_struct("Machine")
            .field("name", &d.name)
            .field("spec_version", &d.spec_version)
            .field(
                "states",
                &d.states.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            )
            .field("initial", &d.states.get(d.initial).map(|s| s.name.as_str()))
            .field("agents", &agents)
            .field("compiled", &d.next.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub(crate) struct MachineDef {
    pub name: String,
    pub spec_version: String,
    pub config_dir: PathBuf,
    pub context: Value,
    pub agents: HashMap<String, AgentSpec>,
    pub profiles: Option<Value>,
    pub settings: Value,
    pub limits: ir::Limits,
    pub states: Vec<StateDef>,
    pub initial: usize,
    pub templates: Templates,
    /// `data.hooks`, resolved through the runtime's registry when a run starts.
    pub hooks: Option<Value>,
    /// `data.persistence` (`executor/checkpoint.rs`).
    pub persistence: PersistenceDef,
    /// Agent executors by (runtime id, agent name): adapters build them once per machine and
    /// runtime, not once per run (the `flatagent` executor parses its prompt templates).
    pub executors: ExecutorCache,
    /// The machines of `data.machines` (`peers.rs`).
    pub children: ChildMachines,
    /// The generated transition function of a compiled machine; `None`: the executor
    /// interprets [`StateDef::transitions`].
    pub next: Option<NextFn>,
}

/// See [`MachineDef::executors`].
#[derive(Default)]
pub(crate) struct ExecutorCache(
    pub std::sync::Mutex<HashMap<(u64, String), Arc<dyn crate::agent::AgentExecutor>>>,
);

impl std::fmt::Debug for ExecutorCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExecutorCache")
    }
}

#[derive(Debug)]
pub(crate) struct StateDef {
    pub name: String,
    pub is_final: bool,
    pub agent: Option<String>,
    pub execution: ir::Execution,
    /// `tool_loop:` guardrails, when the state runs a tool loop.
    pub tool_loop: Option<ir::ToolLoop>,
    /// Interpreted [`ir::StateIr::loop_exits`] (empty for a compiled machine).
    pub loop_exits: Vec<Transition>,
    /// `input`, as templates.
    pub input: Option<Value>,
    /// `input`, prepared for rendering at every step.
    pub input_plan: Option<Prepared>,
    pub output_to_context: Vec<(String, Prepared)>,
    /// A final state's non-empty `output` map, prepared.
    pub output: Option<Prepared>,
    /// Interpreted transitions (empty for a compiled machine, whose [`MachineDef::next`]
    /// decides).
    pub transitions: Vec<Transition>,
    pub on_error: Option<OnErrorDef>,
    pub action: Option<String>,
    pub wait_for: Option<Value>,
    pub launch: Vec<String>,
    /// `machine:` / `foreach:` and their options, `launch_input` (`peers.rs`).
    pub peers: PeerCalls,
}

#[derive(Debug)]
pub(crate) struct Transition {
    pub condition: Condition,
    /// The condition's text, for error messages.
    pub source: String,
    pub target: usize,
}

#[derive(Debug)]
pub(crate) enum OnErrorDef {
    State(usize),
    Map(Vec<(String, usize)>),
}

impl Machine {
    /// Loads and checks a machine file (feature `loader`). A machine with errors is refused
    /// with the same rendered diagnostics `flatmachines check` prints.
    ///
    /// # Errors
    /// [`Error::Invalid`] with the diagnostics.
    #[cfg(feature = "loader")]
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Machine, Error> {
        crate::loader::from_file(path.as_ref())
    }

    /// Loads a machine file that may have errors, as the Python reference would run it
    /// (feature `loader`; `flatmachines run --allow-errors`). Errors that have a run-time
    /// behaviour in the reference are kept for run time and behave as there (an unknown agent
    /// fails its state with `ValueError: Unknown agent: <name>`, which `on_error` can catch;
    /// an unknown transition target is entered as an empty state that ends the run; see
    /// `flatmachines_compiler::lenient`). Returns the machine and the diagnostics rendered
    /// with those errors shown as warnings, for printing before the run.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the machine has an error no run can get past (a file that is
    /// not YAML, no states, two initial states, …).
    #[cfg(feature = "loader")]
    pub fn from_file_allowing_errors(
        path: impl AsRef<std::path::Path>,
    ) -> Result<(Machine, String), Error> {
        crate::loader::from_file_allowing_errors(path.as_ref())
    }

    /// Loads and checks machine YAML given as text (feature `loader`); references resolve
    /// against `dir`.
    ///
    /// # Errors
    /// [`Error::Invalid`] with the diagnostics.
    #[cfg(feature = "loader")]
    pub fn from_yaml(text: &str, dir: impl AsRef<std::path::Path>) -> Result<Machine, Error> {
        crate::loader::from_yaml(text, dir.as_ref())
    }

    /// The machine's name (`data.name`).
    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// State names, in YAML order.
    pub fn state_names(&self) -> impl Iterator<Item = &str> {
        self.def.states.iter().map(|s| s.name.as_str())
    }

    /// Instantiates the entry machine of `bundle` with its children. `compiled` holds the
    /// generated transition function of each machine of the bundle (by index); without it,
    /// conditions are interpreted.
    pub(crate) fn from_bundle(
        bundle: &ir::Bundle,
        compiled: Option<&'static [NextFn]>,
    ) -> Result<Machine, Error> {
        Machine::from_bundle_inheriting(bundle, compiled, None)
    }

    /// [`Machine::from_bundle`] for a machine run with errors allowed: a condition that does
    /// not compile fails when it is evaluated instead of refusing the machine (`lenient`).
    #[cfg(feature = "loader")]
    pub(crate) fn from_bundle_lenient(bundle: &ir::Bundle) -> Result<Machine, Error> {
        Builder {
            bundle,
            compiled: None,
            memo: HashMap::new(),
            stack: Vec::new(),
            lenient: true,
        }
        .build(0, None, None)
    }

    /// [`Machine::from_bundle`] for a child loaded at run time, which falls back to its
    /// parent's profiles when it has none of its own.
    pub(crate) fn from_bundle_inheriting(
        bundle: &ir::Bundle,
        compiled: Option<&'static [NextFn]>,
        profiles: Option<&Value>,
    ) -> Result<Machine, Error> {
        Builder {
            bundle,
            compiled,
            memo: HashMap::new(),
            stack: Vec::new(),
            lenient: false,
        }
        .build(0, None, profiles)
    }
}

/// Instantiates the machines of a bundle, each (with the profiles it inherits) once.
struct Builder<'b> {
    bundle: &'b ir::Bundle,
    compiled: Option<&'static [NextFn]>,
    /// By machine and the profiles it inherits (`None`: it has its own, or none anywhere).
    memo: HashMap<(usize, Option<u32>), Machine>,
    /// Machines being built; a reference back into one of them is left to run time (the
    /// checks report such cycles, so only machines built despite errors get here).
    stack: Vec<usize>,
    /// Keep conditions that do not compile, failing at evaluation (`--allow-errors`).
    lenient: bool,
}

impl Builder<'_> {
    /// `inherited`: the effective profiles of the parent (the reference falls back to them when
    /// a child has no `profiles.yml` of its own), by bundle index.
    fn build(
        &mut self,
        idx: usize,
        inherited: Option<u32>,
        inherited_value: Option<&Value>,
    ) -> Result<Machine, Error> {
        let m = self.bundle.machines.get(idx).ok_or_else(|| {
            Error::invalid("<unknown>", "FM0003", "the machine could not be loaded")
        })?;
        let next = self.compiled.and_then(|fns| fns.get(idx).copied());
        let mut def = instantiate(self.bundle, m, next, self.lenient)?;
        let effective = m.profiles.or(inherited);
        if def.profiles.is_none() {
            def.profiles = inherited_value.cloned();
        }
        self.stack.push(idx);
        let mut entries = Vec::with_capacity(m.machines.len());
        for child in m.machines.iter() {
            let machine = OnceLock::new();
            let mut document = child
                .inline
                .as_ref()
                .map(|d| ChildDocument::from_value(d.to_value()));
            if let Some(cid) = child.machine.map(|c| c as usize)
                && !self.stack.contains(&cid)
                && let Some(c) = self.bundle.machines.get(cid)
            {
                document.get_or_insert_with(|| ChildDocument::from_text(c.document.clone()));
                let key = (cid, c.profiles.map_or(effective, |_| None));
                let built = match self.memo.get(&key) {
                    Some(done) => done.clone(),
                    None => {
                        let built = self.build(cid, effective, def.profiles.as_ref())?;
                        self.memo.insert(key, built.clone());
                        built
                    }
                };
                let _ = machine.set(Ok(built));
            }
            entries.push(ChildEntry {
                name: child.name.to_string(),
                path: child.path.as_ref().map(|p| PathBuf::from(&**p)),
                document: document.unwrap_or_default(),
                machine,
                inherited_profiles: def.profiles.clone(),
            });
        }
        self.stack.pop();
        def.children = ChildMachines { entries };
        Ok(Machine { def: Arc::new(def) })
    }
}

fn index(i: u32) -> usize {
    i as usize
}

/// One machine of the IR in the executor's form.
fn instantiate(
    bundle: &ir::Bundle,
    m: &ir::MachineIr,
    next: Option<NextFn>,
    lenient: bool,
) -> Result<MachineDef, Error> {
    let engine = m.engine;
    // A compiled machine's generated function decides; only interpreted ones parse their
    // conditions (once, here).
    let conditions: Vec<Condition> = if next.is_some() {
        Vec::new()
    } else {
        m.conditions
            .iter()
            .map(|src| match Condition::compile(src, engine) {
                Err(e) if lenient => Ok(Condition::Invalid(e)),
                compiled => compiled.map_err(|e| {
                    // The code the compiler gives the same defect.
                    let code = match engine {
                        Engine::Cel => "FM0303",
                        Engine::Simple => "FM0302",
                    };
                    Error::invalid(&*m.name, code, format!("condition `{src}`: {e}"))
                }),
            })
            .collect::<Result<_, _>>()?
    };
    let profiles_of = |i: Option<u32>| {
        i.and_then(|i| bundle.profiles.get(index(i)))
            .map(Json::to_value)
    };
    let dir = PathBuf::from(&*m.dir);
    let states = m
        .states
        .iter()
        .map(|s| instantiate_state(s, next.is_none(), &conditions, &m.conditions))
        .collect();
    Ok(MachineDef {
        name: m.name.to_string(),
        spec_version: m.spec_version.to_string(),
        context: m.context.to_value(),
        agents: m
            .agents
            .iter()
            .map(|a| {
                let spec = AgentSpec {
                    ty: a.ty.to_string(),
                    reference: a.reference.as_ref().map(|r| r.to_string()),
                    config: a.config.as_ref().map(Json::to_value),
                    dir: PathBuf::from(&*a.dir),
                    profiles: profiles_of(a.profiles),
                };
                (a.name.to_string(), spec)
            })
            .collect(),
        profiles: profiles_of(m.profiles),
        settings: m.settings.to_value(),
        limits: m.limits,
        states,
        initial: index(m.initial),
        templates: Templates::new(),
        hooks: m.hooks.as_ref().map(Json::to_value),
        persistence: PersistenceDef::from_ir(&m.persistence),
        executors: ExecutorCache::default(),
        children: ChildMachines::default(),
        next,
        config_dir: dir,
    })
}

fn instantiate_state(
    s: &ir::StateIr,
    interpreted: bool,
    conditions: &[Condition],
    texts: &[ir::Str],
) -> StateDef {
    let interpret = |list: &[ir::Transition]| -> Vec<Transition> {
        if !interpreted {
            return Vec::new();
        }
        list.iter()
            .map(|t| Transition {
                condition: t
                    .condition
                    .map_or(Condition::Always, |c| conditions[index(c)].clone()),
                source: t
                    .condition
                    .map_or_else(String::new, |c| texts[index(c)].to_string()),
                target: index(t.target),
            })
            .collect()
    };
    let transitions = interpret(&s.transitions);
    let loop_exits = interpret(&s.loop_exits);
    let on_error = s.on_error.as_ref().map(|o| match o {
        ir::OnError::State(t) => OnErrorDef::State(index(*t)),
        ir::OnError::Map(m) => {
            OnErrorDef::Map(m.iter().map(|(k, t)| (k.to_string(), index(*t))).collect())
        }
    });
    let call = s.call.as_ref().map(|c| match c {
        ir::Call::Single(name) => Call::Single(name.to_string()),
        ir::Call::List(list) => Call::List(
            list.iter()
                .map(|(n, i)| (n.to_string(), i.as_ref().map(Json::to_value)))
                .collect(),
        ),
        ir::Call::Foreach {
            items,
            item,
            key,
            machine,
        } => Call::Foreach {
            items: items.to_value(),
            item: item.to_string(),
            key: key.as_ref().map(Json::to_value),
            machine: machine.to_string(),
        },
    });
    let input = s.input.as_ref().map(Json::to_value);
    StateDef {
        name: s.name.to_string(),
        is_final: s.is_final,
        agent: s.agent.as_ref().map(|a| a.to_string()),
        execution: s.execution.clone(),
        tool_loop: s.tool_loop.clone(),
        loop_exits,
        input_plan: input.as_ref().map(Prepared::map),
        input,
        output_to_context: s
            .output_to_context
            .iter()
            .map(|(k, v)| (k.to_string(), Prepared::value(&v.to_value())))
            .collect(),
        output: s.output.as_ref().map(|o| Prepared::map(&o.to_value())),
        transitions,
        on_error,
        action: s.action.as_ref().map(|a| a.to_string()),
        wait_for: s.wait_for.as_ref().map(Json::to_value),
        launch: s.launch.iter().map(|l| l.to_string()).collect(),
        peers: PeerCalls {
            call,
            mode: s.mode,
            timeout: s.timeout,
            launch_input: s.launch_input.as_ref().map(Json::to_value),
        },
    }
}

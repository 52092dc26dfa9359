//! A machine ready to run: the checked model lowered to what the executor needs, with
//! conditions compiled and templates cached once per machine.

use crate::agent::AgentSpec;
use crate::condition::{Condition, Engine, NativeCondition};
use crate::error::Error;
use crate::template::{Prepared, Templates};
use flatmachines_compiler::load::{Input, LoadOptions, LoadedMachine, MachineId, Project};
use flatmachines_compiler::model::machine::{AgentRef, MachineCall, OnError, State};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A loaded, checked machine. Cheap to clone; share it between runs.
#[derive(Clone, Debug)]
pub struct Machine {
    pub(crate) def: Arc<MachineDef>,
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
    pub states: Vec<StateDef>,
    pub initial: usize,
    pub templates: Templates,
    /// `data.hooks`, resolved through the runtime's registry when a run starts.
    pub hooks: Option<Value>,
    /// `data.persistence`, lowered (`executor/checkpoint.rs`).
    pub persistence: crate::executor::checkpoint::PersistenceDef,
    /// Agent executors by (runtime id, agent name): adapters build them once per machine and
    /// runtime, not once per run (the `flatagent` executor parses its prompt templates).
    pub executors: ExecutorCache,
    /// The machines of `data.machines`, lowered with this one (`peers.rs`).
    pub children: crate::peers::ChildMachines,
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
    pub execution: ExecutionDef,
    pub tool_loop: bool,
    pub input: Option<Value>,
    /// `input`, prepared for rendering at every step.
    pub input_plan: Option<Prepared>,
    pub output_to_context: Vec<(String, Prepared)>,
    /// A final state's non-empty `output` map, prepared.
    pub output: Option<Prepared>,
    pub transitions: Vec<Transition>,
    pub on_error: Option<OnErrorDef>,
    pub action: Option<String>,
    pub wait_for: Option<Value>,
    pub has_children: bool,
    pub launch: Vec<String>,
    /// `machine:` / `foreach:` and their options, `launch_input` (`peers.rs`).
    pub peers: crate::peers::PeerCalls,
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

/// `execution:` with defaults applied (`execution.md` §11).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ExecutionDef {
    Default,
    Retry {
        backoffs: Vec<f64>,
        jitter: f64,
        retry_on_empty: bool,
    },
    Parallel {
        n_samples: usize,
    },
    MdapVoting {
        k_margin: usize,
        max_candidates: usize,
        max_response_tokens: Option<usize>,
    },
}

impl Machine {
    /// Loads and checks a machine file. A machine with errors is refused with the same rendered
    /// diagnostics `flatmachines check` prints.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Machine, Error> {
        let path = path.as_ref();
        let options = LoadOptions {
            display_base: std::env::current_dir().ok(),
        };
        let checked = flatmachines_compiler::check_input(Input::File(path), &options);
        if checked.has_errors() {
            return Err(Error::Invalid {
                machine: path.display().to_string(),
                diagnostics: checked.render(),
            });
        }
        Machine::from_project(&checked.project, MachineId(0))
    }

    /// Loads and checks machine YAML given as text; references resolve against `dir`.
    pub fn from_yaml(text: &str, dir: impl AsRef<Path>) -> Result<Machine, Error> {
        let path = dir.as_ref().join("machine.yml");
        let checked = flatmachines_compiler::check_input(
            Input::Inline {
                text: text.to_string(),
                path: &path,
                origin: (1, 1),
            },
            &LoadOptions::default(),
        );
        if checked.has_errors() {
            return Err(Error::Invalid {
                machine: "<inline>".into(),
                diagnostics: checked.render(),
            });
        }
        Machine::from_project(&checked.project, MachineId(0))
    }

    /// The machine's name (`data.name`).
    pub fn name(&self) -> &str {
        &self.def.name
    }

    /// State names, in YAML order.
    pub fn state_names(&self) -> impl Iterator<Item = &str> {
        self.def.states.iter().map(|s| s.name.as_str())
    }

    pub(crate) fn from_project(project: &Project, id: MachineId) -> Result<Machine, Error> {
        Machine::from_project_with(project, id, &[])
    }

    /// Lowers machine `id` of `project`; its `simple`-engine conditions whose text is in
    /// `natives` evaluate the compiled function instead of being interpreted.
    pub(crate) fn from_project_with(
        project: &Project,
        id: MachineId,
        natives: &'static [NativeCondition],
    ) -> Result<Machine, Error> {
        // With its child machines, lowered once and with the same compiled conditions.
        crate::peers::lower_tree(project, id, &|p, m| lower(p, m, natives))
    }
}

pub(crate) fn lower(
    project: &Project,
    m: &LoadedMachine,
    natives: &'static [NativeCondition],
) -> Result<MachineDef, Error> {
    let data = &m.doc.data;
    let name = data
        .name
        .as_ref()
        .map(|n| n.value.clone())
        .unwrap_or_else(|| "unnamed-machine".into());
    let engine = match data.expression_engine.as_ref().map(|e| e.value.as_str()) {
        Some("cel") => Engine::Cel,
        _ => Engine::Simple,
    };
    let index: HashMap<&str, usize> = data
        .states
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.value.as_str(), i))
        .collect();
    let lookup = |target: &str| -> Result<usize, Error> {
        index.get(target).copied().ok_or_else(|| Error::Invalid {
            machine: name.clone(),
            diagnostics: format!("unknown state `{target}`"),
        })
    };
    let mut states = Vec::with_capacity(data.states.len());
    for s in &data.states {
        states.push(lower_state(s, engine, &lookup, &name, natives)?);
    }
    let initial = data
        .states
        .iter()
        .position(State::is_initial)
        .or_else(|| index.get("start").copied())
        .unwrap_or(0);
    let profiles_of = |i: usize| {
        crate::agent::profiles_from_text(&project.sources.get(project.profiles[i].file).text)
    };
    // Agents whose document the compiler did not load resolve against the machine's folder.
    let at_machine = |ty: &str, reference: Option<String>, config: Option<Value>| AgentSpec {
        ty: ty.to_string(),
        reference,
        config,
        dir: m.dir.clone(),
        profiles: None,
    };
    let agents = data
        .agents
        .iter()
        .zip(&m.agents)
        .map(|(entry, resolved)| {
            let spec = match (&entry.reference, resolved) {
                (_, Some(agent_id)) => {
                    let a = &project.agents[agent_id.0];
                    AgentSpec {
                        ty: "flatagent".into(),
                        reference: None,
                        config: Some(a.doc.root.to_json()),
                        dir: a.dir.clone(),
                        profiles: a.profiles.and_then(profiles_of),
                    }
                }
                (AgentRef::Path(p), None) => at_machine("flatagent", Some(p.value.clone()), None),
                (AgentRef::Inline(n), None) => at_machine("flatagent", None, Some(n.to_json())),
                // Refused by the checks before a machine can be lowered.
                (AgentRef::Invalid(_), None) => at_machine("invalid", None, None),
                (
                    AgentRef::Typed {
                        ty,
                        reference,
                        config,
                        ..
                    },
                    None,
                ) => at_machine(
                    &ty.value,
                    reference.as_ref().map(|r| r.value.clone()),
                    config.as_ref().map(|c| c.to_json()),
                ),
            };
            (entry.name.value.clone(), spec)
        })
        .collect();
    let profiles = m.profiles.and_then(profiles_of);
    Ok(MachineDef {
        spec_version: m
            .doc
            .spec_version
            .as_ref()
            .map(|v| v.value.clone())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "2.6.0".into()),
        config_dir: m.dir.clone(),
        context: data
            .context
            .as_ref()
            .map(|c| c.to_json())
            .unwrap_or_else(|| Value::Object(Map::new())),
        agents,
        profiles,
        settings: data
            .settings
            .as_ref()
            .map(|s| s.to_json())
            .unwrap_or(Value::Null),
        states,
        initial,
        templates: Templates::new(),
        hooks: data.hooks.as_ref().map(|h| h.to_json()),
        persistence: crate::executor::checkpoint::lower_persistence(project, m),
        executors: ExecutorCache::default(),
        children: Default::default(),
        name,
    })
}

fn lower_state(
    s: &State,
    engine: Engine,
    lookup: &dyn Fn(&str) -> Result<usize, Error>,
    machine: &str,
    natives: &'static [NativeCondition],
) -> Result<StateDef, Error> {
    let mut transitions = Vec::new();
    for t in &s.transitions {
        let Some(to) = &t.to else { continue };
        if to.value.is_empty() {
            continue;
        }
        let src = t.condition.as_ref().map(|c| c.value.as_str()).unwrap_or("");
        let native = natives
            .iter()
            .find(|n| engine == Engine::Simple && n.source() == src);
        let cond = match native {
            Some(n) => Condition::Native(*n),
            None => Condition::compile(src, engine).map_err(|e| Error::Invalid {
                machine: machine.to_string(),
                diagnostics: format!("state `{}`: condition `{src}`: {e}", s.name.value),
            })?,
        };
        let always = cond.is_always();
        transitions.push(Transition {
            condition: cond,
            source: src.to_string(),
            target: lookup(&to.value)?,
        });
        if always {
            // Later entries can never be taken.
            break;
        }
    }
    let on_error = match &s.on_error {
        None => None,
        Some(OnError::State(t)) => Some(OnErrorDef::State(lookup(&t.value)?)),
        Some(OnError::Map(m)) => Some(OnErrorDef::Map(
            m.iter()
                .filter(|(_, t)| !t.value.is_empty())
                .map(|(k, t)| Ok((k.value.clone(), lookup(&t.value)?)))
                .collect::<Result<_, Error>>()?,
        )),
    };
    let execution = match &s.execution {
        None => ExecutionDef::Default,
        Some(e) => match e.ty.as_ref().map(|t| t.value.as_str()).unwrap_or("default") {
            "retry" => ExecutionDef::Retry {
                backoffs: e
                    .backoffs
                    .as_ref()
                    .map(|b| b.iter().map(|x| x.value).collect())
                    .unwrap_or_else(|| vec![2.0, 8.0, 16.0, 35.0]),
                jitter: e.jitter.as_ref().map(|j| j.value).unwrap_or(0.1),
                retry_on_empty: e.retry_on_empty.as_ref().is_some_and(|r| r.value),
            },
            "parallel" => ExecutionDef::Parallel {
                n_samples: e
                    .n_samples
                    .as_ref()
                    .map(|n| n.value.max(1) as usize)
                    .unwrap_or(3),
            },
            "mdap_voting" => ExecutionDef::MdapVoting {
                k_margin: e
                    .k_margin
                    .as_ref()
                    .map(|n| n.value.max(1) as usize)
                    .unwrap_or(3),
                max_candidates: e
                    .max_candidates
                    .as_ref()
                    .map(|n| n.value.max(1) as usize)
                    .unwrap_or(10),
                max_response_tokens: e
                    .max_response_tokens
                    .as_ref()
                    .map(|n| n.value.max(0) as usize),
            },
            _ => ExecutionDef::Default,
        },
    };
    let otc = s
        .output_to_context
        .as_ref()
        .and_then(|n| n.as_map())
        .map(|entries| {
            entries
                .iter()
                .filter_map(|(k, v)| Some((k.key_str()?, Prepared::value(&v.to_json()))))
                .collect()
        })
        .unwrap_or_default();
    let input = s.input.as_ref().map(|n| n.to_json());
    Ok(StateDef {
        name: s.name.value.clone(),
        is_final: s.is_final(),
        agent: s.agent.as_ref().map(|a| a.value.clone()),
        execution,
        tool_loop: s
            .tool_loop
            .as_ref()
            .is_some_and(|t| !matches!(t.value, flatmachines_compiler::yaml::Value::Bool(false))),
        input_plan: input.as_ref().map(Prepared::map),
        input,
        output_to_context: otc,
        output: s
            .output
            .as_ref()
            .map(|n| n.to_json())
            .filter(|o| o.as_object().is_some_and(|o| !o.is_empty()))
            .map(|o| Prepared::map(&o)),
        transitions,
        on_error,
        action: s.action.as_ref().map(|a| a.value.clone()),
        wait_for: s.wait_for.as_ref().map(|n| n.to_json()),
        has_children: s.foreach.is_some()
            || match &s.machine {
                Some(MachineCall::Single(_)) => true,
                Some(MachineCall::List(l)) => !l.is_empty(),
                None => false,
            },
        launch: s.launch.iter().map(|l| l.value.clone()).collect(),
        peers: crate::peers::lower_calls(s),
    })
}

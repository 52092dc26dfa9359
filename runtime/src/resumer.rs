//! [`ConfigStoreResumer`]: resumes a parked execution from its checkpoints and the config store
//! alone, with no machine file (`signals-and-dispatch.md` §5). The stored config embeds the
//! machine's agents and child machines, so nothing else is needed.

use crate::error::Error;
use crate::machine::Machine;
use crate::persistence::snapshot::load_latest;
use crate::persistence::{CheckpointBackend, ConfigStore};
use crate::runtime::{RunOptions, Runtime};
use crate::signals::Resumer;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

/// Resumes executions with machines read from a config store by the `config_hash` of their
/// latest checkpoint.
#[derive(Clone)]
pub struct ConfigStoreResumer {
    runtime: Runtime,
    checkpoints: Arc<dyn CheckpointBackend>,
    store: Arc<dyn ConfigStore>,
    dir: PathBuf,
}

impl std::fmt::Debug for ConfigStoreResumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigStoreResumer")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl ConfigStoreResumer {
    /// Runs resumed machines with `runtime` (give it the same checkpoint backend, lock and
    /// signal backend), reading snapshots from `checkpoints` and configs from `store`. Relative
    /// paths in a stored config resolve against the working directory
    /// ([`ConfigStoreResumer::with_dir`] to change it).
    pub fn new(
        runtime: Runtime,
        checkpoints: Arc<dyn CheckpointBackend>,
        store: Arc<dyn ConfigStore>,
    ) -> Self {
        ConfigStoreResumer {
            runtime,
            checkpoints,
            store,
            dir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        }
    }

    /// Relative paths of stored configs resolve against `dir`.
    pub fn with_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = dir.into();
        self
    }

    /// The machine of execution `id`, from the config its latest checkpoint names.
    pub async fn machine(&self, id: &str) -> Result<Machine, Error> {
        let failed = |machine: &str, message: String| Error::Resume {
            machine: machine.to_string(),
            execution_id: id.to_string(),
            message,
        };
        let latest = load_latest(self.checkpoints.as_ref(), id)
            .await
            .map_err(|source| Error::Persistence {
                machine: String::new(),
                execution_id: id.to_string(),
                source,
            })?
            .ok_or_else(|| Error::NotFound {
                machine: String::new(),
                execution_id: id.to_string(),
            })?;
        let name = latest.snapshot.machine_name.as_str();
        let hash = latest.snapshot.config_hash.as_deref().ok_or_else(|| {
            failed(
                name,
                format!(
                    "its checkpoint `{}` has no config_hash (the run had no config store)",
                    latest.key
                ),
            )
        })?;
        let raw = self
            .store
            .get(hash)
            .await
            .map_err(|e| failed(name, e.to_string()))?
            .ok_or_else(|| failed(name, format!("config {hash} is not in the config store")))?;
        Machine::from_yaml(&raw, &self.dir)
    }
}

#[async_trait::async_trait]
impl Resumer for ConfigStoreResumer {
    async fn resume(&self, execution_id: &str) -> Result<Value, Error> {
        let machine = self.machine(execution_id).await?;
        let options = RunOptions {
            resume_from: Some(execution_id.to_string()),
            ..RunOptions::default()
        };
        self.runtime.run_with(&machine, Value::Null, options).await
    }
}

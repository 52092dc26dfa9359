//! Checkpoints, locks and resume (`persistence.md`): which backend, lock and config store a run
//! uses, the snapshot written at each event, and restoring a run from its latest snapshot.

use super::{LaunchIntent, Run};
use crate::error::Error;
use crate::executor::env::Runtime;
use crate::machine::MachineDef;
use crate::persistence::local::{LocalFileBackend, LocalFileLock};
/// Re-exported for child machines, which check whether a child already has checkpoints.
pub(crate) use crate::persistence::snapshot::load_latest;
use crate::persistence::snapshot::{Latest, SnapshotView, write_snapshot_key, write_utc_now};
use crate::persistence::{
    BatchEntry, CheckpointBackend, ConfigStore, ExecutionLock, MemoryBackend, NoOpLock,
    PersistenceError, SnapshotFields,
};
use serde_json::{Map, Value};
use std::ops::Range;
use std::sync::Arc;

/// A checkpoint event (`persistence.md` §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    MachineStart,
    StateEnter,
    Execute,
    StateExit,
    MachineEnd,
    /// `wait_for` found no signal.
    Waiting,
    /// After each executed tool of a tool loop.
    ToolCall,
}

impl Event {
    const ALL: [Event; 7] = [
        Event::MachineStart,
        Event::StateEnter,
        Event::Execute,
        Event::StateExit,
        Event::MachineEnd,
        Event::Waiting,
        Event::ToolCall,
    ];

    /// The wire name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Event::MachineStart => "machine_start",
            Event::StateEnter => "state_enter",
            Event::Execute => "execute",
            Event::StateExit => "state_exit",
            Event::MachineEnd => "machine_end",
            Event::Waiting => "waiting",
            Event::ToolCall => "tool_call",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    fn from_name(name: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// The checkpoint backend kind chosen by `persistence.backend`; the IR's type.
use flatmachines_ir::Backend as BackendKind;

/// `data.persistence`, lowered (`config.md` §7).
#[derive(Debug)]
pub(crate) struct PersistenceDef {
    /// `enabled` (default true). `false` writes no checkpoint at all and takes no lock.
    pub enabled: bool,
    pub backend: BackendKind,
    /// `db_path` when set and non-empty.
    pub db_path: Option<String>,
    /// `checkpoint_on` as a bit set of [`Event`]s (default: all).
    pub events: u8,
    /// The config store's text of the machine: its document with agent file refs and child
    /// machine refs replaced by the documents they name, so the config store holds everything
    /// needed to resume (§7). Written by the compiler's lowering.
    config: String,
}

impl PersistenceDef {
    /// The raw config text for the config store: the self-contained document as JSON with a
    /// 2-space indent (JSON is YAML, so it loads back as a machine file).
    pub(crate) fn raw_config(&self) -> &str {
        &self.config
    }

    /// Whether `event` is checkpointed.
    pub(crate) fn checkpoints(&self, event: Event) -> bool {
        self.enabled && self.events & event.bit() != 0
    }
}

impl PersistenceDef {
    /// The executor's form of `data.persistence` (called once per machine by `machine.rs`).
    pub(crate) fn from_ir(p: &flatmachines_ir::Persistence) -> PersistenceDef {
        let events = match &p.checkpoint_on {
            None => Event::ALL.iter().fold(0, |acc, e| acc | e.bit()),
            Some(list) => list
                .iter()
                .filter_map(|e| Event::from_name(e))
                .fold(0, |acc, e| acc | e.bit()),
        };
        PersistenceDef {
            enabled: p.enabled,
            backend: p.backend,
            db_path: p.db_path.as_ref().map(|d| d.to_string()),
            events,
            config: p.config.to_string(),
        }
    }
}

/// The SQLite backend and lease lock `persistence.backend: sqlite` names.
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite {
    use crate::persistence::sqlite::{SqliteBackend, SqliteLeaseLock, resolve_db_path};
    use crate::persistence::{CheckpointBackend, ExecutionLock, PersistenceError};
    use std::sync::Arc;

    pub(super) fn backend(
        db_path: Option<&str>,
    ) -> Result<Arc<dyn CheckpointBackend>, PersistenceError> {
        Ok(Arc::new(SqliteBackend::open(resolve_db_path(db_path)?)?))
    }

    pub(super) fn lock(db_path: Option<&str>) -> Result<Arc<dyn ExecutionLock>, PersistenceError> {
        Ok(Arc::new(SqliteLeaseLock::open(resolve_db_path(db_path)?)?))
    }

    /// The `signals` table of the same database.
    pub(crate) fn signals(
        db_path: Option<&str>,
    ) -> Result<Arc<dyn crate::signals::SignalBackend>, PersistenceError> {
        Ok(Arc::new(crate::signals::SqliteSignalBackend::open(
            resolve_db_path(db_path)?,
        )?))
    }
}

/// Without the `sqlite` feature a machine that names SQLite fails to start, saying why.
#[cfg(not(feature = "sqlite"))]
pub(crate) mod sqlite {
    use crate::persistence::{CheckpointBackend, ExecutionLock, PersistenceError};
    use std::sync::Arc;

    fn unavailable() -> PersistenceError {
        PersistenceError::Unavailable {
            what: "persistence.backend: sqlite".into(),
            feature: "sqlite",
        }
    }

    pub(super) fn backend(_: Option<&str>) -> Result<Arc<dyn CheckpointBackend>, PersistenceError> {
        Err(unavailable())
    }

    pub(super) fn lock(_: Option<&str>) -> Result<Arc<dyn ExecutionLock>, PersistenceError> {
        Err(unavailable())
    }

    pub(crate) fn signals(
        _: Option<&str>,
    ) -> Result<Arc<dyn crate::signals::SignalBackend>, PersistenceError> {
        Err(unavailable())
    }
}

/// Components a child run shares with its parent (`parallel-and-launch.md` §1): the parent's
/// checkpoint backend, lock and config store objects. The child's own `checkpoint_on` (and
/// `enabled`) still apply.
#[derive(Clone, Default)]
pub(crate) struct Shared {
    backend: Option<Arc<dyn CheckpointBackend>>,
    lock: Option<Arc<dyn ExecutionLock>>,
    config_store: Option<Arc<dyn ConfigStore>>,
}

/// The persistence of one run.
pub(crate) struct Persist {
    /// The selected backend; `None` when the machine disables persistence and nothing was
    /// handed in (no snapshot is ever written then).
    backend: Option<Arc<dyn CheckpointBackend>>,
    lock: Arc<dyn ExecutionLock>,
    config_store: Option<Arc<dyn ConfigStore>>,
    /// Whether the lock is held (so release only releases what was taken).
    locked: bool,
    /// Set by the first persisted checkpoint that finds a config store (§7).
    config_hash: Option<String>,
    /// Snapshots encoded but not saved yet, back to back; reused for every snapshot of the
    /// run. Holds one snapshot except while a batch is pending (see
    /// [`Run::checkpoint_deferred`]).
    buf: Vec<u8>,
    /// The keys of the pending snapshots (the first `pending`; the rest are kept for their
    /// allocations) and where each one's bytes end in `buf`.
    keys: Vec<String>,
    ends: Vec<usize>,
    /// What each pending snapshot's indexed fields come from, so backends need not parse them.
    fields: Vec<PendingFields>,
    pending: usize,
    /// The event and step of the last pending snapshot, and the range of `buf` that
    /// [`SnapshotView::write`] reports as varying between snapshots of one step.
    last: Option<(Event, u64, Range<usize>)>,
}

/// The source of a pending snapshot's [`SnapshotFields`].
struct PendingFields {
    event: Event,
    state: Option<usize>,
    waiting_channel: Option<String>,
}

/// Where a resumed run continues.
pub(crate) enum Resumed {
    /// Re-enter this state (its index).
    At(usize),
    /// The execution had ended; this is its output.
    Finished(Value),
}

impl Persist {
    /// Chooses the backend, lock and config store (`persistence.md` §1): what the parent hands
    /// down, else what the runtime carries, else what `data.persistence` names.
    pub(crate) fn new(
        rt: &Runtime,
        def: &MachineDef,
        execution_id: &str,
        inherited: Option<Shared>,
    ) -> Result<Persist, Error> {
        let p = &def.persistence;
        let fail = |source: PersistenceError| Error::Persistence {
            machine: def.name.clone(),
            execution_id: execution_id.to_string(),
            source,
        };
        let (backend, lock, config_store) = match inherited {
            Some(shared) => {
                let backend = match shared.backend {
                    Some(b) => Some(b),
                    // The parent writes no checkpoints; an enabled child gets its own memory.
                    None if p.enabled => {
                        Some(Arc::new(MemoryBackend::new()) as Arc<dyn CheckpointBackend>)
                    }
                    None => None,
                };
                let lock = shared.lock.unwrap_or_else(|| Arc::new(NoOpLock));
                (backend, lock, shared.config_store)
            }
            None => {
                let backend: Option<Arc<dyn CheckpointBackend>> = match &rt.checkpoint_backend {
                    Some(b) => Some(b.clone()),
                    None if !p.enabled => None,
                    None => Some(match p.backend {
                        BackendKind::Memory => Arc::new(MemoryBackend::new()),
                        BackendKind::Local => Arc::new(
                            LocalFileBackend::new(LocalFileBackend::DEFAULT_DIR).map_err(fail)?,
                        ),
                        BackendKind::Sqlite => {
                            sqlite::backend(p.db_path.as_deref()).map_err(fail)?
                        }
                    }),
                };
                let lock: Arc<dyn ExecutionLock> = match &rt.lock {
                    Some(l) => l.clone(),
                    None if !p.enabled => Arc::new(NoOpLock),
                    None => match p.backend {
                        BackendKind::Memory => Arc::new(NoOpLock),
                        BackendKind::Local => {
                            Arc::new(LocalFileLock::new(LocalFileLock::DEFAULT_DIR).map_err(fail)?)
                        }
                        BackendKind::Sqlite => sqlite::lock(p.db_path.as_deref()).map_err(fail)?,
                    },
                };
                let config_store = rt
                    .config_store
                    .clone()
                    .or_else(|| backend.as_ref().and_then(|b| b.config_store()));
                (backend, lock, config_store)
            }
        };
        Ok(Persist {
            backend,
            lock,
            config_store,
            locked: false,
            config_hash: None,
            buf: Vec::new(),
            keys: Vec::new(),
            ends: Vec::new(),
            fields: Vec::new(),
            pending: 0,
            last: None,
        })
    }

    /// What a child run of this one shares (`parallel-and-launch.md` §1).
    pub(crate) fn shared(&self) -> Shared {
        Shared {
            backend: self.backend.clone(),
            lock: Some(self.lock.clone()),
            config_store: self.config_store.clone(),
        }
    }

    /// The checkpoint backend of this run, if it writes or reads checkpoints.
    pub(crate) fn backend(&self) -> Option<&Arc<dyn CheckpointBackend>> {
        self.backend.as_ref()
    }

    /// Takes the execution's lock for the whole run; refused → [`Error::Locked`].
    pub(crate) async fn acquire(&mut self, execution_id: &str, machine: &str) -> Result<(), Error> {
        match self.lock.acquire(execution_id).await {
            Ok(true) => {
                self.locked = true;
                Ok(())
            }
            Ok(false) => Err(Error::Locked {
                machine: machine.to_string(),
                execution_id: execution_id.to_string(),
            }),
            Err(source) => Err(Error::Persistence {
                machine: machine.to_string(),
                execution_id: execution_id.to_string(),
                source,
            }),
        }
    }

    /// Releases the lock; never fails the run.
    pub(crate) async fn release(&mut self, execution_id: &str) {
        if std::mem::take(&mut self.locked) {
            self.lock.release(execution_id).await;
        }
    }
}

/// Extra fields of `waiting` and `tool_call` snapshots.
#[derive(Default)]
pub(crate) struct Extras<'a> {
    /// The rendered channel of a `waiting` snapshot.
    pub waiting_channel: Option<&'a str>,
    /// `{chain, turns, tool_calls_count, loop_cost}` of a `tool_call` snapshot.
    pub tool_loop_state: Option<&'a Value>,
}

impl Run<'_> {
    /// Saves a snapshot for `event` if the machine checkpoints it. `state` is the state index
    /// (none for `machine_start`/`machine_end`). Snapshots still pending from
    /// [`Run::checkpoint_deferred`] are saved with it, in one batch.
    pub(crate) async fn checkpoint(
        &mut self,
        event: Event,
        state: Option<usize>,
        output: Option<&Value>,
    ) -> Result<(), Error> {
        self.checkpoint_with(event, state, output, Extras::default())
            .await
    }

    /// The `state_enter`, `execute` and `state_exit` snapshots of the main loop. A run with
    /// hooks saves each at once, like [`Run::checkpoint`]. A run without hooks only encodes
    /// them, and the main loop calls [`Run::flush_checkpoints`] right before each state's body
    /// runs, so the `state_exit` snapshot of step n and the `state_enter` and `execute`
    /// snapshots of step n+1 are saved together, in one transaction on backends that have
    /// transactions (one commit instead of three, which is most of a checkpoint's cost on
    /// SQLite). A final state's `state_exit` goes with `machine_end` in the same way.
    ///
    /// Why this keeps the durability of separate saves: every snapshot is still stored before
    /// anything that follows it can have an effect outside the run. Between the `state_exit`
    /// of step n and the body of step n+1, a run without hooks only evaluates transition
    /// conditions and updates `context.machine`, which nothing outside the process observes
    /// (the `on_state_exit`, `on_transition` and `on_state_enter` hooks are the only code that
    /// could run there, hence the condition). A crash before the batch is committed resumes
    /// from the `execute` snapshot of step n, which re-runs state n from the top; with separate
    /// saves, a crash there could at most have left the `state_exit` snapshot of step n, which
    /// the reference (and this runtime) resume by re-running state n as well. A crash after the
    /// commit resumes from step n+1's `execute` snapshot, as with separate saves. A body never
    /// starts with a snapshot pending, so mid-state snapshots (the outbox of `launch:`, tool
    /// calls) are saved at once and in order. A run that completes writes the same keys and
    /// bytes as with separate saves; only the `created_at` times of the SQLite rows differ.
    pub(crate) async fn checkpoint_deferred(
        &mut self,
        event: Event,
        state: Option<usize>,
        output: Option<&Value>,
    ) -> Result<(), Error> {
        if self.hooks.is_some() {
            return self.checkpoint(event, state, output).await;
        }
        // Nothing runs between a step's `state_enter` and `execute` snapshots here, so the
        // second is the first with another time and event: copied rather than encoded again.
        if event == Event::Execute
            && self.def.persistence.checkpoints(event)
            && let Some((Event::StateEnter, step, varying)) = self.persist.last.clone()
            && step == self.step
        {
            self.copy_last(event, state, varying);
            return Ok(());
        }
        self.encode(event, state, output, Extras::default()).await
    }

    /// Adds a copy of the last pending snapshot with the current time and `event`.
    fn copy_last(&mut self, event: Event, state: Option<usize>, varying: Range<usize>) {
        let persist = &mut self.persist;
        let start = match persist.pending {
            0 | 1 => 0,
            n => persist.ends[n - 2],
        };
        let end = persist.buf.len();
        let buf = &mut persist.buf;
        buf.extend_from_within(start..varying.start);
        let new_start = buf.len();
        buf.push(b'"');
        write_utc_now(buf);
        buf.extend_from_slice(b"\", \"event\": \"");
        buf.extend_from_slice(event.name().as_bytes());
        buf.push(b'"');
        let new_varying = new_start..buf.len();
        buf.extend_from_within(varying.end..end);
        if cfg!(debug_assertions) {
            // The copy must be what encoding would give, times aside.
            let mut fresh = Vec::new();
            let v = self
                .write_snapshot(event, state, None, Extras::default(), &mut fresh)
                .unwrap_or_default();
            let copy = &self.persist.buf[end..];
            let offset = new_varying.start - end;
            assert_eq!(fresh[..v.start], copy[..offset], "copied snapshot prefix");
            assert_eq!(
                fresh[v.end..],
                copy[new_varying.end - end..],
                "copied snapshot suffix"
            );
        }
        self.push_pending(event, state, None, new_varying);
    }

    /// Saves the snapshots left pending by [`Run::checkpoint_deferred`], if any: the main loop
    /// calls this before each state's body and when the run stops.
    pub(crate) async fn flush_checkpoints(&mut self) -> Result<(), Error> {
        let persist = &mut self.persist;
        if persist.pending == 0 {
            return Ok(());
        }
        // Snapshots are only encoded when there is a backend.
        let Some(backend) = &persist.backend else {
            return Ok(());
        };
        let def = self.def;
        let mut start = 0;
        let mut entries = persist.keys[..persist.pending]
            .iter()
            .zip(&persist.ends)
            .zip(&persist.fields)
            .map(|((key, &end), f)| {
                let snapshot = &persist.buf[start..end];
                start = end;
                let fields = SnapshotFields {
                    machine_name: &def.name,
                    event: Some(f.event.name()),
                    current_state: current_state_name(def, f.event, f.state),
                    waiting_channel: f.waiting_channel.as_deref(),
                };
                debug_assert_fields_match(snapshot, &fields);
                BatchEntry::with_fields(key, snapshot, fields)
            });
        // The main loop's batches have at most four snapshots (`state_exit`, `state_enter`,
        // `execute`, or `state_exit` and `machine_end`): no allocation.
        let mut inline = [BatchEntry::new("", &[]); 4];
        let heap: Vec<BatchEntry<'_>>;
        let batch = if persist.pending <= inline.len() {
            for (slot, entry) in inline.iter_mut().zip(&mut entries) {
                *slot = entry;
            }
            &inline[..persist.pending]
        } else {
            heap = entries.collect();
            &heap[..]
        };
        let result = backend.save_checkpoints(&self.execution_id, batch).await;
        persist.buf.clear();
        persist.ends.clear();
        persist.fields.clear();
        persist.pending = 0;
        persist.last = None;
        result.map_err(|source| Error::Persistence {
            machine: self.def.name.clone(),
            execution_id: self.execution_id.clone(),
            source,
        })
    }

    /// Whether a snapshot for `event` would be saved (so its extras are worth building).
    pub(crate) fn checkpoints(&self, event: Event) -> bool {
        self.def.persistence.checkpoints(event) && self.persist.backend.is_some()
    }

    /// [`Run::checkpoint`] with the extra fields of `waiting` / `tool_call` snapshots.
    pub(crate) async fn checkpoint_with(
        &mut self,
        event: Event,
        state: Option<usize>,
        output: Option<&Value>,
        extras: Extras<'_>,
    ) -> Result<(), Error> {
        self.encode(event, state, output, extras).await?;
        self.flush_checkpoints().await
    }

    /// Adds the snapshot for `event` to the pending ones, if the machine checkpoints it.
    async fn encode(
        &mut self,
        event: Event,
        state: Option<usize>,
        output: Option<&Value>,
        extras: Extras<'_>,
    ) -> Result<(), Error> {
        let def = self.def;
        if !def.persistence.checkpoints(event) || self.persist.backend.is_none() {
            return Ok(());
        }
        let fail = |source: PersistenceError| Error::Persistence {
            machine: def.name.clone(),
            execution_id: self.execution_id.clone(),
            source,
        };
        if self.persist.config_hash.is_none()
            && let Some(store) = &self.persist.config_store
        {
            let hash = store
                .put(def.persistence.raw_config())
                .await
                .map_err(fail)?;
            self.persist.config_hash = Some(hash);
        }
        let mut buf = std::mem::take(&mut self.persist.buf);
        let waiting_channel = extras.waiting_channel;
        let varying = self.write_snapshot(event, state, output, extras, &mut buf);
        self.persist.buf = buf;
        // A snapshot too deep to be read back is not written (`MAX_SNAPSHOT_DEPTH`).
        let varying = varying.map_err(|source| Error::Persistence {
            machine: def.name.clone(),
            execution_id: self.execution_id.clone(),
            source,
        })?;
        self.push_pending(event, state, waiting_channel, varying);
        Ok(())
    }

    /// Records the snapshot just written at the end of `buf` as pending.
    fn push_pending(
        &mut self,
        event: Event,
        state: Option<usize>,
        waiting_channel: Option<&str>,
        varying: Range<usize>,
    ) {
        let persist = &mut self.persist;
        persist.fields.push(PendingFields {
            event,
            state,
            waiting_channel: waiting_channel.map(str::to_owned),
        });
        if persist.keys.len() == persist.pending {
            persist.keys.push(String::new());
        }
        write_snapshot_key(
            &mut persist.keys[persist.pending],
            &self.execution_id,
            self.step,
            event.name(),
        );
        persist.ends.push(persist.buf.len());
        persist.pending += 1;
        persist.last = Some((event, self.step, varying));
    }

    /// Encodes the snapshot for `event` into `out`; returns what [`SnapshotView::write`]
    /// does, or, writing nothing, why the snapshot could not be read back.
    fn write_snapshot(
        &self,
        event: Event,
        state: Option<usize>,
        output: Option<&Value>,
        extras: Extras<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Range<usize>, PersistenceError> {
        let def = self.def;
        let current_state = current_state_name(def, event, state);
        let pending: Option<Vec<Value>> = if self.pending_launches.is_empty() {
            None
        } else {
            Some(
                self.pending_launches
                    .iter()
                    .map(|i| serde_json::to_value(i).unwrap_or(Value::Null))
                    .collect(),
            )
        };
        let view = SnapshotView {
            execution_id: &self.execution_id,
            machine_name: &def.name,
            spec_version: &def.spec_version,
            current_state,
            context: &self.context,
            step: self.step,
            created_at: None,
            event: Some(event.name()),
            output,
            total_api_calls: Some(self.total_api_calls),
            total_cost: Some(self.total_cost),
            parent_execution_id: self.parent_execution_id.as_deref(),
            pending_launches: pending.as_deref(),
            waiting_channel: extras.waiting_channel,
            tool_loop_state: extras.tool_loop_state,
            config_hash: self.persist.config_hash.as_deref(),
        };
        view.check_depth()?;
        Ok(view.write(out))
    }
}

/// In debug builds (the test suites), checks that the fields handed to the backend are what
/// decoding the snapshot gives, as [`SnapshotFields`] requires.
fn debug_assert_fields_match(snapshot: &[u8], fields: &SnapshotFields<'_>) {
    if cfg!(debug_assertions) {
        let parsed = crate::persistence::snapshot_fields_of(snapshot);
        assert_eq!(
            parsed.as_ref().map(|m| (
                m.machine_name.as_deref(),
                m.event.as_deref(),
                m.current_state.as_deref(),
                m.waiting_channel.as_deref()
            )),
            Ok((
                Some(fields.machine_name),
                fields.event,
                Some(fields.current_state),
                fields.waiting_channel
            )),
            "snapshot fields"
        );
    }
}

/// The `current_state` of the snapshot for `event` in `state`.
fn current_state_name(def: &MachineDef, event: Event, state: Option<usize>) -> &str {
    match (event, state) {
        // The reference stores the literal "start" here; the real name resumes correctly.
        (Event::MachineStart, _) => def.states[def.initial].name.as_str(),
        (Event::MachineEnd, _) => "end",
        (_, Some(i)) => def.states[i].name.as_str(),
        (_, None) => "unknown",
    }
}

/// Restores `run` from the latest checkpoint of `execution_id` (`persistence.md` §8).
pub(crate) async fn resume(run: &mut Run<'_>, execution_id: &str) -> Result<Resumed, Error> {
    let def = run.def;
    let not_found = || Error::NotFound {
        machine: def.name.clone(),
        execution_id: execution_id.to_string(),
    };
    let Some(backend) = run.persist.backend.clone() else {
        return Err(not_found());
    };
    let Latest { key, snapshot } = load_latest(backend.as_ref(), execution_id)
        .await
        .map_err(|source| Error::Persistence {
            machine: def.name.clone(),
            execution_id: execution_id.to_string(),
            source,
        })?
        .ok_or_else(not_found)?;
    let corrupt = |message: String| Error::Persistence {
        machine: def.name.clone(),
        execution_id: execution_id.to_string(),
        source: PersistenceError::Corrupt {
            location: key.clone(),
            message,
        },
    };
    if snapshot.machine_name != def.name {
        tracing::warn!(
            "resuming execution {execution_id} of machine `{}` with machine `{}`",
            snapshot.machine_name,
            def.name
        );
    }
    run.context = snapshot.context;
    run.step = snapshot.step;
    run.total_api_calls = snapshot.total_api_calls.unwrap_or(0);
    run.total_cost = snapshot.total_cost.unwrap_or(0.0);
    run.pending_launches = snapshot
        .pending_launches
        .unwrap_or_default()
        .into_iter()
        .map(serde_json::from_value::<LaunchIntent>)
        .collect::<Result<_, _>>()
        .map_err(|e| corrupt(format!("pending_launches: {e}")))?;
    // The executor re-launches intents that never started (`parallel-and-launch.md` §6) right
    // after this returns, before it acts on `Resumed::Finished`, as the reference does.
    let event = snapshot.event.as_deref();
    if event == Some(Event::MachineEnd.name()) {
        tracing::info!("execution {execution_id} already completed");
        return Ok(Resumed::Finished(
            snapshot.output.unwrap_or_else(|| Value::Object(Map::new())),
        ));
    }
    let index = if event == Some(Event::MachineStart.name()) {
        // The reference writes "start" whatever the initial state is called.
        def.initial
    } else {
        def.states
            .iter()
            .position(|s| s.name == snapshot.current_state)
            .ok_or_else(|| Error::Resume {
                machine: def.name.clone(),
                execution_id: execution_id.to_string(),
                message: format!(
                    "its latest checkpoint `{key}` is in state `{}`, which this machine does not have",
                    snapshot.current_state
                ),
            })?
    };
    // Rebuild `context.machine` in place (its position in the context is kept).
    if let Some(ctx) = run.context.as_object_mut()
        && let Some(slot) = ctx.get_mut("machine")
    {
        *slot = Value::Null;
    }
    run.inject_metadata(&def.states[index].name);
    // Deviation: a tool loop continues from its last checkpointed tool call.
    if event == Some(Event::ToolCall.name())
        && let Some(saved) = snapshot.tool_loop_state
    {
        run.resumed_tool_loop = Some((index, saved));
    }
    tracing::info!(
        "restored execution {execution_id} from `{key}`: step {}, state `{}`",
        run.step,
        def.states[index].name
    );
    Ok(Resumed::At(index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        for e in Event::ALL {
            assert_eq!(Event::from_name(e.name()), Some(e));
        }
        assert_eq!(Event::from_name("nope"), None);
    }
}

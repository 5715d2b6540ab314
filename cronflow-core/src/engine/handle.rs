//! [`EngineHandle`]: the cheap, cloneable door into a running engine.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::engine::clock::Clock;
use crate::engine::config::EngineConfig;
use crate::engine::driver::{Input, WatchEnd};
use crate::engine::registry;
use crate::error::EngineError;
use crate::event::{RunRecord, RunReport};
use crate::executor::Executor;
use crate::id::RunId;
use crate::json::Json;
use crate::machine::RunDefinition;
use crate::state::StateHandle;
use crate::store::{RunQuery, Store};
use crate::wdo::WorkflowDef;

/// The longest trigger key accepted, in bytes.
pub const MAX_TRIGGER_KEY_BYTES: usize = 512;

/// Options of [`EngineHandle::trigger_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TriggerOptions {
    /// The idempotency key of the trigger, unique forever in the store (1 to
    /// [`MAX_TRIGGER_KEY_BYTES`] bytes). Namespace it by source, e.g. `cron:<schedule>:<slot>`.
    pub key: Option<String>,
    /// What the trigger source knows of the delivery (a webhook's method, path, headers and
    /// raw body, a schedule's slot, ...): stored with the run and given to every task as
    /// [`TaskContext::trigger`](crate::TaskContext::trigger). `null` when absent.
    pub context: Option<Json>,
}

impl TriggerOptions {
    /// No options: every call starts a new run.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the trigger idempotent under `key`.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Attaches the trigger context (see [`TriggerOptions::context`]).
    pub fn context(mut self, context: Json) -> Self {
        self.context = Some(context);
        self
    }
}

/// What a trigger did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Triggered {
    /// The run: the new one, or the one already holding the trigger key.
    pub run_id: RunId,
    /// Whether this call created the run (false: its key was taken before).
    pub created: bool,
}

pub(crate) struct Shared {
    pub(crate) tx: mpsc::UnboundedSender<Input>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) executor: Arc<dyn Executor>,
    pub(crate) config: EngineConfig,
    /// One permit per trigger waiting to be durable ([`EngineBuilder::max_pending_triggers`](crate::EngineBuilder::max_pending_triggers)).
    pub(crate) pending_triggers: Arc<tokio::sync::Semaphore>,
    /// How many runs are parked (see [`EngineBuilder::park_after`](crate::EngineBuilder::park_after)).
    pub(crate) parked: Arc<std::sync::atomic::AtomicUsize>,
    /// The latest definition of every registered workflow, for [`EngineHandle::workflows`].
    pub(crate) definitions: std::sync::RwLock<BTreeMap<String, Arc<RunDefinition>>>,
    /// The global state; workflows' handles are built beside it.
    pub(crate) global_state: StateHandle,
    pub(crate) clock: Arc<dyn Clock>,
}

/// Triggers, cancels, waits for and inspects runs of a running [`Engine`](crate::Engine).
///
/// Cloning is cheap; every clone talks to the same engine. Trigger sources and admin APIs
/// hold one of these and never touch the state machine or the store directly. Once the
/// engine has shut down, calls that need it return [`EngineError::ShuttingDown`]; reads
/// from the store keep working.
#[derive(Clone)]
pub struct EngineHandle {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle").finish_non_exhaustive()
    }
}

impl EngineHandle {
    /// Starts a run of the latest registered revision of `workflow_id` with `payload`.
    ///
    /// Returns once the run is durable: from then on it survives a crash of the host and is
    /// resumed on the next start.
    pub async fn trigger(
        &self,
        workflow_id: &str,
        payload: impl Serialize,
    ) -> Result<RunId, EngineError> {
        self.trigger_json(workflow_id, Json::from_value(&payload)?).await
    }

    /// Like [`EngineHandle::trigger`], with a payload that is already JSON.
    pub async fn trigger_json(
        &self,
        workflow_id: &str,
        payload: Json,
    ) -> Result<RunId, EngineError> {
        let triggered = self.trigger_with(workflow_id, payload, TriggerOptions::new()).await?;
        Ok(triggered.run_id)
    }

    /// Starts a run like [`EngineHandle::trigger_json`], with options; with a
    /// [key](TriggerOptions::key) the trigger is idempotent.
    ///
    /// A keyed trigger creates a run only if no run was ever created with that key, on this
    /// engine or on any instance sharing its store; otherwise it returns the run that holds
    /// the key, with [`Triggered::created`] false. Trigger sources use it so a cron slot, a
    /// webhook's idempotency key or a polled item starts one run however often it is
    /// delivered.
    ///
    /// ```
    /// # use cronflow_core::{Engine, InProcessExecutor, MemoryStore, TaskError, TriggerOptions, Workflow, Json};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let engine = Engine::builder()
    /// #     .store(MemoryStore::new())
    /// #     .executor(InProcessExecutor::new().handler("ship", |_| async { Ok::<_, TaskError>(1) }))
    /// #     .workflow(Workflow::new("orders").step("ship").build()?)
    /// #     .start()
    /// #     .await?;
    /// let handle = engine.handle();
    /// let key = TriggerOptions::new().key("order-42");
    /// let first = handle.trigger_with("orders", Json::null(), key.clone()).await?;
    /// let again = handle.trigger_with("orders", Json::null(), key).await?;
    /// assert!(first.created && !again.created);
    /// assert_eq!(first.run_id, again.run_id);
    /// # Ok(()) }
    /// ```
    pub async fn trigger_with(
        &self,
        workflow_id: &str,
        payload: Json,
        options: TriggerOptions,
    ) -> Result<Triggered, EngineError> {
        let limit = self.shared.config.max_payload_bytes;
        if payload.len() > limit {
            return Err(EngineError::PayloadTooLarge { size: payload.len(), limit });
        }
        if let Some(key) = &options.key
            && (key.is_empty() || key.len() > MAX_TRIGGER_KEY_BYTES)
        {
            return Err(EngineError::InvalidTriggerKey {
                reason: format!(
                    "a trigger key must be 1 to {MAX_TRIGGER_KEY_BYTES} bytes, found {}",
                    key.len()
                ),
            });
        }
        // Held until the trigger is answered: the bound on triggers queued in the engine.
        let _permit = Arc::clone(&self.shared.pending_triggers)
            .acquire_owned()
            .await
            .map_err(|_| EngineError::ShuttingDown)?;
        let (reply, answer) = oneshot::channel();
        self.send(Input::Trigger {
            workflow_id: workflow_id.to_string(),
            payload,
            key: options.key,
            context: options.context,
            reply,
        })?;
        answer.await.map_err(|_| EngineError::ShuttingDown)?
    }

    /// How many triggers are waiting to be made durable right now (at most
    /// [`EngineBuilder::max_pending_triggers`](crate::EngineBuilder::max_pending_triggers)).
    pub fn pending_triggers(&self) -> usize {
        let limit = self.shared.config.max_pending_triggers;
        limit.saturating_sub(self.shared.pending_triggers.available_permits())
    }

    /// How many runs are parked right now: waiting out of memory for a far-away wake-up or
    /// a signal (see [`EngineBuilder::park_after`](crate::EngineBuilder::park_after)).
    pub fn parked_count(&self) -> usize {
        self.shared.parked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until run `run_id` has finished and returns its record and history.
    ///
    /// Returns at once for a finished run. Fails with [`EngineError::ShuttingDown`] if the
    /// engine stops first (the run is resumed on the next start). On a store
    /// [shared](crate::Store::shared) by several instances, a run executed by another instance
    /// is followed in the store until it finishes.
    pub async fn wait(&self, run_id: RunId) -> Result<RunReport, EngineError> {
        let (reply, answer) = oneshot::channel();
        // Answered when the run is not (or no longer) active; dropped if the engine stops.
        let end = match self.send(Input::Watch { run_id, reply }) {
            Ok(()) => answer.await.ok(),
            Err(_) => None,
        };
        loop {
            let report = self.report(run_id).await?;
            match (report.run.status.is_terminal(), end) {
                (true, _) => return Ok(report),
                // Another instance continues (or will claim) the run: follow it in the store.
                (false, Some(WatchEnd::Moved)) if !self.shared.tx.is_closed() => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                (false, Some(WatchEnd::Done)) if self.shared.store.shared() => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                (false, Some(WatchEnd::Done | WatchEnd::Unresumable)) => {
                    return Err(EngineError::RunNotActive(run_id));
                }
                (false, _) => return Err(EngineError::ShuttingDown),
            }
        }
    }

    /// Cancels run `run_id`: in-flight tasks are aborted and the run ends as cancelled.
    /// Returns once the cancellation is durable.
    pub async fn cancel(&self, run_id: RunId, reason: Option<String>) -> Result<(), EngineError> {
        let (reply, answer) = oneshot::channel();
        self.send(Input::Cancel { run_id, reason, reply })?;
        if answer.await.map_err(|_| EngineError::ShuttingDown)? {
            return Ok(());
        }
        match self.shared.store.run(run_id).await? {
            Some(run) if run.status.is_terminal() => Err(EngineError::RunFinished(run_id)),
            Some(_) => Err(EngineError::RunNotActive(run_id)),
            None => Err(EngineError::UnknownRun(run_id)),
        }
    }

    /// The run's record and full history as stored now.
    pub async fn report(&self, run_id: RunId) -> Result<RunReport, EngineError> {
        self.shared.store.run_report(run_id).await?.ok_or(EngineError::UnknownRun(run_id))
    }

    /// Runs matching `query`, newest first.
    pub async fn list_runs(&self, query: &RunQuery) -> Result<Vec<RunRecord>, EngineError> {
        Ok(self.shared.store.list_runs(query).await?)
    }

    /// Registers `def` (or a new revision of it): later triggers run it; runs already going
    /// keep the revision they started with. Returns the stored revision.
    pub async fn register(&self, def: WorkflowDef) -> Result<u32, EngineError> {
        let shared = &self.shared;
        let def =
            registry::prepare(def, &*shared.store, &*shared.executor, &shared.config.validators)
                .await?;
        let revision = def.revision;
        let (reply, answer) = oneshot::channel();
        self.send(Input::Register { def: Arc::clone(&def), reply })?;
        answer.await.map_err(|_| EngineError::ShuttingDown)?;
        let mut defs = self.shared.definitions.write().unwrap_or_else(|e| e.into_inner());
        defs.insert(def.def.id.clone(), def);
        Ok(revision)
    }

    /// The durable state of workflow `workflow_id` (namespace `workflow:<workflow_id>`),
    /// what its handlers see as [`TaskContext::state`](crate::TaskContext::state): a host
    /// reads or seeds it with this. The workflow need not be registered.
    pub fn state(&self, workflow_id: &str) -> StateHandle {
        self.shared.global_state.workflow_beside(workflow_id)
    }

    /// The global state (namespace `global`), shared by every workflow.
    pub fn global_state(&self) -> StateHandle {
        self.shared.global_state.clone()
    }

    /// Deletes the state values of every namespace whose TTL has passed (by the engine's
    /// clock); returns how many. Expired values already read as absent, so this only
    /// reclaims space; nothing calls it automatically: a host with many expiring values calls
    /// it periodically.
    pub async fn purge_expired_state(&self) -> Result<u64, EngineError> {
        let now = self.shared.clock.now();
        Ok(self.shared.store.state_purge_expired(now).await?)
    }

    pub(crate) fn send(&self, input: Input) -> Result<(), EngineError> {
        self.shared.tx.send(input).map_err(|_| EngineError::ShuttingDown)
    }
}

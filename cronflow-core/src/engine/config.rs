//! [`EngineBuilder`]: what an engine needs (store, executor, workflows) and its settings.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::Engine;
use crate::engine::clock::{Clock, SystemClock};
use crate::error::EngineError;
use crate::executor::Executor;
use crate::store::Store;
use crate::wdo::WorkflowDef;

/// Marker for an [`EngineBuilder`] that has no store yet: `start()` does not compile.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoStore;

/// Marker for an [`EngineBuilder`] that has no executor yet: `start()` does not compile.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoExecutor;

/// A check run on every workflow definition at registration (see
/// [`EngineBuilder::validator`]).
pub(crate) type Validator = Arc<dyn Fn(&WorkflowDef) -> Result<(), String> + Send + Sync>;

/// Tunable limits of an engine.
#[derive(Clone)]
pub(crate) struct EngineConfig {
    /// Checks beyond the built-in validation, run at registration.
    pub(crate) validators: Vec<Validator>,
    pub(crate) task_concurrency: usize,
    pub(crate) max_payload_bytes: usize,
    pub(crate) max_pending_triggers: usize,
    pub(crate) max_inputs_per_turn: usize,
    pub(crate) max_active_runs: usize,
    pub(crate) lease: Duration,
    /// `None`: a third of the lease.
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) claim_interval: Duration,
    /// A run waiting only on waits due further away than this leaves memory.
    pub(crate) park_after: Duration,
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("validators", &self.validators.len())
            .field("task_concurrency", &self.task_concurrency)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .field("max_active_runs", &self.max_active_runs)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            validators: Vec::new(),
            task_concurrency: 1024,
            max_payload_bytes: 1 << 20,
            max_pending_triggers: 10_000,
            max_inputs_per_turn: 4096,
            max_active_runs: 100_000,
            lease: Duration::from_secs(10),
            heartbeat: None,
            claim_interval: Duration::from_secs(1),
            park_after: Duration::from_secs(5),
        }
    }
}

/// Builds and starts an [`Engine`]. A store and an executor are required: without them
/// `start()` does not exist, so forgetting one is a compile error.
///
/// ```
/// # async fn demo(store: impl cronflow_core::Store) -> Result<(), cronflow_core::EngineError> {
/// use cronflow_core::{Engine, InProcessExecutor, TaskError, Workflow};
///
/// let flow = Workflow::new("hello").step("greet").build()?;
/// let executor = InProcessExecutor::new()
///     .handler("greet", |_task| async { Ok::<_, TaskError>("hi") });
/// let engine = Engine::builder()
///     .store(store)
///     .executor(executor)
///     .workflow(flow)
///     .task_concurrency(64)
///     .start()
///     .await?;
/// # Ok(()) }
/// ```
pub struct EngineBuilder<S = NoStore, E = NoExecutor> {
    pub(crate) store: S,
    pub(crate) executor: E,
    pub(crate) workflows: Vec<WorkflowDef>,
    pub(crate) config: EngineConfig,
    pub(crate) clock: Arc<dyn Clock>,
}

impl EngineBuilder<NoStore, NoExecutor> {
    pub(crate) fn new() -> Self {
        Self {
            store: NoStore,
            executor: NoExecutor,
            workflows: Vec::new(),
            config: EngineConfig::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

impl<S, E> EngineBuilder<S, E> {
    /// Where runs and their histories are kept.
    pub fn store<S2: Store>(self, store: S2) -> EngineBuilder<S2, E> {
        EngineBuilder {
            store,
            executor: self.executor,
            workflows: self.workflows,
            config: self.config,
            clock: self.clock,
        }
    }

    /// What runs the handlers.
    pub fn executor<E2: Executor>(self, executor: E2) -> EngineBuilder<S, E2> {
        EngineBuilder {
            store: self.store,
            executor,
            workflows: self.workflows,
            config: self.config,
            clock: self.clock,
        }
    }

    /// Registers a workflow at start (see [`EngineHandle::register`](crate::EngineHandle::register)).
    pub fn workflow(mut self, def: WorkflowDef) -> Self {
        self.workflows.push(def);
        self
    }

    /// Registers several workflows at start.
    pub fn workflows(mut self, defs: impl IntoIterator<Item = WorkflowDef>) -> Self {
        self.workflows.extend(defs);
        self
    }

    /// Most tasks with the executor at once (default 1024); more wait in a queue, and their
    /// timeouts start only when they are handed over.
    pub fn task_concurrency(mut self, limit: usize) -> Self {
        self.config.task_concurrency = limit.max(1);
        self
    }

    /// Largest trigger payload accepted, in bytes of JSON (default 1 MiB).
    pub fn max_payload_bytes(mut self, limit: usize) -> Self {
        self.config.max_payload_bytes = limit;
        self
    }

    /// How many triggers may wait at once to be made durable (default 10,000). Beyond it a
    /// trigger waits before it is even queued: a flood of webhook deliveries slows its
    /// senders down instead of filling memory.
    pub fn max_pending_triggers(mut self, limit: usize) -> Self {
        self.config.max_pending_triggers = limit.max(1);
        self
    }

    /// Most inputs (results, triggers) the engine folds into one group commit (default 4096).
    pub fn max_inputs_per_turn(mut self, limit: usize) -> Self {
        self.config.max_inputs_per_turn = limit.max(1);
        self
    }

    /// Most runs this instance executes at once on a [shared](Store::shared) store (default
    /// 100,000). It claims no more than that; a run triggered here while it is full is recorded
    /// and left for another instance (or for this one once it has room).
    ///
    /// On a store that is not shared there is no other instance, and no limit.
    pub fn max_active_runs(mut self, limit: usize) -> Self {
        self.config.max_active_runs = limit;
        self
    }

    /// How far away a waiting run's next wake-up must be for the run to leave memory
    /// (default 5 s). A run whose tasks have all settled and that waits only on `sleep`,
    /// `pause`, `wait_for_event` or `subflow` nodes is *parked*: its state machine is dropped
    /// and only its wake-up time and what signals it waits for stay in memory (some tens of
    /// bytes); it is replayed from the store shortly before its time or when a resume, an
    /// event, a cancel or its child's end reaches it. `Duration::MAX` never parks.
    pub fn park_after(mut self, after: Duration) -> Self {
        self.config.park_after = after;
        self
    }

    /// How long this instance holds a run of a shared store without renewing (default 10 s):
    /// when an instance dies, its runs continue on another within about this long. Leases are
    /// renewed every third of it unless [`EngineBuilder::heartbeat`] says otherwise.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.config.lease = lease.max(Duration::from_millis(30));
        self
    }

    /// How often this instance renews its leases on a shared store (default a third of the
    /// lease). Keep it well under the lease: a renewal that comes late loses the runs.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.config.heartbeat = Some(every.max(Duration::from_millis(10)));
        self
    }

    /// How often this instance looks for runs of a shared store that nobody holds (default
    /// 1 s).
    pub fn claim_interval(mut self, interval: Duration) -> Self {
        self.config.claim_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Adds a check every workflow definition must pass at registration (when the engine
    /// starts and on [`EngineHandle::register`](crate::EngineHandle::register)), after the
    /// built-in validation. An `Err(reason)` refuses the workflow with
    /// [`EngineError::Rejected`]. Trigger sources use it to refuse what they could not run,
    /// such as `cronflow_triggers::check_workflow` for cron expressions and webhook settings.
    ///
    /// ```
    /// use cronflow_core::{Engine, EngineError, InProcessExecutor, MemoryStore, TaskError, Workflow};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let executor = InProcessExecutor::new().handler("ship", |_| async { Ok::<_, TaskError>(()) });
    /// let result = Engine::builder()
    ///     .store(MemoryStore::new())
    ///     .executor(executor)
    ///     .validator(|def| match def.id.starts_with("acme-") {
    ///         true => Ok(()),
    ///         false => Err("ids start with `acme-` here".to_string()),
    ///     })
    ///     .workflow(Workflow::new("orders").step("ship").build()?)
    ///     .start()
    ///     .await;
    /// let Err(EngineError::Rejected { workflow, reason }) = result else { panic!() };
    /// assert_eq!((workflow.as_str(), reason.as_str()), ("orders", "ids start with `acme-` here"));
    /// # Ok(()) }
    /// ```
    pub fn validator(
        mut self,
        check: impl Fn(&WorkflowDef) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.config.validators.push(Arc::new(check));
        self
    }
}

impl<S: Store, E: Executor> EngineBuilder<S, E> {
    /// Checks and stores the workflows, replays every unfinished run found in the store,
    /// and starts the engine.
    ///
    /// Fails if a workflow is invalid, uses a node kind this engine cannot run yet, names a
    /// handler the executor lacks, or if the store fails.
    pub async fn start(self) -> Result<Engine, EngineError> {
        Engine::start(self).await
    }
}

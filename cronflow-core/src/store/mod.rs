//! The [`Store`] trait: what the engine needs from durable storage, in the run state
//! machine's terms (runs, event logs, definitions), never in SQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::StoreError;
use crate::event::{RecordedEvent, RunFailure, RunRecord, RunReport, RunStatus};
use crate::id::RunId;
use crate::json::Json;
use crate::wdo::WorkflowDef;

mod memory;

pub use memory::MemoryStore;

/// Durable storage for definitions, runs and their event logs.
///
/// # Contract
///
/// - [`Store::commit`] is atomic: every new run, event and status change in the batch is
///   stored, or none is and an error is returned. When it returns `Ok` the batch is durable
///   (it survives `kill -9` of the process).
/// - Events are append-only. `(run_id, seq)` is unique: a batch holding an event whose
///   sequence number is already stored fails with [`StoreError::Conflict`] and stores
///   nothing. This is what makes every state transition recorded exactly once.
/// - The engine calls `commit` from one task at a time per engine instance, and batches many
///   runs' transitions into one call (group commit); implementations should write a batch
///   with a handful of multi-row statements, never a statement per event.
/// - A run's first event is `run_started` (seq 0), committed in the same batch as the
///   [`NewRun`] with `at == created_at`; a backend may store it as the run row itself.
/// - Reads ([`Store::run`], [`Store::run_events`], [`Store::list_runs`]) may run concurrently
///   with `commit` and see only committed data.
/// - A later multi-instance backend adds leases and fencing tokens; until then an engine
///   assumes it is the only one writing its runs.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores `def` and returns its revision: the latest stored revision when its content is
    /// unchanged, otherwise a new revision (previous revisions stay, so running runs keep
    /// executing the definition they started with).
    async fn save_workflow(&self, def: &WorkflowDef) -> Result<u32, StoreError>;

    /// Loads revision `revision` of workflow `id`.
    async fn load_workflow(
        &self,
        id: &str,
        revision: u32,
    ) -> Result<Option<WorkflowDef>, StoreError>;

    /// Atomically stores a batch of new runs, appended events and finished runs.
    async fn commit(&self, batch: &CommitBatch) -> Result<(), StoreError>;

    /// Every run whose status is [`RunStatus::Running`], with its full history in order:
    /// what the engine replays when it starts.
    async fn active_runs(&self) -> Result<Vec<StoredRun>, StoreError>;

    /// One run's record.
    async fn run(&self, id: RunId) -> Result<Option<RunRecord>, StoreError>;

    /// One run's history, in order.
    async fn run_events(&self, id: RunId) -> Result<Vec<RecordedEvent>, StoreError>;

    /// One run's record and history together (what `wait` returns). The default reads both
    /// with [`Store::run`] and [`Store::run_events`]; a backend may do it in one query.
    async fn run_report(&self, id: RunId) -> Result<Option<RunReport>, StoreError> {
        let Some(run) = self.run(id).await? else { return Ok(None) };
        let history = self.run_events(id).await?;
        Ok(Some(RunReport { run, history }))
    }

    /// Runs matching `query`, newest first.
    async fn list_runs(&self, query: &RunQuery) -> Result<Vec<RunRecord>, StoreError>;
}

/// A group commit: everything the engine decided in one turn of its loop.
#[derive(Debug, Clone, Default)]
pub struct CommitBatch {
    /// Runs accepted in this turn.
    pub new_runs: Vec<NewRun>,
    /// Events appended, any number per run, in order per run.
    pub events: Vec<(RunId, RecordedEvent)>,
    /// Runs that reached a terminal status in this turn.
    pub finished: Vec<FinishedRun>,
}

impl CommitBatch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.new_runs.is_empty() && self.events.is_empty() && self.finished.is_empty()
    }

    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        self.new_runs.clear();
        self.events.clear();
        self.finished.clear();
    }
}

/// A run accepted by the engine.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// Its id.
    pub id: RunId,
    /// Its workflow.
    pub workflow_id: String,
    /// The definition revision it executes.
    pub revision: u32,
    /// The trigger payload.
    pub payload: Json,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
}

/// A run that reached a terminal status.
#[derive(Debug, Clone)]
pub struct FinishedRun {
    /// Which run.
    pub id: RunId,
    /// Its terminal status.
    pub status: RunStatus,
    /// The output, when completed.
    pub output: Option<Json>,
    /// The failure, when failed.
    pub failure: Option<RunFailure>,
    /// When.
    pub finished_at: DateTime<Utc>,
}

/// A run with its history, as loaded for recovery.
#[derive(Debug, Clone)]
pub struct StoredRun {
    /// The run record.
    pub run: RunRecord,
    /// Its events, in order.
    pub events: Vec<RecordedEvent>,
}

/// Filter for [`Store::list_runs`].
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    /// Only runs of this workflow.
    pub workflow_id: Option<String>,
    /// Only runs in this status.
    pub status: Option<RunStatus>,
    /// At most this many (default 100).
    pub limit: Option<u32>,
}

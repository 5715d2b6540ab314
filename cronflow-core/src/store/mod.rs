//! The [`Store`] trait: what the engine needs from durable storage, in the run state
//! machine's terms (runs, event logs, definitions), never in SQL.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::StoreError;
use crate::event::{RecordedEvent, RunFailure, RunRecord, RunReport, RunStatus};
use crate::id::{InstanceId, RunId};
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
/// - Trigger keys are unique forever: a [`NewRun`] with a [`key`](NewRun::key) is created
///   only if no stored run holds that key (or the run holding it is itself, when a commit is
///   retried after an ambiguous failure). A new run whose key is taken is left out of the
///   batch with everything of it (events, finished record), the rest of the batch is stored,
///   and the commit reports it in [`CommitOutcome::duplicates`] with the run holding the key.
///   Two new runs of one batch never share a key (the engine deduplicates a turn first).
///   This holds across instances sharing the store: it is what fires a cron slot once.
/// - Schedule cursors ([`Store::schedule_cursor`], [`Store::advance_schedule`]) are
///   compare-and-set: of several instances moving one cursor from the same value, one wins.
/// - Workflow state ([`Store::state_get`], [`Store::state_set`], [`Store::state_incr`],
///   [`Store::state_delete`]) is a key-value map per namespace, apart from runs. A value
///   whose `expires_at` is at or before the `now` given reads as absent; time is the
///   engine's clock, passed in, never the database's. `state_incr` is atomic across
///   instances. Values are JSON kept as text, byte for byte.
/// - Reads ([`Store::run`], [`Store::run_events`], [`Store::list_runs`]) may run concurrently
///   with `commit` and see only committed data.
/// - Several engine instances may share a store only if [`Store::shared`] says so. Such a
///   store implements leases ([`Store::claim_runs`], [`Store::renew_leases`],
///   [`Store::release_runs`]) and fencing: a commit whose [`CommitBatch::claim`] is set is
///   stored only if its owner still holds every run it touches with the fence given in
///   [`CommitBatch::fences`]; otherwise it fails with [`StoreError::LeaseLost`] naming those
///   runs and stores nothing. A store that is not shared ignores leases and fences: its one
///   engine owns every run.
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

    /// Atomically stores a batch of new runs, appended events and finished runs; reports
    /// the new runs left out because their trigger key was taken.
    async fn commit(&self, batch: &CommitBatch) -> Result<CommitOutcome, StoreError>;

    /// The cursor of schedule `id`: the slot it fires next, or `None` if it has none yet.
    async fn schedule_cursor(&self, id: &str) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Moves the cursor of schedule `id` from `from` (`None`: it has none yet) to `to`.
    /// Returns `false`, changing nothing, if the cursor is not at `from` any more (another
    /// instance moved it first).
    async fn advance_schedule(
        &self,
        id: &str,
        from: Option<DateTime<Utc>>,
        to: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Forgets the trigger keys starting with `prefix` that were taken before
    /// `created_before`; returns how many. A key forgotten can start a run again: prune only
    /// what the trigger source no longer delivers (see
    /// [`EngineHandle::prune_trigger_keys`](crate::EngineHandle::prune_trigger_keys)).
    async fn prune_trigger_keys(
        &self,
        prefix: &str,
        created_before: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// The live value of state `key` in `namespace`: `None` when there is none or it expired
    /// (its `expires_at` is at or before `now`, the engine's clock). See
    /// [`StateHandle`](crate::StateHandle) for the namespaces.
    async fn state_get(
        &self,
        namespace: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Json>, StoreError>;

    /// Stores `value` under `key` in `namespace`, replacing any value (live or expired) and
    /// its expiry; with `expires_at`, the value reads as absent from that time on.
    async fn state_set(
        &self,
        namespace: &str,
        key: &str,
        value: Json,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;

    /// Atomically adds `by` to the integer under `key` in `namespace` and returns the new
    /// value. A missing or expired key counts from 0 (and gets no expiry); a live key keeps
    /// its expiry. A live value that is not an integer fails with
    /// [`StoreError::NotAnInteger`], a result outside `i64` with [`StoreError::IncrOverflow`];
    /// either way nothing changes. Concurrent increments, from any instance sharing the
    /// store, are never lost.
    async fn state_incr(
        &self,
        namespace: &str,
        key: &str,
        by: i64,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError>;

    /// Deletes `key` in `namespace`; returns whether a live value was deleted (an expired
    /// one is deleted too, but reads as absent, so `false`).
    async fn state_delete(
        &self,
        namespace: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Deletes every state value of every namespace that expired at or before `now`; returns
    /// how many. Expired values already read as absent: this only reclaims their space.
    async fn state_purge_expired(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

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

    /// Several runs with their histories, in any order; ids not found are left out. The
    /// engine loads parked runs with it (many at once when many wake up together). The
    /// default calls [`Store::run_report`] per id; a backend may read them in a few queries.
    async fn load_runs(&self, ids: &[RunId]) -> Result<Vec<StoredRun>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(report) = self.run_report(*id).await? {
                out.push(StoredRun { run: report.run, events: report.history });
            }
        }
        Ok(out)
    }

    /// Runs matching `query`, newest first.
    async fn list_runs(&self, query: &RunQuery) -> Result<Vec<RunRecord>, StoreError>;

    /// Whether several engine instances may share this store's runs (leases and fencing are
    /// enforced). The default, `false`, means one engine owns every run.
    fn shared(&self) -> bool {
        false
    }

    /// Claims for `owner`, until now + `lease`, up to `limit` running runs that no instance
    /// holds: never claimed, released, or whose lease has expired. Each claim bumps the run's
    /// fence, returned with the run and its history.
    ///
    /// The default, for stores that are not [shared](Store::shared), returns every running
    /// run (up to `limit`) with fence 0.
    async fn claim_runs(
        &self,
        owner: InstanceId,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedRun>, StoreError> {
        let _ = (owner, lease);
        let runs = self.active_runs().await?.into_iter().take(limit);
        Ok(runs.map(|s| ClaimedRun { run: s.run, events: s.events, fence: 0 }).collect())
    }

    /// The heartbeat: extends to now + `lease` the lease of every running run `owner` holds,
    /// and returns those runs with their fences. A run the owner is executing that is missing
    /// from the answer was taken over: the owner must stop executing it.
    ///
    /// The default, for stores that are not shared, holds nothing.
    async fn renew_leases(
        &self,
        owner: InstanceId,
        lease: Duration,
    ) -> Result<Vec<(RunId, u64)>, StoreError> {
        let _ = (owner, lease);
        Ok(Vec::new())
    }

    /// Gives up `owner`'s leases on `runs` (at shutdown, or for runs an instance that is full
    /// leaves to others), so that other instances can claim them at once instead of waiting
    /// for the leases to expire. The default does nothing.
    async fn release_runs(&self, owner: InstanceId, runs: &[RunId]) -> Result<(), StoreError> {
        let _ = (owner, runs);
        Ok(())
    }

    /// Resolves when runs may have become claimable (another instance released some): the
    /// prompt wake-up of a shared store's claimers, such as PostgreSQL's `LISTEN`. It may
    /// resolve spuriously. The default never resolves: claimers then only poll.
    async fn work_available(&self) {
        std::future::pending::<()>().await
    }
}

/// A run claimed by an engine instance: its record, its history and the fencing token of this
/// claim.
#[derive(Debug, Clone)]
pub struct ClaimedRun {
    /// The run record.
    pub run: RunRecord,
    /// Its events, in order.
    pub events: Vec<RecordedEvent>,
    /// The fencing token: commits for this run must carry it.
    pub fence: u64,
}

/// Who commits a batch to a shared store, and for how long new runs are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The committing instance.
    pub owner: InstanceId,
    /// The lease on the batch's new runs (created held by `owner`, with fence 1).
    pub lease: Duration,
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
    /// For a [shared](Store::shared) store: the committing instance. `None` commits without
    /// lease checks (a store that is not shared ignores it either way).
    pub claim: Option<Claim>,
    /// For a shared store: the fence of every existing run the batch touches, as the
    /// committing instance claimed it.
    pub fences: Vec<(RunId, u64)>,
}

impl CommitBatch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.new_runs.is_empty() && self.events.is_empty() && self.finished.is_empty()
    }

    /// The batch without anything of `runs` (their new runs, events, finished records and
    /// fences): what a store writes once it knows some new runs are duplicates.
    pub fn without_runs(&self, runs: &std::collections::HashSet<RunId>) -> CommitBatch {
        CommitBatch {
            new_runs: self.new_runs.iter().filter(|r| !runs.contains(&r.id)).cloned().collect(),
            events: self.events.iter().filter(|(r, _)| !runs.contains(r)).cloned().collect(),
            finished: self.finished.iter().filter(|f| !runs.contains(&f.id)).cloned().collect(),
            claim: self.claim,
            fences: self.fences.iter().filter(|(r, _)| !runs.contains(r)).copied().collect(),
        }
    }

    /// The trigger keys of the batch's new runs, with their runs.
    pub fn trigger_keys(&self) -> impl Iterator<Item = (&str, RunId)> {
        self.new_runs.iter().filter_map(|r| r.key.as_deref().map(|k| (k, r.id)))
    }

    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        self.new_runs.clear();
        self.events.clear();
        self.finished.clear();
        self.fences.clear();
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
    /// The trigger key that makes this trigger idempotent, if any: the store creates the run
    /// only if no run was created with the same key before (see [`Store::commit`]).
    pub key: Option<String>,
    /// The trigger context, stored with the run ([`RunRecord::context`]).
    pub context: Option<Json>,
}

/// What a commit did beyond writing its batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitOutcome {
    /// New runs of the batch that were **not** created because their trigger key was taken.
    pub duplicates: Vec<DuplicateRun>,
}

/// A new run whose trigger key was already taken by another run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DuplicateRun {
    /// The run of the batch that was not created.
    pub run: RunId,
    /// The run that holds the key.
    pub existing: RunId,
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

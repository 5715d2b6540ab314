//! Test support shared by the engine's integration tests.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cronflow_core::{
    ClaimedRun, CommitBatch, CommitOutcome, InstanceId, MemoryStore, RecordedEvent, RunId,
    RunQuery, RunRecord, Store, StoreError, StoredRun, WorkflowDef,
};

type Time = chrono::DateTime<chrono::Utc>;

/// Decides whether an operation fails: `Some(error)` fails it.
pub(crate) type Fault = Arc<dyn Fn() -> Option<StoreError> + Send + Sync>;

/// A [`MemoryStore`] whose commits (before or after applying them) and lease renewals can be made to fail, for tests of the
/// engine across store outages and frozen heartbeats. Everything else is delegated.
#[derive(Clone)]
pub(crate) struct FaultyStore {
    pub(crate) inner: MemoryStore,
    pub(crate) commit_fault: Option<Fault>,
    /// Decides, after a commit was applied, whether its answer is lost (an error returned).
    pub(crate) lost_answer: Option<Fault>,
    pub(crate) renew_fault: Option<Fault>,
}

impl FaultyStore {
    pub(crate) fn new(inner: MemoryStore) -> Self {
        Self { inner, commit_fault: None, lost_answer: None, renew_fault: None }
    }
}

fn check(fault: &Option<Fault>) -> Result<(), StoreError> {
    match fault.as_ref().and_then(|f| f()) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

#[async_trait]
impl Store for FaultyStore {
    async fn save_workflow(&self, def: &WorkflowDef) -> Result<u32, StoreError> {
        self.inner.save_workflow(def).await
    }
    async fn load_workflow(&self, id: &str, rev: u32) -> Result<Option<WorkflowDef>, StoreError> {
        self.inner.load_workflow(id, rev).await
    }
    async fn commit(&self, batch: &CommitBatch) -> Result<CommitOutcome, StoreError> {
        check(&self.commit_fault)?;
        let outcome = self.inner.commit(batch).await?;
        check(&self.lost_answer)?;
        Ok(outcome)
    }
    async fn schedule_cursor(&self, id: &str) -> Result<Option<Time>, StoreError> {
        self.inner.schedule_cursor(id).await
    }
    async fn advance_schedule(
        &self,
        id: &str,
        from: Option<Time>,
        to: Time,
    ) -> Result<bool, StoreError> {
        self.inner.advance_schedule(id, from, to).await
    }
    async fn prune_trigger_keys(&self, prefix: &str, before: Time) -> Result<u64, StoreError> {
        self.inner.prune_trigger_keys(prefix, before).await
    }
    async fn state_get(
        &self,
        namespace: &str,
        key: &str,
        now: Time,
    ) -> Result<Option<cronflow_core::Json>, StoreError> {
        self.inner.state_get(namespace, key, now).await
    }
    async fn state_set(
        &self,
        namespace: &str,
        key: &str,
        value: cronflow_core::Json,
        expires_at: Option<Time>,
    ) -> Result<(), StoreError> {
        self.inner.state_set(namespace, key, value, expires_at).await
    }
    async fn state_incr(
        &self,
        namespace: &str,
        key: &str,
        by: i64,
        now: Time,
    ) -> Result<i64, StoreError> {
        self.inner.state_incr(namespace, key, by, now).await
    }
    async fn state_delete(
        &self,
        namespace: &str,
        key: &str,
        now: Time,
    ) -> Result<bool, StoreError> {
        self.inner.state_delete(namespace, key, now).await
    }
    async fn state_purge_expired(&self, now: Time) -> Result<u64, StoreError> {
        self.inner.state_purge_expired(now).await
    }
    async fn active_runs(&self) -> Result<Vec<StoredRun>, StoreError> {
        self.inner.active_runs().await
    }
    async fn run(&self, id: RunId) -> Result<Option<RunRecord>, StoreError> {
        self.inner.run(id).await
    }
    async fn run_events(&self, id: RunId) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.run_events(id).await
    }
    async fn list_runs(&self, query: &RunQuery) -> Result<Vec<RunRecord>, StoreError> {
        self.inner.list_runs(query).await
    }
    fn shared(&self) -> bool {
        self.inner.shared()
    }
    async fn claim_runs(
        &self,
        owner: InstanceId,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedRun>, StoreError> {
        self.inner.claim_runs(owner, lease, limit).await
    }
    async fn renew_leases(
        &self,
        owner: InstanceId,
        lease: Duration,
    ) -> Result<Vec<(RunId, u64)>, StoreError> {
        check(&self.renew_fault)?;
        self.inner.renew_leases(owner, lease).await
    }
    async fn release_runs(&self, owner: InstanceId, runs: &[RunId]) -> Result<(), StoreError> {
        self.inner.release_runs(owner, runs).await
    }
}

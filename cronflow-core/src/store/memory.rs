//! [`MemoryStore`]: a [`Store`] in a `Mutex`, for tests and examples that need no durability.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use chrono::{DateTime, Utc};

use super::{ClaimedRun, CommitBatch, CommitOutcome, DuplicateRun, RunQuery, Store, StoredRun};
use crate::error::StoreError;
use crate::event::{RecordedEvent, RunRecord, RunStatus};
use crate::id::{InstanceId, RunId};
use crate::json::Json;
use crate::wdo::WorkflowDef;

/// A store that keeps everything in memory and loses it when dropped.
///
/// It follows the whole [`Store`] contract except durability, which makes it the store of
/// choice for unit tests of workflows. Clones share the same data, and it is
/// [shared](Store::shared): several engines in one process can hold leases on its runs, which
/// is how the lease logic is tested without a database.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    workflows: HashMap<String, Vec<(String, WorkflowDef)>>,
    runs: HashMap<RunId, RunRecord>,
    events: HashMap<RunId, Vec<RecordedEvent>>,
    holders: HashMap<RunId, Holder>,
    trigger_keys: HashMap<String, (RunId, DateTime<Utc>)>,
    schedules: HashMap<String, DateTime<Utc>>,
    /// Workflow state: namespace -> key -> (value, expires_at).
    state: HashMap<String, HashMap<String, StateEntry>>,
}

#[derive(Debug, Clone)]
struct StateEntry {
    value: Json,
    expires_at: Option<DateTime<Utc>>,
}

impl StateEntry {
    fn live(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// Who holds a run, until when, and the fence of that claim.
#[derive(Debug, Default, Clone, Copy)]
struct Holder {
    owner: Option<InstanceId>,
    until: Option<Instant>,
    fence: u64,
}

impl Holder {
    fn free(&self, now: Instant) -> bool {
        self.owner.is_none() || self.until.is_none_or(|until| until < now)
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn save_workflow(&self, def: &WorkflowDef) -> Result<u32, StoreError> {
        let text = serde_json::to_string(def).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut inner = self.lock();
        let revisions = inner.workflows.entry(def.id.clone()).or_default();
        if revisions.last().is_none_or(|(last, _)| *last != text) {
            revisions.push((text, def.clone()));
        }
        Ok(revisions.len() as u32)
    }

    async fn load_workflow(
        &self,
        id: &str,
        revision: u32,
    ) -> Result<Option<WorkflowDef>, StoreError> {
        let inner = self.lock();
        let index = (revision as usize).checked_sub(1);
        Ok(index.and_then(|i| inner.workflows.get(id)?.get(i)).map(|(_, def)| def.clone()))
    }

    async fn commit(&self, batch: &CommitBatch) -> Result<CommitOutcome, StoreError> {
        let mut inner = self.lock();
        let mut outcome = CommitOutcome::default();
        for (key, run) in batch.trigger_keys() {
            if let Some(&(existing, _)) = inner.trigger_keys.get(key)
                && existing != run
            {
                outcome.duplicates.push(DuplicateRun { run, existing });
            }
        }
        let filtered;
        let batch = if outcome.duplicates.is_empty() {
            batch
        } else {
            let left_out: HashSet<RunId> = outcome.duplicates.iter().map(|d| d.run).collect();
            filtered = batch.without_runs(&left_out);
            &filtered
        };
        // Check everything before changing anything: a commit is all or nothing.
        if let Some(claim) = batch.claim {
            let lost = lost_runs(&inner, batch, claim.owner);
            if !lost.is_empty() {
                return Err(StoreError::LeaseLost { runs: lost });
            }
        }
        let mut next: HashMap<RunId, u32> = HashMap::new();
        for run in &batch.new_runs {
            if inner.runs.contains_key(&run.id) {
                return Err(StoreError::Conflict(format!("run {} already exists", run.id)));
            }
            next.insert(run.id, 0);
        }
        for (run_id, event) in &batch.events {
            let expected = next.entry(*run_id).or_insert_with(|| {
                inner.events.get(run_id).map_or(0, |events| events.len() as u32)
            });
            if event.seq != *expected {
                return Err(StoreError::Conflict(format!(
                    "run {run_id}: event {} is already recorded or out of order (next is {expected})",
                    event.seq
                )));
            }
            *expected += 1;
        }
        let now = Instant::now();
        for run in &batch.new_runs {
            let holder = match batch.claim {
                Some(claim) => {
                    Holder { owner: Some(claim.owner), until: Some(now + claim.lease), fence: 1 }
                }
                None => Holder::default(),
            };
            inner.holders.insert(run.id, holder);
            inner.runs.insert(
                run.id,
                RunRecord {
                    id: run.id,
                    workflow_id: run.workflow_id.clone(),
                    revision: run.revision,
                    status: RunStatus::Running,
                    payload: run.payload.clone(),
                    output: None,
                    failure: None,
                    created_at: run.created_at,
                    finished_at: None,
                    context: run.context.clone(),
                },
            );
        }
        for (run_id, event) in &batch.events {
            inner.events.entry(*run_id).or_default().push(event.clone());
        }
        for finished in &batch.finished {
            if let Some(run) = inner.runs.get_mut(&finished.id) {
                run.status = finished.status;
                run.output = finished.output.clone();
                run.failure = finished.failure.clone();
                run.finished_at = Some(finished.finished_at);
            }
        }
        let created: HashMap<RunId, DateTime<Utc>> =
            batch.new_runs.iter().map(|r| (r.id, r.created_at)).collect();
        for (key, run) in batch.trigger_keys() {
            let at = created.get(&run).copied().unwrap_or_else(Utc::now);
            inner.trigger_keys.insert(key.to_string(), (run, at));
        }
        Ok(outcome)
    }

    async fn schedule_cursor(&self, id: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.lock().schedules.get(id).copied())
    }

    async fn prune_trigger_keys(
        &self,
        prefix: &str,
        created_before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let before = inner.trigger_keys.len();
        inner
            .trigger_keys
            .retain(|key, (_, at)| !(key.starts_with(prefix) && *at < created_before));
        Ok((before - inner.trigger_keys.len()) as u64)
    }

    async fn advance_schedule(
        &self,
        id: &str,
        from: Option<DateTime<Utc>>,
        to: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if inner.schedules.get(id).copied() != from {
            return Ok(false);
        }
        inner.schedules.insert(id.to_string(), to);
        Ok(true)
    }

    async fn state_get(
        &self,
        namespace: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Json>, StoreError> {
        let inner = self.lock();
        let entry = inner.state.get(namespace).and_then(|keys| keys.get(key));
        Ok(entry.filter(|e| e.live(now)).map(|e| e.value.clone()))
    }

    async fn state_set(
        &self,
        namespace: &str,
        key: &str,
        value: Json,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let keys = inner.state.entry(namespace.to_owned()).or_default();
        keys.insert(key.to_owned(), StateEntry { value, expires_at });
        Ok(())
    }

    async fn state_incr(
        &self,
        namespace: &str,
        key: &str,
        by: i64,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let mut inner = self.lock();
        let keys = inner.state.entry(namespace.to_owned()).or_default();
        let (current, expires_at) = match keys.get(key).filter(|e| e.live(now)) {
            None => (0, None),
            Some(entry) => match entry.value.as_str().parse::<i64>() {
                Ok(n) => (n, entry.expires_at),
                Err(_) => {
                    return Err(StoreError::NotAnInteger {
                        namespace: namespace.to_owned(),
                        key: key.to_owned(),
                    });
                }
            },
        };
        let next = current.checked_add(by).ok_or_else(|| StoreError::IncrOverflow {
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            by,
        })?;
        let value = Json::from_value(&next).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        keys.insert(key.to_owned(), StateEntry { value, expires_at });
        Ok(next)
    }

    async fn state_delete(
        &self,
        namespace: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let removed = inner.state.get_mut(namespace).and_then(|keys| keys.remove(key));
        Ok(removed.is_some_and(|e| e.live(now)))
    }

    async fn state_purge_expired(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let mut purged = 0;
        for keys in inner.state.values_mut() {
            let before = keys.len();
            keys.retain(|_, e| e.live(now));
            purged += (before - keys.len()) as u64;
        }
        inner.state.retain(|_, keys| !keys.is_empty());
        Ok(purged)
    }

    async fn active_runs(&self) -> Result<Vec<StoredRun>, StoreError> {
        let inner = self.lock();
        let mut runs: Vec<StoredRun> = inner
            .runs
            .values()
            .filter(|r| r.status == RunStatus::Running)
            .map(|r| StoredRun {
                run: r.clone(),
                events: inner.events.get(&r.id).cloned().unwrap_or_default(),
            })
            .collect();
        runs.sort_by_key(|r| r.run.id);
        Ok(runs)
    }

    async fn run(&self, id: RunId) -> Result<Option<RunRecord>, StoreError> {
        Ok(self.lock().runs.get(&id).cloned())
    }

    async fn run_events(&self, id: RunId) -> Result<Vec<RecordedEvent>, StoreError> {
        Ok(self.lock().events.get(&id).cloned().unwrap_or_default())
    }

    fn shared(&self) -> bool {
        true
    }

    async fn claim_runs(
        &self,
        owner: InstanceId,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedRun>, StoreError> {
        let mut inner = self.lock();
        let now = Instant::now();
        let mut free: Vec<RunRecord> = inner
            .runs
            .values()
            .filter(|r| r.status == RunStatus::Running)
            .filter(|r| inner.holders.get(&r.id).is_none_or(|h| h.free(now)))
            .cloned()
            .collect();
        free.sort_by_key(|r| (r.created_at, r.id));
        free.truncate(limit);
        let mut claimed = Vec::with_capacity(free.len());
        for run in free {
            let holder = inner.holders.entry(run.id).or_default();
            holder.owner = Some(owner);
            holder.until = Some(now + lease);
            holder.fence += 1;
            let fence = holder.fence;
            let events = inner.events.get(&run.id).cloned().unwrap_or_default();
            claimed.push(ClaimedRun { run, events, fence });
        }
        Ok(claimed)
    }

    async fn renew_leases(
        &self,
        owner: InstanceId,
        lease: Duration,
    ) -> Result<Vec<(RunId, u64)>, StoreError> {
        let mut inner = self.lock();
        let until = Instant::now() + lease;
        let Inner { runs, holders, .. } = &mut *inner;
        let mut held = Vec::new();
        for (id, holder) in holders.iter_mut() {
            let running = runs.get(id).is_some_and(|r| r.status == RunStatus::Running);
            if running && holder.owner == Some(owner) {
                holder.until = Some(until);
                held.push((*id, holder.fence));
            }
        }
        held.sort();
        Ok(held)
    }

    async fn release_runs(&self, owner: InstanceId, runs: &[RunId]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for id in runs {
            if let Some(holder) = inner.holders.get_mut(id).filter(|h| h.owner == Some(owner)) {
                holder.owner = None;
                holder.until = None;
            }
        }
        Ok(())
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<Vec<RunRecord>, StoreError> {
        let inner = self.lock();
        let mut runs: Vec<RunRecord> = inner
            .runs
            .values()
            .filter(|r| query.workflow_id.as_ref().is_none_or(|w| *w == r.workflow_id))
            .filter(|r| query.status.is_none_or(|s| s == r.status))
            .cloned()
            .collect();
        runs.sort_by_key(|r| std::cmp::Reverse(r.id));
        runs.truncate(query.limit.unwrap_or(100) as usize);
        Ok(runs)
    }
}

/// The existing runs `batch` touches that `owner` does not hold with the fence the batch gives.
fn lost_runs(inner: &Inner, batch: &CommitBatch, owner: InstanceId) -> Vec<RunId> {
    let is_new = |id: &RunId| batch.new_runs.iter().any(|r| r.id == *id);
    let touched = batch.events.iter().map(|(id, _)| *id).chain(batch.finished.iter().map(|f| f.id));
    let mut lost: Vec<RunId> = touched
        .filter(|id| !is_new(id))
        .filter(|id| {
            let fence = batch.fences.iter().find(|(r, _)| r == id).map(|(_, f)| *f);
            let holder = inner.holders.get(id).copied().unwrap_or_default();
            holder.owner != Some(owner) || Some(holder.fence) != fence
        })
        .collect();
    lost.sort();
    lost.dedup();
    lost
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::event::RunEvent;
    use crate::json::Json;
    use crate::store::{Claim, NewRun};

    fn new_run(batch: &mut CommitBatch) -> RunId {
        let id = RunId::new();
        let now = Utc::now();
        batch.new_runs.push(NewRun {
            id,
            workflow_id: "w".into(),
            revision: 1,
            payload: Json::null(),
            created_at: now,
            key: None,
            context: None,
        });
        batch.events.push((id, RecordedEvent { seq: 0, at: now, event: RunEvent::RunStarted }));
        id
    }

    fn cancel(id: RunId, seq: u32) -> (RunId, RecordedEvent) {
        (id, RecordedEvent { seq, at: Utc::now(), event: RunEvent::RunCancelled { reason: None } })
    }

    #[tokio::test]
    async fn each_run_is_claimed_by_one_owner_until_its_lease_expires() {
        let store = MemoryStore::new();
        let mut batch = CommitBatch::default();
        let runs = [new_run(&mut batch), new_run(&mut batch), new_run(&mut batch)];
        store.commit(&batch).await.unwrap();
        let (a, b) = (InstanceId::new(), InstanceId::new());
        let lease = Duration::from_millis(50);
        let first = store.claim_runs(a, lease, 2).await.unwrap();
        let second = store.claim_runs(b, lease, 10).await.unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(second.len(), 1);
        assert!(first.iter().all(|c| c.fence == 1));
        assert!(store.claim_runs(b, lease, 10).await.unwrap().is_empty());
        let long = Duration::from_secs(60);
        assert_eq!(store.renew_leases(b, long).await.unwrap(), vec![(runs[2], 1)]);
        tokio::time::sleep(Duration::from_millis(80)).await;
        let taken = store.claim_runs(b, lease, 10).await.unwrap();
        assert_eq!(taken.len(), 2, "a's leases expired");
        assert!(taken.iter().all(|c| c.fence == 2));
        assert!(store.renew_leases(a, lease).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_commit_with_a_stale_fence_stores_nothing() {
        let store = MemoryStore::new();
        let (a, b) = (InstanceId::new(), InstanceId::new());
        let lease = Duration::from_millis(20);
        let mut batch =
            CommitBatch { claim: Some(Claim { owner: a, lease }), ..Default::default() };
        let run = new_run(&mut batch);
        store.commit(&batch).await.unwrap();
        assert!(store.claim_runs(b, lease, 10).await.unwrap().is_empty(), "held by its creator");
        tokio::time::sleep(Duration::from_millis(40)).await;
        let taken = store.claim_runs(b, lease, 10).await.unwrap();
        assert_eq!(taken[0].fence, 2);

        let mut stale =
            CommitBatch { claim: Some(Claim { owner: a, lease }), ..Default::default() };
        let other = new_run(&mut stale);
        stale.events.push(cancel(run, 1));
        stale.fences.push((run, 1));
        let err = store.commit(&stale).await.unwrap_err();
        assert!(matches!(&err, StoreError::LeaseLost { runs } if runs == &vec![run]), "{err}");
        assert!(store.run(other).await.unwrap().is_none(), "nothing of the batch was stored");
        assert_eq!(store.run_events(run).await.unwrap().len(), 1);

        let mut fresh =
            CommitBatch { claim: Some(Claim { owner: b, lease }), ..Default::default() };
        fresh.events.push(cancel(run, 1));
        fresh.fences.push((run, 2));
        store.commit(&fresh).await.unwrap();
        store.release_runs(b, &[run]).await.unwrap();
    }
}

//! [`MemoryStore`]: a [`Store`] in a `Mutex`, for tests and examples that need no durability.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::{CommitBatch, RunQuery, Store, StoredRun};
use crate::error::StoreError;
use crate::event::{RecordedEvent, RunRecord, RunStatus};
use crate::id::RunId;
use crate::wdo::WorkflowDef;

/// A store that keeps everything in memory and loses it when dropped.
///
/// It follows the whole [`Store`] contract except durability, which makes it the store of
/// choice for unit tests of workflows. Clones share the same data.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    workflows: HashMap<String, Vec<(String, WorkflowDef)>>,
    runs: HashMap<RunId, RunRecord>,
    events: HashMap<RunId, Vec<RecordedEvent>>,
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

    async fn commit(&self, batch: &CommitBatch) -> Result<(), StoreError> {
        let mut inner = self.lock();
        // Check everything before changing anything: a commit is all or nothing.
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
        for run in &batch.new_runs {
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
        Ok(())
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

//! The engine across store failures: an outage is waited out, nothing accepted is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cronflow_core::{
    CommitBatch, Engine, EngineError, MemoryStore, MockExecutor, RecordedEvent, RunId, RunQuery,
    RunRecord, RunStatus, Store, StoreError, StoredRun, Workflow, WorkflowDef,
};
use serde_json::json;

/// A store whose next `failures` commits fail with `error`.
#[derive(Clone)]
struct FailingStore {
    inner: MemoryStore,
    failures: Arc<AtomicU32>,
    error: fn() -> StoreError,
}

#[async_trait]
impl Store for FailingStore {
    async fn save_workflow(&self, def: &WorkflowDef) -> Result<u32, StoreError> {
        self.inner.save_workflow(def).await
    }
    async fn load_workflow(&self, id: &str, rev: u32) -> Result<Option<WorkflowDef>, StoreError> {
        self.inner.load_workflow(id, rev).await
    }
    async fn commit(&self, batch: &CommitBatch) -> Result<(), StoreError> {
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err((self.error)());
        }
        self.inner.commit(batch).await
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
}

async fn engine(store: FailingStore, mock: MockExecutor) -> Engine {
    let flow = Workflow::new("flow").step("a").step("b").build().unwrap();
    Engine::builder().store(store).executor(mock).workflow(flow).start().await.unwrap()
}

#[tokio::test]
async fn a_store_outage_is_waited_out_and_nothing_is_lost() {
    let failures = Arc::new(AtomicU32::new(0));
    let store = FailingStore {
        inner: MemoryStore::new(),
        failures: Arc::clone(&failures),
        error: || StoreError::Database("connection refused".into()),
    };
    let mock = MockExecutor::new().returns("a", 1).returns("b", 2);
    let engine = engine(store, mock.clone()).await;
    // The next 8 commits fail (about 1.3 s of backoff): the trigger waits, then succeeds.
    failures.store(8, Ordering::SeqCst);
    let run = engine.handle().trigger("flow", json!(null)).await.unwrap();
    let report = engine.handle().wait(run).await.unwrap();
    assert_eq!(report.status(), RunStatus::Completed);
    assert_eq!(report.attempts("a"), 1);
    assert_eq!(failures.load(Ordering::SeqCst), 0);
    engine.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_store_that_keeps_refusing_a_batch_stops_the_engine_with_the_error() {
    let store = FailingStore {
        inner: MemoryStore::new(),
        failures: Arc::new(AtomicU32::new(u32::MAX)),
        error: || StoreError::Conflict("duplicate".into()),
    };
    let engine = engine(store, MockExecutor::new().returns("a", 1).returns("b", 2)).await;
    let err = engine.handle().trigger("flow", json!(null)).await.unwrap_err();
    assert!(matches!(err, EngineError::Store(_)), "{err}");
    let err = engine.handle().trigger("flow", json!(null)).await.unwrap_err();
    assert!(matches!(err, EngineError::ShuttingDown), "the engine has stopped: {err}");
}

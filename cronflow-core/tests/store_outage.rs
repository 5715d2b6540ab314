//! The engine across store failures: an outage is waited out, nothing accepted is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cronflow_core::{
    Engine, EngineError, MemoryStore, MockExecutor, RunStatus, StoreError, Workflow,
};
use serde_json::json;
use support::FaultyStore;

mod support;

/// A store whose next `failures` commits fail with `error`.
fn failing_store(failures: &Arc<AtomicU32>, error: fn() -> StoreError) -> FaultyStore {
    let mut store = FaultyStore::new(MemoryStore::new());
    let failures = Arc::clone(failures);
    store.commit_fault = Some(Arc::new(move || {
        let left = failures.load(Ordering::SeqCst);
        (left > 0).then(|| {
            failures.store(left - 1, Ordering::SeqCst);
            error()
        })
    }));
    store
}

async fn engine(store: FaultyStore, mock: MockExecutor) -> Engine {
    let flow = Workflow::new("flow").step("a").step("b").build().unwrap();
    Engine::builder().store(store).executor(mock).workflow(flow).start().await.unwrap()
}

#[tokio::test]
async fn a_store_outage_is_waited_out_and_nothing_is_lost() {
    let failures = Arc::new(AtomicU32::new(0));
    let store = failing_store(&failures, || StoreError::Database("connection refused".into()));
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
    let failures = Arc::new(AtomicU32::new(u32::MAX));
    let store = failing_store(&failures, || StoreError::Conflict("duplicate".into()));
    let engine = engine(store, MockExecutor::new().returns("a", 1).returns("b", 2)).await;
    let err = engine.handle().trigger("flow", json!(null)).await.unwrap_err();
    assert!(matches!(err, EngineError::Store(_)), "{err}");
    let err = engine.handle().trigger("flow", json!(null)).await.unwrap_err();
    assert!(matches!(err, EngineError::ShuttingDown), "the engine has stopped: {err}");
}

#[tokio::test]
async fn a_commit_applied_whose_answer_was_lost_is_recognised_and_the_engine_goes_on() {
    // Every commit is applied, but the answers of the first two are lost, as when the
    // database commits and the connection breaks before it replies: the retries then find
    // their rows taken.
    let lost = Arc::new(AtomicU32::new(2));
    let mut store = FaultyStore::new(MemoryStore::new());
    let left = Arc::clone(&lost);
    store.lost_answer = Some(Arc::new(move || {
        let n = left.load(Ordering::SeqCst);
        (n > 0).then(|| {
            left.store(n - 1, Ordering::SeqCst);
            StoreError::Database("connection reset by peer".into())
        })
    }));
    let mock = MockExecutor::new().returns("a", 1).returns("b", 2);
    let engine = engine(store, mock.clone()).await;
    let handle = engine.handle();
    let run = handle.trigger("flow", json!(null)).await.expect("the accepted run is answered");
    let report = handle.wait(run).await.unwrap();
    assert_eq!(report.status(), RunStatus::Completed);
    assert_eq!(lost.load(Ordering::SeqCst), 0, "both answers were lost");
    // Recorded once each, and the engine still works.
    let kinds: Vec<_> = report.history.iter().map(|e| e.event.kind()).collect();
    assert_eq!(kinds, ["run_started", "task_succeeded", "task_succeeded", "run_completed"]);
    assert_eq!(mock.calls_to("a").len(), 1);
    let again = handle.trigger("flow", json!(null)).await.unwrap();
    assert_eq!(handle.wait(again).await.unwrap().status(), RunStatus::Completed);
    engine.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn triggers_beyond_the_pending_limit_wait_before_entering_the_engine() {
    // The store refuses the next 6 commits (about 600 ms of backoff): the first trigger's turn
    // cannot commit, so the second trigger must wait for its place.
    let failures = Arc::new(AtomicU32::new(0));
    let store = failing_store(&failures, || StoreError::Database("connection refused".into()));
    let flow = Workflow::new("flow").step("a").step("b").build().unwrap();
    let engine = Engine::builder()
        .store(store)
        .executor(MockExecutor::new().returns("a", 1).returns("b", 2))
        .workflow(flow)
        .max_pending_triggers(1)
        .start()
        .await
        .unwrap();
    let handle = engine.handle();
    failures.store(6, Ordering::SeqCst);
    let first = tokio::spawn({
        let handle = handle.clone();
        async move { handle.trigger("flow", json!(1)).await }
    });
    let second = tokio::spawn({
        let handle = handle.clone();
        async move { handle.trigger("flow", json!(2)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(handle.pending_triggers(), 1, "only one trigger is inside the engine");
    assert!(!first.is_finished() && !second.is_finished());
    let (first, second) = (first.await.unwrap().unwrap(), second.await.unwrap().unwrap());
    for run in [first, second] {
        assert_eq!(handle.wait(run).await.unwrap().status(), RunStatus::Completed);
    }
    assert_eq!(handle.pending_triggers(), 0);
    engine.shutdown(Duration::from_secs(5)).await.unwrap();
}

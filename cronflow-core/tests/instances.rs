//! Several engine instances sharing one store: claiming, leases and fencing, in one process on
//! the shared `MemoryStore` (the PostgreSQL backend runs the same engine code).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use cronflow_core::{
    CommitBatch, Engine, Json, MemoryStore, MockExecutor, NewRun, RecordedEvent, RunEvent, RunId,
    RunReport, RunStatus, Store, StoreError, Workflow, WorkflowDef,
};
use serde_json::json;
use support::FaultyStore;

mod support;

const GRACE: Duration = Duration::from_secs(5);

/// Runs created by "someone else" (no owner), as another instance's trigger would leave them
/// when it cannot take them itself.
async fn unowned_runs(store: &MemoryStore, workflow: &str, n: usize) -> Vec<RunId> {
    let revision = store.save_workflow(&flow(workflow)).await.unwrap();
    let mut batch = CommitBatch::default();
    let mut ids = Vec::new();
    for i in 0..n {
        let id = RunId::new();
        let now = Utc::now();
        batch.new_runs.push(NewRun {
            id,
            workflow_id: workflow.into(),
            revision,
            payload: Json::from(json!({ "i": i })),
            created_at: now,
            key: None,
            context: None,
        });
        batch.events.push((id, RecordedEvent { seq: 0, at: now, event: RunEvent::RunStarted }));
        ids.push(id);
    }
    store.commit(&batch).await.unwrap();
    ids
}

fn flow(id: &str) -> WorkflowDef {
    Workflow::new(id).step("one").step("two").build().unwrap()
}

fn executor(delay: Duration) -> MockExecutor {
    MockExecutor::new().returns("one", 1).returns("two", 2).delay("one", delay)
}

fn assert_completed_once(report: &RunReport) {
    assert_eq!(report.status(), RunStatus::Completed, "{report:?}");
    let done: Vec<_> = report.history.iter().filter_map(|e| e.event.task().cloned()).collect();
    let unique: HashSet<_> = done.iter().collect();
    assert_eq!(done.len(), unique.len(), "a step completion recorded twice: {done:?}");
    for (i, e) in report.history.iter().enumerate() {
        assert_eq!(e.seq as usize, i);
    }
}

#[tokio::test]
async fn instances_share_unowned_runs_and_each_completes_exactly_once() {
    let store = MemoryStore::new();
    let runs = unowned_runs(&store, "shared", 60).await;
    let mut engines = Vec::new();
    let mut mocks = Vec::new();
    for _ in 0..3 {
        let mock = executor(Duration::from_millis(20));
        let engine = Engine::builder()
            .store(store.clone())
            .executor(mock.clone())
            .workflow(flow("shared"))
            .max_active_runs(10)
            .claim_interval(Duration::from_millis(20))
            .start()
            .await
            .unwrap();
        engines.push(engine);
        mocks.push(mock);
    }
    for run in &runs {
        let report = engines[0].handle().wait(*run).await.unwrap();
        assert_completed_once(&report);
    }
    let per_instance: Vec<usize> = mocks.iter().map(|m| m.call_count("two")).collect();
    assert_eq!(per_instance.iter().sum::<usize>(), runs.len(), "{per_instance:?}");
    assert!(per_instance.iter().all(|n| *n > 0), "work is spread: {per_instance:?}");
    for engine in engines {
        engine.shutdown(GRACE).await.unwrap();
    }
}

#[tokio::test]
async fn a_frozen_instance_cannot_commit_stale_results() {
    let store = MemoryStore::new();
    let frozen = Arc::new(AtomicBool::new(false));
    let mut slow_store = FaultyStore::new(store.clone());
    let is_frozen = Arc::clone(&frozen);
    // Renewals fail while frozen, as if the instance were stopped (SIGSTOP).
    slow_store.renew_fault = Some(Arc::new(move || {
        is_frozen.load(Ordering::SeqCst).then(|| StoreError::Database("frozen".into()))
    }));
    // Instance A takes the run and is slow on step `one`; its heartbeat then stops.
    let slow = executor(Duration::from_millis(600));
    let a = Engine::builder()
        .store(slow_store)
        .executor(slow.clone())
        .workflow(flow("fenced"))
        .lease(Duration::from_millis(150))
        .claim_interval(Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    let run = unowned_runs(&store, "fenced", 1).await[0];
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(slow.call_count("one"), 1, "A took the run");
    frozen.store(true, Ordering::SeqCst);

    // Instance B claims the run once A's lease has expired and finishes it.
    let fast = executor(Duration::ZERO);
    let b = Engine::builder()
        .store(store.clone())
        .executor(fast.clone())
        .workflow(flow("fenced"))
        .lease(Duration::from_secs(10))
        .claim_interval(Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    let report = b.handle().wait(run).await.unwrap();
    assert_completed_once(&report);
    assert_eq!(fast.call_count("one"), 1);

    // A's late answer for step `one` is refused by the store (stale fence) and dropped.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let report = b.handle().report(run).await.unwrap();
    assert_completed_once(&report);
    assert_eq!(slow.call_count("two"), 0, "A did not go on with the run");
    a.shutdown(GRACE).await.unwrap();
    b.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn a_full_instance_leaves_new_runs_to_the_others() {
    let store = MemoryStore::new();
    let busy = executor(Duration::from_millis(30));
    let a = Engine::builder()
        .store(store.clone())
        .executor(busy.clone())
        .workflow(flow("shed"))
        .max_active_runs(2)
        .claim_interval(Duration::from_secs(3600))
        .start()
        .await
        .unwrap();
    let idle = executor(Duration::from_millis(30));
    let b = Engine::builder()
        .store(store.clone())
        .executor(idle.clone())
        .workflow(flow("shed"))
        .claim_interval(Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    let mut runs = Vec::new();
    for i in 0..12 {
        runs.push(a.handle().trigger("shed", json!({ "i": i })).await.unwrap());
    }
    for run in &runs {
        assert_completed_once(&a.handle().wait(*run).await.unwrap());
    }
    assert_eq!(busy.call_count("two") + idle.call_count("two"), runs.len());
    assert!(
        idle.call_count("two") >= 8,
        "B ran what A had no room for: {}",
        idle.call_count("two")
    );
    a.shutdown(GRACE).await.unwrap();
    b.shutdown(GRACE).await.unwrap();
}

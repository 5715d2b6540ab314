//! Keyed triggers through the engine's public API: a key starts one run however often, and
//! however concurrently, it is delivered, also through two engines sharing one store; the
//! duplicate's work is never dispatched.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cronflow_core::{
    Engine, EngineError, InProcessExecutor, Json, MAX_TRIGGER_KEY_BYTES, MemoryStore, RunQuery,
    RunStatus, TaskError, TriggerOptions, Workflow,
};

const GRACE: Duration = Duration::from_secs(5);

/// An engine on `store` whose workflow `count` has one step counting its calls.
async fn engine(store: MemoryStore, calls: Arc<AtomicUsize>) -> Engine {
    let executor = InProcessExecutor::new().handler("count", move |_| {
        let calls = Arc::clone(&calls);
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, TaskError>("counted")
        }
    });
    Engine::builder()
        .store(store)
        .executor(executor)
        .workflow(Workflow::new("count").step("count").build().unwrap())
        .start()
        .await
        .unwrap()
}

fn key(k: &str) -> TriggerOptions {
    TriggerOptions::new().key(k)
}

#[tokio::test]
async fn a_key_delivered_again_returns_the_run_it_started() {
    let store = MemoryStore::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let engine = engine(store.clone(), Arc::clone(&calls)).await;
    let handle = engine.handle();

    let first = handle.trigger_with("count", Json::null(), key("slot-1")).await.unwrap();
    assert!(first.created);
    handle.wait(first.run_id).await.unwrap();
    let again = handle.trigger_with("count", Json::null(), key("slot-1")).await.unwrap();
    assert_eq!((again.run_id, again.created), (first.run_id, false));
    let other = handle.trigger_with("count", Json::null(), key("slot-2")).await.unwrap();
    assert!(other.created && other.run_id != first.run_id);
    handle.wait(other.run_id).await.unwrap();
    // Unkeyed triggers are never deduplicated.
    let a = handle.trigger("count", ()).await.unwrap();
    let b = handle.trigger("count", ()).await.unwrap();
    assert_ne!(a, b);
    handle.wait(a).await.unwrap();
    handle.wait(b).await.unwrap();

    assert_eq!(store_runs(&handle).await, 4);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    engine.shutdown(GRACE).await.unwrap();
}

async fn store_runs(handle: &cronflow_core::EngineHandle) -> usize {
    handle.list_runs(&RunQuery { limit: Some(1000), ..RunQuery::default() }).await.unwrap().len()
}

#[tokio::test]
async fn concurrent_deliveries_of_one_key_start_one_run_on_two_engines() {
    let store = MemoryStore::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let engines =
        [engine(store.clone(), Arc::clone(&calls)).await, engine(store, Arc::clone(&calls)).await];
    let mut tasks = Vec::new();
    for i in 0..40 {
        let handle = engines[i % 2].handle();
        tasks.push(tokio::spawn(async move {
            handle.trigger_with("count", Json::null(), key("the-one")).await.unwrap()
        }));
    }
    let mut created = 0;
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        let t = task.await.unwrap();
        created += usize::from(t.created);
        ids.insert(t.run_id);
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1, "every delivery answered with the same run");
    let run = *ids.iter().next().unwrap();
    let report = engines[0].handle().wait(run).await.unwrap();
    assert_eq!(report.status(), RunStatus::Completed);
    assert_eq!(store_runs(&engines[0].handle()).await, 1);
    // Only the one run's step ran: the duplicates' work was never dispatched.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    for engine in engines {
        engine.shutdown(GRACE).await.unwrap();
    }
}

#[tokio::test]
async fn bad_keys_are_refused_and_workflows_are_listed() {
    let engine = engine(MemoryStore::new(), Arc::default()).await;
    let handle = engine.handle();
    for bad in [String::new(), "k".repeat(MAX_TRIGGER_KEY_BYTES + 1)] {
        let err = handle.trigger_with("count", Json::null(), key(&bad)).await.unwrap_err();
        assert!(matches!(err, EngineError::InvalidTriggerKey { .. }), "{err}");
    }
    let ids: Vec<String> = handle.workflows().into_iter().map(|d| d.id).collect();
    assert_eq!(ids, ["count"]);
    handle.register(Workflow::new("later").step("count").build().unwrap()).await.unwrap();
    let ids: Vec<String> = handle.workflows().into_iter().map(|d| d.id).collect();
    assert_eq!(ids, ["count", "later"]);
    engine.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn a_pruned_key_starts_a_new_run() {
    let calls = Arc::new(AtomicUsize::new(0));
    let engine = engine(MemoryStore::new(), Arc::clone(&calls)).await;
    let handle = engine.handle();
    let first = handle.trigger_with("count", Json::null(), key("webhook:count:1")).await.unwrap();
    handle.wait(first.run_id).await.unwrap();
    // Younger than an hour: kept.
    let kept = handle.prune_trigger_keys("webhook:", Duration::from_secs(3600)).await.unwrap();
    assert_eq!(kept, 0);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(handle.prune_trigger_keys("webhook:", Duration::ZERO).await.unwrap(), 1);
    let again = handle.trigger_with("count", Json::null(), key("webhook:count:1")).await.unwrap();
    assert!(again.created && again.run_id != first.run_id);
    handle.wait(again.run_id).await.unwrap();
    engine.shutdown(GRACE).await.unwrap();
}

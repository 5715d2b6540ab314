//! Flow control through the public API: concurrency limits (per key), rate limits and
//! debounce, on the in-memory store (the durable queue across a restart included).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cronflow_core::{
    ConcurrencyDef, DebounceDef, Engine, EngineHandle, InProcessExecutor, MemoryStore,
    RateLimitDef, RunEvent, RunId, RunStatus, TaskError, Workflow, WorkflowDef,
};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout};

const GRACE: Duration = Duration::from_secs(5);
const BOUND: Duration = Duration::from_secs(20);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What the `work` handler saw: payloads in the order they started, and the peak of
/// handlers running at once per `customer`.
#[derive(Default)]
struct Seen {
    started: Vec<Value>,
    running: HashMap<String, usize>,
    peak: HashMap<String, usize>,
    at: Vec<Instant>,
}

/// A `work` handler that holds each call until `gate` gives it a permit.
fn executor(seen: Arc<Mutex<Seen>>, gate: Arc<Semaphore>) -> InProcessExecutor {
    InProcessExecutor::new().handler("work", move |task| {
        let (seen, gate) = (Arc::clone(&seen), Arc::clone(&gate));
        async move {
            let payload: Value = task.context.payload()?;
            let customer = payload["customer"].to_string();
            {
                let mut s = seen.lock().unwrap();
                s.started.push(payload.clone());
                s.at.push(Instant::now());
                let n = s.running.entry(customer.clone()).or_default();
                *n += 1;
                let n = *n;
                let peak = s.peak.entry(customer.clone()).or_default();
                *peak = (*peak).max(n);
            }
            gate.acquire().await.map_err(|e| TaskError::msg(e.to_string()))?.forget();
            *seen.lock().unwrap().running.get_mut(&customer).unwrap() -= 1;
            Ok::<_, TaskError>(payload)
        }
    })
}

async fn start(
    store: MemoryStore,
    flow: WorkflowDef,
    seen: &Arc<Mutex<Seen>>,
    gate: &Arc<Semaphore>,
) -> Engine {
    Engine::builder()
        .store(store)
        .executor(executor(Arc::clone(seen), Arc::clone(gate)))
        .workflow(flow)
        .start()
        .await
        .unwrap()
}

async fn wait_all(handle: &EngineHandle, runs: &[RunId]) {
    for run in runs {
        let report = timeout(BOUND, handle.wait(*run)).await.unwrap().unwrap();
        assert_eq!(report.status(), RunStatus::Completed, "{:?}", report.history);
    }
}

async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + BOUND;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(ms(5)).await;
    }
}

#[tokio::test]
async fn a_concurrency_limit_lets_runs_through_one_at_a_time_in_trigger_order() {
    let flow = Workflow::new("serial")
        .concurrency(ConcurrencyDef { limit: 1, key: None })
        .step("work")
        .build()
        .unwrap();
    let (seen, gate) = (Arc::new(Mutex::new(Seen::default())), Arc::new(Semaphore::new(0)));
    let engine = start(MemoryStore::new(), flow, &seen, &gate).await;
    let handle = engine.handle();
    let mut runs = Vec::new();
    for i in 0..4 {
        runs.push(handle.trigger("serial", json!({"n": i, "customer": "all"})).await.unwrap());
    }
    until("the first run", || seen.lock().unwrap().started.len() == 1).await;
    tokio::time::sleep(ms(50)).await;
    assert_eq!(seen.lock().unwrap().started.len(), 1, "the others wait");
    gate.add_permits(4);
    wait_all(&handle, &runs).await;
    {
        let s = seen.lock().unwrap();
        let order: Vec<i64> = s.started.iter().map(|p| p["n"].as_i64().unwrap()).collect();
        assert_eq!(order, [0, 1, 2, 3], "first in, first out");
        assert_eq!(s.peak["\"all\""], 1);
    }
    // Each run records when it was let through.
    let report = handle.report(runs[3]).await.unwrap();
    assert!(report.history.iter().any(|e| e.event == RunEvent::RunAdmitted));
    engine.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn a_concurrency_key_limits_each_customer_separately() {
    let flow = Workflow::new("per-customer")
        .concurrency(ConcurrencyDef { limit: 1, key: Some("/customer".into()) })
        .step("work")
        .build()
        .unwrap();
    let (seen, gate) = (Arc::new(Mutex::new(Seen::default())), Arc::new(Semaphore::new(0)));
    let engine = start(MemoryStore::new(), flow, &seen, &gate).await;
    let handle = engine.handle();
    let mut runs = Vec::new();
    for (i, customer) in ["a", "a", "b", "b"].iter().enumerate() {
        let payload = json!({"n": i, "customer": customer});
        runs.push(handle.trigger("per-customer", payload).await.unwrap());
    }
    until("one run per customer", || seen.lock().unwrap().started.len() == 2).await;
    tokio::time::sleep(ms(50)).await;
    assert_eq!(seen.lock().unwrap().started.len(), 2, "one per customer, not more");
    gate.add_permits(4);
    wait_all(&handle, &runs).await;
    {
        let s = seen.lock().unwrap();
        assert_eq!((s.peak["\"a\""], s.peak["\"b\""]), (1, 1));
    }
    engine.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn a_rate_limit_delays_runs_and_drops_none() {
    let flow = Workflow::new("limited")
        .rate_limit(RateLimitDef { limit: 2, period: Some(ms(400)), key: None })
        .step("work")
        .build()
        .unwrap();
    let (seen, gate) = (Arc::new(Mutex::new(Seen::default())), Arc::new(Semaphore::new(100)));
    let engine = start(MemoryStore::new(), flow, &seen, &gate).await;
    let handle = engine.handle();
    let began = Instant::now();
    let mut runs = Vec::new();
    for i in 0..5 {
        runs.push(handle.trigger("limited", json!({"n": i, "customer": "x"})).await.unwrap());
    }
    wait_all(&handle, &runs).await;
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.started.len(), 5, "every run ran");
        // Two at once, then one every 200 ms: the fifth cannot start before 600 ms.
        let fifth = s.at.iter().max().unwrap().duration_since(began);
        assert!(fifth >= ms(550), "the fifth run started after only {fifth:?}");
    }
    engine.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn debounce_folds_a_burst_into_one_run_with_the_last_payload() {
    let flow = Workflow::new("debounced")
        .debounce(DebounceDef { window: Some(ms(150)), key: Some("/customer".into()) })
        .step("work")
        .build()
        .unwrap();
    let (seen, gate) = (Arc::new(Mutex::new(Seen::default())), Arc::new(Semaphore::new(100)));
    let engine = start(MemoryStore::new(), flow, &seen, &gate).await;
    let handle = engine.handle();
    let mut runs = Vec::new();
    for i in 0..3 {
        runs.push(handle.trigger("debounced", json!({"n": i, "customer": "a"})).await.unwrap());
    }
    let other = handle.trigger("debounced", json!({"n": 9, "customer": "b"})).await.unwrap();
    assert!(runs.iter().all(|r| *r == runs[0]), "one run for the burst: {runs:?}");
    assert_ne!(other, runs[0], "another key is another burst");
    wait_all(&handle, &[runs[0], other]).await;
    let report = handle.wait(runs[0]).await.unwrap();
    assert_eq!(report.run.output.unwrap().to_value(), json!({"n": 2, "customer": "a"}));
    let merged =
        report.history.iter().filter(|e| matches!(e.event, RunEvent::TriggerMerged { .. }));
    assert_eq!(merged.count(), 2);
    assert_eq!(seen.lock().unwrap().started.len(), 2);
    engine.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn runs_waiting_for_admission_survive_a_restart_in_order() {
    let flow = Workflow::new("serial")
        .concurrency(ConcurrencyDef { limit: 1, key: None })
        .step("work")
        .build()
        .unwrap();
    let store = MemoryStore::new();
    let (seen, gate) = (Arc::new(Mutex::new(Seen::default())), Arc::new(Semaphore::new(0)));
    let engine = start(store.clone(), flow.clone(), &seen, &gate).await;
    let handle = engine.handle();
    let mut runs = Vec::new();
    for i in 0..3 {
        runs.push(handle.trigger("serial", json!({"n": i, "customer": "all"})).await.unwrap());
    }
    until("the first run", || seen.lock().unwrap().started.len() == 1).await;
    engine.shutdown(ms(10)).await.unwrap();

    let (seen, gate) = (Arc::new(Mutex::new(Seen::default())), Arc::new(Semaphore::new(10)));
    let engine = start(store, flow, &seen, &gate).await;
    let handle = engine.handle();
    wait_all(&handle, &runs).await;
    {
        let s = seen.lock().unwrap();
        let order: Vec<i64> = s.started.iter().map(|p| p["n"].as_i64().unwrap()).collect();
        assert_eq!(order, [0, 1, 2], "the interrupted run first, then the queue in order");
        assert_eq!(s.peak["\"all\""], 1);
    }
    engine.shutdown(GRACE).await.unwrap();
}

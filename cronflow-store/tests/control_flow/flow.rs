//! Flow control on real databases: runs waiting for a concurrency limit are durable and keep
//! their order across a restart, a debounced burst is one run with the last payload, and a
//! rate limit delays runs without dropping any.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cronflow_core::{
    ConcurrencyDef, DebounceDef, InProcessExecutor, RateLimitDef, RunEvent, TaskError, Workflow,
};
use serde_json::{Value, json};

use crate::harness::*;

/// What `work` saw: the payloads' `n` in the order they started, and the peak of calls at once.
#[derive(Clone, Default)]
struct Seen {
    order: Arc<Mutex<Vec<i64>>>,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

/// `work` returns its payload after `hold` ms; it never returns for `n == hang`.
fn work(seen: &Seen, hold: u64, hang: i64) -> InProcessExecutor {
    let seen = seen.clone();
    InProcessExecutor::new().handler("work", move |task| {
        let seen = seen.clone();
        async move {
            let payload: Value = task.context.payload()?;
            let n = payload["n"].as_i64().unwrap_or(-1);
            seen.order.lock().unwrap().push(n);
            let now = seen.running.fetch_add(1, Ordering::SeqCst) + 1;
            seen.peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(if n == hang { LIMIT * 2 } else { ms(hold) }).await;
            seen.running.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, TaskError>(payload)
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_over_a_concurrency_limit_wait_durably_and_in_order() {
    on_every_database(|db| async move {
        let flows = [Workflow::new("serial")
            .concurrency(ConcurrencyDef { limit: 1, key: None })
            .step("work")
            .build()
            .unwrap()];
        let seen = Seen::default();
        let engine = db.start(work(&seen, 0, 0), &flows).await;
        let handle = engine.handle();
        let mut runs = Vec::new();
        for n in 0..3 {
            runs.push(handle.trigger("serial", json!({"n": n})).await.unwrap());
        }
        eventually("the first run starts", || seen.order.lock().unwrap().len() == 1).await;
        tokio::time::sleep(ms(50)).await;
        assert_eq!(*seen.order.lock().unwrap(), [0], "{}: the others wait", db.name());
        stop(engine).await;

        let seen = Seen::default();
        let engine = db.start(work(&seen, 20, -1), &flows).await;
        let handle = engine.handle();
        for run in &runs {
            completed(&handle, *run).await;
        }
        assert_eq!(*seen.order.lock().unwrap(), [0, 1, 2], "{}: first in, first out", db.name());
        assert_eq!(seen.peak.load(Ordering::SeqCst), 1, "{}: one at a time", db.name());
        stop(engine).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debounced_burst_is_one_run_with_the_last_payload() {
    on_every_database(|db| async move {
        let flows = [Workflow::new("debounced")
            .debounce(DebounceDef { window: Some(ms(200)), key: Some("/customer".into()) })
            .step("work")
            .build()
            .unwrap()];
        let seen = Seen::default();
        let engine = db.start(work(&seen, 0, -1), &flows).await;
        let handle = engine.handle();
        let mut runs = Vec::new();
        for n in 0..3 {
            runs.push(handle.trigger("debounced", json!({"n": n, "customer": "a"})).await.unwrap());
        }
        assert!(runs.iter().all(|r| *r == runs[0]), "{}: one run: {runs:?}", db.name());
        let report = completed(&handle, runs[0]).await;
        assert_eq!(output(&report), json!({"n": 2, "customer": "a"}), "{}", db.name());
        let merged =
            report.history.iter().filter(|e| matches!(e.event, RunEvent::TriggerMerged { .. }));
        assert_eq!(merged.count(), 2, "{}", db.name());
        assert_eq!(*seen.order.lock().unwrap(), [2], "{}: the handler ran once", db.name());
        stop(engine).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_delays_runs_and_drops_none() {
    on_every_database(|db| async move {
        let flows = [Workflow::new("limited")
            .rate_limit(RateLimitDef { limit: 1, period: Some(ms(150)), key: Some("/k".into()) })
            .step("work")
            .build()
            .unwrap()];
        let seen = Seen::default();
        let engine = db.start(work(&seen, 0, -1), &flows).await;
        let handle = engine.handle();
        let began = Instant::now();
        let mut runs = Vec::new();
        for n in 0..3 {
            runs.push(handle.trigger("limited", json!({"n": n, "k": "same"})).await.unwrap());
        }
        let other = handle.trigger("limited", json!({"n": 9, "k": "other"})).await.unwrap();
        for run in runs.iter().chain([&other]) {
            completed(&handle, *run).await;
        }
        // One start per 150 ms for key "same": the third cannot start before 300 ms.
        assert!(began.elapsed() >= ms(290), "{}: done after {:?}", db.name(), began.elapsed());
        let mut order = seen.order.lock().unwrap().clone();
        order.sort();
        assert_eq!(order, [0, 1, 2, 9], "{}: every run ran once", db.name());
        stop(engine).await;
    })
    .await;
}

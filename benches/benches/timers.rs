//! Durable timers: how late `sleep` wakes a run, on a SQLite file.
//!
//! - *Many at once*: 10,000 runs sleep until the same instant; each then runs one step.
//!   Prints how long after that instant the steps started (p50, p99, max) and when the last
//!   run completed. Target: all within 2 s.
//! - *One at a time*: 200 runs one after another, each sleeping 100 ms. Prints the wake-up
//!   lateness (step start minus the sleep's recorded `until`), p50 and p99. Target: p99
//!   within 50 ms.
//!
//! Run with: `cargo bench -p cronflow-benches --bench timers` (about 20 s).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use cronflow_benches::{human, quantile};
use cronflow_core::{
    Engine, EngineHandle, InProcessExecutor, RunEvent, RunStatus, TaskError, Wait, Workflow,
};
use cronflow_store::SqliteStore;
use serde_json::json;

const MANY: usize = 10_000;
const ONE_AT_A_TIME: usize = 200;

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(measure());
}

/// Lateness of `at` after `due`, zero if early.
fn late(at: DateTime<Utc>, due: DateTime<Utc>) -> Duration {
    (at - due).to_std().unwrap_or(Duration::ZERO)
}

async fn measure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("timers.db")).await.expect("open store");
    let woke: Arc<Mutex<Vec<DateTime<Utc>>>> = Arc::default();
    let seen = Arc::clone(&woke);
    let executor = InProcessExecutor::new().handler("woke", move |_task| {
        let seen = Arc::clone(&seen);
        async move {
            seen.lock().expect("lock").push(Utc::now());
            Ok::<_, TaskError>(())
        }
    });
    // Every run of `alarm` sleeps until the same instant, far enough ahead to start them all.
    let due = Utc::now() + chrono::Duration::seconds(6);
    let until = due.to_rfc3339_opts(SecondsFormat::Micros, true);
    let alarm = Workflow::new("alarm").sleep_until("until", until).step("woke").build();
    let nap = Workflow::new("nap")
        .sleep("nap", Duration::from_millis(100))
        .step_with("after", |t| t.handler("woke"))
        .build();
    let engine = Engine::builder()
        .store(store)
        .executor(executor)
        .workflow(alarm.expect("valid"))
        .workflow(nap.expect("valid"))
        .start()
        .await
        .expect("start engine");
    let handle = engine.handle();

    let started = Instant::now();
    let mut runs = Vec::with_capacity(MANY);
    for chunk in 0..MANY / 500 {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..500 {
            let handle = handle.clone();
            batch
                .spawn(async move { handle.trigger("alarm", json!(null)).await.expect("trigger") });
        }
        runs.extend(batch.join_all().await);
        assert!(Utc::now() < due, "triggering took too long ({chunk} chunks)");
    }
    let triggered = started.elapsed();
    wait_all(&handle, &runs).await;
    let completed = late(Utc::now(), due);
    let mut lateness: Vec<Duration> =
        woke.lock().expect("lock").drain(..).map(|at| late(at, due)).collect();
    assert_eq!(lateness.len(), MANY);
    println!(
        "timers, {MANY} runs due in the same instant (triggered in {}): step started after \
         p50 {} p99 {} max {}; all runs completed {} after the instant [SQLite file]",
        human(triggered),
        human(quantile(&mut lateness, 0.50)),
        human(quantile(&mut lateness, 0.99)),
        human(quantile(&mut lateness, 1.0)),
        human(completed),
    );

    let mut wake = Vec::with_capacity(ONE_AT_A_TIME);
    for _ in 0..ONE_AT_A_TIME {
        let run = handle.trigger("nap", json!(null)).await.expect("trigger");
        let report = handle.wait(run).await.expect("wait");
        let until = report.history.iter().find_map(|e| match &e.event {
            RunEvent::WaitStarted { on: Wait::Sleep { until }, .. } => Some(*until),
            _ => None,
        });
        let woke_at = woke.lock().expect("lock").pop().expect("the step ran");
        wake.push(late(woke_at, until.expect("the sleep was recorded")));
    }
    println!(
        "sleep wake-up, {ONE_AT_A_TIME} runs one at a time sleeping 100 ms: step started after \
         the sleep's time p50 {} p99 {} [SQLite file]",
        human(quantile(&mut wake, 0.50)),
        human(quantile(&mut wake, 0.99)),
    );
    engine.shutdown(Duration::from_secs(10)).await.expect("shutdown");
}

async fn wait_all(handle: &EngineHandle, runs: &[cronflow_core::RunId]) {
    for run in runs {
        let report = handle.wait(*run).await.expect("wait");
        assert_eq!(report.status(), RunStatus::Completed, "{report:?}");
    }
}

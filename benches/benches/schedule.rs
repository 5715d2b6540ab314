//! Schedule firing lateness: how long after its slot a cron run is durable, on the wall
//! clock, while the engine carries a steady background load.
//!
//! Ten workflows fire every second (`* * * * * *`, 6-field cron: ten slots due at each second)
//! while 200 other 10-step runs a second (2,000 steps/s) keep the engine and its SQLite file
//! busy. Lateness is each scheduled run's `created_at` (when the engine accepted it) minus
//! its slot.
//!
//! Run with: `cargo bench -p cronflow-benches --bench schedule` (about 20 s).

use std::time::Duration;

use chrono::DateTime;
use cronflow_benches::{STEPS, human, linear_workflow, noop_executor, quantile};
use cronflow_core::{Engine, RunQuery, TriggerDef, Workflow};
use cronflow_store::SqliteStore;
use cronflow_triggers::Triggers;
use serde_json::json;

/// Seconds measured; each brings one slot of each of the [`SCHEDULES`].
const SECONDS: usize = 20;
const SCHEDULES: usize = 10;
/// Background runs started per second (each 10 steps).
const LOAD_RUNS_PER_SECOND: usize = 200;

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(measure());
}

async fn measure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("bench.db")).await.expect("open store");
    let ticks = (0..SCHEDULES).map(|i| {
        Workflow::new(format!("tick-{i}"))
            .trigger(TriggerDef::schedule("* * * * * *"))
            .step("noop")
            .build()
            .expect("workflow")
    });
    let engine = Engine::builder()
        .store(store)
        .executor(noop_executor())
        .workflows(ticks)
        .workflow(linear_workflow("load"))
        .start()
        .await
        .expect("start engine");
    let handle = engine.handle();
    let triggers = Triggers::new(handle.clone()).start().expect("triggers");

    // Steady background load: LOAD_RUNS_PER_SECOND runs, spread over each second.
    let load = {
        let handle = handle.clone();
        tokio::spawn(async move {
            let every = Duration::from_secs(1) / LOAD_RUNS_PER_SECOND as u32;
            let mut ticker = tokio::time::interval(every);
            loop {
                ticker.tick().await;
                let handle = handle.clone();
                tokio::spawn(async move {
                    if let Ok(run) = handle.trigger("load", json!({"n": 1})).await {
                        let _ = handle.wait(run).await;
                    }
                });
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(SECONDS as u64)).await;
    load.abort();
    triggers.shutdown().await;
    let query = RunQuery { limit: Some(100_000), ..RunQuery::default() };
    let runs: Vec<_> = handle
        .list_runs(&query)
        .await
        .expect("list runs")
        .into_iter()
        .filter(|run| run.workflow_id.starts_with("tick-"))
        .collect();
    let mut lateness: Vec<Duration> = runs
        .iter()
        .filter_map(|run| {
            let context = run.context.as_ref()?.to_value();
            let slot = DateTime::parse_from_rfc3339(context["slot"].as_str()?).ok()?;
            (run.created_at - slot.to_utc()).to_std().ok()
        })
        .collect();
    let n = lateness.len();
    println!(
        "schedule lateness ({SCHEDULES} every-second cron schedules, SQLite file, background load \
         {} runs/s x {STEPS} steps): p50 {} p99 {} max {} over {n} slots",
        LOAD_RUNS_PER_SECOND,
        human(quantile(&mut lateness, 0.50)),
        human(quantile(&mut lateness, 0.99)),
        human(quantile(&mut lateness, 1.0)),
    );
    engine.shutdown(Duration::from_secs(5)).await.expect("shutdown");
}

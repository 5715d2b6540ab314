//! Parked runs: 100,000 runs sleeping for an hour, on a SQLite file. Prints the engine
//! process's resident memory (RSS) once they are all parked, against the RSS before the
//! first trigger. Target: at most 100 MB with 100,000 runs parked (they live in the store).
//!
//! Run with: `cargo bench -p cronflow-benches --bench parked` (about a minute).

use std::time::{Duration, Instant};

use cronflow_benches::human;
use cronflow_core::{Engine, InProcessExecutor, TaskError, Workflow};
use cronflow_store::SqliteStore;
use serde_json::json;

const RUNS: usize = 100_000;
const IN_FLIGHT: usize = 1_000;

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(measure());
}

/// A `/proc/self/status` field in MB (`VmRSS`, `VmHWM`), or 0 where there is none.
fn status_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0);
    kb / 1024.0
}

async fn measure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("parked.db")).await.expect("open store");
    let executor = InProcessExecutor::new().handler("never", |_| async { Ok::<_, TaskError>(()) });
    let flow = Workflow::new("long-nap").sleep("nap", Duration::from_secs(3600)).step("never");
    let engine = Engine::builder()
        .store(store)
        .executor(executor)
        .workflow(flow.build().expect("valid"))
        .start()
        .await
        .expect("start engine");
    let handle = engine.handle();
    let before = status_mb("VmRSS");
    let started = Instant::now();
    for _ in 0..RUNS / IN_FLIGHT {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..IN_FLIGHT {
            let handle = handle.clone();
            batch.spawn(async move {
                handle.trigger("long-nap", json!({"n": 1})).await.expect("trigger")
            });
        }
        batch.join_all().await;
    }
    let triggered = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    while handle.parked_count() < RUNS {
        assert!(Instant::now() < deadline, "only {} of {RUNS} parked", handle.parked_count());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = status_mb("VmRSS");
    let peak = status_mb("VmHWM");
    println!(
        "parked runs: {RUNS} runs sleeping 1 h, all parked; RSS {after:.1} MB ({before:.1} MB \
         before the first trigger; {:.2} KB per parked run; peak {peak:.1} MB); triggered in {} \
         ({:.0} runs/s) [SQLite file]",
        (after - before) * 1024.0 / RUNS as f64,
        human(triggered),
        RUNS as f64 / triggered.as_secs_f64(),
    );
    engine.shutdown(Duration::from_secs(10)).await.expect("shutdown");
}

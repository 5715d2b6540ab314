//! Shared fixtures for the cronflow benchmarks: the 10-step no-op workflow and helpers to
//! report figures in user units.

use std::time::Duration;

use std::time::Instant;

use cronflow_core::{EngineHandle, InProcessExecutor, RunStatus, TaskError, Workflow, WorkflowDef};
use serde_json::json;

/// Steps in the benchmark workflow.
pub const STEPS: usize = 10;

/// A linear workflow of [`STEPS`] steps named `s0`..`s9`, each calling the handler `noop`.
pub fn linear_workflow(id: &str) -> WorkflowDef {
    (0..STEPS)
        .fold(Workflow::new(id), |w, i| w.step_with(format!("s{i}"), |s| s.handler("noop")))
        .build()
        .expect("the benchmark workflow is valid")
}

/// An executor whose only handler, `noop`, returns `null` at once.
pub fn noop_executor() -> InProcessExecutor {
    InProcessExecutor::new().handler("noop", |_task| async { Ok::<_, TaskError>(()) })
}

/// The `q` quantile (0..=1) of `samples`, which it sorts.
pub fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let index = ((samples.len() - 1) as f64 * q).round() as usize;
    samples[index]
}

/// Formats a duration in microseconds or milliseconds, whichever reads better.
pub fn human(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.0} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

/// Starts `runs` runs of workflow `workflow` at once (payload `{"n": 1}`), waits for all of
/// them to complete, and returns how long that took.
pub async fn run_batch(handle: &EngineHandle, workflow: &str, runs: usize) -> Duration {
    let started = Instant::now();
    let mut waits = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (handle, workflow) = (handle.clone(), workflow.to_string());
        waits.push(tokio::spawn(async move {
            let run = handle.trigger(&workflow, json!({"n": 1})).await.expect("trigger");
            handle.wait(run).await.expect("wait")
        }));
    }
    for wait in waits {
        let report = wait.await.expect("join");
        assert_eq!(report.status(), RunStatus::Completed, "{report:?}");
    }
    started.elapsed()
}

/// Runs `one` `iters` times and returns the sum of the durations it reports: the body of a
/// criterion `iter_custom` whose iterations time themselves (and keep their own samples).
pub fn sum_of(iters: u64, mut one: impl FnMut() -> Duration) -> Duration {
    (0..iters).map(|_| one()).sum()
}

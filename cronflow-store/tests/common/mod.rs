//! Helpers shared by the integration tests: fixtures, and the backends to run them on.
#![allow(dead_code)]

mod backends;

#[allow(unused_imports)]
pub(crate) use backends::*;

use chrono::{DateTime, Utc};
use cronflow_core::{
    CommitBatch, FinishedRun, Json, NewRun, RecordedEvent, RunEvent, RunId, RunStatus, TaskKey,
    WorkflowDef,
};

/// A workflow definition with one step per name.
pub(crate) fn def(id: &str, steps: &[&str]) -> WorkflowDef {
    let nodes: Vec<_> =
        steps.iter().map(|s| serde_json::json!({"type": "step", "id": s, "handler": s})).collect();
    serde_json::from_value(serde_json::json!({"schema": 1, "id": id, "nodes": nodes}))
        .expect("valid definition")
}

/// The time `us` microseconds after 2025-01-01T00:00:00Z.
pub(crate) fn t(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(1_735_689_600_000_000 + us).expect("in range")
}

/// Raw JSON text, kept as written.
pub(crate) fn json(text: &str) -> Json {
    Json::from_raw_str(text).expect("valid JSON")
}

/// A new run of `workflow` created at `t(created)`.
pub(crate) fn new_run(workflow: &str, created: i64) -> NewRun {
    NewRun {
        id: RunId::new(),
        workflow_id: workflow.to_owned(),
        revision: 1,
        payload: json(r#"{"order": 42, "items": [1, 2.50]}"#),
        created_at: t(created),
        key: None,
        context: None,
    }
}

/// Event `seq` of a typical history: `run_started`, then task successes.
pub(crate) fn event(seq: u32) -> RecordedEvent {
    let event = if seq == 0 {
        RunEvent::RunStarted
    } else {
        RunEvent::TaskSucceeded {
            task: TaskKey::new(format!("step{seq}")),
            attempt: 1,
            started_at: t(i64::from(seq) * 1_000 - 7),
            output: json(&format!(r#"{{"n": {seq}, "text": "out {seq}"}}"#)),
        }
    };
    RecordedEvent { seq, at: t(i64::from(seq) * 1_000), event }
}

/// `events` events `from..from + events` of `run`.
pub(crate) fn events(run: RunId, from: u32, count: u32) -> Vec<(RunId, RecordedEvent)> {
    (from..from + count).map(|seq| (run, event(seq))).collect()
}

/// A batch starting `run` with `count` events.
/// Its `run_started` event carries the run's `created_at`, as the engine writes it.
pub(crate) fn start(run: &NewRun, count: u32) -> CommitBatch {
    let mut events = events(run.id, 0, count);
    if let Some((_, first)) = events.first_mut() {
        first.at = run.created_at;
    }
    CommitBatch { new_runs: vec![run.clone()], events, ..CommitBatch::default() }
}

/// `run` completed with `output` at `t(at)`.
pub(crate) fn completed(run: RunId, output: &str, at: i64) -> FinishedRun {
    FinishedRun {
        id: run,
        status: RunStatus::Completed,
        output: Some(json(output)),
        failure: None,
        finished_at: t(at),
    }
}

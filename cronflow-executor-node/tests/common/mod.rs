//! What the tests running `NodeExecutor` against real `node` share: fixtures, the skip when
//! `node` is missing, spawning, one run through the engine, and reading the history. Each
//! test binary uses part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use cronflow_core::{Engine, MemoryStore, RunEvent, RunReport, Task, TaskError, WorkflowDef};
use cronflow_executor_node::{NodeExecutor, NodeExecutorBuilder};
use serde_json::Value;

/// How long one spawn or one run may take before the test fails.
pub(crate) const LIMIT: Duration = Duration::from_secs(30);

/// A module of `tests/fixtures/`.
pub(crate) fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A module of `js/fixtures/` (the fixtures of the JavaScript test suite).
pub(crate) fn js_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js/fixtures").join(name)
}

/// Whether `node` runs; prints why the test is skipped when not.
pub(crate) fn node_available() -> bool {
    node_version().is_some()
}

/// `node --version` as `(major, minor)`, or `None` (with a skip note) when `node` is missing.
pub(crate) fn node_version() -> Option<(u32, u32)> {
    let version = match std::process::Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        _ => {
            eprintln!("skipping: `node` is not on PATH");
            return None;
        }
    };
    let mut parts = version.trim().trim_start_matches('v').split('.');
    let mut next = || parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some((next(), next()))
}

/// Spawns the pool `builder` describes, failing the test after [`LIMIT`].
pub(crate) async fn spawn(builder: NodeExecutorBuilder) -> (NodeExecutor, Vec<WorkflowDef>) {
    tokio::time::timeout(LIMIT, builder.spawn()).await.expect("spawn timed out").expect("spawn")
}

/// Runs workflow `id` once on a fresh engine (`MemoryStore`, payloads up to 32 MiB) and
/// returns its report, failing the test after `limit`.
pub(crate) async fn run_within(
    limit: Duration,
    exec: &NodeExecutor,
    defs: Vec<WorkflowDef>,
    id: &str,
    payload: Value,
) -> RunReport {
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .executor(exec.clone())
        .workflows(defs)
        .max_payload_bytes(32 << 20)
        .start()
        .await
        .expect("engine start");
    let handle = engine.handle();
    let run_id = handle.trigger(id, payload).await.expect("trigger");
    let report = tokio::time::timeout(limit, handle.wait(run_id))
        .await
        .expect("run timed out")
        .expect("wait");
    engine.shutdown(Duration::from_secs(5)).await.expect("engine shutdown");
    report
}

/// [`run_within`] with [`LIMIT`].
pub(crate) async fn run(
    exec: &NodeExecutor,
    defs: Vec<WorkflowDef>,
    id: &str,
    payload: Value,
) -> RunReport {
    run_within(LIMIT, exec, defs, id, payload).await
}

/// The errors of the failed attempts of `task`, in order.
pub(crate) fn failures(report: &RunReport, task: &str) -> Vec<TaskError> {
    report
        .history
        .iter()
        .filter_map(|e| match &e.event {
            RunEvent::TaskFailed { task: t, error, .. } if t.as_str() == task => {
                Some(error.clone())
            }
            _ => None,
        })
        .collect()
}

/// Attempt 1 of a step task calling `handler` of `workflow`, with an empty context.
pub(crate) fn task(workflow: &str, handler: &str) -> Task {
    Task::new(workflow, handler)
}

/// Whether process `pid` exists.
pub(crate) fn alive(pid: u32) -> bool {
    std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

//! Workflow state from JavaScript: handlers in real `node` workers use `ctx.state` through the
//! real engine on a SQLite file; values persist across runs and engine restarts, expire by the
//! engine's clock, and namespaces keep workflows apart. Skipped with a note when `node` is
//! not on `PATH`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{LIMIT, fixture, node_available, spawn};
use cronflow_core::{Clock, Engine, EngineHandle, RunReport, RunStatus, SystemClock, WorkflowDef};
use cronflow_executor_node::NodeExecutor;
use cronflow_store::SqliteStore;
use serde_json::{Value, json};

/// A clock the test moves by hand (nothing in these runs waits on a timer).
#[derive(Clone)]
struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    fn advance(&self, by: chrono::Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

async fn start(
    path: &std::path::Path,
    node: &NodeExecutor,
    defs: Vec<WorkflowDef>,
    clock: ManualClock,
) -> Engine {
    let store = SqliteStore::open(path).await.expect("open sqlite");
    Engine::builder()
        .store(store)
        .executor(node.clone())
        .workflows(defs)
        .clock(clock)
        .start()
        .await
        .expect("engine start")
}

async fn run(handle: &EngineHandle, workflow: &str, payload: Value) -> RunReport {
    let id = handle.trigger(workflow, payload).await.expect("trigger");
    tokio::time::timeout(LIMIT, handle.wait(id)).await.expect("run timed out").expect("wait")
}

async fn output(handle: &EngineHandle, workflow: &str, payload: Value) -> Value {
    let report = run(handle, workflow, payload).await;
    assert_eq!(report.status(), RunStatus::Completed, "{report:#?}");
    report.run.output.unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_handlers_keep_durable_state_on_a_sqlite_file() {
    if !node_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let (node, defs) = spawn(NodeExecutor::builder().module(fixture("state.mjs")).workers(2)).await;
    let clock = ManualClock(Arc::new(Mutex::new(SystemClock.now())));
    let engine = start(&path, &node, defs.clone(), clock.clone()).await;
    let handle = engine.handle();

    // A counter per workflow, and one shared by all.
    assert_eq!(output(&handle, "js-counter", json!(null)).await, json!({ "mine": 1, "total": 10 }));
    assert_eq!(output(&handle, "js-counter", json!(null)).await, json!({ "mine": 2, "total": 20 }));
    handle.global_state().set("seed", &"from the host", None).await.unwrap();
    let other = output(&handle, "js-other", json!(null)).await;
    assert_eq!(other, json!({ "mine": 1, "seed": "from the host" }), "its own `runs`");
    assert_eq!(handle.state("js-counter").get_as::<i64>("runs").await.unwrap(), Some(2));
    assert_eq!(handle.state("js-other").get_as::<i64>("runs").await.unwrap(), Some(1));

    // A value with a TTL of an hour, read back until the engine's clock passes it.
    let set = output(&handle, "js-session", json!({ "token": "t-1" })).await;
    assert_eq!(set, json!({ "token": "t-1" }));
    clock.advance(chrono::Duration::minutes(59));
    assert_eq!(output(&handle, "js-session", json!({})).await, json!({ "token": "t-1" }));
    clock.advance(chrono::Duration::minutes(1));
    assert_eq!(output(&handle, "js-session", json!({})).await, json!({ "token": "absent" }));

    // Bad use fails the attempt with the store's typed error, without retries.
    let bad = run(&handle, "js-bad", json!(null)).await;
    assert_eq!(bad.status(), RunStatus::Failed);
    let error = bad.run.failure.and_then(|f| f.error).expect("the task's error");
    assert_eq!((error.name.as_str(), error.retryable), ("NotAnInteger", false), "{error:?}");
    engine.shutdown(Duration::from_secs(5)).await.unwrap();

    // A new engine on the same file: the counters go on, also under concurrent runs.
    let engine = start(&path, &node, defs, clock).await;
    let handle = engine.handle();
    assert_eq!(output(&handle, "js-counter", json!(null)).await, json!({ "mine": 3, "total": 30 }));
    let mut runs = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let handle = handle.clone();
        runs.spawn(
            async move { output(&handle, "js-counter", json!(null)).await["mine"].as_i64() },
        );
    }
    let mut seen: Vec<i64> = runs.join_all().await.into_iter().map(Option::unwrap).collect();
    seen.sort();
    assert_eq!(seen, (4..=23).collect::<Vec<_>>(), "every increment once");
    assert_eq!(handle.global_state().get_as::<i64>("total").await.unwrap(), Some(230));
    engine.shutdown(Duration::from_secs(5)).await.unwrap();
    node.shutdown(Duration::from_secs(5)).await;
}

//! Workflow state through the engine: Rust handlers use `ctx.state()`, the host reads and
//! seeds it through the handle, on the in-memory store.

use std::time::Duration;

use cronflow_core::{
    Engine, InProcessExecutor, Json, MemoryStore, RunStatus, StateError, TaskError, TokioClock,
    Workflow,
};
use serde_json::{Value, json};

const GRACE: Duration = Duration::from_secs(5);

fn executor() -> InProcessExecutor {
    InProcessExecutor::new()
        .handler("count", |task| async move {
            let state = task.context.state()?;
            let mine = state.incr("runs", 1).await.map_err(StateError::into_task_error)?;
            let total = task.context.global_state()?.incr("total", 1).await?;
            Ok::<_, TaskError>(json!({ "mine": mine, "total": total, "ns": state.namespace() }))
        })
        .handler("remember", |task| async move {
            let ttl = Some(Duration::from_secs(60));
            task.context.state()?.set("token", &task.context.payload, ttl).await?;
            Ok::<_, TaskError>(())
        })
        .handler("recall", |task| async move {
            let token = task.context.state()?.get("token").await?;
            Ok::<_, TaskError>(token.map(|t| t.to_value()))
        })
        .handler("bad-incr", |task| async move {
            let state = task.context.state()?;
            state.set("name", &"ada", None).await?;
            state.incr("name", 1).await.map_err(StateError::into_task_error)?;
            Ok::<_, TaskError>(())
        })
}

async fn start(store: MemoryStore) -> Engine {
    Engine::builder()
        .store(store)
        .executor(executor())
        .clock(TokioClock::new())
        .task_concurrency(64)
        .workflow(Workflow::new("counter").step("count").build().unwrap())
        .workflow(Workflow::new("other").step("count").build().unwrap())
        .workflow(Workflow::new("ttl").step("remember").build().unwrap())
        .workflow(Workflow::new("ttl-read").step("recall").build().unwrap())
        .workflow(Workflow::new("bad").step("bad-incr").build().unwrap())
        .start()
        .await
        .unwrap()
}

async fn run(engine: &Engine, workflow: &str, payload: Value) -> cronflow_core::RunReport {
    let handle = engine.handle();
    let id = handle.trigger(workflow, payload).await.unwrap();
    handle.wait(id).await.unwrap()
}

fn output(report: &cronflow_core::RunReport) -> Value {
    assert_eq!(report.status(), RunStatus::Completed, "{:?}", report.run.failure);
    report.run.output.as_ref().unwrap().to_value()
}

#[tokio::test]
async fn handlers_count_in_their_workflow_and_in_the_global_namespace() {
    let store = MemoryStore::new();
    let engine = start(store.clone()).await;
    let first = output(&run(&engine, "counter", json!(null)).await);
    assert_eq!(first, json!({ "mine": 1, "total": 1, "ns": "workflow:counter" }));
    assert_eq!(output(&run(&engine, "counter", json!(null)).await)["mine"], 2);
    // Another workflow has its own `runs`, and shares `total`.
    assert_eq!(
        output(&run(&engine, "other", json!(null)).await),
        json!({ "mine": 1, "total": 3, "ns": "workflow:other" })
    );

    let handle = engine.handle();
    assert_eq!(handle.state("counter").get_as::<i64>("runs").await.unwrap(), Some(2));
    assert_eq!(handle.global_state().get_as::<i64>("total").await.unwrap(), Some(3));
    // The host seeds a value; the next run counts on from it.
    handle.state("counter").set("runs", &100, None).await.unwrap();
    assert_eq!(output(&run(&engine, "counter", json!(null)).await)["mine"], 101);
    engine.shutdown(GRACE).await.unwrap();

    // The state is in the store, not in the engine: a new engine on it sees it.
    let engine = start(store).await;
    assert_eq!(output(&run(&engine, "counter", json!(null)).await)["mine"], 102);
    engine.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn fifty_concurrent_runs_count_fifty() {
    let engine = start(MemoryStore::new()).await;
    let handle = engine.handle();
    let mut runs = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let handle = handle.clone();
        runs.spawn(async move {
            let id = handle.trigger("counter", json!(null)).await.unwrap();
            handle.wait(id).await.unwrap()
        });
    }
    let mut seen: Vec<i64> =
        runs.join_all().await.iter().map(|r| output(r)["mine"].as_i64().unwrap()).collect();
    seen.sort();
    assert_eq!(seen, (1..=50).collect::<Vec<_>>(), "every increment is seen once");
    assert_eq!(handle.state("counter").get_as::<i64>("runs").await.unwrap(), Some(50));
    engine.shutdown(GRACE).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_value_with_a_ttl_expires_by_the_engine_clock() {
    let engine = start(MemoryStore::new()).await;
    run(&engine, "ttl", json!({ "token": "t-1" })).await;
    let state = engine.handle().state("ttl");
    let token = state.get("token").await.unwrap().map(|t| t.to_value());
    assert_eq!(token, Some(json!({ "token": "t-1" })));
    // Another workflow does not see it.
    assert_eq!(output(&run(&engine, "ttl-read", json!(null)).await), Value::Null);

    tokio::time::sleep(Duration::from_secs(59)).await;
    assert!(state.get("token").await.unwrap().is_some(), "still live after 59 s");
    assert_eq!(engine.handle().purge_expired_state().await.unwrap(), 0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(state.get("token").await.unwrap().is_none(), "expired at 60 s");
    assert!(!state.delete("token").await.unwrap(), "an expired value deletes as absent");

    run(&engine, "ttl", json!("t-2")).await;
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(engine.handle().purge_expired_state().await.unwrap(), 1);
    // An expired counter starts again from 0, without a TTL.
    state.set("n", &41, Some(Duration::from_secs(1))).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(state.incr("n", 1).await.unwrap(), 1);
    engine.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn bad_use_fails_the_task_with_a_typed_non_retryable_error() {
    let engine = start(MemoryStore::new()).await;
    let report = run(&engine, "bad", json!(null)).await;
    assert_eq!(report.status(), RunStatus::Failed);
    let failure = report.run.failure.unwrap();
    assert!(failure.message.contains("not an integer"), "{}", failure.message);
    assert_eq!(failure.error.map(|e| e.name).as_deref(), Some("NotAnInteger"));
    let attempts = report.history.iter().filter(|e| e.event.kind() == "task_failed").count();
    assert_eq!(attempts, 1, "not retried");
    let err = engine.handle().state("x").set("", &1, None).await.unwrap_err();
    assert!(matches!(err, StateError::InvalidKey { .. }), "{err}");
    engine.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn a_polling_handler_has_its_workflow_state() {
    let engine = start(MemoryStore::new()).await;
    let handle = engine.handle();
    let out = handle.run_handler("counter", "count", Json::null(), "poll-1".into()).await.unwrap();
    assert_eq!(out.to_value()["ns"], "workflow:counter");
    assert_eq!(handle.state("counter").get_as::<i64>("runs").await.unwrap(), Some(1));
    engine.shutdown(GRACE).await.unwrap();
}

//! Parking: runs waiting on far-away waits leave memory and come back for their wake-up or
//! a signal (resume, event, cancel, a child's end), on the in-memory store.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cronflow_core::{
    Engine, EngineHandle, InProcessExecutor, MemoryStore, RunStatus, TaskError, Workflow,
    WorkflowDef,
};
use serde_json::json;
use tokio::time::{Instant, timeout};

const GRACE: Duration = Duration::from_secs(5);
const BOUND: Duration = Duration::from_secs(20);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An engine on `store` that parks every run waiting more than 50 ms; `ask` hands out the
/// pause tokens it is given.
async fn engine(
    store: MemoryStore,
    flows: Vec<WorkflowDef>,
    tokens: Arc<Mutex<Vec<String>>>,
) -> Engine {
    let executor = InProcessExecutor::new()
        .handler("work", |task| async move { Ok::<_, TaskError>(task.context.last.to_value()) })
        .handler("echo", |task| async move { Ok::<_, TaskError>(task.context.payload.to_value()) })
        .handler("ask", move |task| {
            let tokens = Arc::clone(&tokens);
            async move {
                tokens.lock().unwrap().push(task.context.token.as_deref().unwrap_or("").to_owned());
                Ok::<_, TaskError>(())
            }
        });
    let mut builder = Engine::builder().store(store).executor(executor).park_after(ms(50));
    for flow in flows {
        builder = builder.workflow(flow);
    }
    builder.start().await.unwrap()
}

async fn until_parked(handle: &EngineHandle, n: usize) {
    let deadline = Instant::now() + BOUND;
    while handle.parked_count() != n {
        assert!(Instant::now() < deadline, "{} parked, not {n}", handle.parked_count());
        tokio::time::sleep(ms(5)).await;
    }
}

#[tokio::test]
async fn a_sleeping_run_is_parked_and_wakes_at_its_time() {
    let flow = Workflow::new("nap")
        .step("work")
        .sleep("nap", ms(800))
        .step_with("again", |t| t.handler("work"))
        .build()
        .unwrap();
    let engine = engine(MemoryStore::new(), vec![flow], Arc::default()).await;
    let handle = engine.handle();
    let began = Instant::now();
    let run = handle.trigger("nap", json!(1)).await.unwrap();
    until_parked(&handle, 1).await;
    let report = timeout(BOUND, handle.wait(run)).await.unwrap().unwrap();
    assert_eq!(report.status(), RunStatus::Completed);
    assert!(began.elapsed() >= ms(800), "woke after {:?}", began.elapsed());
    assert_eq!(handle.parked_count(), 0);
    engine.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn a_parked_pause_is_listed_and_resumed_by_its_token() {
    let flow = Workflow::new("approve").pause_with("ok", |p| p.on_pause("ask")).build().unwrap();
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let engine = engine(MemoryStore::new(), vec![flow], Arc::clone(&tokens)).await;
    let handle = engine.handle();
    let run = handle.trigger("approve", json!(null)).await.unwrap();
    until_parked(&handle, 1).await;
    let paused = handle.paused_runs().await.unwrap();
    assert_eq!(paused.len(), 1);
    assert_eq!((paused[0].run_id, paused[0].node.as_str()), (run, "ok"));
    let token = tokens.lock().unwrap()[0].clone();
    assert_eq!(handle.resume(&token, json!({"by": "ann"})).await.unwrap(), run);
    let report = timeout(BOUND, handle.wait(run)).await.unwrap().unwrap();
    assert_eq!(report.run.output.unwrap().to_value(), json!({"by": "ann"}));
    assert!(handle.resume(&token, json!(null)).await.is_err(), "a token works once");
    engine.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn an_event_reaches_a_parked_run_and_a_cancel_reaches_another() {
    let waiting = Workflow::new("waiting").wait_for_event("paid", "payment").build().unwrap();
    let engine = engine(MemoryStore::new(), vec![waiting], Arc::default()).await;
    let handle = engine.handle();
    let first = handle.trigger("waiting", json!(null)).await.unwrap();
    let second = handle.trigger("waiting", json!(null)).await.unwrap();
    until_parked(&handle, 2).await;
    handle.cancel(second, Some("no longer needed".into())).await.unwrap();
    let published =
        handle.publish_event("payment", json!({"amount": 5}).into(), None).await.unwrap();
    assert_eq!(published.resumed, 1, "the cancelled run no longer waits");
    let report = timeout(BOUND, handle.wait(first)).await.unwrap().unwrap();
    assert_eq!(report.run.output.unwrap().to_value(), json!({"amount": 5}));
    assert_eq!(handle.report(second).await.unwrap().status(), RunStatus::Cancelled);
    engine.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn a_parked_parent_gets_its_childs_output() {
    let child = Workflow::new("child").sleep("nap", ms(400)).step("echo").build().unwrap();
    let parent = Workflow::new("parent").subflow("run-child", "child").build().unwrap();
    let engine = engine(MemoryStore::new(), vec![child, parent], Arc::default()).await;
    let handle = engine.handle();
    let run = handle.trigger("parent", json!(7)).await.unwrap();
    until_parked(&handle, 2).await;
    let report = timeout(BOUND, handle.wait(run)).await.unwrap().unwrap();
    assert_eq!(report.status(), RunStatus::Completed, "{:?}", report.history);
    assert_eq!(report.run.output.unwrap().to_value(), json!(7), "the child's output");
    engine.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn a_parked_run_survives_a_restart() {
    let flow = Workflow::new("nap").sleep("nap", ms(600)).step("work").build().unwrap();
    let store = MemoryStore::new();
    let first = engine(store.clone(), vec![flow.clone()], Arc::default()).await;
    let run = first.handle().trigger("nap", json!(3)).await.unwrap();
    until_parked(&first.handle(), 1).await;
    first.shutdown(GRACE).await.unwrap();
    let second = engine(store, vec![flow], Arc::default()).await;
    let report = timeout(BOUND, second.handle().wait(run)).await.unwrap().unwrap();
    assert_eq!(report.status(), RunStatus::Completed);
    second.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn cancelling_a_parked_parent_cancels_its_parked_child() {
    let child = Workflow::new("child").pause("wait").step("echo").build().unwrap();
    let parent = Workflow::new("parent").subflow("run-child", "child").build().unwrap();
    let engine = engine(MemoryStore::new(), vec![child, parent], Arc::default()).await;
    let handle = engine.handle();
    let run = handle.trigger("parent", json!(7)).await.unwrap();
    until_parked(&handle, 2).await;
    handle.cancel(run, None).await.unwrap();
    let child = handle.paused_runs().await.unwrap();
    assert!(child.is_empty(), "the child's pause is gone: {child:?}");
    let runs = handle.list_runs(&Default::default()).await.unwrap();
    for record in runs {
        let report = timeout(BOUND, handle.wait(record.id)).await.unwrap().unwrap();
        assert_eq!(report.status(), RunStatus::Cancelled, "{:?}", report.run.workflow_id);
    }
    engine.shutdown(GRACE).await.unwrap();
}

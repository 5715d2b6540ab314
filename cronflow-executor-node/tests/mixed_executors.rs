//! One engine, two executors: JavaScript workflows (`tests/fixtures/mixed.mjs`) run by a real
//! `NodeExecutor` and a Rust workflow run by an `InProcessExecutor`, side by side through an
//! `ExecutorRouter`, on a `MemoryStore` and on a SQLite file. Registration checks each
//! workflow's handlers against the executor it is routed to. Skipped with a note when `node`
//! is not on `PATH`.

use std::path::PathBuf;
use std::time::Duration;

use cronflow_core::{
    Engine, EngineError, EngineHandle, Executor, ExecutorRouter, InProcessExecutor, MemoryStore,
    RunReport, RunStatus, Store, TaskError, Workflow, WorkflowDef,
};
use cronflow_executor_node::NodeExecutor;
use cronflow_store::SqliteStore;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(30);

fn node_available() -> bool {
    match std::process::Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => true,
        _ => {
            eprintln!("skipping: `node` is not on PATH");
            false
        }
    }
}

/// The Node side: the executor and the module's workflows (`js-orders`).
async fn spawn_node() -> (NodeExecutor, Vec<WorkflowDef>) {
    let module = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mixed.mjs");
    tokio::time::timeout(LIMIT, NodeExecutor::builder().module(module).workers(1).spawn())
        .await
        .expect("spawn timed out")
        .expect("spawn")
}

/// The Rust side: `rust-invoice` prices an order and describes it. Its `describe` handler has
/// the same name as a JavaScript handler; routing by workflow keeps them apart.
fn rust_workflow() -> WorkflowDef {
    Workflow::new("rust-invoice").step("rust-price").step("describe").build().expect("build")
}

fn rust_executor() -> InProcessExecutor {
    InProcessExecutor::new()
        .handler("rust-price", |task| async move {
            let order: Value = task.context.payload()?;
            let cents = order["cents"].as_i64().unwrap_or_default();
            Ok::<_, TaskError>(json!({ "order": order["order"], "price": cents * 2 }))
        })
        .handler("describe", |task| async move {
            let priced: Value = task.context.step("rust-price")?;
            Ok::<_, TaskError>(format!("rust: order {} costs {}", priced["order"], priced["price"]))
        })
}

/// An engine whose JavaScript workflows go to `node` and everything else to Rust closures.
async fn start<S: Store>(store: S, node: &NodeExecutor, js: Vec<WorkflowDef>) -> Engine {
    let router =
        ExecutorRouter::new(rust_executor()).routes(js.iter().map(|d| d.id.clone()), node.clone());
    assert!(router.has_workflow_handler("js-orders", "js-total"));
    assert!(!router.has_workflow_handler("rust-invoice", "js-total"));
    Engine::builder()
        .store(store)
        .executor(router)
        .workflows(js)
        .workflow(rust_workflow())
        .start()
        .await
        .expect("engine start")
}

fn js_payload(order: u32) -> Value {
    json!({ "order": order, "items": [{ "price": 3, "qty": order }, { "price": 10, "qty": 1 }] })
}

async fn wait(handle: &EngineHandle, run: cronflow_core::RunId) -> RunReport {
    tokio::time::timeout(LIMIT, handle.wait(run)).await.expect("run timed out").expect("wait")
}

fn assert_js_run(report: &RunReport, order: u32) {
    assert_eq!(report.status(), RunStatus::Completed, "{report:#?}");
    assert_eq!(report.run.workflow_id, "js-orders");
    let total = 3 * order + 10;
    let priced: Value = report.task_output("js-total").unwrap().parse().unwrap();
    assert_eq!(priced, json!({ "order": order, "total": total }));
    let out: Value = report.run.output.clone().unwrap().parse().unwrap();
    assert_eq!(out, json!(format!("js: order {order} costs {total}")));
}

fn assert_rust_run(report: &RunReport, order: u32) {
    assert_eq!(report.status(), RunStatus::Completed, "{report:#?}");
    assert_eq!(report.run.workflow_id, "rust-invoice");
    let price = 2 * (100 + order);
    let priced: Value = report.task_output("rust-price").unwrap().parse().unwrap();
    assert_eq!(priced, json!({ "order": order, "price": price }));
    let out: Value = report.run.output.clone().unwrap().parse().unwrap();
    assert_eq!(out, json!(format!("rust: order {order} costs {price}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_and_rust_workflows_run_side_by_side_in_one_engine() {
    if !node_available() {
        return;
    }
    let (node, js) = spawn_node().await;
    assert_eq!(js.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["js-orders"]);
    let engine = start(MemoryStore::new(), &node, js).await;
    let handle = engine.handle();

    // Interleaved triggers, all in flight together.
    let mut runs = Vec::new();
    for order in 1..=5u32 {
        let js = handle.trigger("js-orders", js_payload(order)).await.expect("trigger js");
        let rust = handle
            .trigger("rust-invoice", json!({ "order": order, "cents": 100 + order }))
            .await
            .expect("trigger rust");
        runs.push((order, js, rust));
    }
    for (order, js, rust) in runs {
        assert_js_run(&wait(&handle, js).await, order);
        assert_rust_run(&wait(&handle, rust).await, order);
    }

    engine.shutdown(Duration::from_secs(5)).await.expect("engine shutdown");
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_of_the_other_executor_fails_registration_naming_it() {
    if !node_available() {
        return;
    }
    let (node, js) = spawn_node().await;
    let engine = start(MemoryStore::new(), &node, js.clone()).await;
    let handle = engine.handle();

    // A Rust-routed workflow naming a JavaScript handler.
    let def = Workflow::new("rust-invoice").step("rust-price").step("js-total").build().unwrap();
    let err = handle.register(def).await.expect_err("js-total is not a Rust handler");
    match &err {
        EngineError::MissingHandler { workflow, handler, path } => {
            assert_eq!((workflow.as_str(), handler.as_str()), ("rust-invoice", "js-total"));
            assert_eq!(path, "$.nodes[1].handler");
        }
        other => panic!("expected MissingHandler, got {other:?}"),
    }
    assert!(err.to_string().contains("`js-total`"), "{err}");

    // A Node-routed workflow naming a Rust handler.
    let def = Workflow::new("js-orders").step("js-total").step("rust-price").build().unwrap();
    let err = handle.register(def).await.expect_err("rust-price is not a JavaScript handler");
    assert!(
        matches!(&err, EngineError::MissingHandler { handler, .. } if handler == "rust-price"),
        "{err:?}"
    );
    assert!(err.to_string().contains("`rust-price`"), "{err}");

    // The refused revisions changed nothing: both workflows still run as before.
    let run = handle.trigger("js-orders", js_payload(7)).await.unwrap();
    assert_js_run(&wait(&handle, run).await, 7);
    let run = handle.trigger("rust-invoice", json!({ "order": 7, "cents": 107 })).await.unwrap();
    assert_rust_run(&wait(&handle, run).await, 7);
    engine.shutdown(Duration::from_secs(5)).await.expect("engine shutdown");

    // The same check refuses a workflow given to the builder: the engine does not start.
    let router =
        ExecutorRouter::new(rust_executor()).routes(js.iter().map(|d| d.id.clone()), node.clone());
    let bad = Workflow::new("rust-only").step("js-total").build().unwrap();
    let start = Engine::builder().store(MemoryStore::new()).executor(router).workflow(bad).start();
    match start.await {
        Err(err @ EngineError::MissingHandler { .. }) => {
            let text = err.to_string();
            assert!(text.contains("`rust-only`") && text.contains("`js-total`"), "{text}");
        }
        Err(other) => panic!("expected MissingHandler, got {other:?}"),
        Ok(_) => panic!("the engine started with a workflow naming a handler it cannot run"),
    }
    node.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_runs_are_durable_on_a_sqlite_file() {
    if !node_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mixed.db");
    let (node, js) = spawn_node().await;
    let store = SqliteStore::open(&path).await.expect("open sqlite");
    let engine = start(store, &node, js).await;
    let handle = engine.handle();

    let js_run = handle.trigger("js-orders", js_payload(2)).await.expect("trigger js");
    let rust_run = handle
        .trigger("rust-invoice", json!({ "order": 2, "cents": 102 }))
        .await
        .expect("trigger rust");
    assert_js_run(&wait(&handle, js_run).await, 2);
    assert_rust_run(&wait(&handle, rust_run).await, 2);
    engine.shutdown(Duration::from_secs(5)).await.expect("engine shutdown");
    node.shutdown(Duration::from_secs(5)).await;

    // Both runs, with their outputs, are in the file.
    let store = SqliteStore::open(&path).await.expect("reopen sqlite");
    assert_js_run(&store.run_report(js_run).await.unwrap().expect("js run stored"), 2);
    assert_rust_run(&store.run_report(rust_run).await.unwrap().expect("rust run stored"), 2);
    store.close().await.expect("close");
}

//! Tasks dispatched straight to a real `NodeExecutor` carry their kind and control-flow fields
//! (`item`, `index`, `token`, `error`) to the JavaScript handler, which sees them as `ctx.kind`,
//! `ctx.item`, ... (each handler of `fixtures/control.mjs` returns what it saw). Skipped with a
//! note when `node` is not on `PATH`.

mod common;

use std::time::Duration;

use common::{fixture, node_available};
use cronflow_core::{Executor, Json, Task, TaskError, TaskKind};
use cronflow_executor_node::NodeExecutor;
use serde_json::{Value, json};

/// A task of workflow `control` calling `handler` as `kind`.
fn task(handler: &str, kind: TaskKind) -> Task {
    let mut task = Task::new("control", handler);
    task.kind = kind;
    task
}

async fn run(exec: &NodeExecutor, task: Task) -> Value {
    let handler = task.handler.clone();
    let output = tokio::time::timeout(common::LIMIT, exec.execute(task))
        .await
        .expect("the task timed out")
        .unwrap_or_else(|e| panic!("handler `{handler}` failed: {e:?}"));
    output.parse().expect("JSON output")
}

/// What `seen` returns for a task of `kind` without any control-flow field.
fn bare(kind: &str) -> Value {
    json!({ "kind": kind, "workflow": "control", "item": "<absent>", "index": "<absent>",
            "token": "<absent>", "error": "<absent>" })
}

fn with(kind: &str, fields: Value) -> Value {
    let mut out = bare(kind);
    for (k, v) in fields.as_object().expect("fields") {
        out[k] = v.clone();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_sees_the_tasks_kind_item_index_token_and_error() {
    if !node_available() {
        return;
    }
    let (exec, defs) =
        common::spawn(NodeExecutor::builder().module(fixture("control.mjs")).workers(1)).await;
    let control = defs.iter().find(|d| d.id == "control").expect("workflow `control`");
    assert!(control.hooks.on_success.is_some() && control.options.debounce.is_some());
    for handler in [
        "control.onSuccess",
        "control.onFailure",
        "each.items",
        "charge",
        "charge.onError",
        "upload.onError",
        "approval.onPause",
        "child.payload",
    ] {
        assert!(exec.has_handler(handler), "the executor does not know `{handler}`");
    }

    // The items producer: no loop field yet.
    assert_eq!(run(&exec, task("each.items", TaskKind::Items)).await, bare("items"));

    // A for_each body step: the item is embedded as raw text (spacing and all) and parsed by
    // JavaScript; a `null` item is present, not absent.
    let mut step = task("charge", TaskKind::Step);
    step.context.item = Some(Json::from_raw_str("{ \"sku\": \"a-1\",\n  \"qty\": 2 }").unwrap());
    step.context.index = Some(3);
    assert_eq!(
        run(&exec, step).await,
        with("step", json!({ "item": { "sku": "a-1", "qty": 2 }, "index": 3 }))
    );
    let mut null_item = task("charge", TaskKind::Step);
    null_item.context.item = Some(Json::null());
    null_item.context.index = Some(0);
    assert_eq!(run(&exec, null_item).await, with("step", json!({ "item": null, "index": 0 })));

    // A batch body action: the item is the chunk.
    let mut chunk = task("upload", TaskKind::Action);
    chunk.context.item = Some(Json::from(json!([1, 2])));
    chunk.context.index = Some(1);
    assert_eq!(run(&exec, chunk).await, with("action", json!({ "item": [1, 2], "index": 1 })));

    // An on_error handler inside the loop: the error, with its loop fields.
    let mut error = TaskError::new("PaymentDeclined", "card expired").with_code("E42");
    error.stack = Some("PaymentDeclined: card expired\n    at charge (flows.mjs:3:9)".into());
    let mut on_error = task("charge.onError", TaskKind::OnError);
    on_error.context.item = Some(Json::from(json!("a-1")));
    on_error.context.index = Some(0);
    on_error.context.error = Some(error.clone());
    let js_error = json!({ "isError": true, "name": "PaymentDeclined", "message": "card expired",
                           "stack": error.stack, "code": "E42" });
    assert_eq!(
        run(&exec, on_error.clone()).await,
        with("on_error", json!({ "item": "a-1", "index": 0, "error": js_error }))
    );
    // Rethrowing `ctx.error` fails the handler with the same error.
    on_error.context.payload = Json::from(json!({ "rethrow": true }));
    let thrown = exec.execute(on_error).await.expect_err("the handler rethrows");
    assert_eq!(thrown, error);

    // The on_pause handler gets the resume token.
    let mut on_pause = task("approval.onPause", TaskKind::OnPause);
    on_pause.context.token = Some("tok-\"quoted\"-1".into());
    assert_eq!(
        run(&exec, on_pause).await,
        with("on_pause", json!({ "token": "tok-\"quoted\"-1" }))
    );

    // The subflow payload handler and the hooks; an error without stack or code.
    assert_eq!(run(&exec, task("child.payload", TaskKind::Payload)).await, bare("payload"));
    assert_eq!(run(&exec, task("control.onSuccess", TaskKind::Hook)).await, bare("hook"));
    let mut on_failure = task("control.onFailure", TaskKind::Hook);
    on_failure.context.error = Some(TaskError::new("TimeoutError", "too slow"));
    let bare_error = json!({ "isError": true, "name": "TimeoutError", "message": "too slow",
                             "stack": "TimeoutError: too slow", "code": null });
    assert_eq!(run(&exec, on_failure).await, with("hook", json!({ "error": bare_error })));

    exec.shutdown(Duration::from_secs(5)).await;
}

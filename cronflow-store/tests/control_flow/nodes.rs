//! The `cancel` node, a step's `on_error` handler standing in for it, and the workflow hooks
//! `on_success` and `on_failure`.

use std::sync::{Arc, Mutex};

use cronflow_core::{InProcessExecutor, RunEvent, RunStatus, Task, TaskError, TaskKind, Workflow};
use serde_json::{Value, json};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_node_ends_the_run_as_cancelled() {
    on_every_database(|db| async move {
        let calls = Calls::default();
        let counted = calls.clone();
        let executor = InProcessExecutor::new()
            .handler("a", |_| async { Ok::<_, TaskError>(1) })
            .handler("never", move |_| {
                counted.add("never");
                async { Ok::<_, TaskError>(2) }
            });
        let flow =
            Workflow::new("stop").step("a").cancel("stop", "not needed").step("never").build();
        let engine = db.start(executor, &[flow.unwrap()]).await;
        let handle = engine.handle();
        let run = handle.trigger("stop", json!(null)).await.unwrap();
        let report = ended(&handle, run, RunStatus::Cancelled).await;
        let end = report.history.last().map(|e| e.event.clone());
        assert_eq!(end, Some(RunEvent::RunCancelled { reason: Some("not needed".into()) }));
        assert_eq!(calls.get("never"), 0, "{}", db.name());
        stop(engine).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_error_output_stands_in_for_a_failed_step() {
    on_every_database(|db| async move {
        let executor = InProcessExecutor::new()
            .handler("charge", |_| async {
                Err::<Value, _>(TaskError::new("Declined", "card expired").non_retryable())
            })
            .handler("fallback", |task| async move {
                assert_eq!(task.kind, TaskKind::OnError);
                let error = task.context.error.expect("ctx.error");
                Ok::<_, TaskError>(
                    json!({"cached": true, "because": error.name, "msg": error.message}),
                )
            })
            .handler("after", |task| async move { Ok::<_, TaskError>(task.context.last.clone()) });
        let flow = Workflow::new("pay")
            .step_with("charge", |s| s.on_error("fallback"))
            .step("after")
            .build()
            .unwrap();
        let engine = db.start(executor, &[flow]).await;
        let handle = engine.handle();
        let run = handle.trigger("pay", json!(null)).await.unwrap();
        let report = completed(&handle, run).await;
        let expected = json!({"cached": true, "because": "Declined", "msg": "card expired"});
        assert_eq!(output(&report), expected, "{}", db.name());
        assert_eq!(report.attempts("charge"), 1, "the failure is recorded");
        assert_eq!(report.task_output("charge#on_error").unwrap().to_value(), expected);
        stop(engine).await;
    })
    .await;
}

/// What a hook saw: its handler, kind, `ctx.last` and `ctx.error`'s name.
type HookLog = Arc<Mutex<Vec<(String, TaskKind, Value, Option<String>)>>>;

fn hook(
    log: &HookLog,
    fail: bool,
) -> impl Fn(Task) -> std::future::Ready<Result<(), TaskError>> + Send + Sync + use<> {
    let log = Arc::clone(log);
    move |task: Task| {
        let error = task.context.error.map(|e| e.name);
        let seen = (task.handler.to_string(), task.kind, task.context.last.to_value(), error);
        log.lock().unwrap().push(seen);
        std::future::ready(if fail {
            Err(TaskError::msg("hook broke").non_retryable())
        } else {
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_run_on_success_and_on_failure_without_changing_the_outcome() {
    on_every_database(|db| async move {
        let log = HookLog::default();
        let executor = InProcessExecutor::new()
            .handler("work", |task| async move {
                let payload: Value = task.context.payload()?;
                if payload["fail"] == json!(true) {
                    return Err(TaskError::new("Broken", "as asked").non_retryable());
                }
                Ok::<_, TaskError>(json!({"worked": payload}))
            })
            .handler("yay", hook(&log, false))
            .handler("nay", hook(&log, false))
            .handler("grumpy", hook(&log, true));
        let flow = Workflow::new("hooked").on_success("yay").on_failure("nay").step("work");
        let broken = Workflow::new("broken-hook").on_success("grumpy").step("work");
        let flows = [flow.build().unwrap(), broken.build().unwrap()];
        let engine = db.start(executor, &flows).await;
        let handle = engine.handle();

        let run = handle.trigger("hooked", json!({"fail": false})).await.unwrap();
        let report = completed(&handle, run).await;
        let out = json!({"worked": {"fail": false}});
        assert_eq!(output(&report), out);
        let seen = std::mem::take(&mut *log.lock().unwrap());
        assert_eq!(seen, [("yay".to_string(), TaskKind::Hook, out, None)], "{}", db.name());

        let run = handle.trigger("hooked", json!({"fail": true})).await.unwrap();
        let report = ended(&handle, run, RunStatus::Failed).await;
        assert_eq!(report.run.failure.unwrap().error.unwrap().name, "Broken");
        let seen = std::mem::take(&mut *log.lock().unwrap());
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!((seen[0].0.as_str(), seen[0].3.as_deref()), ("nay", Some("Broken")));

        // A failing hook does not change the run's outcome.
        let run = handle.trigger("broken-hook", json!({"fail": false})).await.unwrap();
        let report = completed(&handle, run).await;
        assert_eq!(output(&report), json!({"worked": {"fail": false}}), "{}", db.name());
        assert_eq!(log.lock().unwrap().len(), 1, "the grumpy hook ran");
        stop(engine).await;
    })
    .await;
}

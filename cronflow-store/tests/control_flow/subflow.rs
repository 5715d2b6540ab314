//! `subflow`: a child run whose output becomes the node's output; its failure fails the
//! parent, its cancellation cancels the parent, and cancelling the parent cancels it.

use cronflow_core::{
    EngineHandle, FailureKind, InProcessExecutor, RunId, RunStatus, TaskError, Workflow,
    WorkflowDef,
};
use serde_json::{Value, json};

use crate::harness::*;

/// `make` returns `{"n": 21}`; `double` doubles the payload's `n`, or fails if `n` is
/// negative; `hang` never returns (until the test ends); `after` returns the previous output.
fn executor(calls: &Calls) -> InProcessExecutor {
    let calls = calls.clone();
    InProcessExecutor::new()
        .handler("make", |_| async { Ok::<_, TaskError>(json!({"n": 21})) })
        .handler("double", |task| async move {
            let payload: Value = task.context.payload()?;
            let n = payload["n"].as_i64().unwrap_or(0);
            if n < 0 {
                return Err(TaskError::new("Negative", format!("{n} < 0")).non_retryable());
            }
            Ok::<_, TaskError>(json!({"doubled": n * 2}))
        })
        .handler("hang", move |_| {
            calls.add("hang");
            async {
                tokio::time::sleep(LIMIT * 2).await;
                Ok::<_, TaskError>(())
            }
        })
        .handler("after", |task| async move { Ok::<_, TaskError>(task.context.last.clone()) })
}

fn flows() -> Vec<WorkflowDef> {
    vec![
        Workflow::new("parent")
            .subflow_with_payload("sub", "child", "make")
            .step("after")
            .build()
            .unwrap(),
        Workflow::new("plain-parent").subflow("sub", "child").step("after").build().unwrap(),
        Workflow::new("child").step("double").build().unwrap(),
        Workflow::new("hanging-parent").subflow("sub", "hanging").step("after").build().unwrap(),
        Workflow::new("hanging").step("hang").build().unwrap(),
        Workflow::new("orphan").subflow("sub", "ghost").step("after").build().unwrap(),
    ]
}

/// Waits until the parent's child run exists and its `hang` step is running; returns it.
async fn hanging_child(handle: &EngineHandle, parent: RunId, calls: &Calls, n: usize) -> RunId {
    let report = until(handle, parent, "the child starts", |r| waiting_at(r, "sub")).await;
    eventually("the child's step runs", || calls.get("hang") == n).await;
    child_of(&report, "sub")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_child_runs_output_is_the_nodes_output_and_its_failure_fails_the_parent() {
    on_every_database(|db| async move {
        let engine = db.start(executor(&Calls::default()), &flows()).await;
        let handle = engine.handle();
        let parent = handle.trigger("parent", json!({"n": 1})).await.unwrap();
        let report = completed(&handle, parent).await;
        assert_eq!(output(&report), json!({"doubled": 42}), "{}", db.name());
        let child = child_of(&report, "sub");
        let child = completed(&handle, child).await;
        assert_eq!(child.run.workflow_id, "child");
        assert_eq!(child.run.payload.to_value(), json!({"n": 21}), "the payload handler's");
        let context = child.run.context.expect("a trigger context").to_value();
        assert_eq!(context["type"], "subflow");
        assert_eq!(context["parent_run"], parent.to_string());
        assert_eq!(context["parent_node"], "sub");

        // Without a payload handler the child gets the parent's payload.
        let parent = handle.trigger("plain-parent", json!({"n": 5})).await.unwrap();
        assert_eq!(output(&completed(&handle, parent).await), json!({"doubled": 10}));

        let parent = handle.trigger("plain-parent", json!({"n": -1})).await.unwrap();
        let report = ended(&handle, parent, RunStatus::Failed).await;
        let failure = report.run.failure.clone().unwrap();
        assert_eq!(failure.kind, FailureKind::ChildFailed, "{}: {failure:?}", db.name());
        assert!(failure.message.contains("-1 < 0"), "{}", failure.message);
        ended(&handle, child_of(&report, "sub"), RunStatus::Failed).await;
        assert_eq!(report.attempts("after"), 0);

        // A child workflow that is not registered fails the parent; no child run exists.
        let parent = handle.trigger("orphan", json!(null)).await.unwrap();
        let report = ended(&handle, parent, RunStatus::Failed).await;
        let failure = report.run.failure.clone().unwrap();
        assert_eq!(failure.kind, FailureKind::ChildFailed, "{}: {failure:?}", db.name());
        assert!(failure.message.contains("no workflow `ghost`"), "{}", failure.message);
        assert!(handle.report(child_of(&report, "sub")).await.is_err(), "no child run");
        stop(engine).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_goes_down_from_parent_to_child_and_up_from_child_to_parent() {
    on_every_database(|db| async move {
        let calls = Calls::default();
        let engine = db.start(executor(&calls), &flows()).await;
        let handle = engine.handle();

        let parent = handle.trigger("hanging-parent", json!(null)).await.unwrap();
        let child = hanging_child(&handle, parent, &calls, 1).await;
        handle.cancel(parent, Some("operator".into())).await.unwrap();
        ended(&handle, parent, RunStatus::Cancelled).await;
        let report = ended(&handle, child, RunStatus::Cancelled).await;
        assert_eq!(report.attempts("hang"), 0, "{}: the child's step was aborted", db.name());

        let parent = handle.trigger("hanging-parent", json!(null)).await.unwrap();
        let child = hanging_child(&handle, parent, &calls, 2).await;
        handle.cancel(child, Some("not needed".into())).await.unwrap();
        ended(&handle, child, RunStatus::Cancelled).await;
        let report = ended(&handle, parent, RunStatus::Cancelled).await;
        let reason = report
            .history
            .iter()
            .find_map(|e| match &e.event {
                cronflow_core::RunEvent::RunCancelled { reason } => reason.clone(),
                _ => None,
            })
            .unwrap_or_default();
        assert!(reason.contains("not needed"), "{}: {reason}", db.name());
        assert_eq!(report.attempts("after"), 0);
        stop(engine).await;
    })
    .await;
}

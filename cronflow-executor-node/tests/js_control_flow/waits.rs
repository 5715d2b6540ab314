//! The scenarios of `js_control_flow.rs` that wait: sleep, pause, waitForEvent and subflow.

use std::sync::Arc;

use cronflow_core::{
    EngineError, FailureKind, Json, RunEvent, RunId, RunQuery, RunReport, RunStatus, Wait,
    WaitOutcome,
};
use serde_json::{Value, json};

use crate::scenarios::{completed, failed};
use crate::{Ctx, await_file, find, output, succeeded, task_output};

/// A durable timer: the next step starts once it elapsed and sees the output from before it.
pub(crate) async fn sleep(ctx: Arc<Ctx>) -> Option<RunId> {
    let report = ctx.run("cf-sleep", json!({})).await;
    completed(&report);
    assert_eq!(output(&report), json!({ "last": "rested" }));
    let started = find(
        &report,
        "the sleep",
        |e| matches!(e, RunEvent::WaitStarted { wait, on: Wait::Sleep { .. } } if wait.as_str() == "nap"),
    );
    let RunEvent::WaitStarted { on: Wait::Sleep { until }, .. } = &started.event else {
        unreachable!()
    };
    assert!((*until - started.at).num_milliseconds() >= 300, "{started:?}");
    find(
        &report,
        "the sleep's end",
        |e| matches!(e, RunEvent::WaitEnded { wait, outcome: WaitOutcome::Elapsed } if wait.as_str() == "nap"),
    );
    let after = find(
        &report,
        "after-nap",
        |e| matches!(e, RunEvent::TaskSucceeded { task, .. } if task.as_str() == "after-nap"),
    );
    let RunEvent::TaskSucceeded { started_at, .. } = &after.event else { unreachable!() };
    assert!(started_at >= until, "after-nap started at {started_at}, before {until}");
    None
}

/// `onPause` hands its token out; resuming with it ends the pause with the resume payload.
pub(crate) async fn pause(ctx: Arc<Ctx>) -> Option<RunId> {
    let dir = ctx.dir("pause");
    let run = ctx.start("cf-pause", json!({ "dir": dir })).await;
    let seen = await_file(&dir.join("token")).await;
    assert_eq!(seen["kind"], "on_pause");
    let token = seen["token"].as_str().expect("ctx.token is a string").to_owned();
    assert_eq!(token.len(), 64, "{token}");

    let paused = ctx.handle.paused_runs().await.expect("paused runs");
    let open = paused.iter().find(|p| p.run_id == run).expect("the run is listed as paused");
    assert_eq!((open.workflow_id.as_str(), open.node.as_str()), ("cf-pause", "approval"));
    assert!(open.timeout_at.is_some());
    // Resumed before the handler's result is recorded, the run could end first (see
    // `resume_while_on_pause_runs`); wait for it so that the history is the same every time.
    ctx.recorded(run, "the onPause handler's success", |e| {
        matches!(e, RunEvent::TaskSucceeded { task, .. } if task.as_str() == "approval#on_pause")
    })
    .await;

    let resumed = ctx.handle.resume(&token, json!({ "ok": true })).await.expect("resume");
    assert_eq!(resumed, run);
    let report = ctx.finish(run).await;
    completed(&report);
    assert_eq!(output(&report), json!({ "approved": { "ok": true } }));
    assert_resumed_pause(&report);
    let again = ctx.handle.resume(&token, json!(null)).await;
    assert!(matches!(again, Err(EngineError::UnknownResumeToken)), "{again:?}");
    assert!(!ctx.handle.paused_runs().await.unwrap().iter().any(|p| p.run_id == run));
    Some(run)
}

/// The history of the `cf-pause` run once resumed with `{ok: true}`.
pub(crate) fn assert_resumed_pause(report: &RunReport) {
    completed(report);
    assert_eq!(succeeded(report), ["approval#on_pause", "ship"]);
    find(
        report,
        "the pause",
        |e| matches!(e, RunEvent::WaitStarted { wait, on: Wait::Pause { .. } } if wait.as_str() == "approval"),
    );
    find(report, "the resume", |e| match e {
        RunEvent::WaitEnded { wait, outcome: WaitOutcome::Resumed { payload } } => {
            wait.as_str() == "approval" && payload.to_value() == json!({ "ok": true })
        }
        _ => false,
    });
}

/// A pause with `onTimeout: 'continue'` passes `null` on when nobody resumes it in time.
pub(crate) async fn pause_timeout(ctx: Arc<Ctx>) -> Option<RunId> {
    let report = ctx.run("cf-pause-timeout", json!({})).await;
    completed(&report);
    assert_eq!(output(&report), json!({ "last": null }));
    find(
        &report,
        "the timeout",
        |e| matches!(e, RunEvent::WaitEnded { wait, outcome: WaitOutcome::TimedOut } if wait.as_str() == "brief-approval"),
    );
    None
}

/// A wait for an event that never comes fails the run once its timeout passes.
pub(crate) async fn wait_for_event_timeout(ctx: Arc<Ctx>) -> Option<RunId> {
    let report = ctx.run("cf-event-timeout", json!({})).await;
    failed(&report, FailureKind::WaitTimedOut);
    assert_eq!(report.attempts("never-shipped"), 0);
    None
}

/// Only a published event matching the wait's fields ends it.
pub(crate) async fn wait_for_event(ctx: Arc<Ctx>) -> Option<RunId> {
    let run = ctx.start("cf-event", json!({})).await;
    ctx.recorded(run, "the wait for the event", |e| {
        matches!(e, RunEvent::WaitStarted { wait, on: Wait::Event { .. } } if wait.as_str() == "paid")
    })
    .await;
    let publish =
        |payload: Value| ctx.handle.publish_event("cf-payment", Json::from(payload), None);
    let other = publish(json!({ "order": 8 })).await.expect("publish");
    assert_eq!((other.resumed, other.started.len()), (0, 0), "another order's payment");
    let paid = publish(json!({ "order": 7, "amount": 5 })).await.expect("publish");
    assert_eq!(paid.resumed, 1);
    let report = ctx.finish(run).await;
    completed(&report);
    assert_eq!(output(&report), json!({ "paid": { "order": 7, "amount": 5 } }));
    None
}

/// The payload handler builds the child's payload; the child's output or failure is the node's.
pub(crate) async fn subflow(ctx: Arc<Ctx>) -> Option<RunId> {
    let report = ctx.run("cf-parent", json!({ "n": 21 })).await;
    completed(&report);
    assert_eq!(task_output(&report, "child#payload"), json!({ "x": 21, "kind": "payload" }));
    assert_eq!(output(&report), json!({ "child": { "doubled": 42 } }));
    let query = RunQuery { workflow_id: Some("cf-child".into()), ..RunQuery::default() };
    let children = ctx.handle.list_runs(&query).await.expect("list runs");
    assert_eq!(children.len(), 1, "{children:#?}");
    assert_eq!(children[0].status, RunStatus::Completed);
    assert_eq!(children[0].payload.to_value(), json!({ "x": 21, "kind": "payload" }));

    let report = ctx.run("cf-parent-of-failing", json!({})).await;
    let failure = failed(&report, FailureKind::ChildFailed);
    assert!(failure.message.contains("the child refuses"), "{failure:#?}");
    None
}

/// Cancelling a run from outside while its child waits cancels the child too.
pub(crate) async fn cancel_parent(ctx: Arc<Ctx>) -> Option<RunId> {
    let run = ctx.start("cf-parent-waits", json!({})).await;
    ctx.recorded(run, "the subflow", |e| matches!(e, RunEvent::WaitStarted { .. })).await;
    let report = ctx.handle.report(run).await.expect("report");
    let started = find(&report, "the subflow", |e| matches!(e, RunEvent::WaitStarted { .. }));
    let RunEvent::WaitStarted { on: Wait::Subflow { child, .. }, .. } = &started.event else {
        panic!("not a subflow: {started:?}")
    };
    ctx.recorded(*child, "the child's pause", |e| matches!(e, RunEvent::WaitStarted { .. })).await;
    ctx.handle.cancel(run, Some("changed my mind".into())).await.expect("cancel");
    let report = ctx.finish(run).await;
    assert_eq!(report.status(), RunStatus::Cancelled, "{report:#?}");
    let child = ctx.finish(*child).await;
    assert_eq!(child.status(), RunStatus::Cancelled, "{child:#?}");
    assert_eq!(child.attempts("child-done"), 0);
    None
}

/// A pause per item of a forEach: each iteration's `onPause` gets its own token (and its item);
/// resuming each ends its iteration.
pub(crate) async fn pauses_in_a_loop(ctx: Arc<Ctx>) -> Option<RunId> {
    let dir = ctx.dir("approvals");
    let run = ctx.start("cf-approvals", json!({ "dir": dir, "people": ["ann", "bob"] })).await;
    let ann = await_file(&dir.join("token-0")).await;
    let bob = await_file(&dir.join("token-1")).await;
    assert_eq!((&ann["item"], &ann["index"]), (&json!("ann"), &json!(0)));
    assert_eq!((&bob["item"], &bob["index"]), (&json!("bob"), &json!(1)));
    let paused = ctx.handle.paused_runs().await.expect("paused runs");
    let mut nodes: Vec<&str> =
        paused.iter().filter(|p| p.run_id == run).map(|p| p.node.as_str()).collect();
    nodes.sort();
    assert_eq!(nodes, ["sign@0", "sign@1"]);
    ctx.handle.resume(bob["token"].as_str().unwrap(), json!("no")).await.expect("resume bob");
    ctx.handle.resume(ann["token"].as_str().unwrap(), json!("yes")).await.expect("resume ann");
    let report = ctx.finish(run).await;
    completed(&report);
    assert_eq!(
        output(&report),
        json!([{ "who": "ann", "said": "yes" }, { "who": "bob", "said": "no" }])
    );
    None
}

/// One published event starts a run of the workflow it triggers and ends another run's wait;
/// publishing again with the same key starts nothing new.
pub(crate) async fn event_trigger_and_wait(ctx: Arc<Ctx>) -> Option<RunId> {
    let run = ctx.start("cf-awaits-shipped", json!({})).await;
    ctx.recorded(run, "the wait for the event", |e| matches!(e, RunEvent::WaitStarted { .. }))
        .await;
    let event = json!({ "parcel": 9 });
    let published = ctx
        .handle
        .publish_event("cf-shipped", Json::from(event.clone()), Some("parcel-9"))
        .await
        .expect("publish");
    assert_eq!(published.resumed, 1);
    assert_eq!(published.started.len(), 1, "{published:?}");
    assert!(published.started[0].created);
    let report = ctx.finish(run).await;
    completed(&report);
    assert_eq!(output(&report), json!({ "shipped": event }));
    let started = ctx.finish(published.started[0].run_id).await;
    completed(&started);
    assert_eq!(started.run.workflow_id, "cf-on-shipped");
    let seen = output(&started);
    assert_eq!(seen["payload"], event);
    assert_eq!(seen["trigger"], json!({ "type": "event", "name": "cf-shipped" }));

    let again = ctx
        .handle
        .publish_event("cf-shipped", Json::from(event), Some("parcel-9"))
        .await
        .expect("publish again");
    assert_eq!(again.resumed, 0);
    assert_eq!(again.started.len(), 1);
    assert_eq!(again.started[0].run_id, published.started[0].run_id);
    assert!(!again.started[0].created, "the key was taken");
    None
}

/// Resuming while the `onPause` handler still runs ends the pause; once the run has completed,
/// the handler, still running, is aborted (its result would no longer matter).
pub(crate) async fn resume_while_on_pause_runs(ctx: Arc<Ctx>) -> Option<RunId> {
    let dir = ctx.dir("pause-held");
    let run = ctx.start("cf-pause", json!({ "dir": dir, "hold": true })).await;
    let token = await_file(&dir.join("token")).await["token"].as_str().unwrap().to_owned();
    await_file(&dir.join("held")).await;
    ctx.handle.resume(&token, json!({ "ok": true })).await.expect("resume");
    let report = ctx.finish(run).await;
    completed(&report);
    assert_eq!(output(&report), json!({ "approved": { "ok": true } }));
    assert_eq!(succeeded(&report), ["ship"]);
    let aborted = await_file(&dir.join("on-pause-aborted")).await;
    assert_eq!(aborted, json!({ "reason": "AbortError" }));
    None
}

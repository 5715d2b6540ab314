//! The scenarios of `js_control_flow.rs` (those that wait are in `waits.rs`), one or two per
//! builder of `fixtures/control_flow.mjs`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use cronflow_core::{
    FailureKind, RunEvent, RunId, RunReport, RunStatus, Wait, WaitOutcome, WorkflowDef,
};
use serde_json::{Value, json};

use crate::waits;
use crate::{Ctx, await_file, find, output, read_file, succeeded, task_output};

type Scenario = Pin<Box<dyn Future<Output = Option<RunId>> + Send>>;

/// Every scenario, by name. Each panics on a failed check; the pause scenario returns its run
/// (checked again in the reopened SQLite file).
pub(crate) fn all(ctx: &Arc<Ctx>) -> Vec<(&'static str, Scenario)> {
    fn boxed<F>(ctx: &Arc<Ctx>, f: impl FnOnce(Arc<Ctx>) -> F) -> Scenario
    where
        F: Future<Output = Option<RunId>> + Send + 'static,
    {
        Box::pin(f(Arc::clone(ctx)))
    }
    vec![
        ("race", boxed(ctx, race)),
        ("race against a subflow", boxed(ctx, race_child)),
        ("forEach", boxed(ctx, for_each)),
        ("batch", boxed(ctx, batch)),
        ("while", boxed(ctx, while_)),
        ("sleep", boxed(ctx, waits::sleep)),
        ("pause", boxed(ctx, waits::pause)),
        ("pause timeout", boxed(ctx, waits::pause_timeout)),
        ("resume while onPause runs", boxed(ctx, waits::resume_while_on_pause_runs)),
        ("waitForEvent", boxed(ctx, waits::wait_for_event)),
        ("waitForEvent timeout", boxed(ctx, waits::wait_for_event_timeout)),
        ("subflow", boxed(ctx, waits::subflow)),
        ("cancelling a parent", boxed(ctx, waits::cancel_parent)),
        ("cancel", boxed(ctx, cancel)),
        ("onError", boxed(ctx, on_error)),
        ("hooks", boxed(ctx, hooks)),
        ("flow control", boxed(ctx, flow_control)),
        ("pauses in a loop", boxed(ctx, waits::pauses_in_a_loop)),
        ("nested loops", boxed(ctx, nested_loops)),
        ("event trigger and wait", boxed(ctx, waits::event_trigger_and_wait)),
    ]
}

pub(crate) fn completed(report: &RunReport) {
    assert_eq!(report.status(), RunStatus::Completed, "{report:#?}");
}

pub(crate) fn failed(report: &RunReport, kind: FailureKind) -> &cronflow_core::RunFailure {
    assert_eq!(report.status(), RunStatus::Failed, "{report:#?}");
    let failure = report.run.failure.as_ref().expect("a failed run has a failure");
    assert_eq!(failure.kind, kind, "{failure:#?}");
    failure
}

/// The first branch to settle wins; the loser's handler sees its `ctx.signal` aborted.
async fn race(ctx: Arc<Ctx>) -> Option<RunId> {
    let dir = ctx.dir("race");
    let report = ctx.run("cf-race", json!({ "dir": dir })).await;
    completed(&report);
    assert_eq!(output(&report), json!({ "last": { "winner": "fast" } }));
    let won = find(&report, "BranchWon", |e| matches!(e, RunEvent::BranchWon { .. }));
    assert!(
        matches!(&won.event, RunEvent::BranchWon { node, branch: 1 } if node.as_str() == "fastest"),
        "{won:?}"
    );
    assert_eq!(report.task_output("slow"), None, "the loser has no output");
    assert_eq!(succeeded(&report), ["fast", "after-race"]);
    let aborted = await_file(&dir.join("slow-aborted")).await;
    assert_eq!(aborted, json!({ "aborted": true, "reason": "AbortError" }));
    None
}

/// The child run of a losing subflow branch is cancelled, which aborts its running step.
async fn race_child(ctx: Arc<Ctx>) -> Option<RunId> {
    let dir = ctx.dir("race-child");
    let report = ctx.run("cf-race-child", json!({ "dir": dir })).await;
    completed(&report);
    assert_eq!(output(&report), json!("quick"));
    find(
        &report,
        "BranchWon",
        |e| matches!(e, RunEvent::BranchWon { node, branch: 1 } if node.as_str() == "first"),
    );
    let started = find(&report, "the subflow", |e| {
        matches!(e, RunEvent::WaitStarted { on: Wait::Subflow { .. }, .. })
    });
    let RunEvent::WaitStarted { on: Wait::Subflow { child, .. }, .. } = &started.event else {
        unreachable!()
    };
    find(
        &report,
        "the abandoned subflow",
        |e| matches!(e, RunEvent::WaitEnded { wait, outcome: WaitOutcome::Abandoned } if wait.as_str() == "slow-child"),
    );
    let child = ctx.finish(*child).await;
    assert_eq!(child.status(), RunStatus::Cancelled, "{child:#?}");
    assert_eq!(child.task_output("slow-child-step"), None);
    let aborted = await_file(&dir.join("child-aborted")).await;
    assert_eq!(aborted, json!({ "aborted": true, "reason": "AbortError" }));
    None
}

/// Items run two at a time; each body sees its item and index; the output is in item order.
async fn for_each(ctx: Arc<Ctx>) -> Option<RunId> {
    let items = [300, 100, 100, 50];
    let report = ctx.run("cf-foreach", json!({ "items": items })).await;
    completed(&report);
    let expected: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(i, item)| json!({ "item": item, "index": i, "kind": "step" }))
        .collect();
    assert_eq!(output(&report), Value::Array(expected));
    let mut keys = succeeded(&report);
    assert_eq!(keys.remove(0), "each#items");
    keys.sort();
    assert_eq!(keys, ["work@0", "work@1", "work@2", "work@3"]);
    // At most two bodies ran at once: [dispatched, recorded) intervals overlap by two at most.
    let spans: Vec<_> = report
        .history
        .iter()
        .filter_map(|e| match &e.event {
            RunEvent::TaskSucceeded { task, started_at, .. }
                if task.as_str().starts_with("work@") =>
            {
                Some((*started_at, e.at))
            }
            _ => None,
        })
        .collect();
    for (start, _) in &spans {
        let running = spans.iter().filter(|(s, end)| s <= start && start < end).count();
        assert!(running <= 2, "{running} bodies ran at once: {spans:?}");
    }
    None
}

/// Chunks of two run one after another; each body gets its chunk as `ctx.item`.
async fn batch(ctx: Arc<Ctx>) -> Option<RunId> {
    let report = ctx.run("cf-batch", json!({ "items": [1, 2, 3, 4, 5] })).await;
    completed(&report);
    assert_eq!(
        output(&report),
        json!([
            { "chunk": [1, 2], "index": 0, "sum": 3 },
            { "chunk": [3, 4], "index": 1, "sum": 7 },
            { "chunk": [5], "index": 2, "sum": 5 },
        ])
    );
    assert_eq!(succeeded(&report), ["chunks#items", "sum@0", "sum@1", "sum@2"]);
    None
}

/// The loop runs while its condition holds, and fails when it still holds after maxIterations.
async fn while_(ctx: Arc<Ctx>) -> Option<RunId> {
    let report = ctx.run("cf-while", json!({ "until": 3 })).await;
    completed(&report);
    assert_eq!(output(&report), json!({ "n": 3, "index": 2 }));
    assert_eq!(
        succeeded(&report),
        [
            "zero",
            "count#while@0",
            "inc@0",
            "count#while@1",
            "inc@1",
            "count#while@2",
            "inc@2",
            "count#while@3",
        ]
    );
    assert_eq!(task_output(&report, "count#while@3"), json!(false));

    let report = ctx.run("cf-while", json!({ "until": 5 })).await;
    let failure = failed(&report, FailureKind::NodeFailed);
    assert!(failure.message.contains("max_iterations (3)"), "{}", failure.message);
    assert_eq!(report.attempts("inc@2"), 1);
    assert_eq!(report.attempts("inc@3"), 0, "no fourth iteration");
    None
}

/// The cancel node ends the run as cancelled, with its reason; nothing after it runs.
async fn cancel(ctx: Arc<Ctx>) -> Option<RunId> {
    let dir = ctx.dir("cancel");
    let report = ctx.run("cf-cancel", json!({ "dir": dir })).await;
    assert_eq!(report.status(), RunStatus::Cancelled, "{report:#?}");
    find(
        &report,
        "the cancellation",
        |e| matches!(e, RunEvent::RunCancelled { reason: Some(r) } if r == "not needed"),
    );
    assert_eq!(succeeded(&report), ["first"]);
    assert_eq!(report.attempts("never"), 0);
    assert!(!dir.join("never-ran").exists());
    None
}

/// Once the attempts are exhausted the error handler gets `ctx.error`; its output stands in
/// for the step's, and rethrowing that error fails the run with it.
async fn on_error(ctx: Arc<Ctx>) -> Option<RunId> {
    let report = ctx.run("cf-on-error", json!({ "rethrow": false })).await;
    completed(&report);
    assert_eq!(report.attempts("charge"), 2);
    let fallback = json!({
        "fallback": true, "kind": "on_error", "isError": true, "name": "PaymentError",
        "message": "declined on attempt 2", "code": "E_DECLINED",
    });
    assert_eq!(task_output(&report, "charge#on_error"), fallback);
    assert_eq!(output(&report), json!({ "charged": fallback }));

    let report = ctx.run("cf-on-error", json!({ "rethrow": true })).await;
    let failure = failed(&report, FailureKind::TaskFailed);
    let error = failure.error.as_ref().expect("the failure names the error");
    assert_eq!(
        (error.name.as_str(), error.message.as_str(), error.code.as_deref()),
        ("PaymentError", "declined on attempt 2", Some("E_DECLINED"))
    );
    assert_eq!(report.attempts("after-charge"), 0);
    None
}

/// onSuccess and onFailure run (before the end is recorded) with the output or the error.
async fn hooks(ctx: Arc<Ctx>) -> Option<RunId> {
    let dir = ctx.dir("hooks-ok");
    let report = ctx.run("cf-hooks", json!({ "dir": dir, "fail": false })).await;
    completed(&report);
    assert_eq!(output(&report), json!("fine"));
    assert_eq!(succeeded(&report), ["maybe", "on_success#hook"]);
    assert_eq!(read_file(&dir.join("on-success")), json!({ "kind": "hook", "last": "fine" }));
    assert!(!dir.join("on-failure").exists());

    let dir = ctx.dir("hooks-failed");
    let report = ctx.run("cf-hooks", json!({ "dir": dir, "fail": true })).await;
    failed(&report, FailureKind::TaskFailed);
    assert_eq!(succeeded(&report), ["on_failure#hook"]);
    assert_eq!(
        read_file(&dir.join("on-failure")),
        json!({ "kind": "hook", "name": "Asked", "message": "asked to fail" })
    );
    assert!(!dir.join("on-success").exists());
    None
}

/// The SDK's debounce, concurrency and rate limit reach the definitions the engine registers.
pub(crate) fn flow_control_options_are_in_the_definitions(defs: &[WorkflowDef]) {
    let def = |id: &str| defs.iter().find(|d| d.id == id).unwrap_or_else(|| panic!("no {id}"));
    let debounce = def("cf-debounced").options.debounce.clone().expect("debounce");
    assert_eq!(debounce.window, Some(Duration::from_millis(50)));
    assert_eq!(debounce.key.as_deref(), Some("/user"));
    let limited = &def("cf-limited").options;
    let concurrency = limited.concurrency.clone().expect("concurrency");
    assert_eq!((concurrency.limit, concurrency.key.as_deref()), (1, Some("/user")));
    let rate = limited.rate_limit.clone().expect("rate limit");
    assert_eq!((rate.limit, rate.period), (100, Some(Duration::from_secs(1))));
}

/// Flow-controlled workflows were registered (the engine started with them) and their runs
/// complete, whether or not this engine enforces the limits yet.
async fn flow_control(ctx: Arc<Ctx>) -> Option<RunId> {
    for id in ["cf-debounced", "cf-limited"] {
        let report = ctx.run(id, json!({ "user": "ada" })).await;
        completed(&report);
        assert_eq!(output(&report), json!({ "user": "ada" }), "{id}");
    }
    None
}

/// A forEach inside a while: each round fans out again and sees its own round's index.
async fn nested_loops(ctx: Arc<Ctx>) -> Option<RunId> {
    let report = ctx.run("cf-rounds", json!({})).await;
    completed(&report);
    let fan = json!([{ "item": "x", "index": 0 }, { "item": "y", "index": 1 }]);
    assert_eq!(output(&report), json!({ "round": 2, "fan": fan }));
    let mut keys = succeeded(&report);
    keys.sort();
    assert_eq!(
        keys,
        [
            "fan#items@0",
            "fan#items@1",
            "init",
            "leaf@0.0",
            "leaf@0.1",
            "leaf@1.0",
            "leaf@1.1",
            "rounds#while@0",
            "rounds#while@1",
            "rounds#while@2",
            "tally@0",
            "tally@1",
        ]
    );
    None
}

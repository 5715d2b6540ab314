//! Nodes inside other nodes, and waits that end while no engine runs: pauses inside a
//! `for_each`, nested loops across a restart, subflows per item, a pause timing out while
//! the engine is down, and cancelling a waiting run.

use cronflow_core::{
    EngineError, FailureKind, InProcessExecutor, RunStatus, TaskError, Wait, Workflow, token_hash,
};
use serde_json::{Value, json};

use crate::harness::*;
use crate::pause::{Tokens, ship};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pauses_inside_a_for_each_are_resumed_one_by_one() {
    on_every_database(|db| async move {
        let tokens = Tokens::default();
        let executor = tokens
            .ask(InProcessExecutor::new(), false)
            .handler("list", |_| async { Ok::<_, TaskError>(json!(["x", "y"])) });
        let flows = [Workflow::new("approvals")
            .for_each_with("each", "list", Some(2), |s| {
                s.pause_with("approve", |p| p.on_pause("ask"))
            })
            .build()
            .unwrap()];
        let engine = db.start(executor, &flows).await;
        let handle = engine.handle();
        let run = handle.trigger("approvals", json!(null)).await.unwrap();
        let issued = tokens.wait(run, 2).await;
        let mut paused: Vec<String> =
            handle.paused_runs().await.unwrap().into_iter().map(|p| p.node.to_string()).collect();
        paused.sort();
        assert_eq!(paused, ["approve@0", "approve@1"], "{}", db.name());
        // One token per iteration: find which is whose from the hashes in the history.
        let report = handle.report(run).await.unwrap();
        let token_of = |key: &str| {
            let hash = waits(&report).into_iter().find_map(|(k, on)| match on {
                Wait::Pause { token_hash, .. } if k == key => Some(token_hash),
                _ => None,
            });
            let hash = hash.unwrap_or_else(|| panic!("no pause {key}"));
            issued.iter().find(|t| token_hash(t) == hash).expect("a token per pause").clone()
        };
        let (first, second) = (token_of("approve@0"), token_of("approve@1"));
        // Resumed in reverse order, the first one without its token.
        assert_eq!(handle.resume(&second, json!("second")).await.unwrap(), run);
        assert_eq!(handle.resume_wait(run, "approve@0", json!("first")).await.unwrap(), run);
        let used = handle.resume(&first, json!(null)).await;
        assert!(matches!(used, Err(EngineError::UnknownResumeToken)), "{used:?}");
        let report = completed(&handle, run).await;
        assert_eq!(output(&report), json!(["first", "second"]), "{}", db.name());
        stop(engine).await;
    })
    .await;
}

/// `outer` lists the payload's groups; `inner` lists a group's members (`ctx.item`);
/// `greet` counts its calls per key and never returns for `hang` while `hanging`.
fn nested(calls: &Calls, hanging: bool) -> InProcessExecutor {
    let calls = calls.clone();
    InProcessExecutor::new()
        .handler("outer", |task| async move {
            let payload: Value = task.context.payload()?;
            Ok::<_, TaskError>(payload["groups"].clone())
        })
        .handler("inner", |task| async move {
            let group: Value = task.context.item.expect("a group").parse()?;
            Ok::<_, TaskError>(group["members"].clone())
        })
        .handler("greet", move |task| {
            calls.add(task.key.to_string());
            async move {
                let member: String = task.context.item.expect("a member").parse()?;
                if hanging && member == "hang" {
                    tokio::time::sleep(LIMIT * 2).await;
                }
                Ok::<_, TaskError>(format!("hi {member} #{}", task.context.index.unwrap_or(99)))
            }
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_loops_keep_their_iterations_across_a_restart() {
    on_every_database(|db| async move {
        let calls = Calls::default();
        let flows = [Workflow::new("nested")
            .for_each("groups", "outer", |g| {
                g.for_each_with("members", "inner", Some(2), |m| m.step("greet"))
            })
            .build()
            .unwrap()];
        let engine = db.start(nested(&calls, true), &flows).await;
        let handle = engine.handle();
        let payload = json!({"groups": [
            {"members": ["ann", "bob"]},
            {"members": ["cy", "hang", "dee"]},
        ]});
        let run = handle.trigger("nested", payload).await.unwrap();
        until(&handle, run, "group 1 member 0 is greeted", |r| succeeded(r, "greet@1.0")).await;
        eventually("member `hang` is being greeted", || calls.get("greet@1.1") == 1).await;
        stop(engine).await;

        let engine = db.start(nested(&calls, false), &flows).await;
        let handle = engine.handle();
        let report = completed(&handle, run).await;
        let expected = json!([["hi ann #0", "hi bob #1"], ["hi cy #0", "hi hang #1", "hi dee #2"]]);
        assert_eq!(output(&report), expected, "{}", db.name());
        for key in ["greet@0.0", "greet@0.1", "greet@1.0"] {
            assert_eq!(calls.get(key), 1, "{}: {key} finished before the restart", db.name());
        }
        assert_eq!(calls.get("greet@1.1"), 2, "the interrupted one runs again");
        stop(engine).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subflow_per_item_gives_each_items_child_output() {
    on_every_database(|db| async move {
        let executor = InProcessExecutor::new()
            .handler("list", |_| async { Ok::<_, TaskError>(json!([1, 2, 3])) })
            .handler("item", |task| async move {
                Ok::<_, TaskError>(json!({"n": task.context.item.unwrap().to_value()}))
            })
            .handler("square", |task| async move {
                let n = task.context.payload.to_value()["n"].as_i64().unwrap_or(0);
                Ok::<_, TaskError>(n * n)
            });
        let flows = [
            Workflow::new("fan-out")
                .for_each_with("each", "list", Some(3), |s| {
                    s.subflow_with_payload("child", "square", "item")
                })
                .build()
                .unwrap(),
            Workflow::new("square").step("square").build().unwrap(),
        ];
        let engine = db.start(executor, &flows).await;
        let handle = engine.handle();
        let run = handle.trigger("fan-out", json!(null)).await.unwrap();
        let report = completed(&handle, run).await;
        assert_eq!(output(&report), json!([1, 4, 9]), "{}", db.name());
        assert_eq!(runs_of(&handle, "square").await.len(), 3);
        stop(engine).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_that_timed_out_while_the_engine_was_down_fails_at_the_restart() {
    on_every_database(|db| async move {
        let flows = [
            Workflow::new("strict")
                .pause_with("approve", |p| p.timeout(ms(150)))
                .step("ship")
                .build()
                .unwrap(),
            Workflow::new("lenient")
                .pause_with("approve", |p| p.timeout(ms(150)).or_continue())
                .step("ship")
                .build()
                .unwrap(),
        ];
        let engine = db.start(ship(InProcessExecutor::new()), &flows).await;
        let handle = engine.handle();
        let strict = handle.trigger("strict", json!(null)).await.unwrap();
        let lenient = handle.trigger("lenient", json!(null)).await.unwrap();
        stop(engine).await;
        tokio::time::sleep(ms(250)).await;

        let engine = db.start(ship(InProcessExecutor::new()), &flows).await;
        let handle = engine.handle();
        let report = ended(&handle, strict, RunStatus::Failed).await;
        assert_eq!(report.run.failure.unwrap().kind, FailureKind::WaitTimedOut, "{}", db.name());
        assert_eq!(output(&completed(&handle, lenient).await), json!({"shipped": null}));
        stop(engine).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_waiting_run_ends_its_waits() {
    on_every_database(|db| async move {
        let tokens = Tokens::default();
        let flows = [
            Workflow::new("paused").pause_with("approve", |p| p.on_pause("ask")).build().unwrap(),
            Workflow::new("sleeping").sleep("nap", ms(60_000)).build().unwrap(),
            Workflow::new("waiting").wait_for_event("paid", "payment").build().unwrap(),
        ];
        let engine = db.start(tokens.ask(InProcessExecutor::new(), false), &flows).await;
        let handle = engine.handle();
        let paused = handle.trigger("paused", json!(null)).await.unwrap();
        let sleeping = handle.trigger("sleeping", json!(null)).await.unwrap();
        let waiting = handle.trigger("waiting", json!(null)).await.unwrap();
        let token = tokens.wait(paused, 1).await.remove(0);
        for run in [paused, sleeping, waiting] {
            handle.cancel(run, Some("stop".into())).await.unwrap();
            ended(&handle, run, RunStatus::Cancelled).await;
        }
        let resumed = handle.resume(&token, json!(null)).await;
        assert!(matches!(resumed, Err(EngineError::UnknownResumeToken)), "{resumed:?}");
        assert!(handle.paused_runs().await.unwrap().is_empty(), "{}", db.name());
        let published = handle.publish_event("payment", json!({}).into(), None).await.unwrap();
        assert_eq!(published.resumed, 0);
        stop(engine).await;
    })
    .await;
}

//! Restarts in the middle of a wait: the engine stops during a `sleep`, a `pause` or a
//! `wait_for_event`, and a new engine on the same database takes the run over.

use chrono::Utc;
use cronflow_core::{
    EngineError, InProcessExecutor, Json, RunEvent, RunStatus, TaskError, Workflow,
};
use serde_json::json;

use crate::harness::*;
use crate::pause::{Tokens, ship};
use crate::sleep::{Ran, executor as sleepy, sleep_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleep_survives_a_restart_and_ends_at_its_time_not_before() {
    on_every_database(|db| async move {
        let ran = Ran::default();
        let flows = [
            Workflow::new("long").step("a").sleep("nap", ms(600)).step("b").build().unwrap(),
            Workflow::new("short").step("a").sleep("nap", ms(100)).step("b").build().unwrap(),
        ];
        let engine = db.start(sleepy(&ran), &flows).await;
        let handle = engine.handle();
        let long = handle.trigger("long", json!(null)).await.unwrap();
        let short = handle.trigger("short", json!(null)).await.unwrap();
        for run in [long, short] {
            until(&handle, run, "the sleep begins", |r| waiting_at(r, "nap")).await;
        }
        stop(engine).await;
        // Down past the short sleep's time, not the long one's.
        tokio::time::sleep(ms(200)).await;
        assert!(ran.lock().unwrap().is_empty(), "nothing ran while the engine was down");

        let engine = db.start(sleepy(&ran), &flows).await;
        let handle = engine.handle();
        let restarted = Utc::now();
        let report = completed(&handle, short).await;
        let (until_short, ran_short) = (sleep_until(&report, "nap"), ran.lock().unwrap()[0].0);
        assert!(ran_short >= until_short, "{}: b ran after the sleep's time", db.name());
        let late = (ran_short - restarted).num_milliseconds();
        assert!(late < 1_000, "an overdue sleep ends right after the restart: {late} ms");

        let report = completed(&handle, long).await;
        let until_long = sleep_until(&report, "nap");
        let ran_long = ran.lock().unwrap()[1].0;
        assert!(ran_long >= until_long, "{}: {ran_long} before {until_long}", db.name());
        let late = (ran_long - until_long).num_milliseconds();
        assert!(late < 1_000, "the long sleep ends at its time: {late} ms late");
        assert_eq!(report.attempts("a"), 1, "`a` is not run again");
        assert_eq!(output(&report), json!("A"));
        stop(engine).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_issued_before_a_restart_resumes_the_run_after_it() {
    on_every_database(|db| async move {
        let tokens = Tokens::default();
        let calls = Calls::default();
        let flows = [Workflow::new("expense")
            .pause_with("approve", |p| p.on_pause("ask"))
            .step("ship")
            .build()
            .unwrap()];
        let engine = db.start(ship(tokens.ask(InProcessExecutor::new(), false)), &flows).await;
        let handle = engine.handle();
        let run = handle.trigger("expense", json!(null)).await.unwrap();
        let token = tokens.wait(run, 1).await.remove(0);
        until(&handle, run, "on_pause is recorded", |r| succeeded(r, "approve#on_pause")).await;
        stop(engine).await;

        let counted = calls.clone();
        let executor = ship(InProcessExecutor::new()).handler("ask", move |_| {
            counted.add("ask");
            async { Ok::<_, TaskError>(()) }
        });
        let engine = db.start(executor, &flows).await;
        let handle = engine.handle();
        let paused = handle.paused_runs().await.unwrap();
        assert_eq!(paused.len(), 1, "{}: {paused:?}", db.name());
        assert_eq!((paused[0].run_id, paused[0].node.as_str()), (run, "approve"));
        assert_eq!(handle.resume(&token, json!("yes")).await.unwrap(), run, "{}", db.name());
        let report = completed(&handle, run).await;
        assert_eq!(output(&report), json!({"shipped": "yes"}));
        assert_eq!(calls.get("ask"), 0, "a finished on_pause is not run again");
        stop(engine).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_on_pause_runs_again_with_a_new_token_and_both_tokens_work() {
    on_every_database(|db| async move {
        let tokens = Tokens::default();
        let flows = [Workflow::new("expense")
            .pause_with("approve", |p| p.on_pause("ask"))
            .step("ship")
            .build()
            .unwrap()];
        // The first engine's `ask` gets its token and never finishes.
        let engine = db.start(ship(tokens.ask(InProcessExecutor::new(), true)), &flows).await;
        let handle = engine.handle();
        let first = handle.trigger("expense", json!(1)).await.unwrap();
        let second = handle.trigger("expense", json!(2)).await.unwrap();
        let old = [tokens.wait(first, 1).await.remove(0), tokens.wait(second, 1).await.remove(0)];
        stop(engine).await;

        let engine = db.start(ship(tokens.ask(InProcessExecutor::new(), false)), &flows).await;
        let handle = engine.handle();
        let new = [tokens.wait(first, 2).await.remove(1), tokens.wait(second, 2).await.remove(1)];
        assert_ne!(old, new, "{}: the re-run on_pause got new tokens", db.name());
        for run in [first, second] {
            let report =
                until(&handle, run, "on_pause is recorded", |r| succeeded(r, "approve#on_pause"))
                    .await;
            let issued =
                report.history.iter().filter(|e| matches!(e.event, RunEvent::TokenIssued { .. }));
            assert_eq!(issued.count(), 1, "one more token issued");
        }
        // The first run with its old token, the second with its new one.
        assert_eq!(handle.resume(&old[0], json!("old")).await.unwrap(), first, "{}", db.name());
        assert_eq!(handle.resume(&new[1], json!("new")).await.unwrap(), second);
        for token in [&new[0], &old[1]] {
            let used = handle.resume(token, json!(null)).await;
            assert!(matches!(used, Err(EngineError::UnknownResumeToken)), "{used:?}");
        }
        assert_eq!(output(&completed(&handle, first).await), json!({"shipped": "old"}));
        assert_eq!(output(&completed(&handle, second).await), json!({"shipped": "new"}));
        stop(engine).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_wait_survives_a_restart() {
    on_every_database(|db| async move {
        let flows = [Workflow::new("order")
            .wait_for_event_with("paid", "payment", |w| w.matching("/order/id", json!(7)))
            .step("ship")
            .build()
            .unwrap()];
        let engine = db.start(ship(InProcessExecutor::new()), &flows).await;
        let handle = engine.handle();
        let run = handle.trigger("order", json!(null)).await.unwrap();
        until(&handle, run, "the wait begins", |r| waiting_at(r, "paid")).await;
        stop(engine).await;

        let engine = db.start(ship(InProcessExecutor::new()), &flows).await;
        let handle = engine.handle();
        let paid = Json::from(json!({"order": {"id": 7}}));
        let published = handle.publish_event("payment", paid, None).await.unwrap();
        assert_eq!(published.resumed, 1, "{}", db.name());
        let report = completed(&handle, run).await;
        assert_eq!(output(&report), json!({"shipped": {"order": {"id": 7}}}));
        assert_eq!(report.status(), RunStatus::Completed);
        stop(engine).await;
    })
    .await;
}

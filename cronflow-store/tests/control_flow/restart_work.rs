//! Restarts in the middle of work: a `for_each` with iterations finished and in flight, and
//! a `subflow` whose child is running. What was recorded is not done again.

use cronflow_core::{InProcessExecutor, TaskError, Workflow};
use serde_json::{Value, json};

use crate::harness::*;

/// `list` returns the payload's `items`; `work` returns its item times ten, counted per item,
/// and never returns for items at or past `hang_from` (as if the process died meanwhile).
fn working(calls: &Calls, hang_from: i64) -> InProcessExecutor {
    let (listed, worked) = (calls.clone(), calls.clone());
    InProcessExecutor::new()
        .handler("list", move |task| {
            listed.add("list");
            async move {
                let payload: Value = task.context.payload()?;
                Ok::<_, TaskError>(payload["items"].clone())
            }
        })
        .handler("work", move |task| {
            let item: i64 = task.context.item.as_ref().expect("an item").parse().unwrap();
            worked.add(format!("work {item}"));
            async move {
                if item >= hang_from {
                    tokio::time::sleep(LIMIT * 2).await;
                }
                Ok::<_, TaskError>(item * 10)
            }
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_iterations_are_not_run_again_after_a_restart() {
    on_every_database(|db| async move {
        let calls = Calls::default();
        let flows = [Workflow::new("each")
            .for_each_with("each", "list", Some(3), |s| s.step("work"))
            .build()
            .unwrap()];
        let engine = db.start(working(&calls, 3), &flows).await;
        let handle = engine.handle();
        let run = handle.trigger("each", json!({"items": [0, 1, 2, 3, 4, 5]})).await.unwrap();
        // Items 0-2 finish; 3-5 then start and hang.
        until(&handle, run, "three iterations are recorded", |r| {
            (0..3).all(|i| succeeded(r, &format!("work@{i}")))
        })
        .await;
        eventually("items 3 to 5 are in flight", || {
            (3..6).all(|i| calls.get(&format!("work {i}")) == 1)
        })
        .await;
        stop(engine).await;

        let engine = db.start(working(&calls, i64::MAX), &flows).await;
        let handle = engine.handle();
        let report = completed(&handle, run).await;
        assert_eq!(output(&report), json!([0, 10, 20, 30, 40, 50]), "{}", db.name());
        let counts: Vec<usize> = (0..6).map(|i| calls.get(&format!("work {i}"))).collect();
        assert_eq!(counts, [1, 1, 1, 2, 2, 2], "{}: handler calls per item", db.name());
        assert_eq!(calls.get("list"), 1, "the items were recorded before the restart");
        for i in 0..6 {
            assert_eq!(report.attempts(&format!("work@{i}")), 1, "one recorded attempt each");
        }
        stop(engine).await;
    })
    .await;
}

/// `slow` (a child's step) doubles the payload's `n`; it never returns when `hang`.
fn child_steps(calls: &Calls, hang: bool) -> InProcessExecutor {
    let calls = calls.clone();
    InProcessExecutor::new()
        .handler("slow", move |task| {
            calls.add("slow");
            async move {
                if hang {
                    tokio::time::sleep(LIMIT * 2).await;
                }
                let payload: Value = task.context.payload()?;
                Ok::<_, TaskError>(json!({"doubled": payload["n"].as_i64().unwrap_or(0) * 2}))
            }
        })
        .handler("after", |task| async move { Ok::<_, TaskError>(task.context.last.clone()) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_completes_with_the_output_of_a_child_interrupted_by_a_restart() {
    on_every_database(|db| async move {
        let calls = Calls::default();
        let flows = [
            Workflow::new("parent").subflow("sub", "child").step("after").build().unwrap(),
            Workflow::new("child").step("slow").build().unwrap(),
        ];
        let engine = db.start(child_steps(&calls, true), &flows).await;
        let handle = engine.handle();
        let parent = handle.trigger("parent", json!({"n": 4})).await.unwrap();
        let report = until(&handle, parent, "the child starts", |r| waiting_at(r, "sub")).await;
        let child = child_of(&report, "sub");
        eventually("the child's step runs", || calls.get("slow") == 1).await;
        stop(engine).await;

        let engine = db.start(child_steps(&calls, false), &flows).await;
        let handle = engine.handle();
        let report = completed(&handle, parent).await;
        assert_eq!(output(&report), json!({"doubled": 8}), "{}", db.name());
        assert_eq!(calls.get("slow"), 2, "the child's step ran again after the restart");
        let child = completed(&handle, child).await;
        assert_eq!(output(&child), json!({"doubled": 8}));
        assert_eq!(runs_of(&handle, "child").await.len(), 1, "no second child was started");
        assert_eq!(waits(&report).len(), 1, "the subflow started once");
        stop(engine).await;
    })
    .await;
}

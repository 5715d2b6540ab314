//! `race`: the first branch to settle gives the node its output; the losers' attempts are
//! aborted (the executor's future is dropped) and a result that comes late anyway is
//! discarded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cronflow_core::{RunEvent, TaskError, TaskKey, WaitOutcome, Workflow};
use serde_json::json;

use crate::harness::*;

/// Set when dropped unless disarmed: tells whether a handler's future was dropped (aborted)
/// before it finished.
struct DropFlag(Arc<AtomicBool>, bool);

impl Drop for DropFlag {
    fn drop(&mut self) {
        if !self.1 {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn the_first_branch_wins_and_the_losers_are_aborted_or_ignored() {
    on_every_database(|db| async move {
        let slow_aborted = Arc::new(AtomicBool::new(false));
        let stubborn_returned = Arc::new(AtomicBool::new(false));
        let executor = cronflow_core::InProcessExecutor::new()
            // Branch 0: async, so dropping its future stops it.
            .handler("slow", {
                let aborted = Arc::clone(&slow_aborted);
                move |_| {
                    let flag = DropFlag(Arc::clone(&aborted), false);
                    async move {
                        let mut flag = flag; // the whole guard, not a field of it
                        tokio::time::sleep(ms(5_000)).await;
                        flag.1 = true;
                        Ok::<_, TaskError>("slow")
                    }
                }
            })
            // Branch 1: blocks its thread, so the abort cannot stop it: it returns after the
            // race is decided, and its result must be discarded.
            .handler("stubborn", {
                let returned = Arc::clone(&stubborn_returned);
                move |_| {
                    let returned = Arc::clone(&returned);
                    async move {
                        std::thread::sleep(ms(250));
                        returned.store(true, Ordering::SeqCst);
                        Ok::<_, TaskError>("stubborn")
                    }
                }
            })
            // Branch 2: the winner.
            .handler("fast", |_| async {
                tokio::time::sleep(ms(30)).await;
                Ok::<_, TaskError>(json!({"won": "fast"}))
            })
            // Still running when the stubborn loser answers.
            .handler("after", |task| async move {
                tokio::time::sleep(ms(500)).await;
                Ok::<_, TaskError>(json!({"race": task.context.last.to_value()}))
            });
        let flow = Workflow::new("racing")
            .race("fastest", |r| {
                r.branch(|s| s.step("slow"))
                    .branch(|s| s.step("stubborn"))
                    .branch(|s| s.step("fast"))
            })
            .step("after")
            .build()
            .unwrap();
        let engine = db.start(executor, &[flow]).await;
        let handle = engine.handle();
        let run = handle.trigger("racing", json!(null)).await.unwrap();
        let report = completed(&handle, run).await;
        assert_eq!(output(&report), json!({"race": {"won": "fast"}}), "{}", db.name());
        let won: Vec<(TaskKey, u32)> = report
            .history
            .iter()
            .filter_map(|e| match &e.event {
                RunEvent::BranchWon { node, branch } => Some((node.clone(), *branch)),
                _ => None,
            })
            .collect();
        assert_eq!(won, [(TaskKey::new("fastest"), 2)]);
        assert!(slow_aborted.load(Ordering::SeqCst), "the slow loser's future was dropped");
        assert!(stubborn_returned.load(Ordering::SeqCst), "the stubborn loser did return");
        for loser in ["slow", "stubborn"] {
            assert_eq!(report.attempts(loser), 0, "{}: nothing recorded for {loser}", db.name());
        }
        stop(engine).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_race_against_a_sleep_and_a_subflow_abandons_them() {
    on_every_database(|db| async move {
        let executor = cronflow_core::InProcessExecutor::new()
            .handler("quick", |_| async { Ok::<_, TaskError>("quick") })
            .handler("long", |_| async {
                tokio::time::sleep(ms(5_000)).await;
                Ok::<_, TaskError>("long")
            });
        let child = Workflow::new("child").step("long").build().unwrap();
        let flow = Workflow::new("racing")
            .race("first", |r| {
                r.branch(|s| s.sleep("nap", ms(5_000)))
                    .branch(|s| s.subflow("sub", "child"))
                    .branch(|s| s.sleep("short", ms(50)).step("quick"))
            })
            .build()
            .unwrap();
        let engine = db.start(executor, &[flow, child]).await;
        let handle = engine.handle();
        let run = handle.trigger("racing", json!(null)).await.unwrap();
        let report = completed(&handle, run).await;
        assert_eq!(output(&report), json!("quick"), "{}", db.name());
        let mut abandoned: Vec<String> = report
            .history
            .iter()
            .filter_map(|e| match &e.event {
                RunEvent::WaitEnded { wait, outcome: WaitOutcome::Abandoned } => {
                    Some(wait.to_string())
                }
                _ => None,
            })
            .collect();
        abandoned.sort();
        assert_eq!(abandoned, ["nap", "sub"], "{}", db.name());
        // The losing subflow's child run is cancelled.
        let child = child_of(&report, "sub");
        let child = ended(&handle, child, cronflow_core::RunStatus::Cancelled).await;
        assert_eq!(child.attempts("long"), 0, "the child's step never finished");
        stop(engine).await;
    })
    .await;
}

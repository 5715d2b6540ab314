//! `for_each` (with concurrency), `batch` and `while`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cronflow_core::{FailureKind, InProcessExecutor, RunEvent, RunStatus, TaskError, Workflow};
use serde_json::{Value, json};

use crate::harness::*;

/// What a loop body's handler saw: its task key, `ctx.index` and `ctx.item`.
type Seen = Arc<Mutex<Vec<(String, Option<u32>, Value)>>>;

/// The items handler `list`: the payload's `items`.
fn list(executor: InProcessExecutor) -> InProcessExecutor {
    executor.handler("list", |task| async move {
        let payload: Value = task.context.payload()?;
        Ok::<_, TaskError>(payload["items"].clone())
    })
}

/// Counts tasks running at once and remembers the most.
#[derive(Clone, Default)]
struct Gauge {
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

impl Gauge {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
    fn most(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn for_each_keeps_item_order_under_concurrency() {
    on_every_database(|db| async move {
        let (seen, gauge) = (Seen::default(), Gauge::default());
        let executor = list(InProcessExecutor::new()).handler("work", {
            let (seen, gauge) = (Arc::clone(&seen), gauge.clone());
            move |task| {
                let (seen, gauge) = (Arc::clone(&seen), gauge.clone());
                async move {
                    let item = task.context.item.clone().expect("an item").to_value();
                    let index = task.context.index;
                    seen.lock().unwrap().push((task.key.to_string(), index, item.clone()));
                    gauge.enter();
                    // Later items are quicker: completion order is not item order.
                    let i = u64::from(index.unwrap_or(0));
                    tokio::time::sleep(ms(40 * (5 - i))).await;
                    gauge.leave();
                    Ok::<_, TaskError>(format!("{}{i}", item.as_str().unwrap_or("?")))
                }
            }
        });
        let flow = Workflow::new("each")
            .for_each_with("each", "list", Some(2), |s| s.step("work"))
            .build()
            .unwrap();
        let engine = db.start(executor, &[flow]).await;
        let handle = engine.handle();
        let run = handle.trigger("each", json!({"items": ["a", "b", "c", "d", "e"]})).await;
        let report = completed(&handle, run.unwrap()).await;
        assert_eq!(output(&report), json!(["a0", "b1", "c2", "d3", "e4"]), "{}", db.name());
        assert_eq!(gauge.most(), 2, "{}: at most two items at once, and two did run", db.name());
        let mut seen = seen.lock().unwrap().clone();
        seen.sort_by_key(|(_, index, _)| *index);
        let expected: Vec<(String, Option<u32>, Value)> = ["a", "b", "c", "d", "e"]
            .iter()
            .enumerate()
            .map(|(i, item)| (format!("work@{i}"), Some(i as u32), json!(item)))
            .collect();
        assert_eq!(seen, expected, "each item once, with its index");
        let finished: Vec<String> = report
            .history
            .iter()
            .filter_map(|e| match &e.event {
                RunEvent::TaskSucceeded { task, .. } if task.as_str().starts_with("work@") => {
                    Some(task.to_string())
                }
                _ => None,
            })
            .collect();
        assert_eq!(finished[0], "work@1", "item 1 finished before item 0: {finished:?}");
        stop(engine).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_runs_its_chunks_one_after_another() {
    on_every_database(|db| async move {
        let (seen, gauge) = (Seen::default(), Gauge::default());
        let executor = list(InProcessExecutor::new()).handler("send", {
            let (seen, gauge) = (Arc::clone(&seen), gauge.clone());
            move |task| {
                let (seen, gauge) = (Arc::clone(&seen), gauge.clone());
                async move {
                    let chunk = task.context.item.clone().expect("a chunk").to_value();
                    seen.lock().unwrap().push((task.key.to_string(), task.context.index, chunk));
                    gauge.enter();
                    tokio::time::sleep(ms(20)).await;
                    gauge.leave();
                    let chunk: Vec<i64> = task.context.item.unwrap().parse()?;
                    Ok::<_, TaskError>(chunk.iter().sum::<i64>())
                }
            }
        });
        let flow =
            Workflow::new("chunks").batch("chunks", "list", 2, |s| s.step("send")).build().unwrap();
        let engine = db.start(executor, &[flow]).await;
        let handle = engine.handle();
        let run = handle.trigger("chunks", json!({"items": [1, 2, 3, 4, 5]})).await.unwrap();
        let report = completed(&handle, run).await;
        assert_eq!(output(&report), json!([3, 7, 5]), "{}", db.name());
        assert_eq!(gauge.most(), 1, "chunks run one after another");
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                ("send@0".to_string(), Some(0), json!([1, 2])),
                ("send@1".to_string(), Some(1), json!([3, 4])),
                ("send@2".to_string(), Some(2), json!([5])),
            ]
        );
        stop(engine).await;
    })
    .await;
}

/// `more` is true while the last output is below the payload's `limit` (or always, if the
/// payload says so); `inc` adds one to the last output.
fn counting(calls: &Calls) -> InProcessExecutor {
    let (more, inc) = (calls.clone(), calls.clone());
    InProcessExecutor::new()
        .handler("more", move |task| {
            more.add("more");
            async move {
                let payload: Value = task.context.payload()?;
                let last = task.context.last.to_value().as_i64().unwrap_or(0);
                let limit = payload["limit"].as_i64().unwrap_or(0);
                Ok::<_, TaskError>(payload["always"] == json!(true) || last < limit)
            }
        })
        .handler("inc", move |task| {
            inc.add(format!("inc@{}", task.context.index.unwrap_or(999)));
            async move {
                let last = task.context.last.to_value().as_i64().unwrap_or(0);
                Ok::<_, TaskError>(last + 1)
            }
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_loops_until_its_condition_is_false_or_fails_past_max_iterations() {
    on_every_database(|db| async move {
        let calls = Calls::default();
        let flow =
            Workflow::new("count").while_("loop", "more", 5, |s| s.step("inc")).build().unwrap();
        let engine = db.start(counting(&calls), &[flow]).await;
        let handle = engine.handle();
        let run = handle.trigger("count", json!({"limit": 3})).await.unwrap();
        let report = completed(&handle, run).await;
        assert_eq!(output(&report), json!(3), "{}", db.name());
        assert_eq!(calls.get("more"), 4, "checked before each iteration and once more");
        for i in 0..3 {
            assert_eq!(calls.get(&format!("inc@{i}")), 1, "iteration {i} once, with its index");
        }
        assert_eq!(calls.get("inc@3"), 0);

        let run = handle.trigger("count", json!({"always": true})).await.unwrap();
        let report = ended(&handle, run, RunStatus::Failed).await;
        let failure = report.run.failure.clone().unwrap();
        assert_eq!(failure.kind, FailureKind::NodeFailed);
        assert!(failure.message.contains("max_iterations (5)"), "{}", failure.message);
        assert_eq!(report.attempts("inc@4"), 1, "five iterations ran");
        assert_eq!(report.attempts("inc@5"), 0, "and no sixth");
        stop(engine).await;
    })
    .await;
}

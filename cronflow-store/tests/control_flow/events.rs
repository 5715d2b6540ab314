//! `wait_for_event` and `publish_event`: a wait takes a matching event published after it
//! began (the documented delivery rule: an event published before is not kept for it);
//! `Published` counts the runs started and the waits ended.

use std::sync::Arc;

use cronflow_core::{
    FailureKind, InProcessExecutor, Json, RunStatus, TaskError, TriggerDef, Workflow,
};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::harness::*;

/// `gate` waits for a permit of `gate` (so a test decides when the run reaches its wait);
/// `ship` returns `{"shipped": <previous output>}`.
fn executor(gate: &Arc<Semaphore>, calls: &Calls) -> InProcessExecutor {
    let (gate, calls) = (Arc::clone(gate), calls.clone());
    crate::pause::ship(InProcessExecutor::new()).handler("gate", move |_| {
        calls.add("gate");
        let gate = Arc::clone(&gate);
        async move {
            gate.acquire().await.expect("open").forget();
            Ok::<_, TaskError>("through")
        }
    })
}

fn event(value: serde_json::Value) -> Json {
    Json::from(value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_delivered_only_to_waits_that_began_before_it_and_match() {
    on_every_database(|db| async move {
        let (gate, calls) = (Arc::new(Semaphore::new(0)), Calls::default());
        let flow = Workflow::new("order")
            .step("gate")
            .wait_for_event_with("paid", "payment", |w| w.matching("order", json!(7)))
            .step("ship")
            .build()
            .unwrap();
        let engine = db.start(executor(&gate, &calls), &[flow]).await;
        let handle = engine.handle();
        let run = handle.trigger("order", json!(null)).await.unwrap();
        eventually("the run reaches its gate", || calls.get("gate") == 1).await;

        // Published before the wait began: not kept for it.
        let early = handle.publish_event("payment", event(json!({"order": 7})), None).await;
        assert_eq!(early.unwrap().resumed, 0, "{}", db.name());
        gate.add_permits(1);
        until(&handle, run, "the wait begins", |r| waiting_at(r, "paid")).await;
        tokio::time::sleep(ms(50)).await;
        let report = handle.report(run).await.unwrap();
        assert_eq!(report.status(), RunStatus::Running, "the early event was not delivered");

        let other_order = handle.publish_event("payment", event(json!({"order": 8})), None).await;
        assert_eq!(other_order.unwrap().resumed, 0, "another order's payment");
        let other_event = handle.publish_event("refund", event(json!({"order": 7})), None).await;
        assert_eq!(other_event.unwrap().resumed, 0, "another event");
        let paid = json!({"order": 7, "amount": 5});
        let published = handle.publish_event("payment", event(paid.clone()), None).await.unwrap();
        assert_eq!(published.resumed, 1, "{}", db.name());
        assert!(published.started.is_empty(), "no workflow is triggered by `payment`");
        let report = completed(&handle, run).await;
        assert_eq!(output(&report), json!({"shipped": paid}));
        let again = handle.publish_event("payment", event(json!({"order": 7})), None).await;
        assert_eq!(again.unwrap().resumed, 0, "a wait takes one event");
        stop(engine).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_publish_ends_every_waiting_run_and_starts_listening_workflows() {
    on_every_database(|db| async move {
        let (gate, calls) = (Arc::new(Semaphore::new(0)), Calls::default());
        let waiting = Workflow::new("waiting").wait_for_event("tick", "tick").step("ship");
        let listening = Workflow::new("listening").trigger(TriggerDef::event("tick")).step("ship");
        let timing_out = Workflow::new("timing-out")
            .wait_for_event_with("tick", "never", |w| w.timeout(ms(100)))
            .step("ship");
        let flows = [waiting, listening, timing_out].map(|f| f.build().unwrap());
        let engine = db.start(executor(&gate, &calls), &flows).await;
        let handle = engine.handle();
        let first = handle.trigger("waiting", json!(1)).await.unwrap();
        let second = handle.trigger("waiting", json!(2)).await.unwrap();
        for run in [first, second] {
            until(&handle, run, "the wait begins", |r| waiting_at(r, "tick")).await;
        }

        let tick = event(json!({"n": 1}));
        let published = handle.publish_event("tick", tick.clone(), Some("k1")).await.unwrap();
        assert_eq!(published.resumed, 2, "{}", db.name());
        assert_eq!(published.started.len(), 1);
        assert!(published.started[0].created);
        for run in [first, second] {
            let report = completed(&handle, run).await;
            assert_eq!(output(&report), json!({"shipped": {"n": 1}}), "{}", db.name());
        }
        let started = completed(&handle, published.started[0].run_id).await;
        assert_eq!(started.run.payload.to_value(), json!({"n": 1}), "the event is its payload");
        assert_eq!(started.run.context.unwrap().to_value()["type"], "event");
        // The same key again: no new run, and no wait is left to end.
        let again = handle.publish_event("tick", tick, Some("k1")).await.unwrap();
        assert_eq!(again.resumed, 0);
        assert_eq!(again.started[0].run_id, published.started[0].run_id);
        assert!(!again.started[0].created);
        assert_eq!(runs_of(&handle, "listening").await.len(), 1);

        let run = handle.trigger("timing-out", json!(null)).await.unwrap();
        let report = ended(&handle, run, RunStatus::Failed).await;
        assert_eq!(report.run.failure.unwrap().kind, FailureKind::WaitTimedOut);
        stop(engine).await;
    })
    .await;
}

//! Engine behaviour through its public API, on the in-memory store.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cronflow_core::{
    Engine, EngineError, FailureKind, InProcessExecutor, MemoryStore, MockExecutor, RetryPolicy,
    RunEvent, RunStatus, TaskError, Workflow,
};
use serde_json::json;

const GRACE: Duration = Duration::from_secs(5);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test]
async fn linear_run_passes_outputs_and_records_history() {
    let flow = Workflow::new("sum").step("double").step("add-one").build().unwrap();
    let executor = InProcessExecutor::new()
        .handler("double", |task| async move {
            let n: i64 = task.context.payload::<serde_json::Value>()?["n"].as_i64().unwrap_or(0);
            Ok::<_, TaskError>(n * 2)
        })
        .handler("add-one", |task| async move {
            let doubled: i64 = task.context.step("double")?;
            let last: i64 = task.context.last()?;
            assert_eq!(doubled, last);
            Ok::<_, TaskError>(last + 1)
        });
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .executor(executor)
        .workflow(flow)
        .start()
        .await
        .unwrap();
    let handle = engine.handle();
    let run = handle.trigger("sum", json!({"n": 20})).await.unwrap();
    let report = handle.wait(run).await.unwrap();
    assert_eq!(report.status(), RunStatus::Completed);
    assert_eq!(report.run.output.as_ref().unwrap().as_str(), "41");
    let kinds: Vec<_> = report.history.iter().map(|e| e.event.kind()).collect();
    assert_eq!(kinds, ["run_started", "task_succeeded", "task_succeeded", "run_completed"]);
    assert_eq!(report.task_output("double").unwrap().as_str(), "40");
    for (i, e) in report.history.iter().enumerate() {
        assert_eq!(e.seq as usize, i);
    }
    engine.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn a_failing_step_is_retried_with_a_stable_idempotency_key() {
    let flow = Workflow::new("flaky")
        .step_with("charge", |s| s.retry(RetryPolicy::fixed(3, ms(5))))
        .build()
        .unwrap();
    let mock = MockExecutor::new()
        .on_attempt("charge", 1, Err(TaskError::new("NetworkError", "reset")))
        .on_attempt("charge", 2, Ok(json!({"charged": true})));
    let engine = Engine::builder().store(MemoryStore::new()).executor(mock.clone()).workflow(flow);
    let engine = engine.start().await.unwrap();
    let run = engine.handle().trigger("flaky", json!({})).await.unwrap();
    let report = engine.handle().wait(run).await.unwrap();
    assert_eq!(report.status(), RunStatus::Completed);
    let calls = mock.calls_to("charge");
    assert_eq!(calls.iter().map(|c| c.attempt).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(calls[0].idempotency_key, calls[1].idempotency_key);
    assert_eq!(calls[0].idempotency_key, format!("{run}/charge"));
    let failed = report.history.iter().find_map(|e| match &e.event {
        RunEvent::TaskFailed { error, retry_at, .. } => Some((error.clone(), *retry_at)),
        _ => None,
    });
    let (error, retry_at) = failed.expect("the failed attempt is recorded");
    assert_eq!(error.name, "NetworkError");
    assert!(retry_at.is_some());
    engine.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn retry_on_filters_and_exhausted_retries_fail_the_run() {
    let flow = Workflow::new("strict")
        .retry(RetryPolicy::fixed(3, ms(1)).retry_on(["NetworkError"]))
        .step("validate")
        .build()
        .unwrap();
    let mock = MockExecutor::new().fails("validate", TaskError::new("ValidationError", "bad"));
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .executor(mock.clone())
        .workflow(flow)
        .start()
        .await
        .unwrap();
    let run = engine.handle().trigger("strict", json!(null)).await.unwrap();
    let report = engine.handle().wait(run).await.unwrap();
    assert_eq!(report.status(), RunStatus::Failed);
    assert_eq!(mock.call_count("validate"), 1, "ValidationError is not in retry_on");
    let failure = report.run.failure.unwrap();
    assert_eq!(failure.kind, FailureKind::TaskFailed);
    assert!(failure.message.contains("validate"), "{}", failure.message);
    engine.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn a_step_over_its_timeout_fails_as_timeout_and_is_retried() {
    let flow = Workflow::new("slow")
        .step_with("fetch", |s| s.timeout(ms(50)).retry(RetryPolicy::fixed(2, ms(1))))
        .build()
        .unwrap();
    let mock = MockExecutor::new().returns("fetch", json!("fresh")).delay_on_attempt(
        "fetch",
        1,
        Duration::from_secs(30),
    );
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .executor(mock.clone())
        .workflow(flow)
        .start()
        .await
        .unwrap();
    let run = engine.handle().trigger("slow", json!(null)).await.unwrap();
    let report = tokio::time::timeout(Duration::from_secs(10), engine.handle().wait(run))
        .await
        .expect("the timeout is enforced")
        .unwrap();
    assert_eq!(report.status(), RunStatus::Completed);
    let first = report.history.iter().find_map(|e| match &e.event {
        RunEvent::TaskFailed { error, .. } => Some(error.name.clone()),
        _ => None,
    });
    assert_eq!(first.as_deref(), Some(cronflow_core::TIMEOUT_ERROR));
    assert_eq!(report.task_output("fetch").unwrap().as_str(), "\"fresh\"");
    engine.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn the_whole_run_timeout_fails_the_run() {
    let flow = Workflow::new("bounded").timeout(ms(100)).step("forever").build().unwrap();
    let mock = MockExecutor::new().returns("forever", 1).delay("forever", Duration::from_secs(60));
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .executor(mock)
        .workflow(flow)
        .start()
        .await
        .unwrap();
    let run = engine.handle().trigger("bounded", json!(null)).await.unwrap();
    let report = engine.handle().wait(run).await.unwrap();
    assert_eq!(report.status(), RunStatus::Failed);
    assert_eq!(report.run.failure.unwrap().kind, FailureKind::RunTimedOut);
    engine.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn cancelling_a_run_aborts_its_task() {
    let dropped = Arc::new(AtomicUsize::new(0));
    struct CountDrop(Arc<AtomicUsize>);
    impl Drop for CountDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let counter = Arc::clone(&dropped);
    let executor = InProcessExecutor::new().handler("wait", move |_task| {
        let guard = CountDrop(Arc::clone(&counter));
        async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(guard);
            Ok::<_, TaskError>(())
        }
    });
    let flow = Workflow::new("cancel-me").step("wait").build().unwrap();
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .executor(executor)
        .workflow(flow)
        .start()
        .await
        .unwrap();
    let handle = engine.handle();
    let run = handle.trigger("cancel-me", json!(null)).await.unwrap();
    tokio::time::sleep(ms(50)).await;
    handle.cancel(run, Some("changed my mind".into())).await.unwrap();
    let report = handle.wait(run).await.unwrap();
    assert_eq!(report.status(), RunStatus::Cancelled);
    tokio::time::sleep(ms(50)).await;
    assert_eq!(dropped.load(Ordering::SeqCst), 1, "the handler future was dropped");
    assert!(matches!(handle.cancel(run, None).await, Err(EngineError::RunFinished(_))));
    engine.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn bad_requests_get_typed_errors() {
    let flow = Workflow::new("ok").step("a").build().unwrap();
    let mock = MockExecutor::new().returns("a", 1);
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .executor(mock.clone())
        .workflow(flow)
        .max_payload_bytes(64)
        .start()
        .await
        .unwrap();
    let handle = engine.handle();
    let err = handle.trigger("nope", json!(null)).await.unwrap_err();
    assert!(matches!(err, EngineError::UnknownWorkflow(ref w) if w == "nope"), "{err}");
    let err = handle.trigger("ok", "x".repeat(100)).await.unwrap_err();
    assert!(matches!(err, EngineError::PayloadTooLarge { limit: 64, .. }), "{err}");
    let err = handle.wait(cronflow_core::RunId::new()).await.unwrap_err();
    assert!(matches!(err, EngineError::UnknownRun(_)), "{err}");

    let recovering =
        Workflow::new("recovering").step_with("a", |t| t.on_error("fallback")).build().unwrap();
    let err = handle.register(recovering).await.unwrap_err();
    assert!(
        matches!(&err, EngineError::MissingHandler { handler, path, .. }
            if handler == "fallback" && path == "$.nodes[0].on_error"),
        "{err}"
    );
    let typo = Workflow::new("typo").if_("check", |b| b.when("is-big", |s| s.step("a"))).build();
    let err = handle.register(typo.unwrap()).await.unwrap_err();
    assert!(
        matches!(&err, EngineError::MissingHandler { handler, path, .. }
            if handler == "is-big" && path == "$.nodes[0].branches[0].condition"),
        "{err}"
    );
    engine.shutdown(GRACE).await.unwrap();
    let err = handle.trigger("ok", json!(null)).await.unwrap_err();
    assert!(matches!(err, EngineError::ShuttingDown), "{err}");
}

#[tokio::test]
async fn task_concurrency_is_a_hard_limit() {
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (r, p) = (Arc::clone(&running), Arc::clone(&peak));
    let executor = InProcessExecutor::new().handler("work", move |_task| {
        let (r, p) = (Arc::clone(&r), Arc::clone(&p));
        async move {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(ms(10)).await;
            r.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, TaskError>(())
        }
    });
    let flow = Workflow::new("fan")
        .parallel("all", |p| {
            (0..6).fold(p, |p, i| {
                p.branch(move |s| s.step_with(format!("w{i}"), |t| t.handler("work")))
            })
        })
        .build()
        .unwrap();
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .executor(executor)
        .workflow(flow)
        .task_concurrency(2)
        .start()
        .await
        .unwrap();
    let runs = [
        engine.handle().trigger("fan", json!(1)).await.unwrap(),
        engine.handle().trigger("fan", json!(2)).await.unwrap(),
    ];
    for run in runs {
        let report = engine.handle().wait(run).await.unwrap();
        assert_eq!(report.status(), RunStatus::Completed);
        assert_eq!(report.run.output.unwrap().as_str(), "[null,null,null,null,null,null]");
    }
    assert_eq!(peak.load(Ordering::SeqCst), 2);
    engine.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn a_panicking_handler_fails_its_task_instead_of_hanging() {
    let executor = InProcessExecutor::new().handler("boom", |_task| async {
        if true {
            panic!("handler bug");
        }
        Ok::<_, TaskError>(())
    });
    let flow = Workflow::new("p").step("boom").build().unwrap();
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .executor(executor)
        .workflow(flow)
        .start()
        .await
        .unwrap();
    let run = engine.handle().trigger("p", json!(null)).await.unwrap();
    let report = engine.handle().wait(run).await.unwrap();
    assert_eq!(report.status(), RunStatus::Failed);
    let error = report.run.failure.unwrap().error.unwrap();
    assert_eq!(error.name, "Panic");
    assert!(error.message.contains("handler bug"));
    engine.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn shutdown_leaves_unfinished_runs_to_the_next_start() {
    let store = MemoryStore::new();
    let flow = Workflow::new("two").step("first").step("second").build().unwrap();
    let slow = MockExecutor::new()
        .returns("first", "one")
        .returns("second", "two")
        .delay("second", Duration::from_secs(60));
    let engine = Engine::builder()
        .store(store.clone())
        .executor(slow)
        .workflow(flow.clone())
        .start()
        .await
        .unwrap();
    let run = engine.handle().trigger("two", json!(null)).await.unwrap();
    tokio::time::sleep(ms(100)).await;
    engine.shutdown(ms(50)).await.unwrap();

    let fast = MockExecutor::new().returns("first", "one").returns("second", "two");
    let engine =
        Engine::builder().store(store).executor(fast.clone()).workflow(flow).start().await.unwrap();
    let report = engine.handle().wait(run).await.unwrap();
    assert_eq!(report.status(), RunStatus::Completed);
    assert_eq!(fast.call_count("first"), 0, "first was recorded before the stop");
    assert_eq!(fast.call_count("second"), 1);
    assert_eq!(report.attempts("first"), 1);
    engine.shutdown(GRACE).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_hour_of_backoff_runs_in_virtual_time() {
    let flow = Workflow::new("patient")
        .step_with("call", |s| s.retry(RetryPolicy::fixed(3, Duration::from_secs(1800))))
        .build()
        .unwrap();
    let mock = MockExecutor::new()
        .on_attempt("call", 1, Err(TaskError::new("Unavailable", "503")))
        .on_attempt("call", 2, Err(TaskError::new("Unavailable", "503")))
        .on_attempt("call", 3, Ok(json!("finally")));
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .executor(mock.clone())
        .workflow(flow)
        .clock(cronflow_core::TokioClock::new())
        .start()
        .await
        .unwrap();
    let run = engine.handle().trigger("patient", json!(null)).await.unwrap();
    let report = engine.handle().wait(run).await.unwrap();
    assert_eq!(report.status(), RunStatus::Completed);
    let calls = mock.calls_to("call");
    assert_eq!(calls.len(), 3);
    // Thirty (virtual) minutes between attempts, as the policy says.
    assert!(calls[2].at - calls[1].at >= Duration::from_secs(1800));
    let started = report.history.first().unwrap().at;
    let finished = report.history.last().unwrap().at;
    assert!((finished - started).num_seconds() >= 3600);
    engine.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn a_run_that_cannot_be_resumed_is_reported_not_hidden() {
    use cronflow_core::{CommitBatch, NewRun, RecordedEvent, RunId, Store};
    let store = MemoryStore::new();
    // A run of a workflow whose definition was never stored (say, a hand-edited database).
    let run = RunId::new();
    let now = chrono::Utc::now();
    let batch = CommitBatch {
        new_runs: vec![NewRun {
            id: run,
            workflow_id: "ghost".into(),
            revision: 7,
            payload: cronflow_core::Json::null(),
            created_at: now,
            key: None,
            context: None,
        }],
        events: vec![(run, RecordedEvent { seq: 0, at: now, event: RunEvent::RunStarted })],
        finished: vec![],
        ..CommitBatch::default()
    };
    store.commit(&batch).await.unwrap();
    let engine = Engine::builder()
        .store(store)
        .executor(MockExecutor::new())
        .start()
        .await
        .expect("one bad run does not stop the engine");
    let err = engine.handle().wait(run).await.unwrap_err();
    assert!(matches!(err, EngineError::RunNotActive(r) if r == run), "{err}");
    let err = engine.handle().cancel(run, None).await.unwrap_err();
    assert!(matches!(err, EngineError::RunNotActive(_)), "{err}");
    engine.shutdown(GRACE).await.unwrap();
}

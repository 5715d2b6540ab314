use serde_json::json;

use super::*;

fn task(handler: &str, attempt: u32) -> Task {
    Task { attempt, ..Task::new("wf", handler) }
}

async fn run(mock: &MockExecutor, handler: &str, attempt: u32) -> Result<Json, TaskError> {
    mock.execute(task(handler, attempt)).await
}

#[tokio::test]
async fn returns_and_fails_answer_every_attempt() {
    let mock = MockExecutor::new()
        .returns("fetch", json!({"id": 1}))
        .fails("charge", TaskError::new("CardDeclined", "no"));
    for attempt in 1..=3 {
        assert_eq!(run(&mock, "fetch", attempt).await.unwrap().as_str(), r#"{"id":1}"#);
        let err = run(&mock, "charge", attempt).await.unwrap_err();
        assert_eq!(err, TaskError::new("CardDeclined", "no"));
    }
    assert!(mock.has_handler("fetch"));
    assert!(mock.has_handler("charge"));
}

#[tokio::test]
async fn returns_accepts_any_serialisable_value() {
    #[derive(Serialize)]
    struct Order {
        id: u32,
    }
    let mock = MockExecutor::new().returns("a", Order { id: 7 }).returns("b", 3);
    assert_eq!(run(&mock, "a", 1).await.unwrap().as_str(), r#"{"id":7}"#);
    assert_eq!(run(&mock, "b", 1).await.unwrap().as_str(), "3");
}

#[tokio::test]
async fn unserialisable_return_value_becomes_a_task_error() {
    let bad: HashMap<(u8, u8), u8> = HashMap::from([((1, 2), 3)]);
    let mock = MockExecutor::new().returns("bad", bad);
    let err = run(&mock, "bad", 1).await.unwrap_err();
    assert_eq!(err.name, "SerializationError");
    assert!(err.message.contains("`bad`"), "{}", err.message);
    assert!(!err.retryable);
}

#[tokio::test]
async fn on_attempt_overrides_the_handler_answer() {
    let mock = MockExecutor::new()
        .on_attempt("flaky", 1, Err(TaskError::new("Network", "reset")))
        .returns("flaky", "default")
        .on_attempt("flaky", 3, Ok(json!("third")));
    assert_eq!(run(&mock, "flaky", 1).await.unwrap_err().name, "Network");
    assert_eq!(run(&mock, "flaky", 2).await.unwrap().as_str(), r#""default""#);
    assert_eq!(run(&mock, "flaky", 3).await.unwrap().as_str(), r#""third""#);
    assert_eq!(run(&mock, "flaky", 4).await.unwrap().as_str(), r#""default""#);
}

#[tokio::test]
async fn later_handler_answer_replaces_earlier() {
    let mock = MockExecutor::new()
        .fails("x", TaskError::msg("first"))
        .returns("x", 1)
        .respond_with("y", |_task: &Task| Ok(1))
        .fails("y", TaskError::msg("second"));
    assert_eq!(run(&mock, "x", 1).await.unwrap().as_str(), "1");
    assert_eq!(run(&mock, "y", 1).await.unwrap_err().message, "second");
}

#[tokio::test]
async fn only_per_attempt_answers_leave_other_attempts_unanswered() {
    let mock = MockExecutor::new().on_attempt("once", 1, Ok(json!(true)));
    assert!(mock.has_handler("once"));
    assert_eq!(run(&mock, "once", 1).await.unwrap().as_str(), "true");
    let err = run(&mock, "once", 2).await.unwrap_err();
    assert_eq!(err.name, "MockNoAnswer");
    assert!(!err.retryable);
}

#[tokio::test]
async fn respond_with_computes_from_the_task() {
    let mock = MockExecutor::new()
        .respond_with("echo", |task: &Task| Ok(task.context.payload.clone()))
        .respond_with("attempt", |task: &Task| {
            if task.attempt < 2 { Err(TaskError::msg("not yet")) } else { Ok(task.attempt) }
        });
    let mut t = task("echo", 1);
    t.context.payload = Json::from(json!({"order": 42}));
    assert_eq!(mock.execute(t).await.unwrap().to_value(), json!({"order": 42}));
    assert_eq!(run(&mock, "attempt", 1).await.unwrap_err().message, "not yet");
    assert_eq!(run(&mock, "attempt", 2).await.unwrap().as_str(), "2");
}

#[tokio::test]
async fn unknown_handler_is_a_non_retryable_error() {
    let mock = MockExecutor::new().returns("known", 1).delay("delay-only", Duration::ZERO);
    for name in ["missing", "delay-only"] {
        let err = run(&mock, name, 1).await.unwrap_err();
        assert_eq!(err.name, "UnknownHandler");
        assert!(!err.retryable);
        assert_eq!(err, unknown_handler(name));
        assert!(!mock.has_handler(name));
    }
    assert!(mock.has_handler("known"));
    // Calls to unknown handlers are recorded too.
    assert_eq!(mock.call_count("missing"), 1);
}

#[tokio::test]
async fn calls_are_recorded_in_order_with_task_details() {
    let mock = MockExecutor::new().returns("a", 1).fails("b", TaskError::msg("no"));
    let mut first = task("a", 1);
    first.context.payload = Json::from(json!({"p": 1}));
    first.context.last = Json::from(json!("prev"));
    first.kind = TaskKind::Condition;
    first.key = TaskKey::condition("check", 0);
    let expected = first.clone();
    mock.execute(first).await.unwrap();
    run(&mock, "b", 1).await.unwrap_err();
    run(&mock, "b", 2).await.unwrap_err();
    run(&mock, "a", 2).await.unwrap();

    let calls = mock.calls();
    let order: Vec<(&str, u32)> = calls.iter().map(|c| (&*c.handler, c.attempt)).collect();
    assert_eq!(order, [("a", 1), ("b", 1), ("b", 2), ("a", 2)]);
    assert!(calls.windows(2).all(|w| w[0].at <= w[1].at));

    let call = &calls[0];
    assert_eq!(call.run_id, expected.run_id);
    assert_eq!(&*call.workflow_id, "wf");
    assert_eq!(&*call.node_id, "a");
    assert_eq!(call.key, TaskKey::new("check#0"));
    assert_eq!(call.kind, TaskKind::Condition);
    assert_eq!(call.idempotency_key, expected.idempotency_key);
    assert_eq!(call.payload.to_value(), json!({"p": 1}));
    assert_eq!(call.last.to_value(), json!("prev"));

    let b: Vec<u32> = mock.calls_to("b").iter().map(|c| c.attempt).collect();
    assert_eq!(b, [1, 2]);
    assert_eq!(mock.call_count("a"), 2);
    assert_eq!(mock.call_count("c"), 0);

    mock.clear_calls();
    assert!(mock.calls().is_empty());
    assert!(mock.has_handler("a"), "clearing calls keeps the answers");
}

#[tokio::test]
async fn clones_share_configuration_and_calls() {
    let mock = MockExecutor::new().returns("a", 1);
    let engine_side: Arc<dyn Executor> = Arc::new(mock.clone());
    engine_side.execute(task("a", 1)).await.unwrap();
    assert_eq!(mock.call_count("a"), 1);

    // Configuring through a clone after handing the mock out is seen by both.
    let _ = mock.clone().returns("b", 2);
    assert!(engine_side.has_handler("b"));
    assert_eq!(engine_side.execute(task("b", 1)).await.unwrap().as_str(), "2");
    assert_eq!(mock.calls().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn delayed_call_dropped_by_timeout_is_still_recorded() {
    let mock = MockExecutor::new().returns("slow", "done").delay("slow", Duration::from_secs(5));
    let start = Instant::now();
    let timed_out =
        tokio::time::timeout(Duration::from_secs(1), mock.execute(task("slow", 1))).await;
    assert!(timed_out.is_err());
    assert_eq!(mock.call_count("slow"), 1);
    assert_eq!(mock.calls()[0].at, start, "recorded before the delay");

    // Without a timeout the answer comes after the delay.
    let before = Instant::now();
    assert_eq!(run(&mock, "slow", 2).await.unwrap().as_str(), r#""done""#);
    assert!(before.elapsed() >= Duration::from_secs(5));
    assert_eq!(mock.call_count("slow"), 2);
}

#[tokio::test(start_paused = true)]
async fn delay_on_attempt_overrides_the_handler_delay() {
    let mock = MockExecutor::new()
        .returns("slow", 1)
        .delay("slow", Duration::from_secs(5))
        .delay_on_attempt("slow", 2, Duration::ZERO);
    let limit = Duration::from_secs(1);
    assert!(tokio::time::timeout(limit, run(&mock, "slow", 1)).await.is_err());
    assert!(tokio::time::timeout(limit, run(&mock, "slow", 2)).await.unwrap().is_ok());
    assert!(tokio::time::timeout(limit, run(&mock, "slow", 3)).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn concurrent_calls_are_not_serialised() {
    let mock = MockExecutor::new().returns("slow", 1).delay("slow", Duration::from_millis(200));
    let started = Instant::now();
    let handles: Vec<_> = (1..=4)
        .map(|attempt| {
            let mock = mock.clone();
            tokio::spawn(async move { mock.execute(task("slow", attempt)).await })
        })
        .collect();
    for handle in handles {
        assert!(handle.await.unwrap().is_ok());
    }
    // Paused clock: the four delays overlap instead of adding up to 800ms.
    assert!(started.elapsed() < Duration::from_millis(400), "{:?}", started.elapsed());
    assert_eq!(mock.call_count("slow"), 4);
}

#[test]
fn debug_lists_configured_handlers() {
    let mock = MockExecutor::new().returns("b", 1).returns("a", 2);
    assert_eq!(format!("{mock:?}"), r#"MockExecutor { handlers: ["a", "b"], calls: 0 }"#);
}

//! What trigger sources use on the engine handle: events start every listening workflow
//! (durably, idempotently with a key), and a polling handler is called outside any run.

use std::time::Duration;

use cronflow_core::{
    Engine, EngineError, InProcessExecutor, Json, MemoryStore, RunQuery, TaskError, TaskKind,
    TriggerDef, Workflow,
};
use serde_json::{Value, json};

const GRACE: Duration = Duration::from_secs(5);

async fn engine() -> Engine {
    let executor = InProcessExecutor::new()
        .handler("echo", |task| async move {
            let payload: Value = task.context.payload()?;
            let trigger: Value = task
                .context
                .trigger
                .parse()
                .map_err(|e| TaskError::new("BadTrigger", format!("{e}")))?;
            Ok::<_, TaskError>(json!({ "payload": payload, "trigger": trigger }))
        })
        .handler("items", |task| async move {
            assert_eq!(task.kind, TaskKind::Poll);
            assert_eq!(task.idempotency_key, "poll:feed:1");
            Ok::<_, TaskError>(json!([{ "id": 1 }, { "id": 2 }]))
        })
        .handler("broken", |_| async { Err::<Value, _>(TaskError::new("Down", "feed is down")) });
    let listens = |id: &str, event: &str| {
        Workflow::new(id).trigger(TriggerDef::event(event)).step("echo").build().unwrap()
    };
    Engine::builder()
        .store(MemoryStore::new())
        .executor(executor)
        .workflow(listens("billing", "order.created"))
        .workflow(listens("shipping", "order.created"))
        .workflow(listens("audit", "order.cancelled"))
        .workflow(Workflow::new("feed").step("echo").build().unwrap())
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_event_starts_every_listening_workflow_once_per_key() {
    let engine = engine().await;
    let handle = engine.handle();
    let payload = Json::from_value(&json!({ "order": 7 })).unwrap();
    let started =
        handle.publish_event("order.created", payload.clone(), Some("o-7")).await.unwrap().started;
    assert_eq!(started.len(), 2);
    assert!(started.iter().all(|t| t.created));
    for t in &started {
        let report = handle.wait(t.run_id).await.unwrap();
        let out: Value = report.run.output.unwrap().parse().unwrap();
        assert_eq!(out["payload"], json!({ "order": 7 }));
        assert_eq!(out["trigger"], json!({ "type": "event", "name": "order.created" }));
    }
    let mut workflows: Vec<String> = Vec::new();
    for t in &started {
        workflows.push(handle.report(t.run_id).await.unwrap().run.workflow_id);
    }
    assert_eq!(workflows, ["billing", "shipping"]);

    // The same delivery again starts nothing; without a key every publish starts runs.
    let again =
        handle.publish_event("order.created", payload.clone(), Some("o-7")).await.unwrap().started;
    assert_eq!(
        again.iter().map(|t| (t.run_id, t.created)).collect::<Vec<_>>(),
        started.iter().map(|t| (t.run_id, false)).collect::<Vec<_>>()
    );
    assert_eq!(
        handle.publish_event("order.created", payload.clone(), None).await.unwrap().started.len(),
        2
    );
    assert!(
        handle.publish_event("nobody.listens", payload, None).await.unwrap().started.is_empty()
    );
    let all = handle.list_runs(&RunQuery::default()).await.unwrap();
    assert_eq!(all.len(), 4);
    engine.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn a_polling_handler_runs_outside_any_run() {
    let engine = engine().await;
    let handle = engine.handle();
    let items = handle.run_handler("feed", "items", Json::null(), "poll:feed:1".into()).await;
    assert_eq!(items.unwrap().as_str(), r#"[{"id":1},{"id":2}]"#);
    let err = handle.run_handler("feed", "broken", Json::null(), "k".into()).await.unwrap_err();
    assert!(matches!(&err, EngineError::Handler(e) if e.name == "Down"), "{err}");
    assert!(handle.list_runs(&RunQuery::default()).await.unwrap().is_empty());
    assert!(handle.workflow("feed").is_some() && handle.workflow("nope").is_none());
    engine.shutdown(GRACE).await.unwrap();
}

#[tokio::test]
async fn a_poll_trigger_naming_an_unknown_handler_is_refused_at_registration() {
    let engine = engine().await;
    let poll = TriggerDef::poll("fetch-nothing", Duration::from_secs(60));
    let def = Workflow::new("ghost").trigger(poll).step("echo").build().unwrap();
    let err = engine.handle().register(def).await.unwrap_err();
    match err {
        EngineError::MissingHandler { workflow, handler, path } => {
            assert_eq!((workflow.as_str(), handler.as_str()), ("ghost", "fetch-nothing"));
            assert_eq!(path, "$.triggers[0].handler");
        }
        other => panic!("expected MissingHandler, got {other}"),
    }
    engine.shutdown(GRACE).await.unwrap();
}

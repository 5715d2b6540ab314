//! The engine over real databases (a SQLite file, and PostgreSQL when
//! `CRONFLOW_TEST_DATABASE_URL` is set): restarts, definition revisions, history on disk.

mod common;

use std::time::Duration;

use common::on_every_database;
use cronflow_core::{Engine, Json, MockExecutor, RunEvent, RunStatus, TriggerOptions, Workflow};
use serde_json::json;

const GRACE: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_run_keeps_the_definition_revision_it_started_with() {
    on_every_database(|db| async move {
        let v1 = Workflow::new("ship").version("1").step("pack").step("post-v1").build().unwrap();
        let slow = MockExecutor::new()
            .returns("pack", "packed")
            .returns("post-v1", "posted")
            .delay("post-v1", Duration::from_secs(60));
        let engine = Engine::builder()
            .store(db.open().await)
            .executor(slow)
            .workflow(v1.clone())
            .start()
            .await
            .unwrap();
        let old_run = engine.handle().trigger("ship", json!({"order": 1})).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        engine.shutdown(Duration::from_millis(10)).await.unwrap();

        // The host upgrades: revision 2 of the workflow replaces `post-v1` by `post-v2`.
        let v2 = Workflow::new("ship").version("2").step("pack").step("post-v2").build().unwrap();
        let mock = MockExecutor::new()
            .returns("pack", "packed")
            .returns("post-v1", "posted by v1")
            .returns("post-v2", "posted by v2");
        let engine = Engine::builder()
            .store(db.open().await)
            .executor(mock.clone())
            .workflow(v2)
            .start()
            .await
            .unwrap();
        let handle = engine.handle();
        let old = handle.wait(old_run).await.unwrap();
        assert_eq!(old.status(), RunStatus::Completed);
        assert_eq!(old.run.revision, 1);
        assert_eq!(old.run.output.unwrap().as_str(), r#""posted by v1""#);
        assert_eq!(mock.call_count("pack"), 0, "pack was recorded before the restart");

        let new_run = handle.trigger("ship", json!({"order": 2})).await.unwrap();
        let new = handle.wait(new_run).await.unwrap();
        assert_eq!(new.run.revision, 2);
        assert_eq!(new.run.output.unwrap().as_str(), r#""posted by v2""#);
        assert_eq!(handle.register(v1).await.unwrap(), 3, "a changed definition is a new revision");
        engine.shutdown(GRACE).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn history_and_pending_retries_survive_a_restart() {
    on_every_database(|db| async move {
        let flow = Workflow::new("retry-later")
            .step_with("call", |s| {
                s.retry(cronflow_core::RetryPolicy::fixed(2, Duration::from_millis(300)))
            })
            .build()
            .unwrap();
        let failing =
            MockExecutor::new().fails("call", cronflow_core::TaskError::new("Unavailable", "503"));
        let engine = Engine::builder()
            .store(db.open().await)
            .executor(failing.clone())
            .workflow(flow.clone())
            .start()
            .await
            .unwrap();
        let run = engine.handle().trigger("retry-later", json!(null)).await.unwrap();
        // Stop while the retry is pending: attempt 1 failed, attempt 2 is due 300 ms later.
        tokio::time::sleep(Duration::from_millis(100)).await;
        engine.shutdown(GRACE).await.unwrap();
        assert_eq!(failing.call_count("call"), 1);

        let healthy = MockExecutor::new().returns("call", "ok");
        let engine = Engine::builder()
            .store(db.open().await)
            .executor(healthy.clone())
            .workflow(flow)
            .start()
            .await
            .unwrap();
        let report = engine.handle().wait(run).await.unwrap();
        assert_eq!(report.status(), RunStatus::Completed);
        let calls = healthy.calls_to("call");
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].attempt, 2, "the attempt count lives in the store");
        let retry_at = report.history.iter().find_map(|e| match &e.event {
            RunEvent::TaskFailed { retry_at, .. } => *retry_at,
            _ => None,
        });
        let succeeded_at = report.history.iter().find_map(|e| match &e.event {
            RunEvent::TaskSucceeded { started_at, .. } => Some(*started_at),
            _ => None,
        });
        assert!(
            succeeded_at.unwrap() >= retry_at.unwrap(),
            "the backoff is not shortened by a restart"
        );
        engine.shutdown(GRACE).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn the_trigger_context_and_key_survive_a_restart() {
    on_every_database(|db| async move {
        let flow = Workflow::new("hook").step("first").step("second").build().unwrap();
        let slow = MockExecutor::new()
            .returns("first", "1")
            .returns("second", "2")
            .delay("second", Duration::from_secs(60));
        let engine = Engine::builder().store(db.open().await).executor(slow).workflow(flow.clone());
        let engine = engine.start().await.unwrap();
        let context = Json::from_value(&json!({"type": "webhook", "headers": {"x-id": "7"}}));
        let options = TriggerOptions::new().key("webhook:hook:7").context(context.unwrap());
        let payload = Json::from_value(&json!({"n": 1})).unwrap();
        let run = engine.handle().trigger_with("hook", payload, options.clone()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        engine.shutdown(Duration::ZERO).await.unwrap();

        // The next start resumes the run: its tasks still see the context; the key still
        // answers with the same run.
        let mock = MockExecutor::new().returns("first", "1").returns("second", "2");
        let engine = Engine::builder()
            .store(db.open().await)
            .executor(mock.clone())
            .workflow(flow)
            .start()
            .await
            .unwrap();
        let handle = engine.handle();
        let report = handle.wait(run.run_id).await.unwrap();
        assert_eq!(report.status(), RunStatus::Completed);
        let second = mock.calls_to("second").pop().unwrap();
        let seen: serde_json::Value = second.trigger.parse().unwrap();
        assert_eq!(seen["headers"]["x-id"], "7");
        let stored: serde_json::Value = report.run.context.unwrap().parse().unwrap();
        assert_eq!(stored["type"], "webhook");
        let again = handle.trigger_with("hook", Json::null(), options).await.unwrap();
        assert_eq!((again.run_id, again.created), (run.run_id, false));
        engine.shutdown(GRACE).await.unwrap();
    })
    .await;
}

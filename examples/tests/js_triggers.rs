//! JavaScript workflows started by trigger sources: a polling handler written in JavaScript,
//! called through the Node.js pool, whose new items start runs (each item once), and an event.
//! Real `node` workers, a SQLite file, a simulated clock for the poll interval. Skipped with a
//! note when `node` is not on `PATH`.

use std::path::Path;
use std::time::Duration;

use cronflow_core::{Engine, Json, RunQuery, RunStatus};
use cronflow_executor_node::NodeExecutor;
use cronflow_store::SqliteStore;
use cronflow_triggers::{SimulatedClock, TriggerClock, Triggers};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_poll_handler_and_an_event_start_javascript_runs() {
    if std::process::Command::new("node").arg("--version").output().is_err() {
        eprintln!("skipping: `node` is not on PATH");
        return;
    }
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/js_poll.mjs");
    let (executor, workflows) = NodeExecutor::builder().module(module).spawn().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::builder()
        .store(SqliteStore::open(dir.path().join("js.db")).await.unwrap())
        .executor(executor.clone())
        .validator(cronflow_triggers::check_workflow)
        .workflows(workflows)
        .start()
        .await
        .unwrap();
    let handle = engine.handle();
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-26T09:00:30Z").unwrap().to_utc();
    let clock = SimulatedClock::new(start);
    let triggers = Triggers::new(handle.clone()).clock(clock.clone()).start().unwrap();
    let poll = &triggers.sources()[0];

    // Two intervals: the poll returns a-1, a-2, then a-2 (seen), a-3.
    let runs_of = |n: usize| {
        let handle = handle.clone();
        async move {
            let query = RunQuery { workflow_id: Some("js-feed".into()), ..RunQuery::default() };
            tokio::time::timeout(LIMIT, async {
                loop {
                    let runs = handle.list_runs(&query).await.unwrap();
                    if runs.len() >= n {
                        return runs;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await
            .expect("the runs were started")
        }
    };
    // The poll's cursor exists before the clock moves (else its first slot is later).
    let deadline = tokio::time::Instant::now() + LIMIT;
    while handle.schedule_cursor(poll).await.unwrap().is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the poll never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..2 {
        clock.advance(Duration::from_secs(60));
        let deadline = tokio::time::Instant::now() + LIMIT;
        while handle.schedule_cursor(poll).await.unwrap().is_none_or(|c| c <= clock.now()) {
            assert!(tokio::time::Instant::now() < deadline, "the poll did not run");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    handle
        .publish_event(
            "orders.replay",
            Json::from_value(&json!({ "id": "r-1", "total": 1 })).unwrap(),
            None,
        )
        .await
        .unwrap();

    let runs = runs_of(4).await;
    let mut outputs = Vec::new();
    for run in &runs {
        let report = tokio::time::timeout(LIMIT, handle.wait(run.id)).await.unwrap().unwrap();
        assert_eq!(report.status(), RunStatus::Completed, "{report:#?}");
        outputs.push(report.run.output.unwrap().to_value());
    }
    outputs.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    assert_eq!(
        outputs,
        [
            json!({ "id": "a-1", "doubled": 20, "via": "poll" }),
            json!({ "id": "a-2", "doubled": 40, "via": "poll" }),
            json!({ "id": "a-3", "doubled": 60, "via": "poll" }),
            json!({ "id": "r-1", "doubled": 2, "via": "event" }),
        ]
    );
    triggers.shutdown().await;
    engine.shutdown(Duration::from_secs(5)).await.unwrap();
    executor.shutdown(Duration::from_secs(5)).await;
}

//! Stored data that does not decode is reported as `StoreError::Corrupt`, never a panic.

mod common;

use std::path::Path;

use common::{def, new_run, start};
use cronflow_core::{RunId, RunQuery, Store, StoreError};
use cronflow_store::SqliteStore;
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sea_orm::sqlx::{ConnectOptions, Connection, Executor};

/// Tampers with the store at `path` behind its back.
async fn tamper(path: &Path, sql: String) {
    let mut conn: SqliteConnection =
        SqliteConnectOptions::new().filename(path).connect().await.unwrap();
    conn.execute(sea_orm::sqlx::AssertSqlSafe(sql)).await.unwrap();
    conn.close().await.unwrap();
}

fn corrupt_message<T: std::fmt::Debug>(result: Result<T, StoreError>) -> String {
    match result {
        Err(StoreError::Corrupt(message)) => message,
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

async fn store_with_a_run(path: &Path) -> (SqliteStore, RunId) {
    let store = SqliteStore::open(path).await.unwrap();
    let run = new_run("orders", 1);
    store.commit(&start(&run, 3)).await.unwrap();
    (store, run.id)
}

#[tokio::test]
async fn undecodable_events_name_the_run_and_seq() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad-events.db");
    let (store, run) = store_with_a_run(&path).await;

    tamper(
        &path,
        format!("UPDATE run_events SET data = '{{oops' WHERE run_id = '{run}' AND seq = 1"),
    )
    .await;
    let message = corrupt_message(store.run_events(run).await);
    assert!(message.contains(&run.to_string()) && message.contains("seq 1"), "{message}");
    let message = corrupt_message(store.active_runs().await);
    assert!(message.contains("seq 1"), "{message}");

    // Repaired, it reads again.
    let repair = "UPDATE run_events SET kind = 'run_started', task = NULL, attempt = NULL, \
                  data = '{\"kind\":\"run_started\"}' WHERE seq = 1";
    tamper(&path, repair.into()).await;
    assert_eq!(store.run_events(run).await.unwrap().len(), 3);

    // A kind column that disagrees with the data, and a value of the wrong type.
    tamper(&path, "UPDATE run_events SET kind = 'run_cancelled' WHERE seq = 2".into()).await;
    assert!(corrupt_message(store.run_events(run).await).contains("seq 2"));
    tamper(
        &path,
        "UPDATE run_events SET kind = 'task_succeeded', at = 'noon' WHERE seq = 2".into(),
    )
    .await;
    assert!(corrupt_message(store.run_events(run).await).contains("seq 2"));
}

#[tokio::test]
async fn undecodable_runs_name_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad-runs.db");
    let (store, run) = store_with_a_run(&path).await;

    tamper(&path, "UPDATE runs SET status = 'sleeping'".into()).await;
    let message = corrupt_message(store.run(run).await);
    assert!(message.contains(&run.to_string()) && message.contains("sleeping"), "{message}");
    assert!(corrupt_message(store.list_runs(&RunQuery::default()).await).contains("sleeping"));

    tamper(&path, "UPDATE runs SET status = 'running', payload = 'not json'".into()).await;
    assert!(corrupt_message(store.active_runs().await).contains("payload"));

    tamper(&path, "UPDATE runs SET payload = 'null', revision = -1".into()).await;
    assert!(corrupt_message(store.run(run).await).contains("-1"));
}

#[tokio::test]
async fn undecodable_definitions_name_the_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad-defs.db");
    let store = SqliteStore::open(&path).await.unwrap();
    store.save_workflow(&def("orders", &["a"])).await.unwrap();
    tamper(&path, "UPDATE workflows SET definition = '{\"id\": 5}'".into()).await;
    let message = corrupt_message(store.load_workflow("orders", 1).await);
    assert!(message.contains("orders"), "{message}");
}

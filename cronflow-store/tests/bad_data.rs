//! Stored data that does not decode is reported as `StoreError::Corrupt`, never a panic: on a
//! SQLite file and on PostgreSQL (when `CRONFLOW_TEST_DATABASE_URL` is set), changed behind
//! the store's back.

mod common;

use common::{TestDb, TestStore, def, new_run, on_every_database, start};
use cronflow_core::{RunId, RunQuery, Store, StoreError};

fn corrupt_message<T: std::fmt::Debug>(result: Result<T, StoreError>) -> String {
    match result {
        Err(StoreError::Corrupt(message)) => message,
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

async fn store_with_a_run(db: &TestDb) -> (TestStore, RunId) {
    let store = db.open().await;
    let run = new_run("orders", 1);
    store.commit(&start(&run, 3)).await.unwrap();
    (store, run.id)
}

#[tokio::test]
async fn undecodable_events_name_the_run_and_seq() {
    on_every_database(|db| async move {
        let (store, run) = store_with_a_run(&db).await;

        db.exec(&format!(
            "UPDATE run_events SET data = '{{oops' WHERE run_id = '{run}' AND seq = 1"
        ))
        .await;
        let message = corrupt_message(store.run_events(run).await);
        assert!(message.contains(&run.to_string()) && message.contains("seq 1"), "{message}");
        let message = corrupt_message(store.active_runs().await);
        assert!(message.contains("seq 1"), "{message}");

        // Repaired, it reads again.
        let repair = "UPDATE run_events SET kind = 'run_started', task = NULL, attempt = NULL, \
                      data = '{\"kind\":\"run_started\"}' WHERE seq = 1";
        db.exec(repair).await;
        assert_eq!(store.run_events(run).await.unwrap().len(), 3);

        // A kind column that disagrees with the data, and a time out of range.
        db.exec("UPDATE run_events SET kind = 'run_cancelled' WHERE seq = 2").await;
        assert!(corrupt_message(store.run_events(run).await).contains("seq 2"));
        db.exec(
            "UPDATE run_events SET kind = 'task_succeeded', at = 9223372036854775807 WHERE seq = 2",
        )
        .await;
        let message = corrupt_message(store.run_events(run).await);
        assert!(message.contains("seq 2") && message.contains("out of range"), "{message}");

        // SQLite columns hold any type: a value of the wrong type is reported too.
        if !db.is_postgres() {
            db.exec("UPDATE run_events SET at = 'noon' WHERE seq = 2").await;
            assert!(corrupt_message(store.run_events(run).await).contains("seq 2"));
        }
    })
    .await;
}

#[tokio::test]
async fn undecodable_runs_name_the_run() {
    on_every_database(|db| async move {
        let (store, run) = store_with_a_run(&db).await;

        db.exec("UPDATE runs SET status = 'sleeping'").await;
        let message = corrupt_message(store.run(run).await);
        assert!(message.contains(&run.to_string()) && message.contains("sleeping"), "{message}");
        assert!(corrupt_message(store.list_runs(&RunQuery::default()).await).contains("sleeping"));

        db.exec("UPDATE runs SET status = 'running', payload = 'not json'").await;
        assert!(corrupt_message(store.active_runs().await).contains("payload"));

        db.exec("UPDATE runs SET payload = 'null', revision = -1").await;
        assert!(corrupt_message(store.run(run).await).contains("-1"));

        db.exec("UPDATE runs SET revision = 1, failure = '{\"kind\": 7}'").await;
        assert!(corrupt_message(store.run_report(run).await).contains("failure"));
    })
    .await;
}

#[tokio::test]
async fn undecodable_definitions_name_the_workflow() {
    on_every_database(|db| async move {
        let store = db.open().await;
        store.save_workflow(&def("orders", &["a"])).await.unwrap();
        db.exec("UPDATE workflows SET definition = '{\"id\": 5}'").await;
        let message = corrupt_message(store.load_workflow("orders", 1).await);
        assert!(message.contains("orders"), "{message}");
    })
    .await;
}

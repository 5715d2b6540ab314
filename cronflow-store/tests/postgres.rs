//! Connecting to PostgreSQL: clear errors without the password, migrations safe when several
//! instances start at once, refusal of schemas that are not ours. (The `Store` contract itself
//! is tested on every backend in `store.rs`.)

mod common;

use std::time::{Duration, Instant};

use common::{PgSchema, new_run, postgres_url, start, with_search_path};
use cronflow_core::{RunQuery, Store, StoreError};
use cronflow_store::{PostgresOptions, PostgresStore};

/// Connects, expecting `Incompatible` with `reason` in its message.
async fn assert_refused(url: &str, reason: &str) {
    match PostgresStore::connect(url).await {
        Err(StoreError::Incompatible { location, message }) => {
            assert!(message.contains(reason), "{message}");
            println!("refused as expected: {}", StoreError::Incompatible { location, message });
        }
        Err(other) => panic!("expected Incompatible, got {other:?}"),
        Ok(_) => panic!("connected to {url}"),
    }
}

#[tokio::test]
async fn an_unreachable_database_is_an_open_error_without_the_password() {
    // Nothing listens on port 1: no database is needed for this test.
    let options = PostgresOptions::default().connect_timeout(Duration::from_secs(5));
    let cases = [
        "postgres://cronflow:hunter2-secret@127.0.0.1:1/orders",
        "postgres://cronflow@127.0.0.1:1/orders?password=hunter2-secret&sslmode=disable",
        // Not even a URL sqlx accepts.
        "postgres://cronflow:hunter2-secret@127.0.0.1:port/orders",
    ];
    for url in cases {
        let started = Instant::now();
        let err = PostgresStore::connect_with(url, options.clone()).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(4), "it failed fast");
        let shown = err.to_string();
        println!("{shown}");
        match &err {
            StoreError::Open { location, .. } => {
                assert!(
                    location.contains("127.0.0.1:") && location.contains("/orders"),
                    "{location}"
                )
            }
            other => panic!("expected Open, got {other:?}"),
        }
        assert!(!shown.contains("hunter2") && !format!("{err:?}").contains("hunter2"), "{shown}");
    }
}

#[tokio::test]
async fn concurrent_first_connects_migrate_once() {
    let Some(url) = postgres_url() else { return };
    let schema = PgSchema::create(&url).await;
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let url = schema.url();
            tokio::spawn(async move { PostgresStore::connect(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for task in tasks {
        stores.push(task.await.unwrap().expect("every instance starts"));
    }
    let version =
        schema.query_text("SELECT value FROM cronflow_meta WHERE key = 'schema_version'").await;
    assert_eq!(version.as_deref(), Some("4"));
    let tables = schema
        .query_text(
            "SELECT string_agg(tablename, ',' ORDER BY tablename)::text FROM pg_tables \
             WHERE schemaname = current_schema()",
        )
        .await;
    assert_eq!(
        tables.as_deref(),
        Some("cronflow_meta,cronflow_state,run_events,runs,schedules,trigger_keys,workflows")
    );

    // They all work on the same data.
    let run = new_run("orders", 1);
    stores[0].commit(&start(&run, 2)).await.unwrap();
    for store in &stores {
        assert_eq!(store.run_events(run.id).await.unwrap().len(), 2);
    }
}

#[tokio::test]
async fn reconnecting_finds_the_data_and_keeps_the_schema() {
    let Some(url) = postgres_url() else { return };
    let schema = PgSchema::create(&url).await;
    let store = PostgresStore::connect(&schema.url()).await.unwrap();
    let run = new_run("orders", 1);
    store.commit(&start(&run, 3)).await.unwrap();
    let history = store.run_events(run.id).await.unwrap();
    store.close().await.unwrap();

    let options = PostgresOptions::default().max_connections(1);
    let store = PostgresStore::connect_with(&schema.url(), options).await.unwrap();
    assert_eq!(store.run_events(run.id).await.unwrap(), history);
    assert_eq!(store.active_runs().await.unwrap().len(), 1);
    // One connection is enough: commits, reads and listings queue on it.
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.commit(&start(&new_run("orders", 10 + i), 2)).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(store.list_runs(&RunQuery::default()).await.unwrap().len(), 5);
}

#[tokio::test]
async fn refuses_a_newer_schema() {
    let Some(url) = postgres_url() else { return };
    let schema = PgSchema::create(&url).await;
    PostgresStore::connect(&schema.url()).await.unwrap().close().await.unwrap();
    schema.exec("UPDATE cronflow_meta SET value = '999' WHERE key = 'schema_version'").await;
    assert_refused(&schema.url(), "newer").await;
    let version =
        schema.query_text("SELECT value FROM cronflow_meta WHERE key = 'schema_version'").await;
    assert_eq!(version.as_deref(), Some("999"), "left as it was");
}

#[tokio::test]
async fn shares_a_schema_with_other_tables_but_not_with_tables_named_like_ours() {
    let Some(url) = postgres_url() else { return };
    // The host application's tables are none of our business.
    let shared = PgSchema::create(&url).await;
    shared.exec("CREATE TABLE customers (id BIGINT PRIMARY KEY, name TEXT)").await;
    let store = PostgresStore::connect(&shared.url()).await.unwrap();
    assert!(store.list_runs(&RunQuery::default()).await.unwrap().is_empty());

    // Tables with our names but no cronflow_meta are someone else's: refused, untouched.
    let taken = PgSchema::create(&url).await;
    taken.exec("CREATE TABLE runs (id BIGINT PRIMARY KEY); INSERT INTO runs VALUES (7)").await;
    assert_refused(&taken.url(), "runs").await;
    assert_eq!(taken.query_text("SELECT id::text FROM runs").await.as_deref(), Some("7"));
    assert_eq!(taken.query_text("SELECT to_regclass('cronflow_meta')::text").await, None);
}

#[tokio::test]
async fn a_search_path_without_an_existing_schema_is_refused() {
    let Some(url) = postgres_url() else { return };
    let schema = PgSchema::create(&url).await;
    let missing = with_search_path(&url, &format!("{}_missing", schema.name()));
    assert_refused(&missing, "search_path").await;
}

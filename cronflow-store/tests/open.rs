//! Opening stores: creation, persistence, refusal of foreign or corrupt files, in-memory.

mod common;

use std::path::Path;

use common::{def, new_run, start};
use cronflow_core::{RunQuery, Store, StoreError};
use cronflow_store::{SqliteOptions, SqliteStore};
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sea_orm::sqlx::{ConnectOptions, Connection, Executor};

/// `len` pseudo-random bytes (xorshift), the same on every run.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Runs `sql` on the SQLite file at `path` with plain sqlx, creating it if needed.
async fn sqlite_exec(path: &Path, sql: &'static str) {
    let options = SqliteConnectOptions::new().filename(path).create_if_missing(true);
    let mut conn: SqliteConnection = options.connect().await.unwrap();
    conn.execute(sql).await.unwrap();
    conn.close().await.unwrap();
}

/// Opens `path`, expecting `Incompatible` naming the file and leaving it byte for byte as it
/// was, with no new files beside it.
async fn assert_refused(path: &Path, reason: &str) {
    let before = std::fs::read(path).unwrap();
    let siblings = std::fs::read_dir(path.parent().unwrap()).unwrap().count();
    match SqliteStore::open(path).await {
        Err(StoreError::Incompatible { location, message }) => {
            assert!(location.contains(path.file_name().unwrap().to_str().unwrap()), "{location}");
            assert!(message.contains(reason), "{message}");
            let err = StoreError::Incompatible { location, message };
            println!("refused as expected: {err}");
        }
        Err(other) => panic!("expected Incompatible, got {other:?}"),
        Ok(_) => panic!("opened {}", path.display()),
    }
    assert_eq!(std::fs::read(path).unwrap(), before, "the file was modified");
    assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), siblings);
}

#[tokio::test]
async fn creates_the_file_and_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested-name.db");
    let store = SqliteStore::open(&path).await.unwrap();
    assert!(path.exists());
    let wf = def("orders", &["a"]);
    assert_eq!(store.save_workflow(&wf).await.unwrap(), 1);
    let run = new_run("orders", 1);
    store.commit(&start(&run, 4)).await.unwrap();
    let record = store.run(run.id).await.unwrap();
    let history = store.run_events(run.id).await.unwrap();
    store.close().await.unwrap();

    let store =
        SqliteStore::open_with(&path, SqliteOptions::default().max_connections(2)).await.unwrap();
    assert_eq!(store.run(run.id).await.unwrap(), record);
    assert_eq!(store.run_events(run.id).await.unwrap(), history);
    assert_eq!(store.load_workflow("orders", 1).await.unwrap(), Some(wf.clone()));
    assert_eq!(store.save_workflow(&wf).await.unwrap(), 1);
    assert_eq!(store.active_runs().await.unwrap().len(), 1);
    drop(store);

    // Dropped without close: still there.
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.run_events(run.id).await.unwrap(), history);
}

#[tokio::test]
async fn initialises_an_empty_file_and_an_empty_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    SqliteStore::open(&empty).await.unwrap().close().await.unwrap();

    let blank = dir.path().join("blank.db");
    sqlite_exec(&blank, "PRAGMA user_version = 7").await;
    assert!(std::fs::metadata(&blank).unwrap().len() > 0);
    let store = SqliteStore::open(&blank).await.unwrap();
    assert!(store.list_runs(&RunQuery::default()).await.unwrap().is_empty());
}

#[tokio::test]
async fn refuses_random_bytes_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("noise.db");
    std::fs::write(&path, noise(8192)).unwrap();
    assert_refused(&path, "not a database").await;

    // SQLite's header followed by garbage gets past the header check: SQLite itself refuses.
    let path = dir.path().join("fake-header.db");
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.extend(noise(8192));
    std::fs::write(&path, bytes).unwrap();
    assert_refused(&path, "").await;

    let short = dir.path().join("short.db");
    std::fs::write(&short, b"hello").unwrap();
    assert_refused(&short, "not a database").await;
}

#[tokio::test]
async fn refuses_a_foreign_sqlite_database_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crm.db");
    sqlite_exec(
        &path,
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);
         INSERT INTO customers (name) VALUES ('Ada');",
    )
    .await;
    assert_refused(&path, "customers").await;
}

#[tokio::test]
async fn refuses_a_newer_schema_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    SqliteStore::open(&path).await.unwrap().close().await.unwrap();
    sqlite_exec(&path, "UPDATE cronflow_meta SET value = '999' WHERE key = 'schema_version'").await;
    assert_refused(&path, "newer").await;
}

#[tokio::test]
async fn a_file_in_use_can_be_opened_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let first = SqliteStore::open(&path).await.unwrap();
    let run = new_run("orders", 1);
    first.commit(&start(&run, 2)).await.unwrap();
    // The first store keeps its WAL open; the second one probes through it.
    let second = SqliteStore::open(&path).await.unwrap();
    assert_eq!(second.run_events(run.id).await.unwrap().len(), 2);
    second.commit(&start(&new_run("orders", 2), 1)).await.unwrap();
    assert_eq!(first.list_runs(&RunQuery::default()).await.unwrap().len(), 2);
}

#[tokio::test]
async fn unreachable_paths_are_open_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/store.db");
    match SqliteStore::open(&path).await {
        Err(StoreError::Open { location, .. }) => assert!(location.contains("store.db")),
        other => panic!("expected Open error, got {other:?}"),
    }
    match SqliteStore::open(dir.path()).await {
        Err(StoreError::Open { .. }) => {}
        other => panic!("expected Open error for a directory, got {other:?}"),
    }
}

#[tokio::test]
async fn in_memory_store_is_shared_by_clones_only() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    let clone = store.clone();
    let run = new_run("orders", 1);
    clone.commit(&start(&run, 2)).await.unwrap();
    assert_eq!(store.run_events(run.id).await.unwrap().len(), 2);
    assert_eq!(store.active_runs().await.unwrap().len(), 1);

    // Concurrent use through clones works on the single connection.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let run = new_run("orders", 10 + i);
                store.commit(&start(&run, 3)).await.unwrap();
                store.list_runs(&RunQuery::default()).await.unwrap().len()
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap() >= 2);
    }
    assert_eq!(clone.list_runs(&RunQuery::default()).await.unwrap().len(), 9);

    let other = SqliteStore::open_in_memory().await.unwrap();
    assert!(other.list_runs(&RunQuery::default()).await.unwrap().is_empty());
}

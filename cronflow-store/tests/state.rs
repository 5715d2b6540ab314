//! Workflow state on every backend: get, set with expiry, atomic incr (also under
//! concurrency, and across two stores on one database), delete, namespaces, purging, and the
//! migration of a version 3 database.

mod common;

use std::sync::Arc;

use common::{json, new_run, on_every_backend, on_every_database, start, t};
use cronflow_core::{Json, Store, StoreError};

const NS: &str = "workflow:orders";

#[tokio::test]
async fn values_are_kept_byte_for_byte_per_namespace_and_key() {
    on_every_backend(|store| async move {
        assert_eq!(store.state_get(NS, "k", t(0)).await.unwrap(), None);
        let doc = json(r#"{"b": 1, "a": [1, 2.50, "é\u00e9"]}"#);
        store.state_set(NS, "k", doc.clone(), None).await.unwrap();
        let read = store.state_get(NS, "k", t(0)).await.unwrap().unwrap();
        assert_eq!(read.as_str(), doc.as_str());
        // Other namespaces and keys do not see it; odd characters are plain text.
        assert_eq!(store.state_get("global", "k", t(0)).await.unwrap(), None);
        assert_eq!(store.state_get("workflow:orders2", "k", t(0)).await.unwrap(), None);
        for key in ["k%", "k_", "ключ 🔑", "a'b\"c"] {
            assert_eq!(store.state_get(NS, key, t(0)).await.unwrap(), None, "{key}");
            store.state_set(NS, key, json(r#""v""#), None).await.unwrap();
            assert_eq!(store.state_get(NS, key, t(0)).await.unwrap().unwrap().as_str(), r#""v""#);
        }
        // A set replaces the value.
        store.state_set(NS, "k", json("null"), None).await.unwrap();
        assert_eq!(store.state_get(NS, "k", t(0)).await.unwrap().unwrap().as_str(), "null");
        // Delete says whether there was a live value.
        assert!(store.state_delete(NS, "k", t(0)).await.unwrap());
        assert!(!store.state_delete(NS, "k", t(0)).await.unwrap());
        assert_eq!(store.state_get(NS, "k", t(0)).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn a_value_expires_by_the_time_given() {
    on_every_backend(|store| async move {
        store.state_set(NS, "session", json(r#""s""#), Some(t(100))).await.unwrap();
        assert!(store.state_get(NS, "session", t(99)).await.unwrap().is_some());
        assert_eq!(store.state_get(NS, "session", t(100)).await.unwrap(), None, "at expiry");
        // Expired but still stored: delete removes it and reports it absent.
        assert!(!store.state_delete(NS, "session", t(100)).await.unwrap());
        assert!(store.state_get(NS, "session", t(99)).await.unwrap().is_none(), "deleted");

        // Setting again replaces the expiry (here: none).
        store.state_set(NS, "session", json("1"), Some(t(100))).await.unwrap();
        store.state_set(NS, "session", json("2"), None).await.unwrap();
        assert_eq!(
            store.state_get(NS, "session", t(1_000_000)).await.unwrap().unwrap().as_str(),
            "2"
        );

        // Purging deletes exactly the expired rows, in every namespace.
        store.state_set(NS, "a", json("1"), Some(t(10))).await.unwrap();
        store.state_set("global", "b", json("1"), Some(t(20))).await.unwrap();
        store.state_set("global", "c", json("1"), Some(t(30))).await.unwrap();
        assert_eq!(store.state_purge_expired(t(20)).await.unwrap(), 2);
        assert_eq!(store.state_purge_expired(t(20)).await.unwrap(), 0);
        assert!(store.state_get("global", "c", t(20)).await.unwrap().is_some());
        assert!(store.state_delete("global", "c", t(20)).await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn incr_counts_from_zero_keeps_a_live_expiry_and_restarts_an_expired_one() {
    on_every_backend(|store| async move {
        assert_eq!(store.state_incr(NS, "n", 1, t(0)).await.unwrap(), 1);
        assert_eq!(store.state_incr(NS, "n", 41, t(0)).await.unwrap(), 42);
        assert_eq!(store.state_incr(NS, "n", -50, t(0)).await.unwrap(), -8);
        assert_eq!(store.state_get(NS, "n", t(0)).await.unwrap().unwrap().as_str(), "-8");
        assert_eq!(store.state_incr("global", "n", 0, t(0)).await.unwrap(), 0);

        // A counter with an expiry keeps it while live...
        store.state_set(NS, "window", json("5"), Some(t(100))).await.unwrap();
        assert_eq!(store.state_incr(NS, "window", 1, t(50)).await.unwrap(), 6);
        assert_eq!(store.state_get(NS, "window", t(100)).await.unwrap(), None, "expiry kept");
        // ...and once expired starts from 0 with no expiry.
        assert_eq!(store.state_incr(NS, "window", 1, t(100)).await.unwrap(), 1);
        assert!(store.state_get(NS, "window", t(1_000_000)).await.unwrap().is_some());
        // An expired value that is not an integer is no obstacle either.
        store.state_set(NS, "word", json(r#""x""#), Some(t(10))).await.unwrap();
        assert_eq!(store.state_incr(NS, "word", 3, t(10)).await.unwrap(), 3);
        // Integers written by hand count too, whatever their sign.
        store.state_set(NS, "neg", json("-0"), None).await.unwrap();
        assert_eq!(store.state_incr(NS, "neg", -1, t(0)).await.unwrap(), -1);
    })
    .await;
}

#[tokio::test]
async fn incr_refuses_values_that_are_not_integers_and_overflow_changing_nothing() {
    on_every_backend(|store| async move {
        let not_integers = [
            "1.5",
            "1.0",
            "1e3",
            r#""7""#,
            "true",
            "null",
            "[1]",
            r#"{"n": 1}"#,
            "9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999",
        ];
        for text in not_integers {
            store.state_set(NS, "k", json(text), None).await.unwrap();
            let err = store.state_incr(NS, "k", 1, t(0)).await.unwrap_err();
            assert!(
                matches!(&err, StoreError::NotAnInteger { namespace, key } if namespace == NS && key == "k"),
                "{text}: {err:?}"
            );
            let kept = store.state_get(NS, "k", t(0)).await.unwrap().unwrap();
            assert_eq!(kept.as_str(), text, "unchanged");
        }
        let max = i64::MAX.to_string();
        store.state_set(NS, "k", json(&max), None).await.unwrap();
        assert_eq!(store.state_incr(NS, "k", 0, t(0)).await.unwrap(), i64::MAX);
        let err = store.state_incr(NS, "k", 1, t(0)).await.unwrap_err();
        assert!(matches!(err, StoreError::IncrOverflow { by: 1, .. }), "{err:?}");
        assert_eq!(store.state_get(NS, "k", t(0)).await.unwrap().unwrap().as_str(), max);
        assert_eq!(store.state_incr(NS, "k", i64::MIN, t(0)).await.unwrap(), -1);
        assert_eq!(store.state_incr(NS, "k", i64::MIN + 1, t(0)).await.unwrap(), i64::MIN);
        let err = store.state_incr(NS, "k", -1, t(0)).await.unwrap_err();
        assert!(matches!(err, StoreError::IncrOverflow { by: -1, .. }), "{err:?}");
        assert_eq!(store.state_incr(NS, "k", i64::MAX, t(0)).await.unwrap(), -1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_increments_count_fifty() {
    on_every_backend(|store| async move {
        let store = Arc::new(store);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let store = Arc::clone(&store);
            tasks.spawn(async move { store.state_incr(NS, "hits", 1, t(0)).await.unwrap() });
        }
        let mut seen = tasks.join_all().await;
        seen.sort();
        assert_eq!(seen, (1..=50).collect::<Vec<i64>>(), "each increment saw its own value");
        let total = store.state_get(NS, "hits", t(0)).await.unwrap().unwrap();
        assert_eq!(total.as_str(), "50");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_database_never_lose_an_increment() {
    on_every_database(|db| async move {
        let (a, b) = (Arc::new(db.open().await), Arc::new(db.open().await));
        // `fresh` holds an expired value: the first increment restarts it from 0.
        a.state_set("global", "fresh", json("100"), Some(t(0))).await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..60 {
            let store = Arc::clone(if i % 2 == 0 { &a } else { &b });
            tasks.spawn(async move {
                // All race to create `shared`, and to restart `fresh`.
                store.state_incr("global", "shared", 1, t(0)).await.unwrap();
                store.state_incr("global", "fresh", 1, t(0)).await.unwrap()
            });
        }
        tasks.join_all().await;
        for key in ["shared", "fresh"] {
            let total = a.state_get("global", key, t(0)).await.unwrap().unwrap();
            assert_eq!(total.as_str(), "60", "{} {key}", db.name());
        }
    })
    .await;
}

#[tokio::test]
async fn a_version_3_database_is_migrated_to_version_4_keeping_its_runs() {
    on_every_database(|db| async move {
        let store = db.open().await;
        let run = new_run("orders", 1);
        store.commit(&start(&run, 2)).await.unwrap();
        store.state_set(NS, "gone", json("1"), None).await.unwrap();
        drop(store);
        // A version 3 database: what migrations 1 to 3 made (migrations are append-only).
        db.exec("DROP TABLE cronflow_state").await;
        db.exec("UPDATE cronflow_meta SET value = '3' WHERE key = 'schema_version'").await;

        let store = db.open().await;
        let version = db.query_text("SELECT value FROM cronflow_meta WHERE key = 'schema_version'");
        assert_eq!(version.await.as_deref(), Some("4"), "{}", db.name());
        assert_eq!(store.run_events(run.id).await.unwrap().len(), 2, "runs kept");
        assert_eq!(store.state_get(NS, "gone", t(0)).await.unwrap(), None, "a new, empty table");
        assert_eq!(store.state_incr(NS, "n", 2, t(0)).await.unwrap(), 2);
        store.state_set(NS, "e", Json::null(), Some(t(5))).await.unwrap();
        assert_eq!(store.state_purge_expired(t(5)).await.unwrap(), 1, "with its index");
        drop(store);
        // Opening again changes nothing.
        let store = db.open().await;
        assert_eq!(store.state_incr(NS, "n", 2, t(0)).await.unwrap(), 4);
    })
    .await;
}

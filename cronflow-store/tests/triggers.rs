//! What trigger sources rely on, on every backend: trigger keys (a keyed new run is created
//! once, its duplicates are left out with everything of theirs) and schedule cursors
//! (compare-and-set), including several PostgreSQL stores racing on one database.

mod common;

use common::{PgSchema, completed, new_run, on_every_backend, postgres_url, start, t};
use cronflow_core::{CommitBatch, DuplicateRun, NewRun, RunQuery, Store};
use cronflow_store::PostgresStore;

fn keyed(workflow: &str, created: i64, key: &str) -> NewRun {
    NewRun { key: Some(key.to_string()), ..new_run(workflow, created) }
}

#[tokio::test]
async fn a_taken_trigger_key_leaves_its_new_run_out_and_names_the_holder() {
    on_every_backend(|store| async move {
        let first = keyed("orders", 1, "cron:nightly:2026-11-26T00:00:00Z");
        let outcome = store.commit(&start(&first, 2)).await.unwrap();
        assert!(outcome.duplicates.is_empty(), "{outcome:?}");

        // The same key again, beside an unkeyed run and a fresh key, in one batch; the
        // duplicate even finishes in this batch: none of it may be stored.
        let again = keyed("orders", 2, "cron:nightly:2026-11-26T00:00:00Z");
        let plain = new_run("orders", 3);
        let fresh = keyed("orders", 4, "cron:nightly:2026-11-27T00:00:00Z");
        let mut batch = CommitBatch::default();
        for run in [&again, &plain, &fresh] {
            let one = start(run, 2);
            batch.new_runs.extend(one.new_runs);
            batch.events.extend(one.events);
        }
        batch.finished.push(completed(again.id, "1", 5));
        let outcome = store.commit(&batch).await.unwrap();
        assert_eq!(outcome.duplicates, [DuplicateRun { run: again.id, existing: first.id }]);

        assert!(store.run(again.id).await.unwrap().is_none());
        assert!(store.run_events(again.id).await.unwrap().is_empty());
        for run in [&first, &plain, &fresh] {
            assert_eq!(store.run_events(run.id).await.unwrap().len(), 2);
        }
        assert_eq!(store.list_runs(&RunQuery::default()).await.unwrap().len(), 3);
    })
    .await;
}

#[tokio::test]
async fn pruned_trigger_keys_can_start_a_run_again_and_only_those_are_pruned() {
    on_every_backend(|store| async move {
        // Keys taken at t(1) .. t(4) (their runs' created_at), some sharing prefixes.
        let old_hook = keyed("orders", 1, "webhook:orders:a");
        let old_slot = keyed("orders", 2, "schedule:nightly@2026-11-26T00:00:00Z");
        let new_hook = keyed("orders", 4, "webhook:orders:b");
        let other = keyed("orders", 1, "webhook;orders:c"); // just past the prefix
        for run in [&old_hook, &old_slot, &new_hook, &other] {
            store.commit(&start(run, 1)).await.unwrap();
        }
        assert_eq!(store.prune_trigger_keys("webhook:", t(3)).await.unwrap(), 1);
        assert_eq!(store.prune_trigger_keys("webhook:", t(3)).await.unwrap(), 0);

        // The pruned key starts a new run; the others still hold theirs.
        let again = keyed("orders", 5, "webhook:orders:a");
        assert!(store.commit(&start(&again, 1)).await.unwrap().duplicates.is_empty());
        for (kept, holder) in [
            (keyed("orders", 6, "webhook:orders:b"), &new_hook),
            (keyed("orders", 6, "schedule:nightly@2026-11-26T00:00:00Z"), &old_slot),
            (keyed("orders", 6, "webhook;orders:c"), &other),
        ] {
            let outcome = store.commit(&start(&kept, 1)).await.unwrap();
            assert_eq!(outcome.duplicates, [DuplicateRun { run: kept.id, existing: holder.id }]);
        }
        // An empty prefix means every key.
        assert_eq!(store.prune_trigger_keys("", t(100)).await.unwrap(), 4);
    })
    .await;
}

#[tokio::test]
async fn schedule_cursors_move_by_compare_and_set() {
    on_every_backend(|store| async move {
        assert_eq!(store.schedule_cursor("nightly").await.unwrap(), None);
        assert!(store.advance_schedule("nightly", None, t(1_000)).await.unwrap());
        assert!(!store.advance_schedule("nightly", None, t(2_000)).await.unwrap(), "created");
        assert_eq!(store.schedule_cursor("nightly").await.unwrap(), Some(t(1_000)));

        assert!(store.advance_schedule("nightly", Some(t(1_000)), t(2_000)).await.unwrap());
        assert!(!store.advance_schedule("nightly", Some(t(1_000)), t(3_000)).await.unwrap());
        assert_eq!(store.schedule_cursor("nightly").await.unwrap(), Some(t(2_000)));
        assert_eq!(store.schedule_cursor("other").await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn racing_postgres_instances_create_one_run_per_key_and_move_a_cursor_once() {
    let Some(url) = postgres_url() else { return };
    let schema = PgSchema::create(&url).await;
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(PostgresStore::connect(&schema.url()).await.unwrap());
    }
    // 3 instances x 50 keys, each instance committing its own run for every key at once.
    let mut tasks = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut created = Vec::new();
            for k in 0..50 {
                let run = keyed("orders", i as i64 * 100 + k, &format!("slot:{k}"));
                let outcome = store.commit(&start(&run, 1)).await.unwrap();
                if outcome.duplicates.is_empty() {
                    created.push(run.id);
                }
            }
            created
        }));
    }
    let mut created = 0;
    for task in tasks {
        created += task.await.unwrap().len();
    }
    assert_eq!(created, 50, "each key made exactly one run");
    assert_eq!(
        stores[0]
            .list_runs(&RunQuery { limit: Some(1000), ..RunQuery::default() })
            .await
            .unwrap()
            .len(),
        50
    );

    let mut moved = 0;
    let tasks: Vec<_> = stores
        .iter()
        .map(|s| {
            let s = s.clone();
            tokio::spawn(async move { s.advance_schedule("nightly", None, t(1_000)).await })
        })
        .collect();
    for task in tasks {
        moved += usize::from(task.await.unwrap().unwrap());
    }
    assert_eq!(moved, 1);
}

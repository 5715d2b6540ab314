//! Leases and fencing on PostgreSQL, the shared store: claiming, renewing, releasing, and
//! commits rejected once a lease is lost. SQLite is not shared: it keeps the trait's defaults.
//! The PostgreSQL tests are skipped (with a note) when `CRONFLOW_TEST_DATABASE_URL` is unset;
//! each runs in a schema of its own.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{PgSchema, completed, events, new_run, postgres_url, start};
use cronflow_core::{
    Claim, ClaimedRun, CommitBatch, InstanceId, NewRun, RunId, RunStatus, Store, StoreError,
};
use cronflow_store::{PostgresStore, SqliteStore};

/// A short lease, and how long to sleep to be sure it expired.
const SHORT: Duration = Duration::from_millis(400);
const PAST_SHORT: Duration = Duration::from_millis(600);
/// A lease that does not expire during a test.
const LONG: Duration = Duration::from_secs(60);

/// A fresh schema and a store on it, or `None` (with a note) without PostgreSQL.
async fn pg() -> Option<(PgSchema, PostgresStore)> {
    let url = postgres_url()?;
    let schema = PgSchema::create(&url).await;
    let store = PostgresStore::connect(&schema.url()).await.unwrap();
    Some((schema, store))
}

/// Commits `n` unowned running runs (created in order, each with 3 events) and returns them.
async fn unowned_runs(store: &impl Store, n: usize) -> Vec<NewRun> {
    let runs: Vec<NewRun> = (0..n).map(|i| new_run("orders", i as i64 * 10)).collect();
    for run in &runs {
        store.commit(&start(run, 3)).await.unwrap();
    }
    runs
}

fn claim(owner: InstanceId, lease: Duration) -> Claim {
    Claim { owner, lease }
}

fn ids(claimed: &[ClaimedRun]) -> Vec<RunId> {
    claimed.iter().map(|c| c.run.id).collect()
}

#[tokio::test]
async fn concurrent_claims_give_each_run_to_exactly_one_owner() {
    let Some((schema, store)) = pg().await else { return };
    let runs = unowned_runs(&store, 60).await;
    let other = PostgresStore::connect(&schema.url()).await.unwrap();
    let tasks: Vec<_> = [store.clone(), other]
        .into_iter()
        .map(|store| {
            tokio::spawn(async move {
                let owner = InstanceId::new();
                let mut mine = Vec::new();
                loop {
                    let claimed = store.claim_runs(owner, LONG, 7).await.unwrap();
                    if claimed.is_empty() {
                        return mine;
                    }
                    assert!(claimed.len() <= 7);
                    mine.extend(claimed);
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut per_owner = Vec::new();
    for task in tasks {
        let mine = task.await.unwrap();
        per_owner.push(mine.len());
        for c in mine {
            assert!(seen.insert(c.run.id), "run {} claimed twice", c.run.id);
            assert_eq!(c.fence, 1);
            assert_eq!(c.run.status, RunStatus::Running);
            let seqs: Vec<u32> = c.events.iter().map(|e| e.seq).collect();
            assert_eq!(seqs, [0, 1, 2], "the history comes with the claim");
        }
    }
    println!("runs claimed per owner: {per_owner:?}");
    let all: HashSet<RunId> = runs.iter().map(|r| r.id).collect();
    assert_eq!(seen, all, "every run is claimed");
}

#[tokio::test]
async fn a_held_run_is_claimable_only_once_its_lease_expired_and_claiming_bumps_the_fence() {
    let Some((_schema, store)) = pg().await else { return };
    assert!(store.shared());
    let runs = unowned_runs(&store, 1).await;
    let (a, b) = (InstanceId::new(), InstanceId::new());

    let first = store.claim_runs(a, SHORT, 10).await.unwrap();
    assert_eq!(ids(&first), [runs[0].id]);
    assert_eq!(first[0].fence, 1);
    assert!(store.claim_runs(b, LONG, 10).await.unwrap().is_empty(), "held by a");
    assert!(store.claim_runs(a, LONG, 10).await.unwrap().is_empty(), "a holds it already");

    tokio::time::sleep(PAST_SHORT).await;
    let second = store.claim_runs(b, LONG, 10).await.unwrap();
    assert_eq!(ids(&second), [runs[0].id]);
    assert_eq!(second[0].fence, 2, "each claim bumps the fence");
    assert_eq!(second[0].events.len(), 3);
}

#[tokio::test]
async fn renewing_extends_the_leases_still_held() {
    let Some((_schema, store)) = pg().await else { return };
    let runs = unowned_runs(&store, 3).await;
    let (a, b) = (InstanceId::new(), InstanceId::new());
    assert!(store.renew_leases(a, LONG).await.unwrap().is_empty(), "a holds nothing yet");

    let claimed = store.claim_runs(a, SHORT, 10).await.unwrap();
    assert_eq!(ids(&claimed), runs.iter().map(|r| r.id).collect::<Vec<_>>());
    tokio::time::sleep(SHORT / 2).await;
    // The first two are renewed; the third one is let go and taken over by b.
    let mut expected: Vec<(RunId, u64)> = runs.iter().map(|r| (r.id, 1)).collect();
    expected.sort();
    assert_eq!(store.renew_leases(a, SHORT * 10).await.unwrap(), expected);
    store.release_runs(a, &[runs[2].id]).await.unwrap();
    let taken = store.claim_runs(b, LONG, 10).await.unwrap();
    assert_eq!(ids(&taken), [runs[2].id]);
    assert_eq!(taken[0].fence, 2);

    tokio::time::sleep(PAST_SHORT).await;
    // Past the first lease, but renewed: b cannot claim a's runs.
    assert!(store.claim_runs(b, LONG, 10).await.unwrap().is_empty());
    let mut held = vec![(runs[0].id, 1), (runs[1].id, 1)];
    held.sort();
    assert_eq!(store.renew_leases(a, LONG).await.unwrap(), held, "not the run b took over");
    assert_eq!(store.renew_leases(b, LONG).await.unwrap(), [(runs[2].id, 2)]);

    // A finished run is held by nobody.
    let done = CommitBatch {
        finished: vec![completed(runs[0].id, "1", 99_000)],
        claim: Some(claim(a, LONG)),
        fences: vec![(runs[0].id, 1)],
        ..CommitBatch::default()
    };
    store.commit(&done).await.unwrap();
    assert_eq!(store.renew_leases(a, LONG).await.unwrap(), [(runs[1].id, 1)]);
}

#[tokio::test]
async fn released_runs_are_claimable_at_once() {
    let Some((_schema, store)) = pg().await else { return };
    let runs = unowned_runs(&store, 2).await;
    let (a, b) = (InstanceId::new(), InstanceId::new());
    assert_eq!(store.claim_runs(a, LONG, 10).await.unwrap().len(), 2);
    // Releasing runs one does not hold does nothing.
    store.release_runs(b, &[runs[0].id, runs[1].id]).await.unwrap();
    assert!(store.claim_runs(b, LONG, 10).await.unwrap().is_empty());

    store.release_runs(a, &[runs[0].id]).await.unwrap();
    store.release_runs(a, &[]).await.unwrap();
    let taken = store.claim_runs(b, LONG, 10).await.unwrap();
    assert_eq!(ids(&taken), [runs[0].id]);
    assert_eq!(taken[0].fence, 2);
    assert_eq!(store.renew_leases(a, LONG).await.unwrap(), [(runs[1].id, 1)]);
}

#[tokio::test]
async fn a_commit_with_a_lost_lease_fails_and_stores_nothing() {
    let Some((_schema, store)) = pg().await else { return };
    let runs = unowned_runs(&store, 4).await;
    let [r1, r2, r3, r4] = [runs[0].id, runs[1].id, runs[2].id, runs[3].id];
    let (a, b) = (InstanceId::new(), InstanceId::new());
    assert_eq!(store.claim_runs(a, SHORT, 10).await.unwrap().len(), 4);
    tokio::time::sleep(PAST_SHORT).await;
    // b takes over r1 and r2; r3 and r4 stay a's (expired, but nobody claimed them).
    assert_eq!(ids(&store.claim_runs(b, LONG, 2).await.unwrap()), [r1, r2]);

    // a, frozen past its lease, commits stale results for all four and a new run.
    let fresh = new_run("orders", 1_000);
    let mut stale = start(&fresh, 2);
    for run in [r2, r1, r3] {
        stale.events.extend(events(run, 3, 2));
    }
    stale.finished.push(completed(r4, r#""done""#, 9_000));
    stale.claim = Some(claim(a, LONG));
    stale.fences = vec![(r1, 1), (r2, 1), (r3, 1), (r4, 1)];
    let err = store.commit(&stale).await.unwrap_err();
    println!("{err}");
    match err {
        StoreError::LeaseLost { runs } => assert_eq!(runs, [r2, r1], "exactly the lost runs"),
        other => panic!("expected LeaseLost, got {other:?}"),
    }
    let assert_untouched = |store: PostgresStore| async move {
        assert!(store.run(fresh.id).await.unwrap().is_none(), "the new run was not stored");
        for run in [r1, r2, r3, r4] {
            assert_eq!(store.run_events(run).await.unwrap().len(), 3, "no event of {run}");
            let record = store.run(run).await.unwrap().unwrap();
            assert_eq!(record.status, RunStatus::Running);
        }
    };
    assert_untouched(store.clone()).await;

    // A non-owner with the right fence, and a run missing from the fences, are lost too.
    let intruder = CommitBatch {
        events: events(r3, 3, 1).into_iter().chain(events(r1, 3, 1)).collect(),
        claim: Some(claim(b, LONG)),
        fences: vec![(r3, 1), (r1, 2)],
        ..CommitBatch::default()
    };
    match store.commit(&intruder).await.unwrap_err() {
        StoreError::LeaseLost { runs } => assert_eq!(runs, [r3]),
        other => panic!("expected LeaseLost, got {other:?}"),
    }
    let unfenced = CommitBatch {
        events: events(r1, 3, 1),
        claim: Some(claim(b, LONG)),
        ..CommitBatch::default()
    };
    match store.commit(&unfenced).await.unwrap_err() {
        StoreError::LeaseLost { runs } => assert_eq!(runs, [r1]),
        other => panic!("expected LeaseLost, got {other:?}"),
    }
    assert_untouched(store.clone()).await;

    // With the right owner and fences, commits go through: a's expired but unclaimed runs
    // included.
    let mut b_batch = start(&fresh, 2);
    b_batch.events.extend(events(r1, 3, 2).into_iter().chain(events(r2, 3, 1)));
    b_batch.claim = Some(claim(b, LONG));
    b_batch.fences = vec![(r1, 2), (r2, 2)];
    store.commit(&b_batch).await.unwrap();
    let a_batch = CommitBatch {
        events: events(r3, 3, 1),
        finished: vec![completed(r4, r#""done""#, 9_000)],
        claim: Some(claim(a, LONG)),
        fences: vec![(r3, 1), (r4, 1)],
        ..CommitBatch::default()
    };
    store.commit(&a_batch).await.unwrap();
    assert_eq!(store.run_events(r1).await.unwrap().len(), 5);
    assert_eq!(store.run_events(r2).await.unwrap().len(), 4);
    assert_eq!(store.run_events(r3).await.unwrap().len(), 4);
    assert_eq!(store.run(r4).await.unwrap().unwrap().status, RunStatus::Completed);
    assert_eq!(store.run_events(fresh.id).await.unwrap().len(), 2);
}

#[tokio::test]
async fn new_runs_committed_with_a_claim_are_held_by_their_creator() {
    let Some((_schema, store)) = pg().await else { return };
    let (a, b) = (InstanceId::new(), InstanceId::new());
    let runs: Vec<NewRun> = (0..3).map(|i| new_run("orders", i)).collect();
    let mut batch = CommitBatch { claim: Some(claim(a, SHORT)), ..CommitBatch::default() };
    for run in &runs {
        let started = start(run, 1);
        batch.new_runs.extend(started.new_runs);
        batch.events.extend(started.events);
    }
    store.commit(&batch).await.unwrap();
    // A lone new run: one statement, held too.
    let lone = new_run("orders", 10);
    let lone_batch = CommitBatch { claim: Some(claim(a, SHORT)), ..start(&lone, 1) };
    store.commit(&lone_batch).await.unwrap();

    assert!(store.claim_runs(b, LONG, 10).await.unwrap().is_empty(), "held by their creator");
    let mut held: Vec<(RunId, u64)> = runs.iter().chain([&lone]).map(|r| (r.id, 1)).collect();
    held.sort();
    // The creator commits with fence 1.
    let next = CommitBatch {
        events: events(runs[0].id, 1, 2),
        claim: Some(claim(a, SHORT)),
        fences: vec![(runs[0].id, 1)],
        ..CommitBatch::default()
    };
    store.commit(&next).await.unwrap();
    assert_eq!(store.renew_leases(a, SHORT).await.unwrap(), held);

    tokio::time::sleep(PAST_SHORT).await;
    let taken = store.claim_runs(b, LONG, 10).await.unwrap();
    assert_eq!(ids(&taken), [runs[0].id, runs[1].id, runs[2].id, lone.id]);
    assert!(taken.iter().all(|c| c.fence == 2));
    assert_eq!(taken[0].events.len(), 3);
}

#[tokio::test]
async fn claiming_respects_the_limit_oldest_first() {
    let Some((_schema, store)) = pg().await else { return };
    let runs = unowned_runs(&store, 5).await;
    let owner = InstanceId::new();
    assert!(store.claim_runs(owner, LONG, 0).await.unwrap().is_empty());
    let first = store.claim_runs(owner, LONG, 2).await.unwrap();
    assert_eq!(ids(&first), [runs[0].id, runs[1].id]);
    let rest = store.claim_runs(owner, LONG, 10).await.unwrap();
    assert_eq!(ids(&rest), [runs[2].id, runs[3].id, runs[4].id]);
    assert!(store.claim_runs(owner, LONG, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn sqlite_is_not_shared_and_keeps_the_defaults() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    assert!(!store.shared());
    let runs = unowned_runs(&store, 3).await;
    let owner = InstanceId::new();
    let finish = CommitBatch {
        finished: vec![completed(runs[1].id, "1", 9_000)],
        // Ignored: the one engine of a SQLite file owns every run.
        claim: Some(claim(InstanceId::new(), LONG)),
        fences: vec![(runs[1].id, 7)],
        ..CommitBatch::default()
    };
    store.commit(&finish).await.unwrap();

    let claimed = store.claim_runs(owner, SHORT, 10).await.unwrap();
    assert_eq!(ids(&claimed), [runs[0].id, runs[2].id], "every running run");
    assert!(claimed.iter().all(|c| c.fence == 0 && c.events.len() == 3));
    let again = store.claim_runs(InstanceId::new(), SHORT, 1).await.unwrap();
    assert_eq!(ids(&again), [runs[0].id], "no lease: claimed again, up to the limit");
    assert!(store.renew_leases(owner, LONG).await.unwrap().is_empty());
    store.release_runs(owner, &[runs[0].id]).await.unwrap();
}

#[tokio::test]
async fn released_runs_wake_other_instances_at_once() {
    let Some((_schema, store)) = pg().await else { return };
    let (a, b) = (InstanceId::new(), InstanceId::new());
    let runs = unowned_runs(&store, 1).await;
    assert_eq!(store.claim_runs(a, LONG, 10).await.unwrap().len(), 1);
    // B waits for a wake-up (not a poll) while A releases its run.
    let listener = store.clone();
    let woken = tokio::spawn(async move {
        tokio::time::timeout(Duration::from_secs(10), listener.work_available()).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await; // the LISTEN is in place
    store.release_runs(a, &[runs[0].id]).await.unwrap();
    assert!(woken.await.unwrap().is_ok(), "NOTIFY woke the waiting claimer");
    assert_eq!(store.claim_runs(b, LONG, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_full_engine_hands_new_runs_to_another_instance_without_waiting_for_a_poll() {
    use cronflow_core::{Engine, MockExecutor, Workflow};
    let Some((schema, store_a)) = pg().await else { return };
    let store_b = PostgresStore::connect(&schema.url()).await.unwrap();
    let flow = Workflow::new("handoff").step("work").build().unwrap();
    let a_exec = MockExecutor::new().returns("work", "a").delay("work", Duration::from_millis(200));
    let b_exec = MockExecutor::new().returns("work", "b");
    let a = Engine::builder()
        .store(store_a)
        .executor(a_exec)
        .workflow(flow.clone())
        .max_active_runs(1)
        .start()
        .await
        .unwrap();
    // B polls only once an hour: only the NOTIFY can make it pick runs up promptly.
    let b = Engine::builder()
        .store(store_b)
        .executor(b_exec.clone())
        .workflow(flow)
        .claim_interval(Duration::from_secs(3600))
        .start()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // B's LISTEN is in place
    let started = std::time::Instant::now();
    let mut runs = Vec::new();
    for _ in 0..5 {
        runs.push(a.handle().trigger("handoff", serde_json::json!(null)).await.unwrap());
    }
    for run in &runs {
        let report = a.handle().wait(*run).await.unwrap();
        assert_eq!(report.status(), RunStatus::Completed);
    }
    assert!(b_exec.call_count("work") >= 3, "B ran the runs A had no room for");
    assert!(started.elapsed() < Duration::from_secs(10), "handed over promptly");
    a.shutdown(LONG).await.unwrap();
    b.shutdown(LONG).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_engine_does_not_claim_back_the_runs_it_released() {
    use cronflow_core::{Engine, MockExecutor, Workflow};
    let Some((schema, _store)) = pg().await else { return };
    // Paused runs stay running, so every engine claims them all and releases them all.
    let flow = Workflow::new("held").pause("hold").build().unwrap();
    for attempt in 0..10 {
        let store = PostgresStore::connect(&schema.url()).await.unwrap();
        let engine = Engine::builder()
            .store(store)
            .executor(MockExecutor::new())
            .workflow(flow.clone())
            .start()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await; // its LISTEN is in place
        engine.handle().trigger("held", serde_json::json!(null)).await.unwrap();
        engine.shutdown(Duration::ZERO).await.unwrap();
        // Time enough for a claim woken by the release's own NOTIFY.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let held = schema.query_text("SELECT count(*)::text FROM runs WHERE owner IS NOT NULL");
        assert_eq!(
            held.await.as_deref(),
            Some("0"),
            "stop {attempt}: runs released at shutdown were claimed again by the stopped engine"
        );
    }
}

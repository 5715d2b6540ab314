//! How long a large group commit takes (printed, not asserted), on a SQLite file and on
//! PostgreSQL (when `CRONFLOW_TEST_DATABASE_URL` is set). For figures, build with `--release`:
//! `cargo test --release -p cronflow-store --test throughput -- --nocapture`.

mod common;

use std::time::Instant;

use common::{TestDb, completed, events, new_run, on_every_database, start};
use cronflow_core::{CommitBatch, Store};

const RUNS: usize = 1_000;

/// Bytes this process has passed to `write` calls so far (Linux only).
fn bytes_written() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines().find_map(|l| l.strip_prefix("wchar:")).and_then(|v| v.trim().parse().ok())
}
const EVENTS_PER_RUN: u32 = 12;

#[tokio::test(flavor = "multi_thread")]
async fn commit_1000_runs_of_12_events() {
    on_every_database(measure).await;
}

async fn measure(db: TestDb) {
    let store = db.open().await;
    let on = db.name();

    let runs: Vec<_> = (0..RUNS).map(|i| new_run("orders", i as i64)).collect();
    let batch = CommitBatch {
        new_runs: runs.clone(),
        events: runs.iter().flat_map(|r| start(r, EVENTS_PER_RUN).events).collect(),
        finished: runs.iter().map(|r| completed(r.id, r#"{"ok": true}"#, 1_000_000)).collect(),
        ..CommitBatch::default()
    };
    let started = Instant::now();
    store.commit(&batch).await.unwrap();
    let elapsed = started.elapsed();
    let n = batch.events.len();
    println!(
        "{on}: one batch: {RUNS} runs x {EVENTS_PER_RUN} events ({n} events, {RUNS} finished) \
         committed in {elapsed:?} ({:.0} events/s)",
        n as f64 / elapsed.as_secs_f64()
    );

    // The same volume as the engine would write it: many smaller group commits.
    let runs: Vec<_> = (0..RUNS).map(|i| new_run("orders", i as i64)).collect();
    let started = Instant::now();
    for chunk in runs.chunks(50) {
        for seq in 0..EVENTS_PER_RUN {
            let batch = CommitBatch {
                new_runs: if seq == 0 { chunk.to_vec() } else { vec![] },
                events: if seq == 0 {
                    chunk.iter().flat_map(|r| start(r, 1).events).collect()
                } else {
                    chunk.iter().flat_map(|r| events(r.id, seq, 1)).collect()
                },
                finished: if seq == EVENTS_PER_RUN - 1 {
                    chunk.iter().map(|r| completed(r.id, "1", 2_000_000)).collect()
                } else {
                    vec![]
                },
                ..CommitBatch::default()
            };
            store.commit(&batch).await.unwrap();
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{on}: {} batches of 50 events: {n} events committed in {elapsed:?} ({:.0} events/s)",
        n / 50,
        n as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(store.active_runs().await.unwrap().len(), 0);

    // The engine's steady state: many runs in flight, each batch appending one event to each
    // of 100 different runs (the worst case for a log clustered by run).
    let runs: Vec<_> = (0..RUNS).map(|i| new_run("orders", i as i64)).collect();
    store
        .commit(&CommitBatch {
            new_runs: runs.clone(),
            events: runs.iter().flat_map(|r| start(r, 1).events).collect(),
            finished: vec![],
            ..CommitBatch::default()
        })
        .await
        .unwrap();
    let written_before = bytes_written();
    let started = Instant::now();
    let mut commits = 0;
    for seq in 1..EVENTS_PER_RUN {
        for chunk in runs.chunks(100) {
            let batch = CommitBatch {
                new_runs: vec![],
                events: if seq == 0 {
                    chunk.iter().flat_map(|r| start(r, 1).events).collect()
                } else {
                    chunk.iter().flat_map(|r| events(r.id, seq, 1)).collect()
                },
                finished: if seq == EVENTS_PER_RUN - 1 {
                    chunk.iter().map(|r| completed(r.id, "1", 2_000_000)).collect()
                } else {
                    vec![]
                },
                ..CommitBatch::default()
            };
            store.commit(&batch).await.unwrap();
            commits += 1;
        }
    }
    let elapsed = started.elapsed();
    let n = RUNS * (EVENTS_PER_RUN as usize - 1);
    if let (Some(before), Some(after), false) = (written_before, bytes_written(), db.is_postgres())
    {
        println!(
            "  {} KiB written per commit (WAL and checkpoints)",
            (after - before) / 1024 / commits
        );
    }
    println!(
        "{on}: {commits} batches of 100 events over {RUNS} runs in flight: {n} events committed in \
         {elapsed:?} ({:.0} events/s)",
        n as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(store.active_runs().await.unwrap().len(), 0);
}

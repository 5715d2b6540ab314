//! Several engine instances on one PostgreSQL database, as real processes: three
//! `durable_host` processes share a schema, and one of them is killed (`kill -9`) or frozen
//! past its lease (`kill -STOP`, then `kill -CONT`) while its runs are going.
//!
//! Checked from the test process with a `PostgresStore` at the end of each test: every
//! accepted run completed exactly once, each history is well formed (seq contiguous from 0,
//! one `run_started`, one terminal event, last) and records each step's completion exactly
//! once, in order.
//!
//! Needs `CRONFLOW_TEST_DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`);
//! without it every test says it is skipped and passes. Each test works in a schema of its
//! own, `cf_test_<random>`, dropped when the test ends (even when it panics). The tests run
//! one at a time: their timings mean something only when they do not share the two cores.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::{Host, STEPS, Snapshot, check_history, jitter};
use cronflow_core::{RunId, RunQuery, RunStatus, Store};
use cronflow_store::PostgresStore;
use cronflow_store::testing::{TestSchema, test_database_url};

/// The engine lease and claim interval of the kill and freeze tests.
const LEASE: Duration = Duration::from_millis(1000);
const CLAIM: Duration = Duration::from_millis(200);

/// Holds the tests of this file to one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Creates the test's own schema (dropped with the returned value).
fn create_schema(rt: &tokio::runtime::Runtime, base_url: &str) -> TestSchema {
    rt.block_on(TestSchema::create(base_url)).expect("create schema")
}

/// Reads `runs` from the store and checks what must hold at any instant: each is stored,
/// and each history is well formed with no step completed twice.
async fn inspect(store: &PostgresStore, runs: &[RunId]) -> Snapshot {
    let mut snapshot = Snapshot::default();
    for &id in runs {
        let run = store.run(id).await.expect("read run");
        let run = run.unwrap_or_else(|| panic!("accepted run {id} was lost"));
        let history = store.run_events(id).await.expect("read history");
        let steps_done = check_history(&run, &history);
        snapshot.steps_done += steps_done;
        match run.status {
            RunStatus::Running => {
                snapshot.running += 1;
                snapshot.partial += usize::from(steps_done > 0);
            }
            RunStatus::Completed => {
                snapshot.completed += 1;
                let output = run.output.unwrap_or_else(|| panic!("run {id} has no output"));
                assert_eq!(output.to_value()["step"], "s5", "run {id}: output is not s5's");
            }
            other => panic!("run {id} ended as {other:?}: {history:#?}"),
        }
    }
    snapshot
}

/// Checks the end state: the store holds exactly the accepted runs, each completed exactly
/// once with every step recorded once.
async fn check_all_completed(store: &PostgresStore, accepted: &[RunId]) {
    let distinct: BTreeSet<_> = accepted.iter().collect();
    assert_eq!(distinct.len(), accepted.len(), "a run id was accepted twice");
    let query = RunQuery { limit: Some(10 * accepted.len() as u32), ..Default::default() };
    let all = store.list_runs(&query).await.expect("list runs");
    assert_eq!(all.len(), accepted.len(), "the store holds runs that were not accepted");
    let last = inspect(store, accepted).await;
    eprintln!("at the end: {last:?}");
    assert_eq!(last.completed, accepted.len(), "not every run completed: {last:?}");
    assert_eq!(last.steps_done, accepted.len() * STEPS.len(), "step completions missing");
    assert!(store.active_runs().await.expect("active runs").is_empty(), "runs left active");
}

/// Polls the store until no run is running; returns when that was seen, or `None` once
/// `deadline` passes.
async fn idle_at(store: &PostgresStore, deadline: Instant) -> Option<Instant> {
    let running =
        RunQuery { status: Some(RunStatus::Running), limit: Some(1), ..Default::default() };
    loop {
        if store.list_runs(&running).await.expect("list running runs").is_empty() {
            return Some(Instant::now());
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}

#[test]
fn three_instances_complete_a_thousand_runs_once_each() {
    let _serial = serial();
    let Some(base) = test_database_url() else { return };
    let started = Instant::now();
    let rt = runtime();
    let schema = create_schema(&rt, &base);
    let url = schema.url();

    // 1,000 runs of five 5 ms steps, triggered across three instances.
    let counts = [334, 333, 333];
    let names = ["host-a", "host-b", "host-c"];
    let mut hosts: Vec<Host> = names
        .iter()
        .zip(counts)
        .map(|(name, n)| {
            Host::start(
                name,
                &["--postgres", &url],
                &["--trigger", &n.to_string(), "--step-ms", "5"],
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut accepted = Vec::new();
    for (host, n) in hosts.iter_mut().zip(counts) {
        accepted.extend(host.accepted(n, deadline));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let by_host: Vec<u64> = hosts.iter_mut().map(|h| h.finish(deadline)).collect();
    drop(hosts);
    eprintln!("steps completed per instance: {by_host:?}");

    rt.block_on(async {
        let store = PostgresStore::connect(&url).await.expect("connect");
        check_all_completed(&store, &accepted).await;
        store.close().await.expect("close the store");
    });
    for (name, n) in names.iter().zip(&by_host) {
        assert!(*n > 0, "{name} ran no step: the work was not spread ({by_host:?})");
    }
    let total: u64 = by_host.iter().sum();
    assert!(total >= (accepted.len() * STEPS.len()) as u64, "fewer step calls than steps");
    eprintln!("three instances, 1,000 runs: {:?}", started.elapsed());
}

#[test]
fn runs_of_a_killed_instance_finish_on_the_others_within_the_lease() {
    let _serial = serial();
    let Some(base) = test_database_url() else { return };
    let started = Instant::now();
    let rt = runtime();
    let schema = create_schema(&rt, &base);
    let url = schema.url();

    // Three instances, 100 runs each, of five 200 ms steps (a run takes about 1 s).
    let (lease, claim) = (ms(LEASE), ms(CLAIM));
    let args = ["--trigger", "100", "--step-ms", "200", "--lease-ms", &lease, "--claim-ms", &claim];
    let mut victim = Host::start("victim", &["--postgres", &url], &args);
    let mut others = [
        Host::start("host-b", &["--postgres", &url], &args),
        Host::start("host-c", &["--postgres", &url], &args),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    let victims_runs = victim.accepted(100, deadline);
    let triggered_at = Instant::now();
    let mut accepted = victims_runs.clone();
    for host in &mut others {
        accepted.extend(host.accepted(100, deadline));
    }

    // Kill the victim while its runs are going: after some of their steps, before the last.
    let kill_at = triggered_at + jitter(300, 500);
    thread::sleep(kill_at.saturating_duration_since(Instant::now()));
    victim.kill();
    let killed_at = Instant::now();

    rt.block_on(async {
        let store = PostgresStore::connect(&url).await.expect("connect");
        let at_kill = inspect(&store, &victims_runs).await;
        eprintln!("the victim's runs at the kill: {at_kill:?}");
        assert!(
            at_kill.running > 0 && at_kill.partial > 0,
            "the victim was not killed mid-flight, so this test proves nothing: {at_kill:?}"
        );
        // Its leases expire at most LEASE after the kill, a claim comes within CLAIM, and the
        // rest of a run takes at most 5 x 200 ms: within LEASE + 2 s. The bound asserted adds
        // 1 s of slack for a loaded machine (2 cores shared by three hosts, PostgreSQL and the
        // test); it still fails if the runs wait for more than one lease or are not taken over.
        let bound = LEASE + Duration::from_secs(2) + Duration::from_secs(1);
        let idle = idle_at(&store, killed_at + Duration::from_secs(30)).await;
        let idle = idle.expect("runs still running 30 s after the kill");
        let took = idle - killed_at;
        eprintln!("every run finished {took:?} after the kill (bound {bound:?})");
        assert!(took <= bound, "the runs of the killed instance took {took:?} to finish");
        store.close().await.expect("close the store");
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let by_host: Vec<u64> = others.iter_mut().map(|h| h.finish(deadline)).collect();
    eprintln!("steps completed by the survivors: {by_host:?}");
    drop(others);

    rt.block_on(async {
        let store = PostgresStore::connect(&url).await.expect("connect");
        check_all_completed(&store, &accepted).await;
        store.close().await.expect("close the store");
    });
    eprintln!("kill -9 of one instance of three: {:?}", started.elapsed());
}

#[test]
fn an_instance_frozen_past_its_lease_commits_nothing_stale() {
    let _serial = serial();
    let Some(base) = test_database_url() else { return };
    let started = Instant::now();
    let rt = runtime();
    let schema = create_schema(&rt, &base);
    let url = schema.url();

    let (lease, claim) = (ms(LEASE), ms(CLAIM));
    let frozen_args =
        ["--trigger", "100", "--step-ms", "200", "--lease-ms", &lease, "--claim-ms", &claim];
    let other_args =
        ["--trigger", "20", "--step-ms", "200", "--lease-ms", &lease, "--claim-ms", &claim];
    let mut frozen = Host::start("frozen", &["--postgres", &url], &frozen_args);
    let mut others = [
        Host::start("host-b", &["--postgres", &url], &other_args),
        Host::start("host-c", &["--postgres", &url], &other_args),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    let frozen_runs = frozen.accepted(100, deadline);
    let triggered_at = Instant::now();
    let mut accepted = frozen_runs.clone();
    for host in &mut others {
        accepted.extend(host.accepted(20, deadline));
    }

    // Freeze it mid-flight, halfway through its runs' second step (they all started at once):
    // its handlers are sleeping, their results not yet committed, and it is between two
    // commits. Frozen inside a commit's transaction it would keep that batch's run rows
    // locked (PostgreSQL keeps a silent client's transaction open, and the store sets no
    // `idle_in_transaction_session_timeout`): the claims of the others skip locked rows, so
    // those runs would wait for the thaw. Halfway through a step it holds no lock.
    thread::sleep(
        (triggered_at + Duration::from_millis(300)).saturating_duration_since(Instant::now()),
    );
    frozen.signal("STOP");
    let stopped_at = Instant::now();

    rt.block_on(async {
        let store = PostgresStore::connect(&url).await.expect("connect");
        let at_stop = inspect(&store, &frozen_runs).await;
        eprintln!("the frozen instance's runs at the stop: {at_stop:?}");
        assert!(at_stop.running > 0, "every run finished before the stop: {at_stop:?}");
        // The others take its runs over once its leases expire and finish them.
        let idle = idle_at(&store, stopped_at + Duration::from_secs(30)).await;
        let idle = idle.expect("the frozen instance's runs were not taken over within 30 s");
        eprintln!("every run finished {:?} after the stop", idle - stopped_at);
        // Its leases were renewed at most a third of a lease before the stop.
        assert!(idle - stopped_at > LEASE * 2 / 3, "runs moved before the lease expired");
        store.close().await.expect("close the store");
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let by_host: Vec<u64> = others.iter_mut().map(|h| h.finish(deadline)).collect();
    drop(others);

    // Thaw it, frozen for more than a lease: its sleeping handlers return at once and it tries to commit their results for
    // runs that others finished meanwhile. The fence must refuse them.
    thread::sleep((stopped_at + LEASE + CLAIM).saturating_duration_since(Instant::now()));
    frozen.signal("CONT");
    let own = frozen.finish(Instant::now() + Duration::from_secs(15));
    eprintln!("steps completed: frozen {own}, others {by_host:?}");
    let log = frozen.stderr();
    eprintln!("the frozen instance's log after it was thawed:\n{log}");
    drop(frozen);

    rt.block_on(async {
        let store = PostgresStore::connect(&url).await.expect("connect");
        check_all_completed(&store, &accepted).await;
        store.close().await.expect("close the store");
    });
    assert!(log.contains("lease"), "the thawed instance never noticed it lost its leases");
    eprintln!("SIGSTOP past the lease, then SIGCONT: {:?}", started.elapsed());
}

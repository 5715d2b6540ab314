//! Engine throughput on PostgreSQL (issue 3): 1,000 concurrent runs of the 10-step linear
//! no-op workflow, with one engine instance and with two instances on the same database.
//!
//! - `throughput_1_instance`: one engine, one `PostgresStore` (its own pool).
//! - `throughput_2_instances`: two engines in this process, each with its own
//!   `PostgresStore` (own pool) on the same schema; half of the runs are triggered through
//!   each engine's handle (a run is held by the instance that triggers it) and all are waited
//!   for.
//!
//! Each benchmark gets a fresh schema `cf_test_<uuid>`, dropped at its end; every measured
//! batch is 1,000 new runs. The database is `CRONFLOW_TEST_DATABASE_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`); when it cannot be reached the
//! benchmarks say so on one line and are skipped.
//!
//! Besides steps/s, each benchmark prints what its stores did per batch (commits, events per
//! commit, time inside `commit`, `run_report` reads), counted by a thin wrapper around the
//! store.
//!
//! Run with: `cargo bench -p cronflow-benches --bench postgres`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use cronflow_benches::{STEPS, linear_workflow, noop_executor, sum_of};
use cronflow_core::{
    ClaimedRun, CommitBatch, CommitOutcome, Engine, EngineHandle, InstanceId, RecordedEvent, RunId,
    RunQuery, RunRecord, RunReport, RunStatus, Store, StoreError, StoredRun, WorkflowDef,
};
use cronflow_store::PostgresStore;
use cronflow_store::testing::TestSchema;
use serde_json::json;

const RUNS: usize = 1_000;
const DATABASE_URL_VAR: &str = "CRONFLOW_TEST_DATABASE_URL";
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn database_url() -> String {
    match std::env::var(DATABASE_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => DEFAULT_URL.to_owned(),
    }
}

/// What the stores did, summed over every instance.
#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    commit_nanos: AtomicU64,
    events: AtomicU64,
    new_runs: AtomicU64,
    finished: AtomicU64,
    fenced: AtomicU64,
    reports: AtomicU64,
    report_nanos: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> [u64; 8] {
        [
            &self.commits,
            &self.commit_nanos,
            &self.events,
            &self.new_runs,
            &self.finished,
            &self.fenced,
            &self.reports,
            &self.report_nanos,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }
}

/// A [`PostgresStore`] that counts its commits and report reads; everything else is passed
/// through unchanged (the store stays [shared](Store::shared)).
#[derive(Clone)]
struct Counted {
    inner: PostgresStore,
    counters: Arc<Counters>,
}

fn add_since(counter: &AtomicU64, started: Instant) {
    counter.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
}

#[async_trait]
impl Store for Counted {
    async fn save_workflow(&self, def: &WorkflowDef) -> Result<u32, StoreError> {
        self.inner.save_workflow(def).await
    }
    async fn load_workflow(
        &self,
        id: &str,
        revision: u32,
    ) -> Result<Option<WorkflowDef>, StoreError> {
        self.inner.load_workflow(id, revision).await
    }
    async fn commit(&self, batch: &CommitBatch) -> Result<CommitOutcome, StoreError> {
        let started = Instant::now();
        let result = self.inner.commit(batch).await;
        add_since(&self.counters.commit_nanos, started);
        let c = &self.counters;
        c.commits.fetch_add(1, Ordering::Relaxed);
        c.events.fetch_add(batch.events.len() as u64, Ordering::Relaxed);
        c.new_runs.fetch_add(batch.new_runs.len() as u64, Ordering::Relaxed);
        c.finished.fetch_add(batch.finished.len() as u64, Ordering::Relaxed);
        c.fenced.fetch_add(batch.fences.len() as u64, Ordering::Relaxed);
        result
    }
    async fn schedule_cursor(&self, id: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.inner.schedule_cursor(id).await
    }
    async fn advance_schedule(
        &self,
        id: &str,
        from: Option<DateTime<Utc>>,
        to: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.advance_schedule(id, from, to).await
    }
    async fn prune_trigger_keys(
        &self,
        prefix: &str,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.inner.prune_trigger_keys(prefix, before).await
    }
    async fn state_get(
        &self,
        namespace: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<cronflow_core::Json>, StoreError> {
        self.inner.state_get(namespace, key, now).await
    }
    async fn state_set(
        &self,
        namespace: &str,
        key: &str,
        value: cronflow_core::Json,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        self.inner.state_set(namespace, key, value, expires_at).await
    }
    async fn state_incr(
        &self,
        namespace: &str,
        key: &str,
        by: i64,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        self.inner.state_incr(namespace, key, by, now).await
    }
    async fn state_delete(
        &self,
        namespace: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.state_delete(namespace, key, now).await
    }
    async fn state_purge_expired(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.inner.state_purge_expired(now).await
    }
    async fn active_runs(&self) -> Result<Vec<StoredRun>, StoreError> {
        self.inner.active_runs().await
    }
    async fn run(&self, id: RunId) -> Result<Option<RunRecord>, StoreError> {
        self.inner.run(id).await
    }
    async fn run_events(&self, id: RunId) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.run_events(id).await
    }
    async fn run_report(&self, id: RunId) -> Result<Option<RunReport>, StoreError> {
        let started = Instant::now();
        let report = self.inner.run_report(id).await;
        add_since(&self.counters.report_nanos, started);
        self.counters.reports.fetch_add(1, Ordering::Relaxed);
        report
    }
    async fn list_runs(&self, query: &RunQuery) -> Result<Vec<RunRecord>, StoreError> {
        self.inner.list_runs(query).await
    }
    fn shared(&self) -> bool {
        self.inner.shared()
    }
    async fn claim_runs(
        &self,
        owner: InstanceId,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedRun>, StoreError> {
        self.inner.claim_runs(owner, lease, limit).await
    }
    async fn renew_leases(
        &self,
        owner: InstanceId,
        lease: Duration,
    ) -> Result<Vec<(RunId, u64)>, StoreError> {
        self.inner.renew_leases(owner, lease).await
    }
    async fn release_runs(&self, owner: InstanceId, runs: &[RunId]) -> Result<(), StoreError> {
        self.inner.release_runs(owner, runs).await
    }
}

async fn start(url: &str, counters: &Arc<Counters>) -> Engine {
    let inner = PostgresStore::connect(url).await.expect("connect to PostgreSQL");
    Engine::builder()
        .store(Counted { inner, counters: Arc::clone(counters) })
        .executor(noop_executor())
        .workflow(linear_workflow("linear"))
        .start()
        .await
        .expect("start engine")
}

/// Triggers `runs` runs, round robin over `handles`, each waited for through the handle that
/// triggered it; returns the time from the first trigger to the last completion.
async fn run_batch(handles: &[EngineHandle], runs: usize) -> Duration {
    let started = Instant::now();
    let mut waits = Vec::with_capacity(runs);
    for i in 0..runs {
        let handle = handles[i % handles.len()].clone();
        waits.push(tokio::spawn(async move {
            let run = handle.trigger("linear", json!({"n": 1})).await.expect("trigger");
            handle.wait(run).await.expect("wait")
        }));
    }
    for wait in waits {
        let report = wait.await.expect("join");
        assert_eq!(report.status(), RunStatus::Completed);
    }
    started.elapsed()
}

fn throughput(c: &mut Criterion, instances: usize) {
    let name = format!("throughput_{instances}_instance{}", if instances == 1 { "" } else { "s" });
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let url = database_url();
    let schema = match rt.block_on(TestSchema::create(&url)) {
        Ok(schema) => schema,
        Err(e) => {
            println!(
                "postgres throughput ({instances} instance{}): SKIPPED, PostgreSQL benchmarks \
                 need a database ({DATABASE_URL_VAR}, default {DEFAULT_URL}): {e}",
                if instances == 1 { "" } else { "s" }
            );
            return;
        }
    };
    let counters = Arc::new(Counters::default());
    let mut engines = Vec::with_capacity(instances);
    for _ in 0..instances {
        engines.push(rt.block_on(start(&schema.url(), &counters)));
    }
    let handles: Vec<EngineHandle> = engines.iter().map(Engine::handle).collect();

    let mut rates = Vec::new();
    let before = counters.snapshot();
    let mut group = c.benchmark_group("postgres");
    group.sample_size(10).measurement_time(Duration::from_secs(15));
    group.bench_function(&name, |b| {
        b.iter_custom(|iters| {
            sum_of(iters, || {
                let took = rt.block_on(run_batch(&handles, RUNS));
                rates.push((RUNS * STEPS) as f64 / took.as_secs_f64());
                took
            })
        })
    });
    group.finish();
    let after = counters.snapshot();
    for engine in engines {
        rt.block_on(engine.shutdown(Duration::from_secs(10))).expect("shutdown");
    }
    drop(schema);
    if rates.is_empty() {
        return; // filtered out on the command line
    }

    let in_order: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
    rates.sort_by(|a, b| a.total_cmp(b));
    let median = rates[rates.len() / 2];
    println!(
        "postgres throughput ({instances} instance{}): {median:.0} steps/s median \
         ({:.0} runs/s), best {:.0}, worst {:.0} steps/s [{RUNS} concurrent runs x {STEPS} steps, \
         PostgreSQL, {instances} engine{} with a pool of 8 each, no-op executor, {} batches]",
        if instances == 1 { "" } else { "s" },
        median / STEPS as f64,
        rates.last().copied().unwrap_or(0.0),
        rates[0],
        if instances == 1 { "" } else { "s" },
        rates.len()
    );
    println!("  steps/s of each batch, warm-up first: {}", in_order.join(", "));
    // Includes criterion's warm-up batches: per batch, they are the same work.
    let d: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    let [commits, commit_nanos, events, new_runs, finished, fenced, reports, report_nanos] = d[..]
    else {
        unreachable!()
    };
    let all_batches = (new_runs as f64 / RUNS as f64).max(1.0);
    let commits_f = commits.max(1) as f64;
    println!(
        "  per batch of {RUNS} runs: {:.0} commits ({:.1} events, {:.1} new runs, \
         {:.1} finished runs, {:.1} fenced runs per commit), {:.1} ms per commit, \
         commit time summed over instances {:.0} ms; {:.0} run_report reads of {:.2} ms",
        commits_f / all_batches,
        events as f64 / commits_f,
        new_runs as f64 / commits_f,
        finished as f64 / commits_f,
        fenced as f64 / commits_f,
        commit_nanos as f64 / commits_f / 1e6,
        commit_nanos as f64 / all_batches / 1e6,
        reports as f64 / all_batches,
        report_nanos as f64 / reports.max(1) as f64 / 1e6,
    );
}

fn one_instance(c: &mut Criterion) {
    throughput(c, 1);
}

fn two_instances(c: &mut Criterion) {
    throughput(c, 2);
}

criterion_group!(benches, one_instance, two_instances);
criterion_main!(benches);

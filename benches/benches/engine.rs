//! Engine benchmarks on a SQLite file (WAL), with a no-op in-process executor.
//!
//! - `throughput`: 1,000 concurrent runs of the 10-step linear workflow; prints steps/s.
//! - `latency`: one such run alone, trigger to completion; prints p50/p99.
//!
//! Run with: `cargo bench -p cronflow-benches --bench engine`

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use cronflow_benches::{STEPS, human, linear_workflow, noop_executor, quantile, run_batch, sum_of};
use cronflow_core::Engine;
use cronflow_store::SqliteStore;

const RUNS: usize = 1_000;

async fn start(dir: &tempfile::TempDir) -> Engine {
    let store = SqliteStore::open(dir.path().join("bench.db")).await.expect("open store");
    Engine::builder()
        .store(store)
        .executor(noop_executor())
        .workflow(linear_workflow("linear"))
        .start()
        .await
        .expect("start engine")
}

fn throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = rt.block_on(start(&dir));
    let handle = engine.handle();
    let mut best = Vec::new();
    let mut group = c.benchmark_group("engine");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    group.bench_function("throughput_1000_runs_x_10_steps", |b| {
        b.iter_custom(|iters| {
            sum_of(iters, || {
                let took = rt.block_on(run_batch(&handle, "linear", RUNS));
                best.push((RUNS * STEPS) as f64 / took.as_secs_f64());
                took
            })
        })
    });
    group.finish();
    rt.block_on(engine.shutdown(Duration::from_secs(10))).expect("shutdown");
    if best.is_empty() {
        return; // filtered out on the command line
    }
    best.sort_by(|a, b| a.total_cmp(b));
    let median = best[best.len() / 2];
    println!(
        "engine throughput: {median:.0} steps/s median ({:.0} runs/s), best {:.0} steps/s \
         [{RUNS} concurrent runs x {STEPS} steps, SQLite file, no-op executor, {} batches]",
        median / STEPS as f64,
        best.last().copied().unwrap_or(0.0),
        best.len()
    );
}

fn latency(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = rt.block_on(start(&dir));
    let handle = engine.handle();
    let mut samples = Vec::new();
    let mut group = c.benchmark_group("engine");
    group.sample_size(200).measurement_time(Duration::from_secs(5));
    group.bench_function("latency_one_run_10_steps", |b| {
        b.iter_custom(|iters| {
            sum_of(iters, || {
                let took = rt.block_on(run_batch(&handle, "linear", 1));
                samples.push(took);
                took
            })
        })
    });
    group.finish();
    rt.block_on(engine.shutdown(Duration::from_secs(10))).expect("shutdown");
    let n = samples.len();
    if n == 0 {
        return; // filtered out on the command line
    }
    println!(
        "engine latency (one {STEPS}-step run alone, trigger to completion, SQLite file): \
         p50 {} p99 {} over {n} runs",
        human(quantile(&mut samples, 0.50)),
        human(quantile(&mut samples, 0.99)),
    );
}

criterion_group!(benches, throughput, latency);
criterion_main!(benches);

//! Node.js executor benchmarks: the engine bench's workflow with JavaScript handlers run by a
//! `NodeExecutor` pool of 2 workers (`benches/js/noop.mjs`: 10 steps returning `null`).
//!
//! - `throughput`: 1,000 concurrent runs on a SQLite file (WAL); prints steps/s, and the CPU
//!   time per step of this process and of each worker (from `/proc`, so on Linux only).
//! - `latency`: one such run alone, trigger to completion; prints p50/p99.
//! - `task_round_trip`: one no-op task through the pool directly (`Executor::execute`, no
//!   engine, no store), sequential; prints p50/p99.
//!
//! Skipped with a note when `node` is not on `PATH`.
//!
//! Run with: `cargo bench -p cronflow-benches --bench node`

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use cronflow_benches::{STEPS, human, linear_workflow, quantile, run_batch, sum_of};
use cronflow_core::{Engine, Executor, Json, Node, Task, WorkflowDef};
use cronflow_executor_node::NodeExecutor;
use cronflow_store::SqliteStore;
use serde_json::json;

const RUNS: usize = 1_000;
const WORKERS: usize = 2;
const GRACE: Duration = Duration::from_secs(10);

/// Whether `node` runs; says once that the benchmarks are skipped when it does not.
fn node_available() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        let found = std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success());
        if !found {
            println!("node benchmarks skipped: `node` is not on PATH");
        }
        found
    })
}

/// The core bench's workflow as the SDK writes it: the same ids, each step's handler named
/// after the step (the SDK's rule) instead of `noop`.
fn expected_workflow() -> WorkflowDef {
    let mut def = linear_workflow("linear");
    for node in &mut def.nodes {
        if let Node::Step(step) = node {
            step.handler = step.id.clone();
        }
    }
    def
}

/// Starts the pool on `benches/js/noop.mjs` and checks that it defines the expected workflow.
async fn spawn_pool() -> (NodeExecutor, Vec<WorkflowDef>) {
    let module = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js/noop.mjs");
    let (executor, defs) = NodeExecutor::builder()
        .module(module)
        .workers(WORKERS)
        .spawn()
        .await
        .expect("spawn the node workers");
    assert_eq!(defs, [expected_workflow()], "benches/js/noop.mjs defines another workflow");
    (executor, defs)
}

async fn start(dir: &tempfile::TempDir) -> (Engine, NodeExecutor) {
    let (executor, defs) = spawn_pool().await;
    let store = SqliteStore::open(dir.path().join("bench.db")).await.expect("open store");
    let engine = Engine::builder()
        .store(store)
        .executor(executor.clone())
        .workflows(defs)
        .start()
        .await
        .expect("start engine");
    (engine, executor)
}

async fn stop(engine: Engine, executor: NodeExecutor) {
    engine.shutdown(GRACE).await.expect("shutdown");
    executor.shutdown(GRACE).await;
}

/// CPU time (user + system) of process `pid` so far, from `/proc` (Linux; `None` elsewhere).
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces): state is field 3, utime and
    // stime are fields 14 and 15, in clock ticks (100 per second on Linux).
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let ticks: u64 = fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time of this process and of each worker, in the order of `pids`.
fn cpu_split(pids: &[u32]) -> Option<(Duration, Vec<Duration>)> {
    let workers = pids.iter().map(|&pid| cpu_time(pid)).collect::<Option<Vec<_>>>()?;
    Some((cpu_time(std::process::id())?, workers))
}

fn throughput(c: &mut Criterion) {
    if !node_available() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, executor) = rt.block_on(start(&dir));
    let handle = engine.handle();
    let pids = executor.worker_pids();
    let mut best = Vec::new();
    let mut group = c.benchmark_group("node");
    // Flat sampling: 10 samples of equal size instead of criterion's 1 + 2 + ... + 10
    // batches, which would take about a minute at the target rate.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    // CPU used over every batch (the warm-up's included), read after each sample so that
    // criterion's analysis after the last one is left out.
    let cpu_before = cpu_split(&pids);
    let mut cpu_after = None;
    group.bench_function("throughput_1000_runs_x_10_steps_2_workers", |b| {
        b.iter_custom(|iters| {
            let total = sum_of(iters, || {
                let took = rt.block_on(run_batch(&handle, "linear", RUNS));
                best.push((RUNS * STEPS) as f64 / took.as_secs_f64());
                took
            });
            cpu_after = cpu_split(&pids);
            total
        })
    });
    group.finish();
    rt.block_on(stop(engine, executor));
    if best.is_empty() {
        return; // filtered out on the command line
    }
    best.sort_by(|a, b| a.total_cmp(b));
    let median = best[best.len() / 2];
    println!(
        "node throughput: {median:.0} steps/s median ({:.0} runs/s), best {:.0} steps/s, \
         worst {:.0} steps/s [{RUNS} concurrent runs x {STEPS} steps, SQLite file, \
         {WORKERS} node workers, {} batches]",
        median / STEPS as f64,
        best.last().copied().unwrap_or(0.0),
        best[0],
        best.len()
    );
    if let (Some((bench0, workers0)), Some((bench1, workers1))) = (cpu_before, cpu_after) {
        let steps = (best.len() * RUNS * STEPS) as f64;
        let per_step = |d: Duration| format!("{:.1} µs", d.as_secs_f64() * 1e6 / steps);
        let workers: Vec<Duration> =
            workers1.iter().zip(&workers0).map(|(a, b)| a.saturating_sub(*b)).collect();
        let each: Vec<String> = workers.iter().map(|&d| per_step(d)).collect();
        println!(
            "node throughput CPU per step: bench process (engine, SQLite, pool) {}, node \
             workers {} ({})",
            per_step(bench1.saturating_sub(bench0)),
            per_step(workers.iter().sum()),
            each.join(" + ")
        );
    }
}

fn latency(c: &mut Criterion) {
    if !node_available() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, executor) = rt.block_on(start(&dir));
    let handle = engine.handle();
    let mut samples = Vec::new();
    let mut group = c.benchmark_group("node");
    group
        .sample_size(100)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    group.bench_function("latency_lone_run", |b| {
        b.iter_custom(|iters| {
            sum_of(iters, || {
                let took = rt.block_on(run_batch(&handle, "linear", 1));
                samples.push(took);
                took
            })
        })
    });
    group.finish();
    rt.block_on(stop(engine, executor));
    let n = samples.len();
    if n == 0 {
        return; // filtered out on the command line
    }
    println!(
        "node latency (one {STEPS}-step run alone, trigger to completion, SQLite file, \
         {WORKERS} node workers): p50 {} p99 {} over {n} runs",
        human(quantile(&mut samples, 0.50)),
        human(quantile(&mut samples, 0.99)),
    );
}

/// The task the engine sends for step `s0` of a fresh run with the bench payload.
fn first_step_task() -> Task {
    let mut task = Task::new("linear", "s0");
    task.context.payload = Json::from(json!({"n": 1}));
    task
}

fn task_round_trip(c: &mut Criterion) {
    if !node_available() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (executor, _) = rt.block_on(spawn_pool());
    let task = first_step_task();
    let mut samples = Vec::new();
    let mut group = c.benchmark_group("node");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    group.bench_function("task_round_trip", |b| {
        b.iter_custom(|iters| {
            // One `block_on` per sample, not per task: entering the runtime is not part of
            // what the engine pays per task.
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let task = task.clone();
                    let started = Instant::now();
                    let output = executor.execute(task).await.expect("execute");
                    let took = started.elapsed();
                    assert_eq!(output.as_str(), "null");
                    samples.push(took);
                    total += took;
                }
                total
            })
        })
    });
    group.finish();
    rt.block_on(executor.shutdown(GRACE));
    let n = samples.len();
    if n == 0 {
        return; // filtered out on the command line
    }
    println!(
        "node task round trip (one no-op task through the pool, sequential, no engine, \
         {WORKERS} node workers): p50 {} p99 {} over {n} tasks",
        human(quantile(&mut samples, 0.50)),
        human(quantile(&mut samples, 0.99)),
    );
}

criterion_group!(benches, throughput, latency, task_round_trip);
criterion_main!(benches);

//! How the pool manages its workers, against real `node`: a handler past its timeout gets its
//! worker stopped (SIGTERM, then SIGKILL) while other runs carry on; process groups die with
//! their worker; the pool grows to its maximum and shrinks back; per-worker in-flight limits;
//! recycling after N tasks and over a heap ceiling; backoff when workers keep failing to start.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{LIMIT, failures, fixture, node_available, task};
use cronflow_core::{
    Engine, Executor, Json, MemoryStore, RunStatus, TIMEOUT_ERROR, Task, WorkflowDef,
};
use cronflow_executor_node::{NodeExecutor, NodeExecutorBuilder, PoolStats, WORKER_CRASHED};
use serde_json::{Value, json};

fn pool() -> NodeExecutorBuilder {
    NodeExecutor::builder()
        .module(fixture("pool.mjs"))
        .cancel_grace(Duration::from_millis(100))
        .kill_grace(Duration::from_millis(500))
}

/// Whether `pid` is a running process (a zombie waiting to be reaped does not count).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => {
            stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        }
        Err(_) => false,
    }
}

/// Polls `check` every 20 ms until it holds, failing the test with `what` after [`LIMIT`].
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(LIMIT, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting until {what}");
}

fn with_payload(mut task: Task, payload: Value) -> Task {
    task.context.payload = Json::from_value(&payload).unwrap();
    task
}

async fn output(exec: &NodeExecutor, task: Task) -> Value {
    let out = tokio::time::timeout(LIMIT, exec.execute(task)).await.expect("task timed out");
    out.expect("task").parse().unwrap()
}

async fn engine(exec: &NodeExecutor, defs: Vec<WorkflowDef>) -> Engine {
    Engine::builder()
        .store(MemoryStore::new())
        .executor(exec.clone())
        .workflows(defs)
        .start()
        .await
        .expect("engine start")
}

/// Runs `id` (attempt 1 blocks its worker past the step timeout) beside five `quick` runs;
/// returns the pool, the report of `id` and the pid that ran its successful attempt.
async fn stuck_run(id: &str) -> (NodeExecutor, cronflow_core::RunReport, u32) {
    let (exec, defs) = common::spawn(pool().workers(2)).await;
    let engine = engine(&exec, defs).await;
    let handle = engine.handle();
    let stuck = handle.trigger(id, json!({})).await.expect("trigger");
    eventually("the task is in flight", || exec.in_flight() == 1).await;

    // The other worker serves other runs while one is blocked, and after.
    let mut quick = Vec::new();
    for _ in 0..5 {
        quick.push(handle.trigger("quick", json!({})).await.expect("trigger"));
    }
    let report = tokio::time::timeout(LIMIT, handle.wait(stuck)).await.expect("run").expect("wait");
    for run in quick {
        let r = tokio::time::timeout(LIMIT, handle.wait(run)).await.expect("run").expect("wait");
        assert_eq!(r.status(), RunStatus::Completed, "{r:#?}");
        // A task queued behind the blocked event loop is sent to another worker when the
        // blocked one is stopped: no attempt of these runs fails.
        assert!(failures(&r, "quick").is_empty(), "a quick run was disturbed: {r:#?}");
    }
    engine.shutdown(Duration::from_secs(5)).await.expect("engine shutdown");

    assert_eq!(report.status(), RunStatus::Completed, "{report:#?}");
    let errors = failures(&report, id);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].name, TIMEOUT_ERROR);
    let out: Value = report.task_output(id).unwrap().parse().unwrap();
    assert_eq!(out["attempt"], 2);
    let stats = exec.stats();
    assert_eq!(stats.stuck, 1, "{stats:?}");
    (exec, report, out["pid"].as_u64().unwrap() as u32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_past_its_timeout_gets_its_worker_terminated_and_others_carry_on() {
    if !node_available() {
        return;
    }
    let (exec, _, retry_pid) = stuck_run("spin").await;
    // Two workers again, none of them the blocked one (which is gone).
    eventually("the pool is back to two workers", || exec.worker_pids().len() == 2).await;
    assert!(exec.worker_pids().contains(&retry_pid));
    let stats = exec.stats();
    assert_eq!(stats.started, 3, "{stats:?}");
    exec.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_ignoring_sigterm_is_killed_after_the_kill_grace() {
    if !node_available() {
        return;
    }
    let (exec, defs) = common::spawn(pool().workers(1)).await;
    let engine = engine(&exec, defs).await;
    let handle = engine.handle();
    let pid = exec.worker_pids()[0];
    let run = handle.trigger("stubborn", json!({})).await.expect("trigger");
    let report = tokio::time::timeout(LIMIT, handle.wait(run)).await.expect("run").expect("wait");
    engine.shutdown(Duration::from_secs(5)).await.expect("engine shutdown");
    assert_eq!(report.status(), RunStatus::Completed, "{report:#?}");
    assert_eq!(failures(&report, "stubborn")[0].name, TIMEOUT_ERROR);
    eventually("the stubborn worker is dead", || !running(pid)).await;
    assert!(!exec.worker_pids().contains(&pid));
    exec.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_a_handler_starts_die_with_the_pool() {
    if !node_available() {
        return;
    }
    // Graceful shutdown: node exits, its process group is killed after it.
    let (exec, _) = common::spawn(pool()).await;
    let out = output(&exec, task("tools", "child")).await;
    let sleep = out["sleep"].as_u64().unwrap() as u32;
    assert!(running(sleep));
    exec.shutdown(Duration::from_secs(5)).await;
    eventually("the handler's child process is gone after shutdown", || !running(sleep)).await;

    // Dropping the executor: the same.
    let (exec, _) = common::spawn(pool()).await;
    let out = output(&exec, task("tools", "child")).await;
    let (node, sleep) =
        (out["node"].as_u64().unwrap() as u32, out["sleep"].as_u64().unwrap() as u32);
    drop(exec);
    eventually("the worker and its child are gone after drop", || {
        !running(node) && !running(sleep)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_grows_to_its_maximum_under_load_and_shrinks_back_when_idle() {
    if !node_available() {
        return;
    }
    let builder = pool()
        .min_workers(1)
        .max_workers(3)
        .max_in_flight_per_worker(1)
        .idle_timeout(Duration::from_millis(300));
    let (exec, _) = common::spawn(builder).await;
    assert_eq!(exec.stats().workers, 1);
    let hold = || with_payload(task("tools", "hold"), json!({ "ms": 800 }));
    let outs = futures_join(&exec, (0..6).map(|_| hold()).collect()).await;
    let pids: std::collections::HashSet<u64> =
        outs.iter().map(|o| o["pid"].as_u64().unwrap()).collect();
    assert_eq!(pids.len(), 3, "six tasks, one at a time per worker, on at most 3 workers");
    assert!(outs.iter().all(|o| o["most"] == 1), "{outs:?}");
    eventually("the idle workers above the minimum are retired", || {
        let s = exec.stats();
        s.workers == 1 && s.draining == 0
    })
    .await;
    let PoolStats { started, retired, .. } = exec.stats();
    assert_eq!((started, retired), (3, 2));
    exec.shutdown(Duration::from_secs(5)).await;
}

/// Runs `tasks` at once and returns their outputs in order.
async fn futures_join(exec: &NodeExecutor, tasks: Vec<Task>) -> Vec<Value> {
    let mut set = tokio::task::JoinSet::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let exec = exec.clone();
        set.spawn(async move { (i, output(&exec, t).await) });
    }
    let mut outs = set.join_all().await;
    outs.sort_by_key(|(i, _)| *i);
    outs.into_iter().map(|(_, o)| o).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_never_runs_more_tasks_at_once_than_its_limit() {
    if !node_available() {
        return;
    }
    let (exec, _) = common::spawn(pool().workers(1).max_in_flight_per_worker(2)).await;
    let tasks = (0..8).map(|_| with_payload(task("tools", "hold"), json!({ "ms": 50 }))).collect();
    let outs = futures_join(&exec, tasks).await;
    let most = outs.iter().map(|o| o["most"].as_u64().unwrap()).max().unwrap();
    assert_eq!(most, 2, "{outs:?}");
    exec.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_is_recycled_after_its_task_quota_without_failing_a_task() {
    if !node_available() {
        return;
    }
    let (exec, _) = common::spawn(pool().workers(1).recycle_after_tasks(3)).await;
    let mut pids = Vec::new();
    for _ in 0..7 {
        pids.push(output(&exec, task("tools", "pid")).await.as_u64().unwrap());
    }
    // Tasks 1-3 on the first worker, 4-6 on the second, 7 on the third.
    assert_eq!(pids[0], pids[2]);
    assert_ne!(pids[2], pids[3]);
    assert_eq!(pids[3], pids[5]);
    assert_ne!(pids[5], pids[6]);
    assert_eq!(exec.stats().retired, 2);
    exec.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_over_its_heap_ceiling_is_replaced() {
    if !node_available() {
        return;
    }
    let builder = pool().workers(1).max_heap_mb(40).stats_interval(Duration::from_millis(50));
    let (exec, _) = common::spawn(builder).await;
    let first = exec.worker_pids()[0];
    // About 64 MiB of arrays stay reachable: the next heap report is over 40 MiB.
    output(&exec, with_payload(task("tools", "grow"), json!({ "mb": 64 }))).await;
    eventually("the heavy worker is replaced", || {
        exec.worker_pids().first().is_some_and(|&p| p != first)
    })
    .await;
    assert_eq!(exec.stats().retired, 1);
    assert_ne!(output(&exec, task("tools", "pid")).await.as_u64().unwrap(), u64::from(first));
    eventually("the heavy worker exited", || !running(first)).await;
    exec.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_restarts_back_off_and_the_pool_recovers_once_the_module_loads() {
    if !node_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sdk = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js/src/index.js");
    let module = dir.path().join("fragile.mjs");
    let text = format!(
        "import {{ existsSync }} from 'node:fs';\n\
         import {{ cronflow }} from {sdk:?};\n\
         if (existsSync(new URL('./broken', import.meta.url))) throw new Error('broken on purpose');\n\
         cronflow.define({{ id: 'fragile' }}).step('pid', () => process.pid);\n",
        sdk = sdk.display().to_string()
    );
    std::fs::write(&module, text).unwrap();
    let builder = NodeExecutor::builder()
        .module(&module)
        .restart_backoff(Duration::from_millis(50), Duration::from_millis(400))
        .startup_timeout(Duration::from_secs(1));
    let (exec, _) = common::spawn(builder).await;
    let first = exec.worker_pids()[0];

    std::fs::write(dir.path().join("broken"), "").unwrap();
    std::process::Command::new("kill").args(["-9", &first.to_string()]).status().unwrap();
    eventually("the pool saw its worker die", || exec.stats().workers == 0).await;
    // No worker comes up: a task waits up to the start-up timeout, then fails, retryably.
    let err = exec.execute(task("fragile", "pid")).await.unwrap_err();
    assert_eq!(err.name, "NoWorker");
    assert!(err.retryable);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // About 2 s of failures: 50, 100, 200, 400, 400 ms apart plus node's own start-up gives
    // about six starts; restarting without a pause would be dozens.
    let failed = exec.stats().failed_starts;
    assert!((1..=9).contains(&failed), "{failed} failed starts in about 2 s");

    std::fs::remove_file(dir.path().join("broken")).unwrap();
    eventually("a worker starts again", || exec.stats().workers == 1).await;
    let pid = output(&exec, task("fragile", "pid")).await.as_u64().unwrap();
    assert_ne!(pid, u64::from(first));
    exec.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_work_finish_within_its_grace_then_kills() {
    if !node_available() {
        return;
    }
    // Within the grace: the task in flight completes, then the workers exit.
    let (exec, _) = common::spawn(pool().workers(2)).await;
    let pids = exec.worker_pids();
    let running_task = {
        let exec = exec.clone();
        tokio::spawn(async move {
            exec.execute(with_payload(task("tools", "hold"), json!({ "ms": 300 }))).await
        })
    };
    eventually("the task is in flight", || exec.in_flight() == 1).await;
    exec.shutdown(Duration::from_secs(10)).await;
    assert!(running_task.await.unwrap().is_ok(), "the in-flight task was cut short");
    assert!(pids.iter().all(|&p| !running(p)), "{pids:?}");
    let refused = exec.execute(task("tools", "pid")).await.unwrap_err();
    assert_eq!(refused.name, "ShuttingDown");

    // Past the grace: the workers are killed and the task fails, retryably.
    let (exec, _) = common::spawn(pool()).await;
    let pid = exec.worker_pids()[0];
    let long_task = {
        let exec = exec.clone();
        tokio::spawn(async move {
            exec.execute(with_payload(task("tools", "hold"), json!({ "ms": 60_000 }))).await
        })
    };
    eventually("the task is in flight", || exec.in_flight() == 1).await;
    exec.shutdown(Duration::from_millis(200)).await;
    let err = long_task.await.unwrap().unwrap_err();
    assert_eq!(err.name, WORKER_CRASHED);
    assert!(err.retryable);
    assert!(!running(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_started_by_a_module_that_then_fails_to_load_does_not_survive() {
    if !node_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("spawns-then-throws.mjs");
    std::fs::write(
        &module,
        "import { spawn } from 'node:child_process';\n\
         import { writeFileSync } from 'node:fs';\n\
         const child = spawn('sleep', ['600'], { stdio: 'ignore' });\n\
         writeFileSync(new URL('./spawned.pid', import.meta.url), String(child.pid));\n\
         throw new Error('config missing');\n",
    )
    .unwrap();
    let result = NodeExecutor::builder().module(&module).spawn().await;
    assert!(
        matches!(&result, Err(cronflow_executor_node::NodeExecutorError::ModuleLoad { .. })),
        "{result:?}"
    );
    let pid: u32 =
        std::fs::read_to_string(dir.path().join("spawned.pid")).unwrap().parse().unwrap();
    eventually("the module's child process is gone", || !running(pid)).await;
}

//! `NodeExecutor` against real `node`: start-up, end-to-end runs through the engine, handler
//! errors with retries, module load errors and workers killed from outside. Skipped with a
//! note when `node` is not on `PATH`.

mod common;

use std::time::Duration;

use common::{LIMIT, alive, failures, fixture, node_available, run, task};
use cronflow_core::{Engine, Executor, MemoryStore, RunStatus};
use cronflow_executor_node::{NodeExecutor, NodeExecutorError, WORKER_CRASHED};
use serde_json::{Value, json};

async fn spawn_flows(workers: usize) -> (NodeExecutor, Vec<cronflow_core::WorkflowDef>) {
    common::spawn(NodeExecutor::builder().module(fixture("flows.mjs")).workers(workers)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_returns_the_modules_workflows() {
    if !node_available() {
        return;
    }
    let (exec, defs) = spawn_flows(2).await;
    let ids: Vec<&str> = defs.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["greet", "flaky", "crashy"]);
    assert_eq!(exec.worker_pids().len(), 2);
    assert!(exec.has_handler("lookup") && exec.has_handler("boom"));
    assert!(!exec.has_handler("nope"));
    exec.shutdown(Duration::from_secs(5)).await;
    assert!(exec.worker_pids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_workflow_runs_end_to_end_through_the_engine() {
    if !node_available() {
        return;
    }
    let (exec, defs) = spawn_flows(2).await;
    let report = run(&exec, defs, "greet", json!({ "name": "Ada" })).await;
    assert_eq!(report.status(), RunStatus::Completed, "{report:#?}");
    assert_eq!(report.task_output("lookup").unwrap().as_str(), r#"{"name":"Ada","len":3}"#);
    assert_eq!(report.task_output("shout").unwrap().as_str(), r#""ADA!""#);
    let out: Value = report.run.output.clone().unwrap().parse().unwrap();
    assert_eq!(out, json!({ "last": "ADA!", "len": 3 }));
    exec.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throwing_handler_fails_the_step_and_is_retried() {
    if !node_available() {
        return;
    }
    let (exec, defs) = spawn_flows(1).await;
    let report = run(&exec, defs, "flaky", json!({})).await;
    assert_eq!(report.status(), RunStatus::Failed, "{report:#?}");
    assert_eq!(report.attempts("boom"), 3);
    let errors = failures(&report, "boom");
    assert_eq!(errors.len(), 3);
    for e in &errors {
        assert_eq!(e.name, "TypeError");
        assert_eq!(e.message, "bad input");
        assert_eq!(e.code.as_deref(), Some("E_BAD"));
        assert!(e.stack.as_deref().unwrap_or_default().contains("flows.mjs"), "{e:?}");
        assert!(e.retryable);
    }
    exec.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_with_a_syntax_error_is_a_spawn_error_naming_it() {
    if !node_available() {
        return;
    }
    let result = tokio::time::timeout(
        LIMIT,
        NodeExecutor::builder().module(fixture("syntax-error.mjs")).spawn(),
    )
    .await
    .expect("spawn timed out");
    match result {
        Err(e @ NodeExecutorError::ModuleLoad { .. }) => {
            let text = e.to_string();
            assert!(text.contains("syntax-error.mjs"), "{text}");
            assert!(text.contains("SyntaxError"), "{text}");
        }
        other => panic!("expected a ModuleLoad error, got {other:?}"),
    }
    let missing = NodeExecutor::builder().module(fixture("missing.mjs")).spawn().await;
    assert!(matches!(missing, Err(NodeExecutorError::ModuleNotFound { .. })), "{missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_fails_its_tasks_which_succeed_on_retry() {
    if !node_available() {
        return;
    }
    let (exec, defs) = spawn_flows(1).await;
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .executor(exec.clone())
        .workflows(defs)
        .start()
        .await
        .expect("engine start");
    let handle = engine.handle();
    let run_id = handle.trigger("crashy", json!({})).await.expect("trigger");

    let waited = tokio::time::timeout(LIMIT, async {
        while exec.in_flight() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the task never reached the worker");
    let pids = exec.worker_pids();
    assert_eq!(pids.len(), 1);
    let status = std::process::Command::new("kill")
        .args(["-9", &pids[0].to_string()])
        .status()
        .expect("kill");
    assert!(status.success());

    let report = tokio::time::timeout(LIMIT, handle.wait(run_id))
        .await
        .expect("run timed out")
        .expect("wait");
    assert_eq!(report.status(), RunStatus::Completed, "{report:#?}");
    let errors = failures(&report, "hang");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].name, WORKER_CRASHED);
    assert!(errors[0].retryable);
    let out: Value = report.task_output("hang").unwrap().parse().unwrap();
    assert_eq!(out["attempt"], 2);
    assert_ne!(out["pid"], json!(pids[0]));
    assert_eq!(exec.worker_pids(), [out["pid"].as_u64().unwrap() as u32]);

    engine.shutdown(Duration::from_secs(5)).await.expect("engine shutdown");
    exec.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_execute_is_forgotten_and_dropping_the_pool_kills_the_workers() {
    if !node_available() {
        return;
    }
    let (exec, _) = spawn_flows(1).await;
    // Attempt 1 of `hang` never answers in time: the dropped future forgets it (and sends
    // `cancel`); the worker stays usable.
    let late =
        tokio::time::timeout(Duration::from_millis(200), exec.execute(task("crashy", "hang")));
    assert!(late.await.is_err());
    assert_eq!(exec.in_flight(), 0);
    let unknown = exec.execute(task("greet", "nope")).await.unwrap_err();
    assert_eq!(unknown.name, "UnknownHandler");
    assert!(!unknown.retryable);

    let pids = exec.worker_pids();
    assert!(pids.iter().all(|&p| alive(p)));
    drop(exec);
    let gone = tokio::time::timeout(LIMIT, async {
        while pids.iter().any(|&p| alive(p)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "workers {pids:?} outlived the executor");
}

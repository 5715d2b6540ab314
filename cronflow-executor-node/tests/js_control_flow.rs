//! Every control-flow builder of the JS SDK through the real engine, real `node` workers and a
//! SQLite file: race (the loser's `ctx.signal` is aborted), forEach with concurrency, batch,
//! while (and its iteration cap), sleep, pause resumed with the token its `onPause` handler
//! received, waitForEvent with a match, subflow (output and failure), cancel, onError, the
//! workflow hooks, and the flow-control options. The workflows are those of
//! `fixtures/control_flow.mjs`; one pool and one engine serve all scenarios, which run
//! concurrently. Skipped with a note when `node` is not on `PATH`.

mod common;

#[path = "js_control_flow/scenarios.rs"]
mod scenarios;
#[path = "js_control_flow/waits.rs"]
mod waits;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{LIMIT, fixture, node_available};
use cronflow_core::{
    Engine, EngineError, EngineHandle, RecordedEvent, RunEvent, RunId, RunReport, Store,
    WorkflowDef,
};
use cronflow_executor_node::NodeExecutor;
use cronflow_store::SqliteStore;
use serde_json::{Value, json};
use tokio::task::JoinSet;

/// What every scenario shares: the engine and a directory for the files handlers write.
pub(crate) struct Ctx {
    pub(crate) handle: EngineHandle,
    root: PathBuf,
}

impl Ctx {
    /// A fresh directory for scenario `name` (handlers get it as `payload.dir`).
    pub(crate) fn dir(&self, name: &str) -> PathBuf {
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir).expect("scenario dir");
        dir
    }

    /// Triggers `workflow` with `payload`.
    pub(crate) async fn start(&self, workflow: &str, payload: Value) -> RunId {
        self.handle
            .trigger(workflow, payload)
            .await
            .unwrap_or_else(|e| panic!("trigger {workflow}: {e}"))
    }

    /// Waits for the end of run `run`, failing after [`LIMIT`].
    pub(crate) async fn finish(&self, run: RunId) -> RunReport {
        tokio::time::timeout(LIMIT, self.handle.wait(run))
            .await
            .unwrap_or_else(|_| panic!("run {run} did not end within {LIMIT:?}"))
            .expect("wait")
    }

    /// Triggers `workflow` and waits for the run's end.
    pub(crate) async fn run(&self, workflow: &str, payload: Value) -> RunReport {
        let run = self.start(workflow, payload).await;
        self.finish(run).await
    }

    /// Waits until run `run` has recorded an event `pred` accepts, failing after [`LIMIT`].
    pub(crate) async fn recorded(&self, run: RunId, what: &str, pred: impl Fn(&RunEvent) -> bool) {
        let polled = tokio::time::timeout(LIMIT, async {
            loop {
                let report = self.handle.report(run).await.expect("report");
                if report.history.iter().any(|e| pred(&e.event)) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        polled.await.unwrap_or_else(|_| panic!("run {run} never recorded {what}"));
    }
}

/// The run's output as JSON.
pub(crate) fn output(report: &RunReport) -> Value {
    let out = report.run.output.as_ref().unwrap_or_else(|| panic!("no output: {report:#?}"));
    out.to_value()
}

/// The output of `task`'s successful attempt as JSON.
pub(crate) fn task_output(report: &RunReport, task: &str) -> Value {
    let out =
        report.task_output(task).unwrap_or_else(|| panic!("{task} did not succeed: {report:#?}"));
    out.to_value()
}

/// The keys of the tasks that succeeded, in the order they did.
pub(crate) fn succeeded(report: &RunReport) -> Vec<String> {
    report
        .history
        .iter()
        .filter_map(|e| match &e.event {
            RunEvent::TaskSucceeded { task, .. } => Some(task.to_string()),
            _ => None,
        })
        .collect()
}

/// The recorded event that `pred` accepts (panics if none does).
pub(crate) fn find<'a>(
    report: &'a RunReport,
    what: &str,
    pred: impl Fn(&RunEvent) -> bool,
) -> &'a RecordedEvent {
    let found = report.history.iter().find(|e| pred(&e.event));
    found.unwrap_or_else(|| panic!("no {what} in the history: {:#?}", report.history))
}

/// The JSON a handler wrote to `path`, once the file exists; fails after [`LIMIT`].
pub(crate) async fn await_file(path: &Path) -> Value {
    let read = tokio::time::timeout(LIMIT, async {
        loop {
            if let Ok(text) = std::fs::read_to_string(path) {
                return serde_json::from_str(&text).expect("JSON file");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    read.await.unwrap_or_else(|_| panic!("{} never appeared", path.display()))
}

/// The JSON a handler wrote to `path` (which must exist now).
pub(crate) fn read_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} was not written: {e}", path.display()));
    serde_json::from_str(&text).expect("JSON file")
}

/// The text of a panic payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload.downcast_ref::<String>().map(String::as_str);
    text.or_else(|| payload.downcast_ref::<&str>().copied()).unwrap_or("(no message)").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_js_control_flow_builder_runs_through_the_engine_on_sqlite() {
    if !node_available() {
        return;
    }
    let (exec, defs) =
        common::spawn(NodeExecutor::builder().module(fixture("control_flow.mjs")).workers(2)).await;
    scenarios::flow_control_options_are_in_the_definitions(&defs);
    let ids: Vec<String> = defs.iter().map(|d| d.id.clone()).collect();

    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("control-flow.db");
    let store = SqliteStore::open(&db).await.expect("open sqlite");
    let engine = Engine::builder()
        .store(store)
        .executor(exec.clone())
        .workflows(defs)
        .start()
        .await
        .expect("the engine accepts every workflow of the module");
    let registered: Vec<String> =
        engine.handle().workflows().into_iter().map(|d: WorkflowDef| d.id).collect();
    for id in &ids {
        assert!(registered.contains(id), "{id} is not registered: {registered:?}");
    }
    let ctx = Arc::new(Ctx { handle: engine.handle(), root: tmp.path().join("files") });

    let mut set = JoinSet::new();
    let mut names = HashMap::new();
    for (name, scenario) in scenarios::all(&ctx) {
        names.insert(set.spawn(scenario).id(), name);
    }
    let mut failed = Vec::new();
    let mut paused_run = None;
    while let Some(joined) = set.join_next_with_id().await {
        match joined {
            Ok((_, Some(run))) => paused_run = Some(run),
            Ok((_, None)) => {}
            Err(e) => {
                let name = names[&e.id()];
                let text = if e.is_panic() { panic_text(&*e.into_panic()) } else { e.to_string() };
                failed.push(format!("{name}: {text}"));
            }
        }
    }
    engine.shutdown(Duration::from_secs(5)).await.expect("engine shutdown");
    exec.shutdown(Duration::from_secs(5)).await;
    assert!(failed.is_empty(), "{} scenario(s) failed:\n{}", failed.len(), failed.join("\n\n"));

    // The resumed pause is durable: reopening the file shows it with its resume payload.
    let store = SqliteStore::open(&db).await.expect("reopen sqlite");
    let run = paused_run.expect("the pause scenario returns its run");
    let report = store.run_report(run).await.expect("read").expect("the paused run is stored");
    waits::assert_resumed_pause(&report);
    store.close().await.expect("close");
}

/// Pauses outlive their engine. One run's `onPause` handler is still running when the engine
/// stops: after a restart on the same SQLite file it runs again with a new token, and the
/// token issued before the restart resumes the run too. Another run's handler had finished:
/// it does not run again, and its token resumes the run after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_pause_survives_an_engine_restart_on_the_sqlite_file() {
    if !node_available() {
        return;
    }
    let (exec, defs) =
        common::spawn(NodeExecutor::builder().module(fixture("control_flow.mjs")).workers(1)).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("restart.db");
    let token_file = tmp.path().join("token");
    let start = |defs: Vec<WorkflowDef>| {
        let exec = exec.clone();
        let db = db.clone();
        async move {
            let store = SqliteStore::open(&db).await.expect("open sqlite");
            let engine = Engine::builder().store(store).executor(exec).workflows(defs);
            engine.start().await.expect("engine start")
        }
    };
    let token = |seen: Value| seen["token"].as_str().expect("token").to_owned();

    let engine = start(defs.clone()).await;
    let payload = json!({ "dir": tmp.path(), "hold": true });
    let run = engine.handle().trigger("cf-pause", payload).await.unwrap();
    let first = token(await_file(&token_file).await);
    await_file(&tmp.path().join("held")).await;
    std::fs::remove_file(&token_file).expect("remove the token file");
    // A second run whose `onPause` handler has finished before the stop: only its token's
    // hash is stored, and the token still resumes it after the restart.
    let done_dir = tmp.path().join("done");
    std::fs::create_dir(&done_dir).expect("dir");
    let done = engine.handle().trigger("cf-pause", json!({ "dir": done_dir })).await.unwrap();
    let done_token = token(await_file(&done_dir.join("token")).await);
    on_pause_recorded(&engine.handle(), done).await;
    engine.shutdown(Duration::from_millis(200)).await.expect("engine shutdown");

    let engine = start(defs).await;
    let handle = engine.handle();
    let second = token(await_file(&token_file).await);
    assert_ne!(first, second, "the restarted pause issues a new token");
    on_pause_recorded(&handle, run).await;
    let paused = handle.paused_runs().await.expect("paused runs");
    let mut paused: Vec<RunId> = paused.iter().map(|p| p.run_id).collect();
    paused.sort();
    let mut expected = vec![run, done];
    expected.sort();
    assert_eq!(paused, expected);
    assert_eq!(handle.resume(&done_token, json!({ "ok": true })).await.expect("resume"), done);
    let report =
        tokio::time::timeout(LIMIT, handle.wait(done)).await.expect("run timed out").expect("wait");
    waits::assert_resumed_pause(&report);
    assert_eq!(report.attempts("approval#on_pause"), 1, "its onPause handler ran once");
    assert_eq!(handle.resume(&first, json!({ "ok": true })).await.expect("resume"), run);
    let report =
        tokio::time::timeout(LIMIT, handle.wait(run)).await.expect("run timed out").expect("wait");
    waits::assert_resumed_pause(&report);
    assert!(report.history.iter().any(|e| matches!(e.event, RunEvent::TokenIssued { .. })));
    let again = handle.resume(&second, json!(null)).await;
    assert!(matches!(again, Err(EngineError::UnknownResumeToken)), "{again:?}");
    engine.shutdown(Duration::from_secs(5)).await.expect("engine shutdown");
    exec.shutdown(Duration::from_secs(5)).await;
}

/// Waits until run `run` has recorded the success of its `onPause` handler.
async fn on_pause_recorded(handle: &EngineHandle, run: RunId) {
    let recorded = tokio::time::timeout(LIMIT, async {
        while handle.report(run).await.unwrap().task_output("approval#on_pause").is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    recorded.await.expect("the onPause handler's success was never recorded");
}

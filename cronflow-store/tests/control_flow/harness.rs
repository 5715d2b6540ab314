//! The databases the tests run on, and bounded ways to wait for what runs do.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cronflow_core::{
    Engine, EngineHandle, InProcessExecutor, RunEvent, RunId, RunQuery, RunRecord, RunReport,
    RunStatus, Wait, WorkflowDef,
};
use cronflow_store::testing::{TestSchema, test_database_url};
use cronflow_store::{PostgresStore, SqliteStore};
use serde_json::Value;
use tempfile::TempDir;

/// The longest anything in these tests may take: a bug fails a test, it does not hang it.
pub(crate) const LIMIT: Duration = Duration::from_secs(10);

/// `n` milliseconds.
pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A fresh durable database for one test: a SQLite file, or a PostgreSQL schema of its own.
pub(crate) enum Db {
    Sqlite(TempDir),
    Postgres(TestSchema),
}

impl Db {
    /// `"SQLite file"` or `"PostgreSQL"`, for assertion messages.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "SQLite file",
            Db::Postgres(_) => "PostgreSQL",
        }
    }

    /// Starts an engine on this database (again, for a restart) with `executor` and
    /// `workflows`. The PostgreSQL store is the real one: shared, so with leases.
    pub(crate) async fn start(
        &self,
        executor: InProcessExecutor,
        workflows: &[WorkflowDef],
    ) -> Engine {
        let builder = Engine::builder().executor(executor).workflows(workflows.to_vec());
        let started = match self {
            Db::Sqlite(dir) => {
                let store = SqliteStore::open(dir.path().join("cronflow.db")).await.unwrap();
                builder.store(store).start().await
            }
            Db::Postgres(schema) => {
                let store = PostgresStore::connect(&schema.url()).await.unwrap();
                builder.store(store).start().await
            }
        };
        started.unwrap_or_else(|e| panic!("{}: the engine does not start: {e}", self.name()))
    }
}

/// Runs `check` on a fresh SQLite file, then on a fresh PostgreSQL schema when
/// `CRONFLOW_TEST_DATABASE_URL` is set (saying that part is skipped otherwise).
pub(crate) async fn on_every_database<F, Fut>(check: F)
where
    F: Fn(Db) -> Fut,
    Fut: Future<Output = ()>,
{
    check(Db::Sqlite(tempfile::tempdir().unwrap())).await;
    if let Some(url) = test_database_url() {
        let schema = TestSchema::create(&url).await.expect("create a test schema");
        check(Db::Postgres(schema)).await;
    }
}

/// `fut`'s output, or a panic naming `what` after [`LIMIT`].
pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Stops `engine` at once (tasks in flight are abandoned, as in a crash after the last
/// commit); its runs stay in the store for the next engine.
pub(crate) async fn stop(engine: Engine) {
    within("the engine stops", engine.shutdown(Duration::ZERO)).await.expect("shutdown");
}

/// Waits for run `run` to finish.
pub(crate) async fn finished(handle: &EngineHandle, run: RunId) -> RunReport {
    within("the run finishes", handle.wait(run)).await.expect("wait for the run")
}

/// Waits for run `run` to finish and checks that it completed.
pub(crate) async fn completed(handle: &EngineHandle, run: RunId) -> RunReport {
    let report = finished(handle, run).await;
    assert_eq!(report.status(), RunStatus::Completed, "{report:#?}");
    report
}

/// Waits for run `run` to finish and checks its status.
pub(crate) async fn ended(handle: &EngineHandle, run: RunId, status: RunStatus) -> RunReport {
    let report = finished(handle, run).await;
    assert_eq!(report.status(), status, "{report:#?}");
    report
}

/// A completed run's output.
pub(crate) fn output(report: &RunReport) -> Value {
    report.run.output.as_ref().unwrap_or_else(|| panic!("no output: {report:#?}")).to_value()
}

/// Polls the store until run `run`'s report satisfies `done`.
pub(crate) async fn until(
    handle: &EngineHandle,
    run: RunId,
    what: &str,
    done: impl Fn(&RunReport) -> bool,
) -> RunReport {
    within(what, async {
        loop {
            let report = handle.report(run).await.expect("report");
            if done(&report) {
                return report;
            }
            tokio::time::sleep(ms(10)).await;
        }
    })
    .await
}

/// Polls `done` until it holds.
pub(crate) async fn eventually(what: &str, done: impl Fn() -> bool) {
    within(what, async {
        while !done() {
            tokio::time::sleep(ms(5)).await;
        }
    })
    .await;
}

/// Whether task `key` succeeded in the report's history.
pub(crate) fn succeeded(report: &RunReport, key: &str) -> bool {
    report.task_output(key).is_some()
}

/// The waits started in the history, by key.
pub(crate) fn waits(report: &RunReport) -> Vec<(String, Wait)> {
    report
        .history
        .iter()
        .filter_map(|e| match &e.event {
            RunEvent::WaitStarted { wait, on } => Some((wait.to_string(), on.clone())),
            _ => None,
        })
        .collect()
}

/// Whether wait `key` has started.
pub(crate) fn waiting_at(report: &RunReport, key: &str) -> bool {
    waits(report).iter().any(|(k, _)| k == key)
}

/// The child run of the subflow `key` (from its `wait_started` event).
pub(crate) fn child_of(report: &RunReport, key: &str) -> RunId {
    waits(report)
        .into_iter()
        .find_map(|(k, on)| match on {
            Wait::Subflow { child, .. } if k == key => Some(child),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no subflow `{key}` started: {report:#?}"))
}

/// Every run of `workflow` in the store.
pub(crate) async fn runs_of(handle: &EngineHandle, workflow: &str) -> Vec<RunRecord> {
    let query = RunQuery { workflow_id: Some(workflow.into()), ..RunQuery::default() };
    handle.list_runs(&query).await.expect("list runs")
}

/// Handler calls counted by a name (a handler, a task key, an item...), shared by the
/// executors of every engine a test starts.
#[derive(Clone, Default)]
pub(crate) struct Calls(Arc<Mutex<HashMap<String, usize>>>);

impl Calls {
    /// Counts one call of `name`; returns how many there were before it.
    pub(crate) fn add(&self, name: impl Into<String>) -> usize {
        let mut calls = self.0.lock().unwrap();
        let n = calls.entry(name.into()).or_default();
        *n += 1;
        *n - 1
    }

    /// How many calls of `name` were counted.
    pub(crate) fn get(&self, name: &str) -> usize {
        self.0.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

//! Shared by the webhook tests: a real engine on a real database with a recording handler,
//! the webhook server in front of it on 127.0.0.1, and a small HTTP client.
#![allow(dead_code)]

mod backends;
mod client;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[allow(unused_imports)]
pub(crate) use backends::*;
#[allow(unused_imports)]
pub(crate) use client::*;

use cronflow_core::{
    Engine, EngineHandle, InProcessExecutor, RunId, RunQuery, RunReport, RunStatus, TaskError,
    TriggerDef, Workflow, WorkflowDef,
};
use cronflow_triggers::{WebhookServer, Webhooks};
use serde_json::Value;

/// What the `record` handler saw of one task.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) run_id: RunId,
    pub(crate) workflow_id: String,
    pub(crate) payload: Value,
    /// `task.context.trigger`.
    pub(crate) trigger: Value,
}

/// Every task the `record` handler ran, in order.
pub(crate) type SeenLog = Arc<Mutex<Vec<Seen>>>;

/// An executor whose handler `record` logs its task and returns the payload.
pub(crate) fn recording_executor(log: SeenLog) -> InProcessExecutor {
    InProcessExecutor::new().handler("record", move |task| {
        let log = Arc::clone(&log);
        async move {
            log.lock().unwrap().push(Seen {
                run_id: task.run_id,
                workflow_id: task.workflow_id.to_string(),
                payload: task.context.payload.to_value(),
                trigger: task.context.trigger.to_value(),
            });
            Ok::<_, TaskError>(task.context.payload.clone())
        }
    })
}

/// A one-step workflow (`record`) started by the webhook `trigger` (a JSON object with
/// `path` and any settings; `type` is added).
pub(crate) fn hook(id: &str, mut trigger: Value) -> WorkflowDef {
    trigger["type"] = "webhook".into();
    let trigger: TriggerDef = serde_json::from_value(trigger).expect("a webhook trigger");
    Workflow::new(id).trigger(trigger).step("record").build().expect("a valid workflow")
}

/// The engine's payload limit in the tests: small, so that the engine's own `413` shows.
pub(crate) const ENGINE_MAX_PAYLOAD: usize = 2048;

/// An engine with the recording executor on `backend`, its webhook server on
/// 127.0.0.1 (any free port), and the log of handled tasks.
pub(crate) struct Harness {
    pub(crate) engine: Option<Engine>,
    pub(crate) handle: EngineHandle,
    pub(crate) server: Option<WebhookServer>,
    pub(crate) addr: SocketAddr,
    pub(crate) seen: SeenLog,
    pub(crate) backend: Backend,
}

impl Harness {
    /// Starts everything; `webhooks` configures the builder (e.g. a manual token).
    pub(crate) async fn start(
        backend: Backend,
        workflows: Vec<WorkflowDef>,
        webhooks: impl FnOnce(Webhooks) -> Webhooks,
    ) -> Self {
        let seen = SeenLog::default();
        let engine = backend
            .start(recording_executor(Arc::clone(&seen)), |b| {
                b.workflows(workflows).max_payload_bytes(ENGINE_MAX_PAYLOAD)
            })
            .await;
        let handle = engine.handle();
        let builder = Webhooks::new(handle.clone()).addr("127.0.0.1:0".parse().unwrap());
        let server = webhooks(builder).serve().await.expect("the webhook server starts");
        let addr = server.local_addr();
        Self { engine: Some(engine), handle, server: Some(server), addr, seen, backend }
    }

    /// Sends `req` to the server.
    pub(crate) async fn send(&self, req: Req) -> Reply {
        send(self.addr, req).await
    }

    /// Waits for run `id` to finish and checks it completed.
    pub(crate) async fn completed(&self, id: RunId) -> RunReport {
        let report = tokio::time::timeout(TIMEOUT, self.handle.wait(id))
            .await
            .expect("the run finishes in time")
            .expect("wait");
        assert_eq!(report.status(), RunStatus::Completed, "{}: {report:?}", self.backend.name());
        report
    }

    /// How many runs of `workflow` the store holds.
    pub(crate) async fn runs_of(&self, workflow: &str) -> usize {
        let query = RunQuery { workflow_id: Some(workflow.into()), ..RunQuery::default() };
        self.handle.list_runs(&query).await.expect("list runs").len()
    }

    /// What the handler saw of run `id` (panics if it did not run).
    pub(crate) fn seen(&self, id: RunId) -> Seen {
        let log = self.seen.lock().unwrap();
        log.iter()
            .find(|s| s.run_id == id)
            .cloned()
            .unwrap_or_else(|| panic!("run {id} did not run"))
    }

    /// Shuts the server, then the engine, down; returns the database (to start again on).
    pub(crate) async fn stop(mut self) -> Backend {
        if let Some(server) = self.server.take() {
            server.shutdown(Duration::from_secs(5)).await.expect("graceful shutdown");
        }
        if let Some(engine) = self.engine.take() {
            engine.shutdown(Duration::from_secs(5)).await.expect("engine shutdown");
        }
        self.backend
    }
}

//! What the [`EngineHandle`] offers for runs that wait: resuming pauses and listing them.
//! (Events are published in `sources.rs`.)

use serde::Serialize;
use tokio::sync::oneshot;

use crate::engine::EngineHandle;
use crate::engine::driver::Input;
use crate::engine::waits::PausedRun;
use crate::error::EngineError;
use crate::id::{RunId, TaskKey};
use crate::json::Json;

impl EngineHandle {
    /// Resumes the `pause` that issued `token` (the text its `on_pause` handler received);
    /// `payload` becomes the pause node's output. Returns the run once the resume is durable.
    ///
    /// A token works once: resuming again, or after the pause timed out or its run ended,
    /// fails with [`EngineError::UnknownResumeToken`]. Only the token's SHA-256 is stored.
    ///
    /// ```
    /// # use std::sync::{Arc, Mutex};
    /// # use cronflow_core::{Engine, InProcessExecutor, MemoryStore, TaskError, Workflow, Json};
    /// # use serde_json::json;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (tx, mut token) = tokio::sync::mpsc::unbounded_channel();
    /// let executor = InProcessExecutor::new().handler("ask", move |task| {
    ///     let tx = tx.clone();
    ///     async move {
    ///         // A real handler would e-mail an approval link carrying the token.
    ///         let _ = tx.send(task.context.token.clone().unwrap_or_default());
    ///         Ok::<_, TaskError>(())
    ///     }
    /// });
    /// let flow = Workflow::new("expense").pause_with("approve", |p| p.on_pause("ask")).build()?;
    /// let engine =
    ///     Engine::builder().store(MemoryStore::new()).executor(executor).workflow(flow).start().await?;
    /// let handle = engine.handle();
    /// let run = handle.trigger("expense", json!({"amount": 120})).await?;
    /// let token = token.recv().await.unwrap();
    /// handle.resume(&token, json!({"approved": true})).await?;
    /// let report = handle.wait(run).await?;
    /// assert_eq!(report.run.output.unwrap().as_str(), r#"{"approved":true}"#);
    /// assert!(handle.resume(&token, json!(null)).await.is_err()); // used up
    /// # Ok(()) }
    /// ```
    pub async fn resume(&self, token: &str, payload: impl Serialize) -> Result<RunId, EngineError> {
        let payload = self.checked_payload(&payload)?;
        let (reply, answer) = oneshot::channel();
        self.send(Input::Resume { token: token.to_owned(), payload, reply })?;
        answer.await.map_err(|_| EngineError::ShuttingDown)?
    }

    /// Resumes run `run_id`'s open pause at `node` (its node id, with the loop iteration
    /// inside loops, as [`PausedRun::node`] shows it) without its token: for an operator
    /// who can see the run. Fails with [`EngineError::NoOpenPause`] if it is not paused there.
    pub async fn resume_wait(
        &self,
        run_id: RunId,
        node: &str,
        payload: impl Serialize,
    ) -> Result<RunId, EngineError> {
        let payload = self.checked_payload(&payload)?;
        let (reply, answer) = oneshot::channel();
        self.send(Input::ResumeWait { run_id, node: TaskKey::new(node), payload, reply })?;
        answer.await.map_err(|_| EngineError::ShuttingDown)?
    }

    /// `payload` as JSON, refused over [`EngineBuilder::max_payload_bytes`](crate::EngineBuilder::max_payload_bytes)
    /// like a trigger's: it becomes a node's output, stored in the history.
    fn checked_payload(&self, payload: &impl Serialize) -> Result<Json, EngineError> {
        let payload = Json::from_value(payload)?;
        let limit = self.shared.config.max_payload_bytes;
        if payload.len() > limit {
            return Err(EngineError::PayloadTooLarge { size: payload.len(), limit });
        }
        Ok(payload)
    }

    /// Every open pause of the runs this engine executes, oldest run first.
    pub async fn paused_runs(&self) -> Result<Vec<PausedRun>, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.send(Input::Paused { reply })?;
        answer.await.map_err(|_| EngineError::ShuttingDown)
    }
}

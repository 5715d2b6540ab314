//! What reaches the driver ([`Input`]), what a watcher is told ([`WatchEnd`]), and how
//! recorded events are logged.

use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::engine::handle::Triggered;
use crate::engine::waits::PausedRun;
use crate::error::EngineError;
use crate::event::{RunEvent, RunStatus};
use crate::id::{RunId, TaskKey};
use crate::json::Json;
use crate::machine::RunDefinition;
use crate::store::ClaimedRun;
use crate::task::TaskError;

/// Where the answer to a trigger goes.
pub(crate) type TriggerReply = oneshot::Sender<Result<Triggered, EngineError>>;

/// Everything that reaches the driver.
pub(crate) enum Input {
    Trigger {
        workflow_id: String,
        payload: Json,
        key: Option<String>,
        context: Option<Json>,
        reply: TriggerReply,
    },
    TaskDone {
        run_id: RunId,
        key: TaskKey,
        attempt: u32,
        result: Result<Json, TaskError>,
    },
    /// Answered `true`, once durable, if the run was active here and is now cancelled.
    Cancel {
        run_id: RunId,
        reason: Option<String>,
        reply: oneshot::Sender<bool>,
    },
    /// Answered when the run is not, or no longer, active here.
    Watch {
        run_id: RunId,
        reply: oneshot::Sender<WatchEnd>,
    },
    Register {
        def: Arc<RunDefinition>,
        reply: oneshot::Sender<()>,
    },
    Shutdown {
        deadline: Instant,
    },
    /// Runs the claimer took for this instance.
    Claimed(Vec<ClaimedRun>),
    /// The heartbeat renewed these leases; it asked at `asked_at`.
    Held {
        held: Vec<(RunId, u64)>,
        asked_at: Instant,
    },
    HeartbeatFailed,
    /// Resume the pause holding this token; answered once durable.
    Resume {
        token: String,
        payload: Json,
        reply: oneshot::Sender<Result<RunId, EngineError>>,
    },
    /// Resume run `run_id`'s pause `node`; answered once durable.
    ResumeWait {
        run_id: RunId,
        node: TaskKey,
        payload: Json,
        reply: oneshot::Sender<Result<RunId, EngineError>>,
    },
    /// Deliver a published event to the runs waiting for it; answered (with how many waits
    /// it ended) once durable.
    Publish {
        name: String,
        payload: Json,
        reply: oneshot::Sender<usize>,
    },
    /// List the open pauses.
    Paused {
        reply: oneshot::Sender<Vec<PausedRun>>,
    },
}

/// Why a watched run is no longer active on this instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchEnd {
    /// It finished, or was never active here: the store has its final state.
    Done,
    /// Another instance took it over: the store will have its final state later.
    Moved,
    /// This instance claimed it but could not resume it (missing definition, bad history).
    Unresumable,
}

pub(crate) fn log_event(run_id: RunId, event: &RunEvent) {
    match event {
        RunEvent::RunStarted => info!(%run_id, "run started"),
        RunEvent::TaskSucceeded { task, attempt, .. } => {
            debug!(%run_id, node_id = task.node_id(), task = %task, attempt, "task succeeded")
        }
        RunEvent::TaskFailed { task, attempt, error, retry_at: Some(at), .. } => {
            warn!(%run_id, node_id = task.node_id(), task = %task, attempt, %error, retry_at = %at,
                "task failed; retry scheduled")
        }
        RunEvent::TaskFailed { task, attempt, error, retry_at: None, .. } => {
            warn!(%run_id, node_id = task.node_id(), task = %task, attempt, %error, "task failed")
        }
        RunEvent::RunCompleted { .. } => {
            info!(%run_id, status = RunStatus::Completed.as_str(), "run completed")
        }
        RunEvent::RunFailed { failure } => {
            warn!(%run_id, status = RunStatus::Failed.as_str(), reason = %failure.message, "run failed")
        }
        RunEvent::RunCancelled { reason } => {
            info!(%run_id, status = RunStatus::Cancelled.as_str(), reason = reason.as_deref().unwrap_or(""), "run cancelled")
        }
        RunEvent::WaitStarted { wait, .. } => debug!(%run_id, wait = %wait, "wait started"),
        RunEvent::WaitEnded { wait, outcome } => {
            debug!(%run_id, wait = %wait, outcome = ?outcome, "wait ended")
        }
        RunEvent::RunAdmitted => debug!(%run_id, "run admitted"),
        other => debug!(%run_id, kind = other.kind(), "recorded"),
    }
}

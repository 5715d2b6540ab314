//! The run history: [`RunEvent`]s appended to a run's log, and run status records.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::{RunId, TaskKey};
use crate::json::Json;
use crate::task::TaskError;

/// One entry of a run's append-only history (the `run_events` table).
///
/// The history is the audit trail and the source of truth: replaying it through the run state
/// machine rebuilds the run's state exactly. Each event is recorded once; its `seq` is unique
/// within the run, so a store rejects a second copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunEvent {
    /// The run was accepted (its payload is on the run record).
    RunStarted,
    /// A task returned an output.
    TaskSucceeded {
        /// Which task.
        task: TaskKey,
        /// The attempt that succeeded (1-based).
        attempt: u32,
        /// When that attempt was dispatched.
        started_at: DateTime<Utc>,
        /// Its output.
        output: Json,
    },
    /// A task attempt failed (handler error, timeout or lost worker).
    TaskFailed {
        /// Which task.
        task: TaskKey,
        /// The attempt that failed (1-based).
        attempt: u32,
        /// When that attempt was dispatched.
        started_at: DateTime<Utc>,
        /// What went wrong.
        error: TaskError,
        /// When the next attempt is due; `None` when the failure is final.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_at: Option<DateTime<Utc>>,
    },
    /// The run finished with an output.
    RunCompleted {
        /// Output of the last node.
        output: Json,
    },
    /// The run failed.
    RunFailed {
        /// Why.
        failure: RunFailure,
    },
    /// The run was cancelled.
    RunCancelled {
        /// The reason given, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A `sleep`, `pause`, `wait_for_event` or `subflow` began waiting.
    WaitStarted {
        /// The waiting node (with its loop iteration, like a task key).
        wait: TaskKey,
        /// What it waits for.
        on: Wait,
    },
    /// A `pause` issued one more resume token (its `on_pause` handler ran again after a
    /// restart, and the first token's text was only in memory). Every issued token resumes it.
    TokenIssued {
        /// The pause.
        wait: TaskKey,
        /// SHA-256 of the token, hex.
        token_hash: String,
    },
    /// A wait ended.
    WaitEnded {
        /// The waiting node.
        wait: TaskKey,
        /// How it ended.
        outcome: WaitOutcome,
    },
    /// The first branch of a `race` to settle won; the others were cancelled.
    BranchWon {
        /// The race node (with its loop iteration).
        node: TaskKey,
        /// The winning branch's index.
        branch: u32,
    },
    /// A flow-controlled run (concurrency, rate limit or debounce) was let through: its
    /// nodes start now.
    RunAdmitted,
    /// A debounced trigger folded into this waiting run: the run will use this payload.
    TriggerMerged {
        /// The newer payload.
        payload: Json,
    },
}

/// What a [`RunEvent::WaitStarted`] waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Wait {
    /// A durable timer.
    Sleep {
        /// When it fires.
        until: DateTime<Utc>,
    },
    /// A human: resumed with a token.
    Pause {
        /// SHA-256 of the resume token, hex (the token itself is never stored).
        token_hash: String,
        /// When the pause times out, if it has a timeout.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_at: Option<DateTime<Utc>>,
    },
    /// A published event.
    Event {
        /// The event name.
        name: String,
        /// Fields the payload must contain with these values.
        #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
        match_fields: Option<serde_json::Map<String, serde_json::Value>>,
        /// When the wait times out, if it has a timeout.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_at: Option<DateTime<Utc>>,
    },
    /// A child run of another workflow.
    Subflow {
        /// The child run.
        child: RunId,
        /// Its workflow.
        workflow: String,
    },
}

impl Wait {
    /// When the wait ends by itself (a sleep's time, a timeout), if ever.
    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        match self {
            Wait::Sleep { until } => Some(*until),
            Wait::Pause { timeout_at, .. } | Wait::Event { timeout_at, .. } => *timeout_at,
            Wait::Subflow { .. } => None,
        }
    }
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WaitOutcome {
    /// A sleep's time came.
    Elapsed,
    /// A pause was resumed, or a matching event arrived, with this payload (the node's output).
    Resumed {
        /// The resume or event payload.
        payload: Json,
    },
    /// A pause or event wait timed out.
    TimedOut,
    /// The child run completed.
    ChildCompleted {
        /// Its output.
        output: Json,
    },
    /// The child run failed.
    ChildFailed {
        /// Its failure.
        failure: RunFailure,
    },
    /// The child run was cancelled.
    ChildCancelled {
        /// The reason given, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The wait was in a losing `race` branch.
    Abandoned,
}

impl RunEvent {
    /// The event's kind, as stored in the `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            RunEvent::RunStarted => "run_started",
            RunEvent::TaskSucceeded { .. } => "task_succeeded",
            RunEvent::TaskFailed { .. } => "task_failed",
            RunEvent::RunCompleted { .. } => "run_completed",
            RunEvent::RunFailed { .. } => "run_failed",
            RunEvent::RunCancelled { .. } => "run_cancelled",
            RunEvent::WaitStarted { .. } => "wait_started",
            RunEvent::TokenIssued { .. } => "token_issued",
            RunEvent::WaitEnded { .. } => "wait_ended",
            RunEvent::BranchWon { .. } => "branch_won",
            RunEvent::RunAdmitted => "run_admitted",
            RunEvent::TriggerMerged { .. } => "trigger_merged",
        }
    }

    /// The task the event is about, if any.
    pub fn task(&self) -> Option<&TaskKey> {
        match self {
            RunEvent::TaskSucceeded { task, .. } | RunEvent::TaskFailed { task, .. } => Some(task),
            _ => None,
        }
    }

    /// The attempt the event is about, if any.
    pub fn attempt(&self) -> Option<u32> {
        match self {
            RunEvent::TaskSucceeded { attempt, .. } | RunEvent::TaskFailed { attempt, .. } => {
                Some(*attempt)
            }
            _ => None,
        }
    }

    /// The run status this event moves the run to, if it ends the run.
    pub fn terminal_status(&self) -> Option<RunStatus> {
        match self {
            RunEvent::RunCompleted { .. } => Some(RunStatus::Completed),
            RunEvent::RunFailed { .. } => Some(RunStatus::Failed),
            RunEvent::RunCancelled { .. } => Some(RunStatus::Cancelled),
            _ => None,
        }
    }
}

/// A [`RunEvent`] with its position in the run's log and the time it was recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Position in the run's log, from 0, without gaps.
    pub seq: u32,
    /// When the engine recorded it.
    pub at: DateTime<Utc>,
    /// The event.
    #[serde(flatten)]
    pub event: RunEvent,
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFailure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// A sentence for humans.
    pub message: String,
    /// The task whose failure failed the run, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskKey>,
    /// That task's last error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
}

/// The kinds of [`RunFailure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// A task failed and no retry was left (or its error was not retryable).
    TaskFailed,
    /// The whole-run timeout expired.
    RunTimedOut,
    /// A `pause` or `wait_for_event` timed out with `on_timeout: fail`.
    WaitTimedOut,
    /// A node could not go on: a `while` past `max_iterations`, items that are not an array,
    /// a subflow whose workflow is unknown.
    NodeFailed,
    /// A `subflow`'s child run failed.
    ChildFailed,
}

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Accepted and not finished (executing, waiting for a retry, or interrupted by a stop).
    Running,
    /// Finished with an output.
    Completed,
    /// Finished with a failure.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl RunStatus {
    /// Whether the run has finished.
    pub fn is_terminal(self) -> bool {
        !matches!(self, RunStatus::Running)
    }

    /// The status as stored in the `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Parses [`RunStatus::as_str`]'s form.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "running" => RunStatus::Running,
            "completed" => RunStatus::Completed,
            "failed" => RunStatus::Failed,
            "cancelled" => RunStatus::Cancelled,
            _ => return None,
        })
    }
}

/// A run as the store keeps it (without its history).
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// The run.
    pub id: RunId,
    /// Its workflow.
    pub workflow_id: String,
    /// The stored revision of the workflow definition the run executes.
    pub revision: u32,
    /// Current status.
    pub status: RunStatus,
    /// The trigger payload.
    pub payload: Json,
    /// Output, once completed.
    pub output: Option<Json>,
    /// Failure, once failed.
    pub failure: Option<RunFailure>,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// The trigger context it was started with, if any
    /// ([`TriggerOptions::context`](crate::TriggerOptions)).
    pub context: Option<Json>,
}

/// A finished or running run with its full history: what [`EngineHandle::wait`] returns.
///
/// [`EngineHandle::wait`]: crate::EngineHandle::wait
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// The run record.
    pub run: RunRecord,
    /// Every recorded event, in order.
    pub history: Vec<RecordedEvent>,
}

impl RunReport {
    /// The run's status.
    pub fn status(&self) -> RunStatus {
        self.run.status
    }

    /// The output of the successful attempt of `task`, if it succeeded.
    pub fn task_output(&self, task: &str) -> Option<&Json> {
        self.history.iter().find_map(|e| match &e.event {
            RunEvent::TaskSucceeded { task: t, output, .. } if t.as_str() == task => Some(output),
            _ => None,
        })
    }

    /// How many attempts of `task` were recorded (succeeded or failed).
    pub fn attempts(&self, task: &str) -> usize {
        self.history.iter().filter(|e| e.event.task().is_some_and(|t| t.as_str() == task)).count()
    }
}

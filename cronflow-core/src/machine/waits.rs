//! Nodes that wait for something outside the run: `sleep` (a time), `pause` (a resume with a
//! token), `wait_for_event` (a published event) and `subflow` (a child run). Each records a
//! `wait_started` event; the signal that ends it (`signals.rs`) records `wait_ended`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::eval::{Call, Flow, Scope, TaskFlow, node_failure, task_failure};
use super::{Command, RunMachine};
use crate::event::{FailureKind, RunEvent, Wait, WaitOutcome};
use crate::id::{RunId, TaskKey};
use crate::json::Json;
use crate::task::TaskKind;
use crate::wdo::{OnTimeout, PauseNode, SleepNode, SubflowNode, WaitForEventNode};

/// A fresh resume token: 64 hex digits, 244 random bits (two UUID v4s).
pub(crate) fn new_resume_token() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// The SHA-256 of a resume token, hex: what the history and the store keep instead of it.
///
/// ```
/// let hash = cronflow_core::token_hash("secret");
/// assert_eq!(hash.len(), 64);
/// ```
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn after(now: DateTime<Utc>, duration: Option<std::time::Duration>) -> Option<DateTime<Utc>> {
    let at = now + chrono::Duration::from_std(duration?).ok()?;
    // Whole microseconds, the precision stores keep, so replay sees the same time.
    Some(at - chrono::Duration::nanoseconds(i64::from(at.timestamp_subsec_nanos() % 1000)))
}

impl RunMachine {
    /// The wait `key`'s outcome: `Some(None)` while open, `None` if it has not started.
    fn wait_outcome(&self, key: &str) -> Option<Option<&WaitOutcome>> {
        self.waits.get(key).map(|w| w.outcome.as_ref())
    }

    fn start_wait(&mut self, now: DateTime<Utc>, key: TaskKey, on: Wait, out: &mut Vec<Command>) {
        self.record(now, RunEvent::WaitStarted { wait: key, on }, out);
    }

    /// The node's output after a pause or event wait ended.
    fn waited(&self, id: &str, what: &str, outcome: &WaitOutcome, on_timeout: OnTimeout) -> Flow {
        match (outcome, on_timeout) {
            (WaitOutcome::Resumed { payload }, _) => Flow::Done(payload.clone()),
            (WaitOutcome::TimedOut, OnTimeout::Continue) => Flow::Done(Json::null()),
            (WaitOutcome::TimedOut, OnTimeout::Fail) => Flow::Failed(node_failure(
                FailureKind::WaitTimedOut,
                format!("{what} `{id}` timed out"),
            )),
            // Abandoned waits are in losing race branches, which are not walked again.
            _ => Flow::Pending,
        }
    }

    pub(super) fn eval_sleep(
        &mut self,
        node: &SleepNode,
        last: &Json,
        scope: &Scope,
        now: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) -> Flow {
        let key = scope.key(&node.id);
        match self.wait_outcome(&key) {
            Some(Some(WaitOutcome::Elapsed)) => return Flow::Done(last.clone()),
            Some(_) => return Flow::Pending,
            None => {}
        }
        let until = match (&node.until, node.duration) {
            (Some(until), _) => match DateTime::parse_from_rfc3339(until) {
                Ok(at) => at.with_timezone(&Utc),
                Err(e) => {
                    let message = format!("`{}`: bad `until` time {until:?}: {e}", node.id);
                    return Flow::Failed(node_failure(FailureKind::NodeFailed, message));
                }
            },
            (None, duration) => after(now, duration).unwrap_or(now),
        };
        if until <= now {
            // A time already past: nothing to wait for, and replay agrees (it is absolute).
            if node.until.is_some() {
                return Flow::Done(last.clone());
            }
        }
        self.start_wait(now, TaskKey::new(key), Wait::Sleep { until }, out);
        Flow::Pending
    }

    pub(super) fn eval_pause(
        &mut self,
        node: &PauseNode,
        _last: &Json,
        scope: &Scope,
        now: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) -> Flow {
        let key = TaskKey::new(scope.key(&node.id));
        // An `on_pause` that failed for good while the pause was open fails the node for
        // good: a resume or a timeout recorded after that failure does not undo it (the
        // `on_failure` hook may be running). One still running when the pause ended is ignored.
        if node.on_pause.is_some() {
            let handler_key = scope.tagged(&node.id, "on_pause");
            if let Some(state) = self.tasks.get(handler_key.as_str())
                && let Some(Err(error)) = &state.outcome
            {
                let ended = self.waits.get(&key).and_then(|w| w.ended_seq);
                if ended.is_none_or(|ended| ended > state.settled_seq) {
                    let what = format!("the on_pause handler of `{}`", node.id);
                    let (error, attempts) = (error.clone(), state.failures);
                    return Flow::Failed(task_failure(what, &handler_key, error, attempts));
                }
            }
        }
        match self.wait_outcome(key.as_str()) {
            Some(Some(outcome)) => {
                let outcome = outcome.clone();
                return self.waited(&node.id, "pause", &outcome, node.on_timeout);
            }
            Some(None) => {}
            None => {
                let token = new_resume_token();
                let on = Wait::Pause {
                    token_hash: token_hash(&token),
                    timeout_at: after(now, node.timeout),
                };
                self.start_wait(now, key.clone(), on, out);
                self.tokens.insert(key.clone(), Arc::from(token));
            }
        }
        let Some(handler) = &node.on_pause else { return Flow::Pending };
        let handler_key = scope.tagged(&node.id, "on_pause");
        if self.next_attempt(&handler_key, now).is_ok() && !self.tokens.contains_key(&key) {
            // The handler runs (again) but the token's text was lost with the process that
            // issued it: issue another one (every issued token stays valid).
            let token = new_resume_token();
            let event = RunEvent::TokenIssued { wait: key.clone(), token_hash: token_hash(&token) };
            self.record(now, event, out);
            self.tokens.insert(key.clone(), Arc::from(token));
        }
        let token = self.tokens.get(&key).cloned();
        let call = Call { token, ..Call::new(&node.id, handler, TaskKind::OnPause) };
        match self.eval_task(&handler_key, call, &Json::null(), scope, now, out) {
            TaskFlow::Failed(error, attempts) => {
                let what = format!("the on_pause handler of `{}`", node.id);
                Flow::Failed(task_failure(what, &handler_key, error, attempts))
            }
            TaskFlow::Done(_) | TaskFlow::Pending => Flow::Pending,
        }
    }

    pub(super) fn eval_wait_for_event(
        &mut self,
        node: &WaitForEventNode,
        _last: &Json,
        scope: &Scope,
        now: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) -> Flow {
        let key = scope.key(&node.id);
        match self.wait_outcome(&key) {
            Some(Some(outcome)) => {
                let outcome = outcome.clone();
                return self.waited(&node.id, "wait_for_event", &outcome, node.on_timeout);
            }
            Some(None) => return Flow::Pending,
            None => {}
        }
        let on = Wait::Event {
            name: node.event.clone(),
            match_fields: node.match_fields.clone(),
            timeout_at: after(now, node.timeout),
        };
        self.start_wait(now, TaskKey::new(key), on, out);
        Flow::Pending
    }

    pub(super) fn eval_subflow(
        &mut self,
        node: &SubflowNode,
        last: &Json,
        scope: &Scope,
        now: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) -> Flow {
        let key = scope.key(&node.id);
        match self.wait_outcome(&key) {
            Some(Some(outcome)) => {
                return match outcome {
                    WaitOutcome::ChildCompleted { output } => Flow::Done(output.clone()),
                    WaitOutcome::ChildFailed { failure } => Flow::Failed(node_failure(
                        FailureKind::ChildFailed,
                        format!("subflow `{}`: {}", node.id, failure.message),
                    )),
                    WaitOutcome::ChildCancelled { reason } => Flow::Cancelled(Some(format!(
                        "subflow `{}`: the child run was cancelled{}",
                        node.id,
                        reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
                    ))),
                    _ => Flow::Pending,
                };
            }
            Some(None) => return Flow::Pending,
            None => {}
        }
        let payload = match &node.payload {
            None => self.payload.clone(),
            Some(handler) => {
                let payload_key = scope.tagged(&node.id, "payload");
                let call = Call::new(&node.id, handler, TaskKind::Payload);
                match self.eval_task(&payload_key, call, last, scope, now, out) {
                    TaskFlow::Done(payload) => payload,
                    TaskFlow::Pending => return Flow::Pending,
                    TaskFlow::Failed(error, attempts) => {
                        let what = format!("the payload handler of `{}`", node.id);
                        return Flow::Failed(task_failure(what, &payload_key, error, attempts));
                    }
                }
            }
        };
        let child = RunId::new();
        let key = TaskKey::new(key);
        let on = Wait::Subflow { child, workflow: node.workflow.clone() };
        self.start_wait(now, key.clone(), on, out);
        out.push(Command::StartRun {
            child,
            workflow: node.workflow.clone(),
            payload,
            parent_wait: key,
        });
        Flow::Pending
    }
}

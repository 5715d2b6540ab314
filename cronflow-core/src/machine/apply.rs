//! The one place where recorded events change a run's state, live and in replay alike.

use std::sync::Arc;

use super::{RunMachine, WaitState};
use crate::event::{RunEvent, Wait};

impl RunMachine {
    pub(super) fn apply(&mut self, event: &RunEvent) {
        match event {
            RunEvent::RunStarted => {}
            RunEvent::TaskSucceeded { task, attempt, output, .. } => {
                let state = self.tasks.entry(task.clone()).or_default();
                if let Some(at) = state.retry_at {
                    self.retries.remove(&(at, task.clone()));
                }
                state.failures = attempt.saturating_sub(1);
                state.retry_at = None;
                state.in_flight = None;
                state.outcome = Some(Ok(output.clone()));
                state.settled_seq = self.recorded;
                // Only steps outside loops are visible by their id to every later task;
                // a loop body's steps are seen by its own iteration (see `Scope`).
                if !task.as_str().contains(['#', '@']) {
                    Arc::make_mut(&mut self.outputs).insert(task.to_string(), output.clone());
                }
            }
            RunEvent::TaskFailed { task, attempt, error, retry_at, .. } => {
                let state = self.tasks.entry(task.clone()).or_default();
                if let Some(at) = state.retry_at {
                    self.retries.remove(&(at, task.clone()));
                }
                state.failures = *attempt;
                state.in_flight = None;
                state.retry_at = *retry_at;
                match retry_at {
                    Some(at) => {
                        self.retries.insert((*at, task.clone()));
                    }
                    None => {
                        state.outcome = Some(Err(error.clone()));
                        state.settled_seq = self.recorded;
                    }
                }
            }
            RunEvent::WaitStarted { wait, on } => {
                if let Some(at) = on.deadline() {
                    self.wait_deadlines.insert((at, wait.clone()));
                }
                let token_hashes = match on {
                    Wait::Pause { token_hash, .. } => vec![token_hash.clone()],
                    _ => Vec::new(),
                };
                let state =
                    WaitState { on: on.clone(), token_hashes, outcome: None, ended_seq: None };
                self.waits.insert(wait.clone(), state);
            }
            RunEvent::TokenIssued { wait, token_hash } => {
                if let Some(state) = self.waits.get_mut(wait) {
                    state.token_hashes.push(token_hash.clone());
                }
            }
            RunEvent::WaitEnded { wait, outcome } => {
                if let Some(state) = self.waits.get_mut(wait) {
                    if let Some(at) = state.on.deadline() {
                        self.wait_deadlines.remove(&(at, wait.clone()));
                    }
                    state.outcome = Some(outcome.clone());
                    state.ended_seq = Some(self.recorded);
                }
                self.tokens.remove(wait);
            }
            RunEvent::BranchWon { node, branch } => {
                self.races.insert(node.clone(), *branch);
            }
            RunEvent::RunAdmitted => self.admitted = true,
            RunEvent::TriggerMerged { payload } => self.payload = payload.clone(),
            RunEvent::RunCompleted { .. }
            | RunEvent::RunFailed { .. }
            | RunEvent::RunCancelled { .. } => {
                if let Some(status) = event.terminal_status() {
                    self.status = status;
                }
            }
        }
    }
}

//! Carrying out one call's commands, checking each against the driver's view: events
//! without gaps and never after the end, dispatches of tasks that are not in flight, aborts
//! of attempts that are, child runs started with their `wait_started` and cancelled exactly
//! when their wait is abandoned or the run ends.

use std::collections::BTreeSet;

use cronflow_core::{Command, Json, RunEvent, RunId, Task, TaskKey, TaskKind, Wait, WaitOutcome};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::{Child, Sim, Turn};
use crate::build::CHILD_WORKFLOW;
use crate::model::Outcomes;

impl Sim<'_> {
    pub(super) fn apply(&mut self, commands: Vec<Command>) -> Result<Turn, TestCaseError> {
        let before = self.history.len();
        let mut turn = Turn { first_event: before, ..Turn::default() };
        let open_before = Outcomes::of(&self.history);
        let mut started = Vec::new();
        let mut cancelled = BTreeSet::new();
        for command in commands {
            match command {
                Command::Record(recorded) => {
                    prop_assert_eq!(recorded.seq as usize, self.history.len(), "seq gap");
                    prop_assert_eq!(recorded.at, self.now, "events are recorded at `now`");
                    prop_assert!(
                        !self.history.iter().any(|e| e.event.terminal_status().is_some()),
                        "event {:?} recorded after the run ended",
                        recorded
                    );
                    self.history.push(recorded);
                }
                Command::Dispatch(task) => {
                    let key = task.key.clone();
                    prop_assert!(
                        !self.in_flight.contains_key(&key),
                        "{key:?} dispatched while attempt {:?} is in flight",
                        self.in_flight.get(&key)
                    );
                    let first = self.dispatched_at.insert((key.clone(), task.attempt), self.now);
                    prop_assert!(
                        first.is_none(),
                        "{key:?} attempt {} dispatched twice",
                        task.attempt
                    );
                    self.in_flight.insert(key, task.attempt);
                    turn.dispatched.push(*task);
                }
                Command::Abort { key, attempt } => {
                    prop_assert_eq!(
                        self.in_flight.remove(&key),
                        Some(attempt),
                        "abort of {:?} attempt {} that is not in flight",
                        key,
                        attempt
                    );
                    self.aborted.push((key, attempt));
                }
                Command::StartRun { child, workflow, payload, parent_wait } => {
                    prop_assert_eq!(workflow.as_str(), CHILD_WORKFLOW);
                    let fresh = !self.children.contains_key(&child);
                    prop_assert!(fresh, "child {} started twice", child);
                    let state = Child { wait: parent_wait.clone(), ended: false, cancelled: false };
                    self.children.insert(child, state);
                    started.push((child, payload, parent_wait));
                }
                Command::CancelRun { child, reason } => {
                    prop_assert!(!reason.is_empty());
                    prop_assert!(cancelled.insert(child), "child {} cancelled twice", child);
                }
            }
        }
        // Dispatched tasks are checked against the history of the whole call (an on_pause
        // token's hash may be recorded after the dispatch).
        for task in &turn.dispatched {
            self.check_task(task)?;
        }
        self.check_children(before, &open_before, started, cancelled)?;
        Ok(turn)
    }

    /// `StartRun` goes with a `wait_started` of the same call; `CancelRun` goes to every
    /// child whose wait was abandoned or was open when the run ended, and to no other.
    fn check_children(
        &mut self,
        before: usize,
        open_before: &Outcomes,
        started: Vec<(RunId, Json, TaskKey)>,
        cancelled: BTreeSet<RunId>,
    ) -> Result<(), TestCaseError> {
        let recorded = &self.history[before..];
        let waits_started: Vec<(&TaskKey, RunId)> = recorded
            .iter()
            .filter_map(|e| match &e.event {
                RunEvent::WaitStarted { wait, on: Wait::Subflow { child, workflow } } => {
                    assert_eq!(workflow, CHILD_WORKFLOW);
                    Some((wait, *child))
                }
                _ => None,
            })
            .collect();
        prop_assert_eq!(waits_started.len(), started.len(), "wait_started and StartRun differ");
        let outcomes = Outcomes::of(&self.history);
        for (child, payload, wait) in &started {
            prop_assert!(
                waits_started.contains(&(wait, *child)),
                "StartRun of {} for {:?} without its wait_started",
                child,
                wait
            );
            // The payload: the payload handler's output, else the run's payload.
            let handler = format!("{}#payload", wait.node_id());
            let expected = if self.case.tasks.contains_key(&handler) {
                let key = match wait.as_str().split_once('@') {
                    Some((_, path)) => format!("{handler}@{path}"),
                    None => handler,
                };
                match outcomes.finals.get(&key) {
                    Some(Ok(output)) => output.clone(),
                    other => {
                        return Err(TestCaseError::fail(format!(
                            "child of {wait:?} started while {key} is {other:?}"
                        )));
                    }
                }
            } else {
                self.case.payload.to_value()
            };
            prop_assert_eq!(payload.to_value(), expected, "payload of the child of {:?}", wait);
        }
        let ended_now = self.history.last().is_some_and(|e| e.event.terminal_status().is_some())
            && before < self.history.len();
        let mut expected = BTreeSet::new();
        for (key, rec) in &outcomes.waits {
            let Wait::Subflow { child, .. } = &rec.on else { continue };
            let ended_before = open_before.waits.get(key).is_none_or(|w| w.outcome.is_some());
            if ended_before && !started.iter().any(|(c, _, _)| c == child) {
                continue;
            }
            let abandoned = recorded.iter().any(|e| {
                matches!(&e.event, RunEvent::WaitEnded { wait, outcome: WaitOutcome::Abandoned }
                    if wait.as_str() == key)
            });
            if abandoned || (ended_now && rec.outcome.is_none()) {
                expected.insert(*child);
            }
        }
        prop_assert_eq!(&cancelled, &expected, "CancelRun (left) against the waits (right)");
        for child in cancelled {
            self.children.get_mut(&child).unwrap().cancelled = true;
        }
        Ok(())
    }

    /// The static fields and the token of a dispatched task.
    pub(super) fn check_task(&self, task: &Task) -> Result<(), TestCaseError> {
        let meta = self.case.meta(&task.key)?;
        prop_assert_eq!(task.kind, meta.kind, "kind of {:?}", task.key);
        prop_assert_eq!(&*task.handler, meta.handler.as_str(), "handler of {:?}", task.key);
        prop_assert_eq!(&*task.node_id, meta.node_id.as_str(), "node id of {:?}", task.key);
        prop_assert_eq!(task.key.node_id(), meta.node_id.as_str());
        prop_assert_eq!(task.run_id, self.case.run_id);
        prop_assert_eq!(&*task.workflow_id, "prop");
        prop_assert_eq!(task.workflow_version.as_deref(), Some("v1"));
        prop_assert_eq!(task.revision, 1);
        prop_assert_eq!(&task.idempotency_key, &format!("{}/{}", self.case.run_id, task.key));
        prop_assert!(task.attempt >= 1 && task.attempt <= meta.max_attempts());
        prop_assert_eq!(task.timeout, None);
        prop_assert_eq!(task.deadline, None);
        prop_assert_eq!(&task.context.payload, &self.case.payload);
        if task.kind == TaskKind::OnPause {
            // The token's hash is one the history issued for the open pause.
            let token = task.context.token.as_deref().unwrap_or_default();
            prop_assert_eq!(token.len(), 64, "token of {:?}", task.key);
            let pause = task.key.as_str().replacen("#on_pause", "", 1);
            let outcomes = Outcomes::of(&self.history);
            let wait = outcomes.waits.get(&pause);
            // (Open unless the same call already swept it: a race decided by a later branch.)
            let live = self.in_flight.get(&task.key) == Some(&task.attempt);
            prop_assert!(
                wait.is_some_and(|w| (w.outcome.is_none() || !live)
                    && w.tokens.contains(&cronflow_core::token_hash(token))),
                "{:?} got a token that was not issued for open pause {}: {:?}",
                task.key,
                pause,
                wait
            );
        } else {
            prop_assert!(task.context.token.is_none());
        }
        Ok(())
    }
}

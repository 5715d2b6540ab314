//! Checks once the run has ended: a finished run ignores every input, and the whole
//! history is well formed: framing, per task the attempts and their retry decisions, wait
//! times, and every race decided by its first branch to settle, its losers silent after.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use cronflow_core::{
    FailureKind, Json, Node, RecordedEvent, RetryPolicy, RunEvent, RunMachine, RunStatus,
    TaskError, TaskKey, Wait, WaitOutcome,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::json;

use super::Sim;
use crate::build::TaskMeta;
use crate::model::{Model, Outcomes, in_scope, node_of};
use crate::shapes::EVENT_NAMES;
use crate::strategies::Case;

impl Sim<'_> {
    pub(super) fn finish(&mut self) -> Result<(), TestCaseError> {
        check_history(self.case, &self.history)?;
        check_waits(self.case, &self.history)?;
        check_races(self.case, &self.history)?;
        let last = &self.history.last().unwrap().event;
        if !self.case.faults {
            // No failed task, child or items, and no cancel from outside.
            let fault = match last {
                RunEvent::RunFailed { failure } => {
                    matches!(failure.kind, FailureKind::TaskFailed | FailureKind::ChildFailed)
                }
                RunEvent::RunCancelled { reason } => reason.as_deref() == Some("prop"),
                _ => false,
            };
            prop_assert!(!fault, "fault-free run ended with {:?}", last);
        }
        // A finished run ignores every input.
        let snapshot = self.machine.snapshot();
        let later = self.now + chrono::Duration::days(1);
        let mut attempts: Vec<(TaskKey, u32)> = self.aborted.clone();
        attempts.extend(self.dispatched_at.keys().cloned());
        for (key, attempt) in attempts {
            let commands = self.machine.handle_task_result(later, &key, attempt, Ok(Json::null()));
            prop_assert!(commands.is_empty(), "finished run took a result: {:?}", commands);
        }
        prop_assert!(self.machine.handle_timeout(later).is_empty());
        prop_assert!(self.machine.cancel(later, None).is_empty());
        let outcomes = Outcomes::of(&self.history);
        for key in outcomes.waits.keys() {
            let key = TaskKey::new(key);
            prop_assert!(self.machine.resume_pause(later, &key, Json::null()).is_none());
        }
        for child in self.children.keys() {
            let outcome = WaitOutcome::ChildCompleted { output: Json::null() };
            prop_assert!(self.machine.child_finished(later, *child, outcome).is_empty());
        }
        for name in EVENT_NAMES {
            for order in 0..4 {
                let payload = Json::from(json!({ "order": order }));
                let (n, commands) = self.machine.deliver_event(later, name, &payload);
                prop_assert!(n == 0 && commands.is_empty(), "a finished run took {}", name);
            }
        }
        prop_assert_eq!(self.machine.poll_timeout(), None);
        prop_assert_eq!(self.machine.snapshot(), snapshot);
        let mut replayed = RunMachine::replay(
            Arc::clone(&self.case.def),
            self.case.run_id,
            self.case.payload.clone(),
            &self.history,
        )
        .map_err(|e| TestCaseError::fail(format!("replay failed: {e}")))?;
        prop_assert_eq!(replayed.snapshot(), self.machine.snapshot());
        prop_assert_eq!(replayed.status(), self.machine.status());
        let resumed = replayed.resume(later);
        prop_assert!(resumed.is_empty(), "resuming a finished run gave {:?}", resumed);
        prop_assert!(self.machine.status() != RunStatus::Running);
        Ok(())
    }
}

/// The whole history: framing, and per task the attempt sequence and its retry decisions.
fn check_history(case: &Case, history: &[RecordedEvent]) -> Result<(), TestCaseError> {
    prop_assert!(matches!(history.first().map(|e| &e.event), Some(RunEvent::RunStarted)));
    prop_assert_eq!(history.iter().filter(|e| e.event == RunEvent::RunStarted).count(), 1);
    let terminals = history.iter().filter(|e| e.event.terminal_status().is_some()).count();
    prop_assert_eq!(terminals, 1, "exactly one terminal event");
    prop_assert!(history.last().unwrap().event.terminal_status().is_some(), "terminal is last");
    for (i, recorded) in history.iter().enumerate() {
        prop_assert_eq!(recorded.seq as usize, i);
        if i > 0 {
            prop_assert!(recorded.at >= history[i - 1].at, "time went backwards");
        }
    }
    let mut per_task: BTreeMap<&TaskKey, Vec<&RecordedEvent>> = BTreeMap::new();
    for recorded in history {
        if let Some(task) = recorded.event.task() {
            per_task.entry(task).or_default().push(recorded);
        }
    }
    for (key, events) in per_task {
        let meta = case.meta(key)?;
        let successes =
            events.iter().filter(|e| matches!(e.event, RunEvent::TaskSucceeded { .. })).count();
        prop_assert!(successes <= 1, "{:?} succeeded {} times", key, successes);
        for (i, recorded) in events.iter().enumerate() {
            let attempt = recorded.event.attempt().unwrap();
            prop_assert_eq!(attempt as usize, i + 1, "attempts of {:?} out of order", key);
            prop_assert!(
                attempt <= meta.max_attempts(),
                "{:?} attempt {} exceeds max_attempts {}",
                key,
                attempt,
                meta.max_attempts()
            );
            let is_last = i + 1 == events.len();
            match &recorded.event {
                RunEvent::TaskSucceeded { .. } => {
                    prop_assert!(is_last, "{:?}: an event follows its success", key);
                }
                RunEvent::TaskFailed { error, retry_at, .. } => {
                    check_retry(key, meta, recorded.at, attempt, error, *retry_at)?;
                    if retry_at.is_none() {
                        prop_assert!(is_last, "{:?}: an event follows its final failure", key);
                    }
                }
                _ => unreachable!(),
            }
        }
    }
    Ok(())
}

/// A failure is retried exactly when the policy allows it, after the policy's delay.
fn check_retry(
    key: &TaskKey,
    meta: &TaskMeta,
    at: DateTime<Utc>,
    attempt: u32,
    error: &TaskError,
    retry_at: Option<DateTime<Utc>>,
) -> Result<(), TestCaseError> {
    let policy = meta
        .policy
        .as_ref()
        .filter(|p| error.retryable && attempt < p.max_attempts && p.retries_error(&error.name));
    let Some(policy) = policy else {
        prop_assert_eq!(
            retry_at,
            None,
            "{:?} attempt {} ({}) must not be retried",
            key,
            attempt,
            error
        );
        return Ok(());
    };
    let Some(retry_at) = retry_at else {
        return Err(TestCaseError::fail(format!(
            "{key:?} attempt {attempt} ({error}) must be retried under {policy:?}"
        )));
    };
    let plain = RetryPolicy { jitter: false, ..policy.clone() };
    let full = chrono::Duration::from_std(plain.delay_before(attempt + 1, 0).unwrap()).unwrap();
    let delay = retry_at - at;
    let micro = chrono::Duration::microseconds(1);
    if policy.jitter {
        prop_assert!(
            delay >= full / 2 - micro * 2 && delay <= full,
            "{:?}: jittered delay {} outside [{}/2, {}]",
            key,
            delay,
            full,
            full
        );
    } else {
        prop_assert!(
            delay <= full && delay > full - micro,
            "{:?}: retry delay {} instead of {} under {:?}",
            key,
            delay,
            full,
            policy
        );
    }
    Ok(())
}

fn find<'a>(nodes: &'a [Node], id: &str) -> Option<&'a Node> {
    nodes.iter().find_map(|node| {
        if node.id() == id {
            return Some(node);
        }
        node.children().into_iter().find_map(|(_, seq)| find(seq, id))
    })
}

fn ids(nodes: &[Node], into: &mut BTreeSet<String>) {
    for node in nodes {
        into.insert(node.id().to_string());
        for (_, seq) in node.children() {
            ids(seq, into);
        }
    }
}

/// Wait times: a sleep's time is its start plus its duration and it ends no earlier; a
/// timeout is its start plus the node's timeout and fires no earlier; each wait starts once
/// and ends at most once.
fn check_waits(case: &Case, history: &[RecordedEvent]) -> Result<(), TestCaseError> {
    let mut started: BTreeMap<&TaskKey, &Wait> = BTreeMap::new();
    let mut ended = BTreeSet::new();
    for recorded in history {
        match &recorded.event {
            RunEvent::WaitStarted { wait, on } => {
                prop_assert!(started.insert(wait, on).is_none(), "{:?} started twice", wait);
                let node = find(&case.def.def.nodes, wait.node_id());
                let ms = |d: Option<std::time::Duration>| {
                    d.map(|d| recorded.at + chrono::Duration::from_std(d).unwrap())
                };
                match (node, on) {
                    (Some(Node::Sleep(n)), Wait::Sleep { until }) => {
                        prop_assert_eq!(Some(*until), ms(n.duration), "time of {:?}", wait);
                    }
                    (Some(Node::Pause(n)), Wait::Pause { timeout_at, .. }) => {
                        prop_assert_eq!(*timeout_at, ms(n.timeout), "timeout of {:?}", wait);
                    }
                    (
                        Some(Node::WaitForEvent(n)),
                        Wait::Event { name, match_fields, timeout_at },
                    ) => {
                        prop_assert_eq!(name, &n.event);
                        prop_assert_eq!(match_fields, &n.match_fields);
                        prop_assert_eq!(*timeout_at, ms(n.timeout), "timeout of {:?}", wait);
                    }
                    (Some(Node::Subflow(_)), Wait::Subflow { .. }) => {}
                    (node, on) => {
                        return Err(TestCaseError::fail(format!(
                            "wait {wait:?} on {on:?} for node {node:?}"
                        )));
                    }
                }
            }
            RunEvent::WaitEnded { wait, outcome } => {
                let Some(on) = started.get(wait) else {
                    return Err(TestCaseError::fail(format!("{wait:?} ended, never started")));
                };
                prop_assert!(ended.insert(wait), "{:?} ended twice", wait);
                let fits = match (on, outcome) {
                    (Wait::Sleep { until }, WaitOutcome::Elapsed) => recorded.at >= *until,
                    (
                        Wait::Pause { timeout_at, .. } | Wait::Event { timeout_at, .. },
                        WaitOutcome::TimedOut,
                    ) => timeout_at.is_some_and(|at| recorded.at >= at),
                    (Wait::Pause { .. } | Wait::Event { .. }, WaitOutcome::Resumed { .. }) => true,
                    (
                        Wait::Subflow { .. },
                        WaitOutcome::ChildCompleted { .. }
                        | WaitOutcome::ChildFailed { .. }
                        | WaitOutcome::ChildCancelled { .. },
                    ) => true,
                    (_, WaitOutcome::Abandoned) => true,
                    _ => false,
                };
                prop_assert!(fits, "{:?} on {:?} ended {:?} at {}", wait, on, outcome, recorded.at);
            }
            RunEvent::TokenIssued { wait, .. } => {
                let open = started.get(wait).is_some_and(|on| matches!(on, Wait::Pause { .. }))
                    && !ended.contains(wait);
                prop_assert!(open, "token issued for {:?}, not an open pause", wait);
            }
            _ => {}
        }
    }
    Ok(())
}

/// Every race is decided once, by its first branch (in branch order) to settle when the
/// decision was recorded; after it, nothing of the losing branches is recorded except their
/// waits ending as abandoned, and nothing else is abandoned.
fn check_races(case: &Case, history: &[RecordedEvent]) -> Result<(), TestCaseError> {
    let mut losers: Vec<(BTreeSet<String>, String)> = Vec::new();
    for (i, recorded) in history.iter().enumerate() {
        if let RunEvent::BranchWon { node, branch } = &recorded.event {
            let before = Outcomes::of(&history[..i]);
            let mut model = Model::new(&before);
            model.run(&case.def.def);
            let Some(settled) = model.undecided.get(node.as_str()) else {
                return Err(TestCaseError::fail(format!(
                    "branch_won for {node:?}, which was not an undecided race in reach"
                )));
            };
            let first = settled.iter().position(|s| *s);
            prop_assert_eq!(first, Some(*branch as usize), "{:?} won by the wrong branch", node);
            let Some(Node::Race(race)) = find(&case.def.def.nodes, node.node_id()) else {
                return Err(TestCaseError::fail(format!("{node:?} is not a race")));
            };
            let mut lost = BTreeSet::new();
            for (b, seq) in race.branches.iter().enumerate() {
                if b != *branch as usize {
                    ids(&seq.nodes, &mut lost);
                }
            }
            let suffix = node.as_str().split_once('@').map(|(_, p)| format!("@{p}"));
            losers.push((lost, suffix.unwrap_or_default()));
            continue;
        }
        let key = match &recorded.event {
            RunEvent::TaskSucceeded { task, .. } | RunEvent::TaskFailed { task, .. } => task,
            RunEvent::WaitStarted { wait, .. } | RunEvent::TokenIssued { wait, .. } => wait,
            RunEvent::WaitEnded { wait, outcome } => {
                let lost = losers.iter().any(|(ids, s)| {
                    ids.contains(node_of(wait.as_str())) && in_scope(wait.as_str(), s)
                });
                if *outcome == WaitOutcome::Abandoned {
                    prop_assert!(lost, "{:?} abandoned outside a losing branch", wait);
                    continue;
                }
                wait
            }
            _ => continue,
        };
        let lost = losers
            .iter()
            .any(|(ids, s)| ids.contains(node_of(key.as_str())) && in_scope(key.as_str(), s));
        prop_assert!(!lost, "{:?} recorded for a losing branch: {:?}", key, recorded);
    }
    Ok(())
}

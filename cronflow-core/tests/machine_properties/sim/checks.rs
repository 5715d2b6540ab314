//! What is checked of the live machine: after every step against its snapshot, a replay, the
//! reference model and a resume after a crash; once the run has ended; and over the whole
//! history, per task the attempts and their retry decisions.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use cronflow_core::{
    Command, FailureKind, Json, RecordedEvent, RetryPolicy, RunEvent, RunFailure, RunMachine,
    RunStatus, Task, TaskError, TaskKey, TaskSnapshot,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;

use super::{Sim, Turn};
use crate::model::{Flow, Model, Outcomes};
use crate::strategies::{Case, TaskMeta};

impl Sim<'_> {
    /// Checks after every step.
    pub(super) fn check(&self, turn: &Turn) -> Result<(), TestCaseError> {
        let status = self.machine.status();
        prop_assert_eq!(self.machine_in_flight(), self.in_flight.clone(), "in-flight sets differ");
        if status.is_terminal() {
            prop_assert!(self.in_flight.is_empty());
            prop_assert_eq!(self.machine.poll_timeout(), None);
        }
        self.check_snapshot()?;
        self.check_replay()?;
        self.check_model(turn)?;
        if !status.is_terminal() {
            self.check_resume()?;
        }
        Ok(())
    }

    /// The snapshot says what the history says: events, status, failures and outcomes.
    fn check_snapshot(&self) -> Result<(), TestCaseError> {
        let snapshot = self.machine.snapshot();
        prop_assert_eq!(snapshot.recorded as usize, self.history.len());
        prop_assert_eq!(snapshot.status, self.machine.status());
        let mut expected: BTreeMap<TaskKey, TaskSnapshot> = BTreeMap::new();
        for recorded in &self.history {
            let blank = || TaskSnapshot { failures: 0, retry_at: None, outcome: None };
            match &recorded.event {
                RunEvent::TaskSucceeded { task, output, .. } => {
                    let entry = expected.entry(task.clone()).or_insert_with(blank);
                    entry.retry_at = None;
                    entry.outcome = Some(Ok(output.clone()));
                }
                RunEvent::TaskFailed { task, error, retry_at, .. } => {
                    let entry = expected.entry(task.clone()).or_insert_with(blank);
                    entry.failures += 1;
                    entry.retry_at = *retry_at;
                    if retry_at.is_none() {
                        entry.outcome = Some(Err(error.clone()));
                    }
                }
                _ => {}
            }
        }
        let actual = snapshot.tasks;
        prop_assert_eq!(actual, expected, "snapshot (left) against the history (right)");
        Ok(())
    }

    /// Replaying the history so far rebuilds the live machine's recorded state.
    fn check_replay(&self) -> Result<(), TestCaseError> {
        let replayed = RunMachine::replay(
            Arc::clone(&self.case.def),
            self.case.run_id,
            self.case.payload.clone(),
            &self.history,
        )
        .map_err(|e| TestCaseError::fail(format!("replay failed: {e}")))?;
        prop_assert_eq!(
            replayed.snapshot(),
            self.machine.snapshot(),
            "replayed snapshot (left) differs from the live one (right) after {:#?}",
            self.history
        );
        prop_assert_eq!(replayed.status(), self.machine.status());
        Ok(())
    }

    /// A crash now, then replay + resume: every attempt in flight is dispatched again.
    fn check_resume(&self) -> Result<(), TestCaseError> {
        let mut replayed = RunMachine::replay(
            Arc::clone(&self.case.def),
            self.case.run_id,
            self.case.payload.clone(),
            &self.history,
        )
        .map_err(|e| TestCaseError::fail(format!("replay failed: {e}")))?;
        let commands = replayed.resume(self.now);
        if self.case.deadline().is_some_and(|d| d <= self.now) {
            // The run is overdue: resuming ends it as timed out.
            prop_assert_eq!(commands.len(), 1, "{:?}", commands);
            let Command::Record(RecordedEvent {
                seq, event: RunEvent::RunFailed { failure }, ..
            }) = &commands[0]
            else {
                return Err(TestCaseError::fail(format!("overdue resume gave {commands:?}")));
            };
            prop_assert_eq!(*seq as usize, self.history.len());
            prop_assert_eq!(failure.kind, FailureKind::RunTimedOut);
            return Ok(());
        }
        let outcomes = Outcomes::of(&self.history);
        let mut model = Model { finals: &outcomes.finals, open: BTreeMap::new() };
        model.seq(&self.case.def.def.nodes, &Value::Null);
        let snapshot = self.machine.snapshot();
        let mut dispatched = BTreeMap::new();
        for command in commands {
            let Command::Dispatch(task) = command else {
                return Err(TestCaseError::fail(format!(
                    "resume of a running run gave {command:?}; history {:#?}",
                    self.history
                )));
            };
            prop_assert!(dispatched.insert(task.key.clone(), task.attempt).is_none());
            self.check_task(&task)?;
            self.check_context(&task, &model.open, &outcomes)?;
            if self.in_flight.get(&task.key) != Some(&task.attempt) {
                // Not in flight live: it must be a retry that is due.
                let state = snapshot.tasks.get(&task.key);
                prop_assert!(
                    matches!(state, Some(TaskSnapshot { failures, retry_at: Some(at), outcome: None })
                        if failures + 1 == task.attempt && *at <= self.now),
                    "resume dispatched {:?} attempt {} which is neither in flight ({:?}) nor a \
                     due retry ({:?})",
                    task.key,
                    task.attempt,
                    self.in_flight.get(&task.key),
                    state
                );
            }
        }
        for (key, attempt) in &self.in_flight {
            prop_assert_eq!(
                dispatched.get(key),
                Some(attempt),
                "resume after a crash did not re-dispatch in-flight {:?}; history {:#?}",
                key,
                self.history
            );
        }
        prop_assert_eq!(
            replayed.in_flight().map(|(k, a)| (k.clone(), a)).collect::<BTreeMap<_, _>>(),
            dispatched
        );
        Ok(())
    }

    fn check_context(
        &self,
        task: &Task,
        open: &BTreeMap<String, Value>,
        outcomes: &Outcomes,
    ) -> Result<(), TestCaseError> {
        let Some(last) = open.get(task.key.as_str()) else {
            return Err(TestCaseError::fail(format!(
                "{:?} dispatched but the model has no open task of that key (open: {:?}); \
                 history {:#?}",
                task.key,
                open.keys().collect::<Vec<_>>(),
                self.history
            )));
        };
        prop_assert_eq!(&task.context.last.to_value(), last, "`last` of {:?}", task.key);
        let steps: BTreeMap<String, String> =
            task.context.steps.iter().map(|(k, v)| (k.clone(), v.as_str().to_string())).collect();
        prop_assert_eq!(&steps, &outcomes.steps, "`steps` of {:?}", task.key);
        Ok(())
    }

    /// The live machine agrees with the reference model of the tree.
    fn check_model(&self, turn: &Turn) -> Result<(), TestCaseError> {
        let outcomes = Outcomes::of(&self.history);
        let mut model = Model { finals: &outcomes.finals, open: BTreeMap::new() };
        let flow = model.seq(&self.case.def.def.nodes, &Value::Null);
        let open = model.open;
        let terminal =
            self.history.last().map(|e| &e.event).filter(|e| e.terminal_status().is_some());
        match (self.machine.status(), terminal) {
            (RunStatus::Running, None) => {
                match &flow {
                    Flow::Failed(key) => {
                        return Err(TestCaseError::fail(format!(
                            "{key} failed for good but the run is still running; history {:#?}",
                            self.history
                        )));
                    }
                    Flow::Done(out) if open.is_empty() => {
                        return Err(TestCaseError::fail(format!(
                            "the tree is done ({out}) but the run did not complete; history {:#?}",
                            self.history
                        )));
                    }
                    _ => {}
                }
                for key in self.in_flight.keys() {
                    prop_assert!(
                        open.contains_key(key.as_str()),
                        "{:?} in flight but not open",
                        key
                    );
                }
                for key in open.keys() {
                    let in_flight = self.in_flight.contains_key(key.as_str());
                    let retry_at = outcomes.waiting.get(key);
                    prop_assert!(
                        in_flight || retry_at.is_some(),
                        "open task {key} is neither in flight nor waiting for a retry; history {:#?}",
                        self.history
                    );
                    if turn.timers_fired && !in_flight {
                        let at = retry_at.unwrap();
                        prop_assert!(
                            *at > self.now,
                            "the retry of {key} was due at {at} but handle_timeout({}) did not \
                             dispatch it (poll_timeout() = {:?}); history {:#?}",
                            self.now,
                            self.machine.poll_timeout(),
                            self.history
                        );
                    }
                }
                for task in &turn.dispatched {
                    if self.in_flight.get(&task.key) == Some(&task.attempt) {
                        self.check_context(task, &open, &outcomes)?;
                    }
                }
            }
            (RunStatus::Completed, Some(RunEvent::RunCompleted { output })) => {
                let Flow::Done(expected) = flow else {
                    return Err(TestCaseError::fail(format!(
                        "completed though the tree is not done; history {:#?}",
                        self.history
                    )));
                };
                prop_assert!(open.is_empty(), "completed with {:?} open", open.keys());
                prop_assert_eq!(output.to_value(), expected, "run output");
            }
            (RunStatus::Failed, Some(RunEvent::RunFailed { failure })) => {
                self.check_failure(failure, &flow, &outcomes)?;
            }
            (RunStatus::Cancelled, Some(RunEvent::RunCancelled { .. })) => {
                prop_assert!(self.cancelled, "cancelled without a cancel");
            }
            (status, event) => {
                return Err(TestCaseError::fail(format!(
                    "status {status:?} with last event {event:?}"
                )));
            }
        }
        Ok(())
    }

    fn check_failure(
        &self,
        failure: &RunFailure,
        flow: &Flow,
        outcomes: &Outcomes,
    ) -> Result<(), TestCaseError> {
        match failure.kind {
            FailureKind::RunTimedOut => {
                let deadline = self.case.deadline();
                prop_assert!(
                    deadline.is_some_and(|d| d <= self.now),
                    "timed out at {} before the deadline {:?}",
                    self.now,
                    deadline
                );
                prop_assert_eq!(&failure.task, &None);
            }
            FailureKind::TaskFailed => {
                let Flow::Failed(key) = flow else {
                    return Err(TestCaseError::fail(format!(
                        "run failed ({failure:?}) but no task failed for good; history {:#?}",
                        self.history
                    )));
                };
                prop_assert_eq!(failure.task.as_ref().map(TaskKey::as_str), Some(key.as_str()));
                let error = outcomes.finals[key].clone().unwrap_err();
                prop_assert_eq!(failure.error.as_ref(), Some(&error));
                let meta = &self.case.tasks[key];
                let what = match key.split_once('#') {
                    Some((node, i)) => format!("condition {i} of `{node}`"),
                    None => format!("step `{}`", meta.node_id),
                };
                prop_assert!(failure.message.contains(&what), "{:?} names {}", failure, what);
            }
            other => {
                return Err(TestCaseError::fail(format!(
                    "failure kind {other:?} from a tree of steps, actions, ifs and parallels"
                )));
            }
        }
        Ok(())
    }

    /// Checks once the run has ended.
    pub(super) fn finish(&mut self) -> Result<(), TestCaseError> {
        check_history(self.case, &self.history)?;
        let status = self.machine.status();
        if !self.case.faults {
            // No failure and no cancel: the run completes, unless the clock outran its timeout.
            let timed_out = matches!(
                &self.history.last().unwrap().event,
                RunEvent::RunFailed { failure } if failure.kind == FailureKind::RunTimedOut
            );
            prop_assert!(
                status == RunStatus::Completed || timed_out,
                "fault-free run ended {:?}: {:?}",
                status,
                self.history.last()
            );
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
        let resumed = replayed.resume(later);
        prop_assert!(resumed.is_empty(), "resuming a finished run gave {:?}", resumed);
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

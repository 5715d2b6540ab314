//! The live machine against the reference model after every step: where the run stands,
//! its output or failure, which tasks and waits are open, the context of dispatched tasks
//! and that due timers fired.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cronflow_core::{FailureKind, RunEvent, RunFailure, RunStatus, Task, TaskKey};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;

use super::{Sim, Turn};
use crate::model::{Expect, Fail, Model, Open, Outcomes, Why};

impl Sim<'_> {
    pub(super) fn check_context(
        &self,
        task: &Task,
        open: &BTreeMap<String, Open>,
        outcomes: &Outcomes,
    ) -> Result<(), TestCaseError> {
        let Some(expected) = open.get(task.key.as_str()) else {
            return Err(TestCaseError::fail(format!(
                "{:?} dispatched but the model has no open task of that key (open: {:?}); \
                 history {:#?}",
                task.key,
                open.keys().collect::<Vec<_>>(),
                self.history
            )));
        };
        let key = &task.key;
        let context = &task.context;
        prop_assert_eq!(&context.last.to_value(), &expected.last, "`last` of {:?}", key);
        prop_assert_eq!(context.item.as_ref().map(|i| i.to_value()), expected.item.clone());
        prop_assert_eq!(context.index, expected.index, "`index` of {:?}", key);
        let steps: BTreeMap<String, Value> =
            context.steps.iter().map(|(k, v)| (k.clone(), v.to_value())).collect();
        let mut want = outcomes.steps.clone();
        want.extend(expected.steps.clone());
        prop_assert_eq!(&steps, &want, "`steps` of {:?}", key);
        match (&context.error, &expected.error) {
            (None, None) => {}
            (Some(got), Some((want, true))) => prop_assert_eq!(&got.name, &want.name),
            (Some(got), Some((want, false))) => prop_assert_eq!(got, want, "error of {:?}", key),
            (got, want) => {
                return Err(TestCaseError::fail(format!(
                    "error of {key:?}: {got:?}, not {want:?}"
                )));
            }
        }
        Ok(())
    }

    /// The live machine agrees with the reference model of the tree.
    pub(super) fn check_model(&self, turn: &Turn) -> Result<(), TestCaseError> {
        let outcomes = Outcomes::of(&self.history);
        let mut model = Model::new(&outcomes);
        let expect = model.run(&self.case.def.def);
        let terminal =
            self.history.last().map(|e| &e.event).filter(|e| e.terminal_status().is_some());
        let unexpected = |what: &str| {
            Err(TestCaseError::fail(format!(
                "the run {what}, but the model expects {expect:?}; history {:#?}",
                self.history
            )))
        };
        match (self.machine.status(), terminal) {
            (RunStatus::Running, None) => {
                let Expect::Running { failing } = expect else {
                    return unexpected("is still running");
                };
                self.check_running(turn, &model, &outcomes, failing)?;
            }
            (RunStatus::Completed, Some(RunEvent::RunCompleted { output })) => {
                let Expect::Complete(expected) = &expect else { return unexpected("completed") };
                prop_assert_eq!(&output.to_value(), expected, "run output");
            }
            (RunStatus::Failed, Some(RunEvent::RunFailed { failure }))
                if failure.kind == FailureKind::RunTimedOut =>
            {
                let deadline = self.case.deadline();
                prop_assert!(
                    deadline.is_some_and(|d| d <= self.now),
                    "timed out at {} before the deadline {:?}",
                    self.now,
                    deadline
                );
                prop_assert_eq!(&failure.task, &None);
            }
            (RunStatus::Failed, Some(RunEvent::RunFailed { failure })) => {
                let Expect::Fail(fail) = &expect else { return unexpected("failed") };
                check_failure(failure, fail, &outcomes)?;
            }
            (RunStatus::Cancelled, Some(RunEvent::RunCancelled { reason })) => {
                if self.cancelled && reason.as_deref() == Some("prop") {
                    return Ok(());
                }
                let Expect::Cancel(why) = &expect else { return unexpected("was cancelled") };
                match why {
                    Why::Node(want) => prop_assert_eq!(reason, want, "cancel node reason"),
                    Why::Child(id) => prop_assert!(
                        reason.as_deref().is_some_and(|r| r.contains(&format!("subflow `{id}`"))),
                        "cancelled with {:?}, not by the child of {}",
                        reason,
                        id
                    ),
                }
            }
            (status, event) => {
                return Err(TestCaseError::fail(format!(
                    "status {status:?} with last event {event:?}"
                )));
            }
        }
        Ok(())
    }

    fn check_running(
        &self,
        turn: &Turn,
        model: &Model,
        outcomes: &Outcomes,
        failing: bool,
    ) -> Result<(), TestCaseError> {
        let history = &self.history;
        prop_assert!(model.violations.is_empty(), "{:?}; history {:#?}", model.violations, history);
        prop_assert!(
            model.missing_waits.is_empty(),
            "reachable waits {:?} did not start; history {:#?}",
            model.missing_waits,
            history
        );
        let open_waits: Vec<&String> = outcomes.open_waits().map(|(k, _)| k).collect();
        let reachable: Vec<&String> = model.open_waits.iter().collect();
        if failing {
            // While the on_failure hook runs, waits the walk no longer reaches stay open.
            prop_assert!(reachable.iter().all(|k| open_waits.contains(k)));
        } else {
            prop_assert_eq!(open_waits, reachable, "open waits (left) against reachable ones");
        }
        let open = &model.open;
        for key in self.in_flight.keys() {
            if open.contains_key(key.as_str()) || failing {
                continue;
            }
            // An `on_pause` handler still running when its pause ended: nothing waits for it.
            let pause = key.as_str().replacen("#on_pause", "", 1);
            let orphan = key.as_str().contains("#on_pause")
                && outcomes.waits.get(&pause).is_some_and(|w| w.outcome.is_some());
            prop_assert!(orphan, "{:?} in flight but not open; history {:#?}", key, history);
        }
        let mut timers: Vec<DateTime<Utc>> = self.case.deadline().into_iter().collect();
        for key in open.keys() {
            let in_flight = self.in_flight.contains_key(key.as_str());
            let retry_at = outcomes.waiting.get(key);
            prop_assert!(
                in_flight || retry_at.is_some(),
                "open task {key} is neither in flight nor waiting for a retry; history {history:#?}"
            );
            if let (false, Some(at)) = (in_flight, retry_at) {
                timers.push(*at);
                prop_assert!(
                    !turn.timers_fired || *at > self.now,
                    "the retry of {key} was due at {at} but handle_timeout({}) did not \
                     dispatch it; history {history:#?}",
                    self.now,
                );
            }
        }
        let started_now: Vec<&str> = self.history[turn.first_event..]
            .iter()
            .filter_map(|e| match &e.event {
                RunEvent::WaitStarted { wait, .. } => Some(wait.as_str()),
                _ => None,
            })
            .collect();
        for (key, wait) in outcomes.open_waits() {
            let Some(at) = wait.on.deadline() else { continue };
            timers.push(at);
            // (A zero sleep started by this very call is due at once, for the next call.)
            prop_assert!(
                !turn.timers_fired || at > self.now || started_now.contains(&key.as_str()),
                "wait {key} was due at {at} but handle_timeout({}) did not end it",
                self.now
            );
        }
        if let Some(first) = timers.into_iter().min() {
            let poll = self.machine.poll_timeout();
            prop_assert!(
                poll.is_some_and(|p| p <= first),
                "poll_timeout() = {:?}, but something is due at {}",
                poll,
                first
            );
        }
        for task in &turn.dispatched {
            if self.in_flight.get(&task.key) == Some(&task.attempt) {
                self.check_context(task, open, outcomes)?;
            }
        }
        Ok(())
    }
}

fn check_failure(
    failure: &RunFailure,
    fail: &Fail,
    outcomes: &Outcomes,
) -> Result<(), TestCaseError> {
    match fail {
        Fail::Task { key, what } => {
            prop_assert_eq!(failure.kind, FailureKind::TaskFailed, "{:?}", failure);
            prop_assert_eq!(failure.task.as_ref().map(TaskKey::as_str), Some(key.as_str()));
            let error = outcomes.finals[key].clone().unwrap_err();
            prop_assert_eq!(failure.error.as_ref(), Some(&error));
            prop_assert!(failure.message.contains(what.as_str()), "{:?} names {}", failure, what);
        }
        Fail::Node { kind, id } => {
            prop_assert_eq!(failure.kind, *kind, "{:?}", failure);
            prop_assert_eq!(&failure.task, &None);
            let named = format!("`{id}`");
            prop_assert!(failure.message.contains(&named), "{:?} names {}", failure, named);
        }
    }
    Ok(())
}

//! What is checked of the live machine after every step: its snapshot against the history,
//! a replay of the history (the cut point is every turn boundary), the reference model
//! (`expect.rs`) and what `resume` would do after a crash at that instant.

use std::collections::BTreeMap;
use std::sync::Arc;

use cronflow_core::{
    Command, FailureKind, RecordedEvent, RunEvent, RunMachine, TaskKey, TaskSnapshot, Wait,
    WaitOutcome,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::{Sim, Turn};
use crate::model::{Model, Outcomes};

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

    /// The snapshot says what the history says: events, status, task failures and outcomes,
    /// waits and race winners.
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
        prop_assert_eq!(&snapshot.tasks, &expected, "snapshot (left) against the history (right)");
        let outcomes = Outcomes::of(&self.history);
        let waits: BTreeMap<TaskKey, (Wait, Option<WaitOutcome>)> = outcomes
            .waits
            .iter()
            .map(|(k, w)| (TaskKey::new(k), (w.on.clone(), w.outcome.clone())))
            .collect();
        prop_assert_eq!(&snapshot.waits, &waits, "snapshot waits against the history");
        let races: BTreeMap<TaskKey, u32> =
            outcomes.races.iter().map(|(k, b)| (TaskKey::new(k), *b)).collect();
        prop_assert_eq!(&snapshot.races, &races, "snapshot races against the history");
        prop_assert!(snapshot.admitted);
        prop_assert_eq!(&snapshot.payload, &self.case.payload);
        let open: Vec<&str> = self.machine.open_waits().map(|(k, _)| k.as_str()).collect();
        let expected: Vec<&str> = outcomes.open_waits().map(|(k, _)| k.as_str()).collect();
        prop_assert_eq!(open, expected, "open_waits() against the history");
        Ok(())
    }

    fn replayed(&self) -> Result<RunMachine, TestCaseError> {
        RunMachine::replay(
            Arc::clone(&self.case.def),
            self.case.run_id,
            self.case.payload.clone(),
            &self.history,
        )
        .map_err(|e| TestCaseError::fail(format!("replay failed: {e}")))
    }

    /// Replaying the history so far rebuilds the live machine's recorded state.
    fn check_replay(&self) -> Result<(), TestCaseError> {
        let replayed = self.replayed()?;
        prop_assert_eq!(
            replayed.snapshot(),
            self.machine.snapshot(),
            "replayed snapshot (left) differs from the live one (right) after {:#?}",
            self.history
        );
        prop_assert_eq!(replayed.status(), self.machine.status());
        Ok(())
    }

    /// A crash now, then replay + resume: every attempt in flight that the tree still
    /// waits for is dispatched again, due retries are dispatched, nothing with an outcome
    /// is, and the only event recorded is a new token for a pause whose `on_pause` handler
    /// runs again (the first token's text died with the process).
    fn check_resume(&self) -> Result<(), TestCaseError> {
        let mut replayed = self.replayed()?;
        let commands = replayed.resume(self.now);
        if self.overdue() {
            // The run is overdue: resuming ends it as timed out (and cancels its children).
            let commands: Vec<Command> = commands
                .into_iter()
                .filter(|c| {
                    !matches!(c, Command::CancelRun { child, .. }
                    if self.children.get(child).is_some_and(|c| !c.ended && !c.cancelled))
                })
                .collect();
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
        let mut model = Model::new(&outcomes);
        model.run(&self.case.def.def);
        let snapshot = self.machine.snapshot();
        let mut dispatched = BTreeMap::new();
        let mut seq = self.history.len();
        for command in commands {
            let task = match command {
                Command::Dispatch(task) => task,
                Command::Record(RecordedEvent {
                    seq: s,
                    event: RunEvent::TokenIssued { wait, .. },
                    ..
                }) => {
                    prop_assert_eq!(s as usize, seq);
                    seq += 1;
                    prop_assert!(
                        outcomes.waits.get(wait.as_str()).is_some_and(|w| w.outcome.is_none()),
                        "token issued for {:?}, which is not an open pause",
                        wait
                    );
                    continue;
                }
                other => {
                    return Err(TestCaseError::fail(format!(
                        "resume of a running run gave {other:?}; history {:#?}",
                        self.history
                    )));
                }
            };
            prop_assert!(dispatched.insert(task.key.clone(), task.attempt).is_none());
            let state = snapshot.tasks.get(&task.key);
            prop_assert!(
                state.is_none_or(|s| s.outcome.is_none()),
                "resume dispatched {:?}, which has an outcome",
                task.key
            );
            self.check_context(&task, &model.open, &outcomes)?;
            if self.in_flight.get(&task.key) != Some(&task.attempt) {
                // Not in flight live: it must be a retry that is due.
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
            if !model.open.contains_key(key.as_str()) {
                // An orphan (see `check_model`): nothing waits for it any more.
                continue;
            }
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
}

//! Inputs other than task results: timers, resumes, published events, child ends, signals
//! that must be refused, and crashes (replay + resume in place of the live machine).

use std::sync::Arc;

use cronflow_core::{
    FailureKind, Json, RunEvent, RunFailure, RunId, RunMachine, TaskKey, Wait, WaitOutcome,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::json;

use super::{Sim, Turn, ms};
use crate::model::{Outcomes, matches};
use crate::shapes::EVENT_NAMES;

/// An event name no generated node waits for.
const UNHEARD: &str = "unheard";

impl Sim<'_> {
    /// Let `n` ms pass and fire the timers that are due.
    pub(super) fn tick(&mut self, n: u16) -> Result<Turn, TestCaseError> {
        self.now += ms(n.into());
        let due = self.machine.poll_timeout().is_some_and(|at| at <= self.now);
        let commands = self.machine.handle_timeout(self.now);
        if !due {
            prop_assert!(
                commands.is_empty(),
                "handle_timeout before poll_timeout() acted: {:?}",
                commands
            );
        }
        let mut turn = self.apply(commands)?;
        turn.timers_fired = due;
        Ok(turn)
    }

    /// Nothing is in flight: end an open wait (`pick` chooses), or fire the next timer.
    pub(super) fn progress(&mut self, pick: usize) -> Result<Turn, TestCaseError> {
        let outcomes = Outcomes::of(&self.history);
        let signalled: Vec<(String, Wait)> = outcomes
            .open_waits()
            .filter(|(_, w)| !matches!(w.on, Wait::Sleep { .. }))
            .map(|(k, w)| (k.clone(), w.on.clone()))
            .collect();
        let timer = self.machine.poll_timeout();
        if signalled.is_empty() || (timer.is_some() && pick.is_multiple_of(3)) {
            return self.fire_timers();
        }
        let value = (pick / 3) as u8;
        match &signalled[(pick / 3) % signalled.len()] {
            (key, Wait::Pause { .. }) => self.resume_key(TaskKey::new(key), value, 0),
            (_, Wait::Event { name, match_fields, .. }) => {
                let order = match_fields.as_ref().and_then(|f| f["order"].as_u64());
                let order = order.map(|o| o as u8);
                let index = EVENT_NAMES.iter().position(|n| n == name).unwrap();
                // The matching event, or one of the same name whose `order` differs or is
                // missing (taken only by a wait without `match`).
                match (pick / 3 / signalled.len()) % 3 {
                    0 => self.publish(index, order, value, 0),
                    1 => self.publish(index, Some(order.map_or(0, |o| (o + 1) % 4)), value, 0),
                    _ => self.publish(index, None, value, 0),
                }
            }
            (_, Wait::Subflow { child, .. }) => {
                let child = *child;
                self.end_child(child, 0, value, 0)
            }
            (_, Wait::Sleep { .. }) => unreachable!(),
        }
    }

    /// Jump to the next timer and fire it.
    pub(super) fn fire_timers(&mut self) -> Result<Turn, TestCaseError> {
        let Some(at) = self.machine.poll_timeout() else {
            return Err(TestCaseError::fail(format!(
                "stuck: the run is {:?} with nothing in flight, no wait to signal and no \
                 timer; history {:#?}",
                self.machine.status(),
                self.history
            )));
        };
        // Just before it, nothing is due.
        let before = at - chrono::Duration::milliseconds(1);
        if before > self.now {
            self.now = before;
            let commands = self.machine.handle_timeout(self.now);
            prop_assert!(commands.is_empty(), "handle_timeout before {} acted: {:?}", at, commands);
        }
        self.now = self.now.max(at);
        let commands = self.machine.handle_timeout(self.now);
        let mut turn = self.apply(commands)?;
        turn.timers_fired = true;
        Ok(turn)
    }

    /// Resume open pause `pick % len`, or, if there is none, send a refused signal.
    pub(super) fn resume(
        &mut self,
        pick: usize,
        value: u8,
        delay: u8,
    ) -> Result<Turn, TestCaseError> {
        let outcomes = Outcomes::of(&self.history);
        let pauses: Vec<&String> = outcomes
            .open_waits()
            .filter(|(_, w)| matches!(w.on, Wait::Pause { .. }))
            .map(|(k, _)| k)
            .collect();
        if pauses.is_empty() {
            self.refused(pick)?;
            return Ok(Turn::default());
        }
        let key = TaskKey::new(pauses[pick % pauses.len()]);
        self.resume_key(key, value, delay)
    }

    fn resume_key(&mut self, key: TaskKey, value: u8, delay: u8) -> Result<Turn, TestCaseError> {
        self.now += ms(delay.into());
        let payload = Json::from(json!({ "resumed": value }));
        if self.overdue() {
            return self.refused_late(|m, now| m.resume_pause(now, &key, payload).is_none());
        }
        let before = self.history.len();
        let Some(commands) = self.machine.resume_pause(self.now, &key, payload.clone()) else {
            return Err(TestCaseError::fail(format!("open pause {key:?} refused a resume")));
        };
        let turn = self.apply(commands)?;
        let outcome = WaitOutcome::Resumed { payload };
        let first = self.history.get(before).map(|e| &e.event);
        prop_assert_eq!(first, Some(&RunEvent::WaitEnded { wait: key, outcome }));
        Ok(turn)
    }

    /// Publish an event; exactly the open waits for its name whose fields match end.
    pub(super) fn publish(
        &mut self,
        name: usize,
        order: Option<u8>,
        value: u8,
        delay: u8,
    ) -> Result<Turn, TestCaseError> {
        self.now += ms(delay.into());
        let name = EVENT_NAMES.get(name).copied().unwrap_or(UNHEARD);
        let payload = match order {
            Some(order) => json!({ "order": order, "v": value }),
            None => json!({ "v": value }),
        };
        let outcomes = Outcomes::of(&self.history);
        let expected: Vec<TaskKey> = outcomes
            .open_waits()
            .filter(|(_, w)| match &w.on {
                Wait::Event { name: n, match_fields, .. } => {
                    n == name && matches(&payload, match_fields.as_ref())
                }
                _ => false,
            })
            .map(|(k, _)| TaskKey::new(k))
            .collect();
        let payload = Json::from(payload);
        if self.overdue() {
            return self.refused_late(|m, now| {
                let (n, commands) = m.deliver_event(now, name, &payload);
                n == 0 && commands.is_empty()
            });
        }
        let before = self.history.len();
        let snapshot = self.machine.snapshot();
        let (n, commands) = self.machine.deliver_event(self.now, name, &payload);
        let turn = self.apply(commands)?;
        prop_assert_eq!(n, expected.len(), "{} delivered to {} waits, not {:?}", name, n, expected);
        if expected.is_empty() {
            prop_assert_eq!(self.history.len(), before, "an event nobody waits for recorded");
            prop_assert_eq!(self.machine.snapshot(), snapshot);
        }
        for (i, wait) in expected.into_iter().enumerate() {
            let outcome = WaitOutcome::Resumed { payload: payload.clone() };
            let event = self.history.get(before + i).map(|e| &e.event);
            prop_assert_eq!(event, Some(&RunEvent::WaitEnded { wait, outcome }));
        }
        Ok(turn)
    }

    /// End open child `pick % len`, or, if there is none, send a refused signal.
    pub(super) fn child_end(
        &mut self,
        pick: usize,
        how: u8,
        value: u8,
        delay: u8,
    ) -> Result<Turn, TestCaseError> {
        let outcomes = Outcomes::of(&self.history);
        let children: Vec<RunId> = outcomes
            .open_waits()
            .filter_map(|(_, w)| match w.on {
                Wait::Subflow { child, .. } => Some(child),
                _ => None,
            })
            .collect();
        if children.is_empty() {
            self.refused(pick)?;
            return Ok(Turn::default());
        }
        let how = if self.case.faults { how % 4 } else { 0 };
        self.end_child(children[pick % children.len()], how, value, delay)
    }

    fn end_child(
        &mut self,
        child: RunId,
        how: u8,
        value: u8,
        delay: u8,
    ) -> Result<Turn, TestCaseError> {
        self.now += ms(delay.into());
        let outcome = match how {
            2 => WaitOutcome::ChildFailed {
                failure: RunFailure {
                    kind: FailureKind::TaskFailed,
                    message: "the child failed".into(),
                    task: None,
                    error: None,
                },
            },
            3 => WaitOutcome::ChildCancelled { reason: Some("child stop".into()) },
            _ => WaitOutcome::ChildCompleted { output: Json::from(json!({ "child": value })) },
        };
        if self.overdue() {
            return self.refused_late(|m, now| m.child_finished(now, child, outcome).is_empty());
        }
        let before = self.history.len();
        let commands = self.machine.child_finished(self.now, child, outcome.clone());
        let state = self.children.get_mut(&child).unwrap();
        state.ended = true;
        let wait = state.wait.clone();
        let turn = self.apply(commands)?;
        let first = self.history.get(before).map(|e| &e.event);
        prop_assert_eq!(first, Some(&RunEvent::WaitEnded { wait, outcome }));
        Ok(turn)
    }

    /// A signal after the run's deadline (that no timer has handled yet) is refused and
    /// changes nothing, as a task result would not count: the timer ends the run.
    fn refused_late(
        &mut self,
        signal: impl FnOnce(&mut RunMachine, chrono::DateTime<chrono::Utc>) -> bool,
    ) -> Result<Turn, TestCaseError> {
        let snapshot = self.machine.snapshot();
        let in_flight = self.in_flight.clone();
        let refused = signal(&mut self.machine, self.now);
        prop_assert!(refused, "a signal at {} past the deadline was taken", self.now);
        prop_assert_eq!(self.machine.snapshot(), snapshot);
        prop_assert_eq!(self.machine_in_flight(), in_flight);
        Ok(Turn::default())
    }

    /// A signal nobody may take: a resume of a pause that is not open (ended, abandoned, a
    /// wait of another kind, a key never paused), the end of a child nobody waits for
    /// (ended, cancelled, unknown), an event nobody waits for. It changes nothing.
    pub(super) fn refused(&mut self, pick: usize) -> Result<(), TestCaseError> {
        let outcomes = Outcomes::of(&self.history);
        let mut keys: Vec<TaskKey> = vec![TaskKey::new("ghost")];
        keys.extend(
            outcomes
                .waits
                .iter()
                .filter(|(_, w)| w.outcome.is_some() || !matches!(w.on, Wait::Pause { .. }))
                .map(|(k, _)| TaskKey::new(k)),
        );
        let mut children: Vec<RunId> = vec![RunId::from_uuid(uuid::Uuid::from_u128(7))];
        children.extend(
            self.children.iter().filter(|(_, c)| c.ended || c.cancelled).map(|(id, _)| *id),
        );
        let snapshot = self.machine.snapshot();
        let in_flight = self.in_flight.clone();
        match pick % 3 {
            0 => {
                let key = &keys[(pick / 3) % keys.len()];
                let answer = self.machine.resume_pause(self.now, key, Json::null());
                prop_assert!(answer.is_none(), "resuming {:?} gave {:?}", key, answer);
            }
            1 => {
                let child = children[(pick / 3) % children.len()];
                let outcome = WaitOutcome::ChildCompleted { output: Json::null() };
                let commands = self.machine.child_finished(self.now, child, outcome);
                prop_assert!(commands.is_empty(), "ending child {} gave {:?}", child, commands);
            }
            _ => {
                let payload = Json::from(json!({ "order": 1 }));
                let (n, commands) = self.machine.deliver_event(self.now, UNHEARD, &payload);
                prop_assert!(n == 0 && commands.is_empty(), "{} took {:?}", UNHEARD, commands);
            }
        }
        prop_assert_eq!(self.machine.snapshot(), snapshot);
        prop_assert_eq!(self.machine_in_flight(), in_flight);
        Ok(())
    }

    /// The process dies: a new machine is replayed from the history and resumed. What was in
    /// flight is lost with the process (and dispatched again by the resume).
    pub(super) fn crash(&mut self) -> Result<Turn, TestCaseError> {
        self.crashes += 1;
        let mut machine = RunMachine::replay(
            Arc::clone(&self.case.def),
            self.case.run_id,
            self.case.payload.clone(),
            &self.history,
        )
        .map_err(|e| TestCaseError::fail(format!("replay failed: {e}")))?;
        for (key, attempt) in std::mem::take(&mut self.in_flight) {
            self.dispatched_at.remove(&(key, attempt));
        }
        let commands = machine.resume(self.now);
        self.machine = machine;
        self.apply(commands)
    }
}

//! Inputs from outside the run that end its waits or let it start: a sleep's time, a
//! resume, a published event, a child run's end, admission and merged triggers.

use chrono::{DateTime, Utc};

use super::{Command, RunMachine};
use crate::event::{RunEvent, Wait, WaitOutcome};
use crate::id::{RunId, TaskKey};
use crate::json::Json;

impl RunMachine {
    /// Ends every open wait whose time has come: a sleep elapses, a pause or an event wait
    /// times out.
    pub(super) fn end_due_waits(&mut self, now: DateTime<Utc>, out: &mut Vec<Command>) {
        let due: Vec<TaskKey> = self
            .wait_deadlines
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, key)| key.clone())
            .collect();
        for wait in due {
            let outcome = match self.waits.get(&wait).map(|w| &w.on) {
                Some(Wait::Sleep { .. }) => WaitOutcome::Elapsed,
                _ => WaitOutcome::TimedOut,
            };
            self.record(now, RunEvent::WaitEnded { wait, outcome }, out);
        }
    }

    /// Resumes the open pause `key` with `payload` (the pause node's output). `None` if the
    /// run has no open pause with that key (never paused there, already resumed, timed out,
    /// or the run has ended, or its deadline has passed: its timer ends it, as a task result
    /// after the deadline does).
    pub fn resume_pause(
        &mut self,
        now: DateTime<Utc>,
        key: &TaskKey,
        payload: Json,
    ) -> Option<Vec<Command>> {
        if self.status.is_terminal() || self.overdue(now) {
            return None;
        }
        let wait = self.waits.get(key)?;
        if wait.outcome.is_some() || !matches!(wait.on, Wait::Pause { .. }) {
            return None;
        }
        let mut out = Vec::new();
        let outcome = WaitOutcome::Resumed { payload };
        self.record(now, RunEvent::WaitEnded { wait: key.clone(), outcome }, &mut out);
        self.advance(now, &mut out);
        Some(out)
    }

    /// Delivers a published event: every open `wait_for_event` of this run waiting for
    /// `name` whose `match` fields the payload has ends with the payload as its output.
    /// Returns how many waits it ended, and the commands.
    ///
    /// The delivery rule: a wait receives an event only if its `wait_started` was applied
    /// before this call, that is, recorded before the engine took the publish. A run whose
    /// deadline has passed takes no event (its timer ends it).
    pub fn deliver_event(
        &mut self,
        now: DateTime<Utc>,
        name: &str,
        payload: &Json,
    ) -> (usize, Vec<Command>) {
        let mut out = Vec::new();
        if self.status.is_terminal() || self.overdue(now) {
            return (0, out);
        }
        let mut parsed = None;
        let mut matching = Vec::new();
        for (key, wait) in self.open_waits() {
            let Wait::Event { name: wanted, match_fields, .. } = wait else { continue };
            if wanted != name {
                continue;
            }
            if let Some(fields) = match_fields {
                let value = parsed.get_or_insert_with(|| payload.to_value());
                if !matches_fields(value, fields) {
                    continue;
                }
            }
            matching.push(key.clone());
        }
        for wait in &matching {
            let outcome = WaitOutcome::Resumed { payload: payload.clone() };
            self.record(now, RunEvent::WaitEnded { wait: wait.clone(), outcome }, &mut out);
        }
        if !matching.is_empty() {
            self.advance(now, &mut out);
        }
        (matching.len(), out)
    }

    /// Gives the end of child run `child` to the subflow waiting for it: its output, its
    /// failure or its cancellation (a [`WaitOutcome::ChildCompleted`], `ChildFailed` or
    /// `ChildCancelled`). Nothing happens if no open subflow waits for that child, or if the
    /// run's deadline has passed (its timer ends it and cancels the children still waited
    /// for).
    pub fn child_finished(
        &mut self,
        now: DateTime<Utc>,
        child: RunId,
        outcome: WaitOutcome,
    ) -> Vec<Command> {
        let mut out = Vec::new();
        if self.status.is_terminal() || self.overdue(now) {
            return out;
        }
        let waiting = self.open_waits().find_map(|(key, wait)| match wait {
            Wait::Subflow { child: c, .. } if *c == child => Some(key.clone()),
            _ => None,
        });
        if let Some(wait) = waiting {
            self.record(now, RunEvent::WaitEnded { wait, outcome }, &mut out);
            self.advance(now, &mut out);
        }
        out
    }

    /// Whether the run's deadline has come: a signal then changes nothing, the next
    /// `handle_timeout` fails the run.
    fn overdue(&self, now: DateTime<Utc>) -> bool {
        self.deadline().is_some_and(|deadline| deadline <= now)
    }

    /// Lets a flow-controlled run start (records `run_admitted`). Does nothing if it was
    /// admitted already or has ended.
    pub fn admit(&mut self, now: DateTime<Utc>) -> Vec<Command> {
        let mut out = Vec::new();
        if self.admitted || self.status.is_terminal() {
            return out;
        }
        self.record(now, RunEvent::RunAdmitted, &mut out);
        self.advance(now, &mut out);
        out
    }

    /// Folds a debounced trigger into this run, which has not been admitted yet: the run
    /// will execute with `payload`. Returns `None` once the run was admitted or has ended.
    pub fn merge_trigger(&mut self, now: DateTime<Utc>, payload: Json) -> Option<Vec<Command>> {
        if self.admitted || self.status.is_terminal() {
            return None;
        }
        let mut out = Vec::new();
        self.record(now, RunEvent::TriggerMerged { payload }, &mut out);
        Some(out)
    }
}

/// Whether `payload` has every field of `fields` with an equal value. A field name that
/// starts with `/` is a JSON pointer into the payload; any other names a top-level field.
pub(crate) fn matches_fields(
    payload: &serde_json::Value,
    fields: &serde_json::Map<String, serde_json::Value>,
) -> bool {
    fields.iter().all(|(name, wanted)| {
        let found = if name.starts_with('/') { payload.pointer(name) } else { payload.get(name) };
        found == Some(wanted)
    })
}

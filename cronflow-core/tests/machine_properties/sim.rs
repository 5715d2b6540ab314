//! The simulated driver: feeds the machine the script's answers, stale results, timer ticks,
//! cancels, resumes, published events, child ends, refused signals and crashes on a virtual
//! clock, and checks every command it gets back. `signals` holds the inputs other than task
//! results, `commands` the checks of each call's commands, `checks` the checks after each
//! step, `history` the checks of the whole history once the run has ended.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use cronflow_core::{
    FailureKind, Json, RecordedEvent, RunEvent, RunId, RunMachine, Task, TaskError, TaskKey,
    TaskKind,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

use crate::strategies::{Case, Choice};
use crate::{ERROR_NAMES, t0};

mod checks;
mod commands;
mod expect;
mod history;
mod signals;

/// No generated run may need more steps than this (finite retries and loops end every run
/// long before).
const MAX_STEPS: usize = 2_000;

pub(crate) fn ms(n: u64) -> chrono::Duration {
    chrono::Duration::milliseconds(n as i64)
}

/// A child run the machine started.
#[derive(Debug, Clone)]
struct Child {
    wait: TaskKey,
    /// The world told the machine how it ended.
    ended: bool,
    /// The machine cancelled it.
    cancelled: bool,
}

pub(crate) struct Sim<'a> {
    case: &'a Case,
    machine: RunMachine,
    now: DateTime<Utc>,
    history: Vec<RecordedEvent>,
    /// Dispatched and neither answered nor aborted: key -> attempt.
    in_flight: BTreeMap<TaskKey, u32>,
    /// When each attempt was dispatched.
    dispatched_at: BTreeMap<(TaskKey, u32), DateTime<Utc>>,
    aborted: Vec<(TaskKey, u32)>,
    children: BTreeMap<RunId, Child>,
    cancelled: bool,
    crashes: usize,
    steps: usize,
}

/// The outcome of one driver step, for the checks that follow it.
#[derive(Default)]
struct Turn {
    dispatched: Vec<Task>,
    /// `handle_timeout` was called at a time when timers were due.
    timers_fired: bool,
    /// The history's length before the call.
    first_event: usize,
}

impl<'a> Sim<'a> {
    pub(crate) fn start(case: &'a Case) -> Result<Self, TestCaseError> {
        let now = t0();
        let (machine, commands) =
            RunMachine::start(Arc::clone(&case.def), case.run_id, case.payload.clone(), now);
        let mut sim = Sim {
            case,
            machine,
            now,
            history: Vec::new(),
            in_flight: BTreeMap::new(),
            dispatched_at: BTreeMap::new(),
            aborted: Vec::new(),
            children: BTreeMap::new(),
            cancelled: false,
            crashes: 0,
            steps: 0,
        };
        let turn = sim.apply(commands)?;
        prop_assert!(
            matches!(sim.history.first().map(|e| &e.event), Some(RunEvent::RunStarted)),
            "start must record RunStarted first: {:?}",
            sim.history
        );
        sim.check(&turn)?;
        Ok(sim)
    }

    pub(crate) fn run(&mut self) -> Result<(), TestCaseError> {
        let mut script = self.case.script.iter().cloned();
        while !self.machine.status().is_terminal() {
            self.steps += 1;
            prop_assert!(self.steps <= MAX_STEPS, "the run did not end in {MAX_STEPS} steps");
            let default = Choice::Succeed { pick: 0, value: 0, delay: 0 };
            let choice = match script.next().unwrap_or(default) {
                Choice::Fail { pick, delay, .. } if !self.case.faults => {
                    Choice::Succeed { pick, value: 1, delay }
                }
                Choice::Cancel if !self.case.faults => Choice::Tick { ms: 1 },
                other => other,
            };
            let turn = self.step(choice)?;
            self.check(&turn)?;
        }
        self.finish()
    }

    fn pick(&self, pick: usize) -> (TaskKey, u32) {
        let (key, attempt) = self.in_flight.iter().nth(pick % self.in_flight.len()).unwrap();
        (key.clone(), *attempt)
    }

    fn step(&mut self, choice: Choice) -> Result<Turn, TestCaseError> {
        match choice {
            Choice::Succeed { pick, .. } | Choice::Fail { pick, .. }
                if self.in_flight.is_empty() =>
            {
                self.progress(pick)
            }
            Choice::Succeed { pick, value, delay } => {
                let (key, attempt) = self.pick(pick);
                let kind = self.case.meta(&key)?.kind;
                let output = Json::from(success_value(kind, value, self.case.faults));
                self.answer(key, attempt, Ok(output), delay)
            }
            Choice::Fail { pick, name, non_retryable, delay } => {
                let (key, attempt) = self.pick(pick);
                let mut error = TaskError::new(ERROR_NAMES[name], format!("injected into {key}"));
                if non_retryable {
                    error = error.non_retryable();
                }
                self.answer(key, attempt, Err(error), delay)
            }
            Choice::Stale { pick } => {
                self.stale(pick)?;
                Ok(Turn::default())
            }
            Choice::Tick { ms } => self.tick(ms),
            Choice::Cancel => self.cancel(),
            Choice::Resume { pick, value, delay } => self.resume(pick, value, delay),
            Choice::Publish { name, order, value, delay } => {
                self.publish(name, order, value, delay)
            }
            Choice::ChildEnd { pick, how, value, delay } => self.child_end(pick, how, value, delay),
            Choice::Refused { pick } => {
                self.refused(pick)?;
                Ok(Turn::default())
            }
            Choice::Crash => self.crash(),
        }
    }

    fn cancel(&mut self) -> Result<Turn, TestCaseError> {
        self.cancelled = true;
        let in_flight = self.in_flight.clone();
        let commands = self.machine.cancel(self.now, Some("prop".into()));
        let turn = self.apply(commands)?;
        prop_assert!(self.in_flight.is_empty(), "cancel left {:?} running", self.in_flight);
        let aborted: BTreeMap<_, _> =
            self.aborted.iter().rev().take(in_flight.len()).cloned().collect();
        prop_assert_eq!(aborted, in_flight, "cancel must abort every attempt in flight");
        let last = &self.history.last().unwrap().event;
        prop_assert_eq!(last, &RunEvent::RunCancelled { reason: Some("prop".into()) });
        Ok(turn)
    }

    fn answer(
        &mut self,
        key: TaskKey,
        attempt: u32,
        result: Result<Json, TaskError>,
        delay: u8,
    ) -> Result<Turn, TestCaseError> {
        self.now += ms(delay.into());
        self.in_flight.remove(&key);
        let before = self.history.len();
        let commands = self.machine.handle_task_result(self.now, &key, attempt, result.clone());
        let turn = self.apply(commands)?;
        // The answer itself is recorded first, with the dispatch time of its attempt.
        let started = self.dispatched_at[&(key.clone(), attempt)];
        let event = self.history.get(before).map(|e| &e.event);
        if self.overdue() {
            return self.timed_out(before);
        }
        match (&result, event) {
            (
                Ok(output),
                Some(RunEvent::TaskSucceeded { task, attempt: a, started_at, output: o }),
            ) => {
                prop_assert!(*task == key && *a == attempt && *started_at == started);
                prop_assert_eq!(o, output);
            }
            (
                Err(error),
                Some(RunEvent::TaskFailed { task, attempt: a, started_at, error: e, .. }),
            ) => {
                prop_assert!(*task == key && *a == attempt && *started_at == started);
                prop_assert_eq!(e, error);
            }
            (_, event) => {
                return Err(TestCaseError::fail(format!(
                    "answer {result:?} of {key:?} attempt {attempt} recorded {event:?}"
                )));
            }
        }
        Ok(turn)
    }

    /// Whether the run's deadline has come.
    fn overdue(&self) -> bool {
        self.case.deadline().is_some_and(|d| d <= self.now)
    }

    /// An input after the deadline does not count: the run times out instead (the first
    /// event the call recorded, from history index `before`).
    fn timed_out(&self, before: usize) -> Result<Turn, TestCaseError> {
        let recorded: Vec<&RunEvent> = self.history[before..].iter().map(|e| &e.event).collect();
        let timed_out = matches!(recorded.as_slice(), [RunEvent::RunFailed { failure }]
                if failure.kind == FailureKind::RunTimedOut);
        prop_assert!(
            timed_out,
            "an input at {} past the deadline recorded {:?}",
            self.now,
            recorded
        );
        Ok(Turn::default())
    }

    /// Results for attempts that are not in flight must change nothing.
    fn stale(&mut self, pick: usize) -> Result<(), TestCaseError> {
        let mut candidates: Vec<(TaskKey, u32)> = vec![(TaskKey::new("ghost"), 1)];
        for (key, attempt) in &self.in_flight {
            candidates.push((key.clone(), attempt + 1));
            if *attempt > 1 {
                candidates.push((key.clone(), attempt - 1));
            }
        }
        candidates.extend(self.aborted.iter().cloned());
        for recorded in &self.history {
            if let (Some(task), Some(attempt)) = (recorded.event.task(), recorded.event.attempt()) {
                // Duplicates of answered attempts, and the not yet dispatched next attempt.
                candidates.push((task.clone(), attempt));
                if !self.in_flight.contains_key(task) {
                    candidates.push((task.clone(), attempt + 1));
                }
            }
        }
        let (key, attempt) = candidates[pick % candidates.len()].clone();
        let result =
            if pick.is_multiple_of(3) { Err(TaskError::msg("late")) } else { Ok(Json::null()) };
        let before = self.machine.snapshot();
        let in_flight = self.in_flight.clone();
        let commands = self.machine.handle_task_result(self.now, &key, attempt, result);
        prop_assert!(
            commands.is_empty(),
            "a result for {:?} attempt {} (not in flight) produced {:?}",
            key,
            attempt,
            commands
        );
        prop_assert_eq!(self.machine.snapshot(), before);
        prop_assert_eq!(self.machine_in_flight(), in_flight);
        Ok(())
    }

    fn machine_in_flight(&self) -> BTreeMap<TaskKey, u32> {
        self.machine.in_flight().map(|(k, a)| (k.clone(), a)).collect()
    }
}

fn success_value(kind: TaskKind, value: u8, faults: bool) -> Value {
    match kind {
        TaskKind::Condition => match value % 5 {
            0 => json!(true),
            1 => json!(false),
            2 => json!(0),
            3 => json!(1),
            _ => Value::Null,
        },
        // Mostly arrays of up to four items; with faults, sometimes not an array.
        TaskKind::Items if faults && value % 16 == 15 => json!({ "not": "a list" }),
        TaskKind::Items => {
            let items = (0..value % 5).map(|i| json!(format!("i{i}"))).collect();
            Value::Array(items)
        }
        _ => match value % 3 {
            0 => json!(value),
            1 => json!(format!("s{value}")),
            _ => json!({ "v": value, "ok": true }),
        },
    }
}

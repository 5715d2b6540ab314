//! The simulated driver: feeds the machine the script's answers, stale results, timer ticks
//! and cancels on a virtual clock, and checks every command it gets back (`checks` holds the
//! checks after each step and once the run has ended).

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use cronflow_core::{
    Command, FailureKind, Json, RecordedEvent, RunEvent, RunMachine, Task, TaskError, TaskKey,
    TaskKind,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

use crate::strategies::{Case, Choice};
use crate::{ERROR_NAMES, t0};

mod checks;

/// No generated run may need more steps than this (finite retries end every run long before).
const MAX_STEPS: usize = 1_000;

fn ms(n: u64) -> chrono::Duration {
    chrono::Duration::milliseconds(n as i64)
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
    cancelled: bool,
    steps: usize,
}

/// The outcome of one driver step, for the checks that follow it.
#[derive(Default)]
struct Turn {
    dispatched: Vec<Task>,
    /// `handle_timeout` was called at a time when timers were due.
    timers_fired: bool,
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
            cancelled: false,
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

    /// Carries out one call's commands, checking each against the driver's view.
    fn apply(&mut self, commands: Vec<Command>) -> Result<Turn, TestCaseError> {
        let mut turn = Turn::default();
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
                    self.check_task(&task)?;
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
                other => {
                    return Err(TestCaseError::fail(format!(
                        "{other:?} from a tree of steps, actions, ifs and parallels"
                    )));
                }
            }
        }
        Ok(turn)
    }

    /// The static fields of a dispatched task.
    fn check_task(&self, task: &Task) -> Result<(), TestCaseError> {
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
        Ok(())
    }

    pub(crate) fn run(&mut self) -> Result<(), TestCaseError> {
        let mut script = self.case.script.iter().cloned();
        while !self.machine.status().is_terminal() {
            self.steps += 1;
            prop_assert!(self.steps <= MAX_STEPS, "the run did not end in {MAX_STEPS} steps");
            let turn = if self.in_flight.is_empty() {
                self.fire_timers()?
            } else {
                let default = Choice::Succeed { pick: 0, value: 0, delay: 0 };
                let choice = match script.next().unwrap_or(default) {
                    Choice::Fail { pick, delay, .. } if !self.case.faults => {
                        Choice::Succeed { pick, value: 1, delay }
                    }
                    Choice::Cancel if !self.case.faults => Choice::Tick { ms: 1 },
                    other => other,
                };
                self.step(choice)?
            };
            self.check(&turn)?;
        }
        self.finish()
    }

    /// Nothing is in flight: the run can only go on when its next timer fires.
    fn fire_timers(&mut self) -> Result<Turn, TestCaseError> {
        let Some(at) = self.machine.poll_timeout() else {
            return Err(TestCaseError::fail(format!(
                "stuck: the run is {:?} with nothing in flight and no timer; history {:#?}",
                self.machine.status(),
                self.history
            )));
        };
        self.now = self.now.max(at);
        let commands = self.machine.handle_timeout(self.now);
        prop_assert!(
            !commands.is_empty(),
            "stuck: poll_timeout() = {at} but handle_timeout({}) does nothing; history {:#?}",
            self.now,
            self.history
        );
        let mut turn = self.apply(commands)?;
        turn.timers_fired = true;
        Ok(turn)
    }

    fn pick(&self, pick: usize) -> (TaskKey, u32) {
        let (key, attempt) = self.in_flight.iter().nth(pick % self.in_flight.len()).unwrap();
        (key.clone(), *attempt)
    }

    fn step(&mut self, choice: Choice) -> Result<Turn, TestCaseError> {
        match choice {
            Choice::Succeed { pick, value, delay } => {
                let (key, attempt) = self.pick(pick);
                let output = Json::from(success_value(self.case.meta(&key)?.kind, value));
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
            Choice::Tick { ms: n } => {
                self.now += ms(n.into());
                let due = self.machine.poll_timeout().is_some_and(|at| at <= self.now);
                let commands = self.machine.handle_timeout(self.now);
                if due {
                    prop_assert!(!commands.is_empty(), "a due timer did nothing at {}", self.now);
                } else {
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
            Choice::Cancel => {
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
        }
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
        if self.case.deadline().is_some_and(|d| d <= self.now) {
            // An answer after the deadline does not count: the run times out instead.
            let timed_out = matches!(event, Some(RunEvent::RunFailed { failure })
                if failure.kind == FailureKind::RunTimedOut);
            prop_assert!(timed_out, "late answer of {:?} recorded {:?}", key, event);
            return Ok(turn);
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

fn success_value(kind: TaskKind, value: u8) -> Value {
    match kind {
        TaskKind::Condition => match value % 5 {
            0 => json!(true),
            1 => json!(false),
            2 => json!(0),
            3 => json!(1),
            _ => Value::Null,
        },
        _ => match value % 3 {
            0 => json!(value),
            1 => json!(format!("s{value}")),
            _ => json!({ "v": value, "ok": true }),
        },
    }
}

//! The driver's side of waits: which run waits for which token, event or child run, and the
//! signals that end those waits (resumes, published events, child runs' ends).
//!
//! The index is derived from the machines' recorded events (and rebuilt from a replayed
//! machine's open waits), so it is never stored.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;
use tracing::warn;

use crate::engine::driver::{ActiveRun, Driver, Input};
use crate::error::EngineError;
use crate::event::{FailureKind, RunEvent, RunFailure, Wait, WaitOutcome};
use crate::id::{RunId, TaskKey};
use crate::json::Json;
use crate::machine::{Command, RunMachine, token_hash};
use crate::store::NewRun;

/// A run waiting in a `pause`, as [`EngineHandle::paused_runs`](crate::EngineHandle::paused_runs)
/// lists it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PausedRun {
    /// The run.
    pub run_id: RunId,
    /// Its workflow.
    pub workflow_id: String,
    /// The pause's key: its node id, with its loop iteration inside loops.
    pub node: TaskKey,
    /// When the pause times out, if it has a timeout.
    pub timeout_at: Option<DateTime<Utc>>,
}

/// What [`EngineHandle::publish_event`](crate::EngineHandle::publish_event) did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Published {
    /// One run per workflow with an event trigger of this name, in workflow id order.
    pub started: Vec<crate::engine::Triggered>,
    /// How many `wait_for_event` waits of running runs the event ended.
    pub resumed: usize,
}

/// Who waits for what.
#[derive(Debug, Default)]
pub(crate) struct WaitIndex {
    /// Pause token hashes.
    tokens: HashMap<String, (RunId, TaskKey)>,
    /// Runs with an event wait, by event name (entries of runs gone are dropped lazily).
    events: HashMap<String, HashSet<RunId>>,
    /// Child run → its parent, for every running child this instance knows.
    parents: HashMap<RunId, RunId>,
}

impl WaitIndex {
    /// Notes what a recorded event of `run` starts waiting for.
    pub(crate) fn note(&mut self, run: RunId, event: &RunEvent) {
        match event {
            RunEvent::WaitStarted { wait, on } => match on {
                Wait::Pause { token_hash, .. } => {
                    self.tokens.insert(token_hash.clone(), (run, wait.clone()));
                }
                Wait::Event { name, .. } => {
                    self.events.entry(name.clone()).or_default().insert(run);
                }
                Wait::Subflow { child, .. } => {
                    self.parents.insert(*child, run);
                }
                Wait::Sleep { .. } => {}
            },
            RunEvent::TokenIssued { wait, token_hash } => {
                self.tokens.insert(token_hash.clone(), (run, wait.clone()));
            }
            _ => {}
        }
    }

    /// Indexes the open waits of a replayed run.
    pub(crate) fn index_run(&mut self, run: RunId, machine: &RunMachine) {
        for (wait, hash) in machine.open_pause_tokens() {
            self.tokens.insert(hash.to_owned(), (run, wait.clone()));
        }
        for (wait, on) in machine.open_waits() {
            if !matches!(on, Wait::Pause { .. }) {
                let event = RunEvent::WaitStarted { wait: wait.clone(), on: on.clone() };
                self.note(run, &event);
            }
        }
    }

    /// The run holding pause token hash `hash`.
    pub(crate) fn run_of_token(&self, hash: &str) -> Option<RunId> {
        self.tokens.get(hash).map(|(run, _)| *run)
    }

    /// The runs that may wait for event `name`.
    pub(crate) fn event_waiters(&self, name: &str) -> impl Iterator<Item = RunId> + '_ {
        self.events.get(name).into_iter().flatten().copied()
    }

    /// Notes that `child` is a subflow's run whose parent is `parent`.
    pub(crate) fn note_child(&mut self, child: RunId, parent: RunId) {
        self.parents.insert(child, parent);
    }

    /// The parent waiting for `child`, if this instance knows one.
    pub(crate) fn parent_of(&self, child: RunId) -> Option<RunId> {
        self.parents.get(&child).copied()
    }

    /// Forgets what finished run `run` waited for, as a child and through its tokens.
    pub(crate) fn forget(&mut self, run: RunId) {
        self.parents.remove(&run);
        self.tokens.retain(|_, (r, _)| *r != run);
    }
}

/// Work for other runs that a run's commands caused, carried out after them so each run's
/// events stay in order within a turn.
pub(crate) enum Signal {
    ChildEnded { parent: RunId, child: RunId, outcome: WaitOutcome },
}

/// Where the answer to a resume goes, with the answer.
type ResumeReply = (oneshot::Sender<Result<RunId, EngineError>>, Result<RunId, EngineError>);

/// Answers given once the turn that made them true is durable.
#[derive(Default)]
pub(crate) struct WaitReplies {
    pub(crate) resumed: Vec<ResumeReply>,
    pub(crate) published: Vec<(oneshot::Sender<usize>, usize)>,
    pub(crate) signals: VecDeque<Signal>,
}

impl WaitReplies {
    pub(crate) fn answer(&mut self) {
        for (reply, answer) in self.resumed.drain(..) {
            let _ = reply.send(answer);
        }
        for (reply, answer) in self.published.drain(..) {
            let _ = reply.send(answer);
        }
    }
}

/// The outcome a parent's subflow wait gets from its child's terminal event.
pub(crate) fn child_outcome(event: &RunEvent) -> Option<WaitOutcome> {
    Some(match event {
        RunEvent::RunCompleted { output } => WaitOutcome::ChildCompleted { output: output.clone() },
        RunEvent::RunFailed { failure } => WaitOutcome::ChildFailed { failure: failure.clone() },
        RunEvent::RunCancelled { reason } => WaitOutcome::ChildCancelled { reason: reason.clone() },
        _ => return None,
    })
}

impl Driver {
    /// Resumes the pause holding `token`; the answer waits for the turn's commit.
    pub(crate) fn resume_token(
        &mut self,
        token: &str,
        payload: Json,
    ) -> Result<RunId, EngineError> {
        let hash = token_hash(token);
        let (run_id, wait) =
            self.waits.tokens.get(&hash).cloned().ok_or(EngineError::UnknownResumeToken)?;
        self.resume_wait(run_id, &wait, payload).map_err(|_| {
            self.waits.tokens.remove(&hash);
            EngineError::UnknownResumeToken
        })
    }

    /// Resumes run `run_id`'s open pause `wait`.
    pub(crate) fn resume_wait(
        &mut self,
        run_id: RunId,
        wait: &TaskKey,
        payload: Json,
    ) -> Result<RunId, EngineError> {
        let now = self.clock.now();
        let refused = || EngineError::NoOpenPause { run: run_id, node: wait.to_string() };
        let run = self.runs.get_mut(&run_id).ok_or_else(refused)?;
        let commands = run.machine.resume_pause(now, wait, payload).ok_or_else(refused)?;
        self.carry_out(run_id, commands);
        Ok(run_id)
    }

    /// Delivers a published event to every run waiting for it here; returns how many waits
    /// it ended.
    pub(crate) fn deliver_event(&mut self, name: &str, payload: &Json) -> usize {
        let now = self.clock.now();
        let Some(waiting) = self.waits.events.get(name).cloned() else { return 0 };
        let mut waiting: Vec<RunId> = waiting.into_iter().collect();
        waiting.sort(); // run ids are time-ordered: older runs first
        let mut delivered = 0;
        for run_id in waiting {
            let still_waiting = match self.runs.get_mut(&run_id) {
                Some(run) => {
                    let (ended, commands) = run.machine.deliver_event(now, name, payload);
                    delivered += ended;
                    self.carry_out(run_id, commands);
                    self.runs.get(&run_id).is_some_and(|run| {
                        run.machine
                            .open_waits()
                            .any(|(_, w)| matches!(w, Wait::Event { name: n, .. } if n == name))
                    })
                }
                None => false,
            };
            if !still_waiting && let Some(runs) = self.waits.events.get_mut(name) {
                runs.remove(&run_id);
            }
        }
        delivered
    }

    /// Creates child run `child` of `parent` (a `subflow`) in this turn.
    pub(crate) fn start_child(
        &mut self,
        parent: RunId,
        child: RunId,
        workflow: String,
        payload: Json,
        parent_wait: TaskKey,
    ) {
        let now = self.clock.now();
        let Some(def) = self.registry.latest(&workflow).map(Arc::clone) else {
            let failure = RunFailure {
                kind: FailureKind::NodeFailed,
                message: format!("no workflow `{workflow}` is registered"),
                task: None,
                error: None,
            };
            let outcome = WaitOutcome::ChildFailed { failure };
            self.replies.signals.push_back(Signal::ChildEnded { parent, child, outcome });
            return;
        };
        self.waits.parents.insert(child, parent);
        let context = serde_json::json!({
            "type": "subflow",
            "parent_run": parent.to_string(),
            "parent_node": parent_wait.as_str(),
        });
        let context = Json::from(context);
        self.batch.new_runs.push(NewRun {
            id: child,
            workflow_id: workflow,
            revision: def.revision,
            payload: payload.clone(),
            created_at: now,
            key: None,
            context: Some(context.clone()),
        });
        let fence = if self.leases.is_some() { 1 } else { 0 };
        let gated = def.is_flow_controlled();
        let (machine, commands) = if gated {
            RunMachine::start_gated(def, child, payload, now)
        } else {
            RunMachine::start(def, child, payload, now)
        };
        self.runs.insert(child, ActiveRun::new(machine, fence, Some(context)));
        self.carry_out(child, commands);
        if gated {
            self.flow_accept(child);
        }
    }

    /// Cancels child run `child` (its parent ended, or its subflow lost a race).
    pub(crate) fn cancel_child(&mut self, child: RunId, reason: String) {
        let now = self.clock.now();
        self.waits.parents.remove(&child);
        if let Some(run) = self.runs.get_mut(&child) {
            let commands = run.machine.cancel(now, Some(reason));
            self.carry_out(child, commands);
        } else if self.wake_parked(child) {
            // Cancelled once it is loaded; nobody waits for the answer.
            let (reply, _) = oneshot::channel();
            self.after_unpark(Input::Cancel { run_id: child, reason: Some(reason), reply });
        } else {
            warn!(%child, "child run to cancel is not active on this instance");
        }
    }

    /// Carries out the signals the turn's commands raised, until there are none.
    pub(crate) fn drain_signals(&mut self) {
        while let Some(signal) = self.replies.signals.pop_front() {
            match signal {
                Signal::ChildEnded { parent, child, outcome } => {
                    let now = self.clock.now();
                    if let Some(run) = self.runs.get_mut(&parent) {
                        let commands = run.machine.child_finished(now, child, outcome);
                        self.carry_out(parent, commands);
                    } else if self.wake_parked(parent) {
                        self.held_signals.push(Signal::ChildEnded { parent, child, outcome });
                    }
                }
            }
        }
    }

    /// Sorts the wait-related commands of `run_id` (the rest is `carry_out`'s).
    pub(crate) fn carry_out_wait(&mut self, run_id: RunId, command: Command) {
        match command {
            Command::StartRun { child, workflow, payload, parent_wait } => {
                self.start_child(run_id, child, workflow, payload, parent_wait);
            }
            Command::CancelRun { child, reason } => self.cancel_child(child, reason),
            _ => {}
        }
    }

    /// After a replay: the children a run waits for that ended while nobody here held it
    /// (or that this instance does not hold) are looked up in the store.
    pub(crate) async fn settle_children(&mut self, runs: &[RunId]) {
        let mut ask = Vec::new();
        for run_id in runs {
            let Some(run) = self.runs.get(run_id) else { continue };
            for (_, on) in run.machine.open_waits() {
                if let Wait::Subflow { child, .. } = on
                    && !self.runs.contains_key(child)
                {
                    ask.push((*run_id, *child));
                }
            }
        }
        for (parent, child) in ask {
            match self.store.run_report(child).await {
                Ok(Some(report)) => {
                    let end = report.history.last().map(|e| &e.event).and_then(child_outcome);
                    if let Some(outcome) = end {
                        self.replies.signals.push_back(Signal::ChildEnded {
                            parent,
                            child,
                            outcome,
                        });
                    }
                }
                Ok(None) => {}
                Err(e) => warn!(%parent, %child, error = %e, "cannot read a child run's end"),
            }
        }
        self.drain_signals();
    }

    /// Every open pause of the runs held here.
    pub(crate) fn paused_runs(&self) -> Vec<PausedRun> {
        let mut paused: Vec<PausedRun> = self
            .runs
            .iter()
            .flat_map(|(run_id, run)| {
                let workflow_id = run.machine.definition().def.id.clone();
                run.machine.open_waits().filter_map(move |(node, on)| match on {
                    Wait::Pause { timeout_at, .. } => Some(PausedRun {
                        run_id: *run_id,
                        workflow_id: workflow_id.clone(),
                        node: node.clone(),
                        timeout_at: *timeout_at,
                    }),
                    _ => None,
                })
            })
            .collect();
        paused.extend(self.parked.values().flat_map(|p| p.pauses.iter().cloned()));
        paused.sort_by(|a, b| (a.run_id, &a.node).cmp(&(b.run_id, &b.node)));
        paused
    }
}

//! Parking: a run that waits only on far-away waits (a long `sleep`, a `pause`, a
//! `wait_for_event`, a `subflow`) leaves memory. Its history is in the store; the driver keeps
//! a [`ParkedRun`] (its fence, its wake-up time, its open pauses and its watchers) and the
//! wait index entries that route signals to it. A parked run is replayed from the store
//! ([`Driver::unpark`]) a little before its wake-up time, or when an input names it: the
//! input is kept and handled again once the run is back.

use std::cmp::Reverse;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;
use tracing::{debug, error};

use crate::engine::driver::{ActiveRun, Driver, Input, WatchEnd};
use crate::engine::waits::PausedRun;
use crate::event::Wait;
use crate::id::RunId;
use crate::machine::RunMachine;
use crate::store::StoredRun;

/// A parked run is loaded this long before its wake-up time.
const PREFETCH: Duration = Duration::from_millis(500);

/// What stays in memory of a parked run.
pub(crate) struct ParkedRun {
    fence: u64,
    /// When it must be back (a sleep's time, a timeout, the run deadline), if ever.
    pub(crate) wake: Option<DateTime<Utc>>,
    /// Its open pauses, for [`paused_runs`](crate::EngineHandle::paused_runs).
    pub(crate) pauses: Vec<PausedRun>,
    pub(crate) watchers: Vec<oneshot::Sender<WatchEnd>>,
}

impl Driver {
    /// Parks every run touched in the turn just committed that can leave memory.
    pub(crate) fn park_idle(&mut self) {
        if self.config.park_after == Duration::MAX {
            self.touched.clear();
            return;
        }
        let horizon = self.clock.now()
            + chrono::Duration::from_std(self.config.park_after).unwrap_or(chrono::Duration::MAX);
        for run_id in std::mem::take(&mut self.touched) {
            let Some(run) = self.runs.get(&run_id) else { continue };
            let machine = &run.machine;
            if machine.status().is_terminal()
                || !machine.admitted()
                || machine.open_waits().next().is_none()
                || machine.in_flight().next().is_some()
                || machine.poll_timeout().is_some_and(|at| at <= horizon)
            {
                continue;
            }
            let Some(run) = self.runs.remove(&run_id) else { continue };
            let wake = run.machine.poll_timeout();
            let workflow_id = run.machine.definition().def.id.clone();
            let pauses = run
                .machine
                .open_waits()
                .filter_map(|(node, on)| match on {
                    Wait::Pause { timeout_at, .. } => Some(PausedRun {
                        run_id,
                        workflow_id: workflow_id.clone(),
                        node: node.clone(),
                        timeout_at: *timeout_at,
                    }),
                    _ => None,
                })
                .collect();
            if let Some(at) = wake {
                let early = at - chrono::Duration::from_std(PREFETCH).unwrap_or_default();
                self.timers.push(Reverse((early, run_id)));
            }
            self.dispatcher.forget_run(run_id);
            debug!(%run_id, wake = ?wake, "run parked");
            let parked = ParkedRun { fence: run.fence, wake, pauses, watchers: run.watchers };
            self.parked.insert(run_id, parked);
        }
    }

    /// A timer at `at` fired for a run that is not in memory: loads it if it is parked and
    /// the timer is its own (not one left from before it was last loaded).
    pub(crate) fn parked_timer(&mut self, run_id: RunId, at: DateTime<Utc>) {
        let prefetch = chrono::Duration::from_std(PREFETCH).unwrap_or_default();
        if self.parked.get(&run_id).and_then(|p| p.wake).is_some_and(|wake| at >= wake - prefetch) {
            self.unpark_wanted.insert(run_id);
        }
    }

    /// Whether `run_id` is parked; if so, asks for it to be loaded.
    pub(crate) fn wake_parked(&mut self, run_id: RunId) -> bool {
        if self.parked.contains_key(&run_id) {
            self.unpark_wanted.insert(run_id);
            true
        } else {
            false
        }
    }

    /// Asks for every parked run waiting for event `name` to be loaded; returns whether
    /// there was one.
    pub(crate) fn wake_event_waiters(&mut self, name: &str) -> bool {
        let parked: Vec<RunId> =
            self.waits.event_waiters(name).filter(|r| self.parked.contains_key(r)).collect();
        self.unpark_wanted.extend(parked.iter().copied());
        !parked.is_empty()
    }

    /// Keeps `input` until the parked runs it needs are loaded.
    pub(crate) fn after_unpark(&mut self, input: Input) {
        self.deferred.push(input);
    }

    /// Loads the parked runs asked for, then handles the inputs that waited for them, until
    /// those inputs need no more parked runs (a cancelled parent's parked child, say).
    pub(crate) async fn unpark(&mut self) {
        let mut failed = Vec::new();
        while !self.unpark_wanted.is_empty() {
            self.unpark_once(&mut failed).await;
            // Inputs for a run that could not be loaded wait for the next turn.
            self.unpark_wanted.retain(|run| !failed.contains(run));
        }
        // Loads that failed are tried again on the next turn.
        self.unpark_wanted.extend(failed);
    }

    async fn unpark_once(&mut self, failed: &mut Vec<RunId>) {
        let now = self.clock.now();
        let ids: Vec<RunId> = std::mem::take(&mut self.unpark_wanted)
            .into_iter()
            .filter(|id| self.parked.contains_key(id))
            .collect();
        // One load for all of them: many parked runs often wake up together.
        let loaded = match self.store.load_runs(&ids).await {
            Ok(loaded) => loaded,
            Err(e) => {
                // Try again on the next turn: the store may be back by then.
                error!(runs = ids.len(), error = %e, "cannot load parked runs");
                failed.extend(ids);
                return;
            }
        };
        let mut missing: HashSet<RunId> = ids.into_iter().collect();
        for StoredRun { run, events } in loaded {
            let run_id = run.id;
            let Some(parked) = self.parked.remove(&run_id) else { continue };
            missing.remove(&run_id);
            let store = Arc::clone(&self.store);
            let def = match self.registry.revision(&run.workflow_id, run.revision, &*store).await {
                Ok(Some(def)) => def,
                _ => {
                    error!(%run_id, "cannot unpark run: its workflow definition is gone");
                    self.unresumable.insert(run_id);
                    continue;
                }
            };
            match RunMachine::replay(def, run_id, run.payload.clone(), &events) {
                Ok(mut machine) => {
                    let commands = machine.resume(now);
                    let mut active = ActiveRun::new(machine, parked.fence, run.context.clone());
                    active.watchers = parked.watchers;
                    self.runs.insert(run_id, active);
                    self.carry_out(run_id, commands);
                    debug!(%run_id, "run unparked");
                }
                Err(e) => {
                    error!(%run_id, error = %e, "cannot unpark run");
                    self.unresumable.insert(run_id);
                }
            }
        }
        for run_id in missing {
            error!(%run_id, "parked run is missing from the store");
            self.unresumable.insert(run_id);
            if let Some(parked) = self.parked.remove(&run_id) {
                for watcher in parked.watchers {
                    let _ = watcher.send(WatchEnd::Unresumable);
                }
            }
        }
        for input in std::mem::take(&mut self.deferred) {
            self.handle(input);
        }
        self.replies.signals.extend(std::mem::take(&mut self.held_signals));
        self.drain_signals();
    }
}

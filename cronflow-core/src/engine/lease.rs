//! Leases on runs in a [shared](crate::Store::shared) store, so that several engine instances
//! can work on one database: a heartbeat keeps this instance's leases alive, a claimer picks up
//! runs no live instance holds, and the driver drops runs whose lease it lost.
//!
//! With a store that is not shared none of this runs: the engine owns every run.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, warn};

use crate::engine::config::EngineConfig;
use crate::engine::driver::{ActiveRun, Driver, Input, WatchEnd};
use crate::error::EngineError;
use crate::id::{InstanceId, RunId};
use crate::machine::RunMachine;
use crate::store::{Claim, ClaimedRun, Store};

/// This instance's side of the leases.
#[derive(Debug)]
pub(crate) struct Leases {
    pub(crate) instance: InstanceId,
    pub(crate) lease: Duration,
    /// When the last successful renewal was asked for.
    renewed_at: Instant,
}

impl Leases {
    pub(crate) fn new(instance: InstanceId, lease: Duration) -> Self {
        Self { instance, lease, renewed_at: Instant::now() }
    }

    pub(crate) fn claim(&self) -> Claim {
        Claim { owner: self.instance, lease: self.lease }
    }
}

/// How long a stopping driver waits for a claim in flight to finish before it gives up on it.
const CLAIMER_STOP_GRACE: Duration = Duration::from_secs(2);

/// The claimer's task and the switch that stops it (see [`Driver::stop_claiming`]).
pub(crate) struct Background {
    stop: watch::Sender<bool>,
    claimer: JoinHandle<()>,
}

/// Starts the heartbeat (every `heartbeat`, by default a third of the lease) and the claimer
/// (every `claim_interval` or when the store signals work, for as many runs as `room` says the
/// driver can take). Both end when the driver is gone; the claimer also when told to stop.
pub(crate) fn spawn_background(
    store: Arc<dyn Store>,
    inputs: mpsc::UnboundedSender<Input>,
    instance: InstanceId,
    config: &EngineConfig,
    room: Arc<AtomicUsize>,
) -> Background {
    let (lease, claim_interval) = (config.lease, config.claim_interval);
    let heartbeat = config.heartbeat.unwrap_or(lease / 3);
    let (heartbeat_store, heartbeat_inputs) = (Arc::clone(&store), inputs.clone());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(heartbeat).await;
            let asked_at = Instant::now();
            let input = match heartbeat_store.renew_leases(instance, lease).await {
                Ok(held) => Input::Held { held, asked_at },
                Err(e) => {
                    warn!(error = %e, "lease renewal failed");
                    Input::HeartbeatFailed
                }
            };
            if heartbeat_inputs.send(input).is_err() {
                return;
            }
        }
    });
    let (stop, mut stopping) = watch::channel(false);
    let claimer = tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(claim_interval) => {}
                () = store.work_available() => {}
                changed = stopping.changed() => {
                    if changed.is_err() {
                        return; // the driver is gone
                    }
                }
            }
            // Checked between claims only: a claim in flight is finished and handed over.
            if *stopping.borrow() || inputs.is_closed() {
                return;
            }
            let limit = room.load(Ordering::Relaxed);
            if limit == 0 {
                continue;
            }
            match store.claim_runs(instance, lease, limit).await {
                Ok(claimed) if claimed.is_empty() => {}
                Ok(claimed) => {
                    if inputs.send(Input::Claimed(claimed)).is_err() {
                        return;
                    }
                }
                Err(e) => warn!(error = %e, "claiming runs failed"),
            }
        }
    });
    Background { stop, claimer }
}

/// The parent of a child run, from its trigger context (`{"type": "subflow", ...}`).
fn subflow_parent(context: &crate::json::Json) -> Option<RunId> {
    let value = context.to_value();
    if value.get("type")?.as_str()? != "subflow" {
        return None;
    }
    value.get("parent_run")?.as_str()?.parse().ok()
}

impl Driver {
    /// Replays claimed runs and queues their work; a run already held with an older fence is
    /// replaced (its in-memory state is stale).
    pub(crate) async fn adopt(&mut self, claimed: Vec<ClaimedRun>) -> Result<usize, EngineError> {
        let now = self.clock.now();
        let mut adopted = 0;
        let mut ids = Vec::with_capacity(claimed.len());
        for ClaimedRun { run, events, fence } in claimed {
            if let Some(held) = self.runs.get(&run.id) {
                if held.fence >= fence {
                    continue;
                }
                self.drop_runs(&[run.id], WatchEnd::Moved);
            }
            let store = Arc::clone(&self.store);
            let Some(def) = self.registry.revision(&run.workflow_id, run.revision, &*store).await?
            else {
                error!(run_id = %run.id, workflow = %run.workflow_id, revision = run.revision,
                    "cannot resume run: its workflow definition is not in the store");
                self.unresumable.insert(run.id);
                continue;
            };
            match RunMachine::replay(def, run.id, run.payload.clone(), &events) {
                Ok(mut machine) => {
                    self.waits.index_run(run.id, &machine);
                    if let Some(parent) = run.context.as_ref().and_then(subflow_parent) {
                        self.waits.note_child(run.id, parent);
                    }
                    ids.push(run.id);
                    let commands = machine.resume(now);
                    let context = run.context.clone();
                    let (gated, admitted) =
                        (machine.definition().is_flow_controlled(), machine.admitted());
                    self.runs.insert(run.id, ActiveRun::new(machine, fence, context));
                    self.carry_out(run.id, commands);
                    match (gated, admitted) {
                        (true, false) => self.flow_accept(run.id),
                        (true, true) => self.flow_hold(run.id),
                        _ => {}
                    }
                    adopted += 1;
                }
                Err(e) => {
                    error!(run_id = %run.id, error = %e, "cannot resume run");
                    self.unresumable.insert(run.id);
                }
            }
        }
        self.settle_children(&ids).await;
        Ok(adopted)
    }

    /// The heartbeat's answer: drops every run held since before the renewal was asked for
    /// that the store no longer gives this instance with the same fence.
    pub(crate) fn renewed(&mut self, held: Vec<(RunId, u64)>, asked_at: Instant) {
        let Some(leases) = &mut self.leases else { return };
        leases.renewed_at = asked_at;
        let held: HashMap<RunId, u64> = held.into_iter().collect();
        let lost: Vec<RunId> = self
            .runs
            .iter()
            .filter(|(id, run)| run.since < asked_at && held.get(*id) != Some(&run.fence))
            .map(|(id, _)| *id)
            .collect();
        if !lost.is_empty() {
            warn!(runs = lost.len(), "leases lost; another instance continues these runs");
            self.drop_runs(&lost, WatchEnd::Moved);
        }
    }

    /// The heartbeat failed: once no renewal has succeeded for a whole lease, other instances
    /// may have claimed every run, so this instance stops executing them.
    pub(crate) fn heartbeat_failed(&mut self) {
        let Some(leases) = &self.leases else { return };
        if leases.renewed_at.elapsed() > leases.lease && !self.runs.is_empty() {
            error!(runs = self.runs.len(), "no lease renewal for a whole lease; dropping all runs");
            let all: Vec<RunId> = self.runs.keys().copied().collect();
            self.drop_runs(&all, WatchEnd::Moved);
        }
    }

    /// Forgets `runs`: aborts their tasks, removes their part of the uncommitted batch and
    /// tells their watchers how it ended.
    pub(crate) fn drop_runs(&mut self, runs: &[RunId], end: WatchEnd) {
        for id in runs {
            self.dispatcher.forget_run(*id);
            self.flow_finished(*id);
            if let Some(run) = self.runs.remove(id) {
                for watcher in run.watchers {
                    let _ = watcher.send(end);
                }
            }
        }
        let gone = |id: &RunId| runs.contains(id);
        self.batch.events.retain(|(id, _)| !gone(id));
        self.batch.finished.retain(|f| !gone(&f.id));
        self.batch.fences.retain(|(id, _)| !gone(id));
        self.finished.retain(|id| !gone(id));
        for (_, reply) in self.cancelled.extract_if(.., |(id, _)| gone(id)) {
            let _ = reply.send(false);
        }
    }

    /// Fills in the batch's claim and the fences of the existing runs it touches.
    pub(crate) fn fence_batch(&mut self) {
        let Some(leases) = &self.leases else { return };
        self.batch.claim = Some(leases.claim());
        self.batch.fences.clear();
        let new: HashSet<RunId> = self.batch.new_runs.iter().map(|r| r.id).collect();
        let mut seen: HashSet<RunId> = HashSet::new();
        let events = self.batch.events.iter().map(|(id, _)| *id);
        for id in events.chain(self.batch.finished.iter().map(|f| f.id)) {
            if !new.contains(&id)
                && seen.insert(id)
                && let Some(run) = self.runs.get(&id)
            {
                self.batch.fences.push((id, run.fence));
            }
        }
    }

    /// Releases the runs this full instance created for others (after their commit).
    pub(crate) async fn release_shed(&mut self) {
        let Some(leases) = &self.leases else { return };
        if self.shed.is_empty() {
            return;
        }
        let shed = std::mem::take(&mut self.shed);
        if let Err(e) = self.store.release_runs(leases.instance, &shed).await {
            warn!(error = %e, runs = shed.len(), "releasing runs for other instances failed; \
                their leases expire on their own");
        }
    }

    /// Stops the claimer at shutdown, before the leases are released, and returns the runs
    /// it claimed that the driver did not take (they are released with the others).
    ///
    /// Otherwise the claimer, woken by the release's own `NOTIFY` or by its interval, could
    /// claim the runs just released for this stopping instance, and no instance would
    /// execute them until that lease expired.
    pub(crate) async fn stop_claiming(&mut self) -> Vec<RunId> {
        let Some(Background { stop, mut claimer }) = self.background.take() else {
            return Vec::new();
        };
        let _ = stop.send(true);
        if tokio::time::timeout(CLAIMER_STOP_GRACE, &mut claimer).await.is_err() {
            claimer.abort();
            warn!("the claimer did not stop in time; what it claims waits for its lease to expire");
        }
        // Nothing else will be handled: what is left is dropped as it would be with the driver
        // (its senders see the engine stopped), except claims, which must be released.
        let mut late = Vec::new();
        while let Ok(input) = self.rx.try_recv() {
            if let Input::Claimed(claimed) = input {
                late.extend(claimed.into_iter().map(|c| c.run.id));
            }
        }
        late
    }

    /// Gives up the leases of every run still held (at shutdown), and of `late`, runs
    /// claimed for this instance but never taken.
    pub(crate) async fn release_all(&mut self, late: Vec<RunId>) {
        let Some(leases) = &self.leases else { return };
        let mut runs: Vec<RunId> = self.runs.keys().chain(self.parked.keys()).copied().collect();
        runs.extend(late);
        if let Err(e) = self.store.release_runs(leases.instance, &runs).await {
            warn!(error = %e, "releasing leases failed; they expire on their own");
        }
    }
}

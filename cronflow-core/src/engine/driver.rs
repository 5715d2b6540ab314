//! The driver: one tokio task that owns every active run's state machine, turns inputs into
//! commands, group-commits the recorded events, and only then carries the commands out.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::engine::clock::Clock;
use crate::engine::config::EngineConfig;
use crate::engine::dispatch::Dispatcher;
use crate::engine::flow::FlowControl;
use crate::engine::handle::Triggered;
pub(crate) use crate::engine::input::{Input, TriggerReply, WatchEnd, log_event};
use crate::engine::lease::{Background, Leases};
use crate::engine::park::ParkedRun;
use crate::engine::registry::Registry;
use crate::engine::waits::{Signal, WaitIndex, WaitReplies, child_outcome};
use crate::error::{EngineError, StoreError};
use crate::event::RunEvent;
use crate::id::RunId;
use crate::json::Json;
use crate::machine::token_hash;
use crate::machine::{Command, RunMachine};
use crate::state::StateHandles;
use crate::store::{ClaimedRun, CommitBatch, DuplicateRun, FinishedRun, NewRun, Store};

pub(crate) struct ActiveRun {
    pub(crate) machine: RunMachine,
    /// The timer currently in the heap for this run, if any.
    armed: Option<DateTime<Utc>>,
    pub(crate) watchers: Vec<oneshot::Sender<WatchEnd>>,
    /// The fencing token of this instance's claim (0 when the store is not shared).
    pub(crate) fence: u64,
    /// When this instance took the run (a heartbeat asked before that cannot list it).
    pub(crate) since: Instant,
    /// The trigger context, given to every task of the run.
    trigger: Json,
}

impl ActiveRun {
    pub(crate) fn new(machine: RunMachine, fence: u64, trigger: Option<Json>) -> Self {
        Self {
            machine,
            armed: None,
            watchers: Vec::new(),
            fence,
            since: Instant::now(),
            trigger: trigger.unwrap_or_default(),
        }
    }
}

pub(crate) struct Driver {
    pub(crate) rx: mpsc::UnboundedReceiver<Input>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: EngineConfig,
    pub(crate) registry: Registry,
    pub(crate) dispatcher: Dispatcher,
    pub(crate) runs: HashMap<RunId, ActiveRun>,
    pub(crate) timers: BinaryHeap<Reverse<(DateTime<Utc>, RunId)>>,
    /// Set when the store is shared by several instances.
    pub(crate) leases: Option<Leases>,
    /// How many more runs the claimer may take for this instance.
    room: Arc<AtomicUsize>,
    // Per-turn buffers, emptied by `finish_turn`.
    pub(crate) batch: CommitBatch,
    /// Triggers answered once the turn is durable: the run and whether this trigger made it
    /// (a keyed trigger repeating a key of the same turn did not).
    pub(crate) accepted: Vec<(RunId, bool, TriggerReply)>,
    /// The trigger keys of this turn's new runs.
    turn_keys: HashMap<String, RunId>,
    /// New runs of this turn the store did not create (their key was taken), with the run
    /// holding the key.
    duplicates: HashMap<RunId, RunId>,
    /// Cancel requests answered once the cancellation is durable.
    pub(crate) cancelled: Vec<(RunId, oneshot::Sender<bool>)>,
    pub(crate) finished: Vec<RunId>,
    /// Runs claimed this turn, adopted (which needs the store) before the turn commits.
    claimed: Vec<ClaimedRun>,
    /// Runs this instance claimed but could not resume (the log says why).
    pub(crate) unresumable: HashSet<RunId>,
    /// Runs triggered here while full, committed and then released for other instances.
    pub(crate) shed: Vec<RunId>,
    shutdown: Option<Instant>,
    /// Who waits for which token, event and child run.
    pub(crate) waits: WaitIndex,
    /// Answers to resumes and publishes, and signals between runs.
    pub(crate) replies: WaitReplies,
    /// Runs waiting for admission (concurrency, rate limits, debounce).
    pub(crate) flow: FlowControl,
    /// Runs out of memory until their wake-up or a signal (`park.rs`).
    pub(crate) parked: HashMap<RunId, ParkedRun>,
    /// Parked runs to load before the turn commits.
    pub(crate) unpark_wanted: HashSet<RunId>,
    /// Inputs and signals handled again once the parked runs they need are loaded.
    pub(crate) deferred: Vec<Input>,
    pub(crate) held_signals: Vec<Signal>,
    /// Runs that had commands this turn: the candidates for parking after the commit.
    pub(crate) touched: Vec<RunId>,
    /// How many runs are parked, kept up to date after every turn (for the handle).
    parked_gauge: Arc<AtomicUsize>,
    /// The workflow state handle set on every task, one per workflow.
    state: StateHandles,
    /// The heartbeat and claimer on a shared store; the claimer is stopped before the
    /// leases are released at shutdown.
    pub(crate) background: Option<Background>,
}

impl Driver {
    pub(crate) fn new(
        rx: mpsc::UnboundedReceiver<Input>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
        registry: Registry,
        dispatcher: Dispatcher,
        leases: Option<Leases>,
    ) -> Self {
        let room = Arc::new(AtomicUsize::new(config.max_active_runs));
        let state =
            StateHandles::new(Arc::clone(&store), Arc::clone(&clock), config.max_payload_bytes);
        Self {
            rx,
            store,
            clock,
            config,
            registry,
            dispatcher,
            runs: HashMap::new(),
            timers: BinaryHeap::new(),
            leases,
            room,
            batch: CommitBatch::default(),
            accepted: Vec::new(),
            turn_keys: HashMap::new(),
            duplicates: HashMap::new(),
            cancelled: Vec::new(),
            finished: Vec::new(),
            claimed: Vec::new(),
            unresumable: HashSet::new(),
            shed: Vec::new(),
            shutdown: None,
            waits: WaitIndex::default(),
            replies: WaitReplies::default(),
            flow: FlowControl::default(),
            parked: HashMap::new(),
            unpark_wanted: HashSet::new(),
            deferred: Vec::new(),
            held_signals: Vec::new(),
            touched: Vec::new(),
            parked_gauge: Arc::new(AtomicUsize::new(0)),
            state,
            background: None,
        }
    }

    /// How many more runs the claimer may take, kept up to date after every turn.
    pub(crate) fn room(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.room)
    }

    /// How many runs are parked, kept up to date after every turn.
    pub(crate) fn parked_gauge(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.parked_gauge)
    }

    /// Claims every unfinished run this instance may take (all of them when the store is
    /// not shared), replays them and queues their work for the first turn.
    pub(crate) async fn recover(&mut self) -> Result<usize, EngineError> {
        let (instance, lease) = match &self.leases {
            Some(leases) => (leases.instance, leases.lease),
            None => (crate::id::InstanceId::new(), Duration::ZERO),
        };
        let claimed = self.store.claim_runs(instance, lease, self.config.max_active_runs).await?;
        self.adopt(claimed).await
    }

    pub(crate) async fn run(mut self) {
        info!(runs = self.runs.len(), "engine started");
        loop {
            if !self.finish_turn().await {
                break;
            }
            if let Some(deadline) = self.shutdown
                && (self.dispatcher.in_flight() == 0 || Instant::now() >= deadline)
            {
                break;
            }
            let wake = self.next_wake();
            let input = tokio::select! {
                input = self.rx.recv() => input,
                () = sleep_until(wake) => None,
            };
            if let Some(input) = input {
                self.handle(input);
                let mut taken = 1;
                while taken < self.config.max_inputs_per_turn {
                    let Ok(input) = self.rx.try_recv() else { break };
                    self.handle(input);
                    taken += 1;
                }
            }
            if !self.claimed.is_empty() {
                let claimed = std::mem::take(&mut self.claimed);
                if let Err(e) = self.adopt(claimed).await {
                    warn!(error = %e, "adopting claimed runs failed; their leases will expire");
                }
            }
            self.fire_timers();
            self.flow_admit();
            self.drain_signals();
            self.unpark().await;
        }
        let late = self.stop_claiming().await;
        self.release_all(late).await;
        let interrupted = self.dispatcher.abort_all();
        info!(active_runs = self.runs.len(), interrupted, "engine stopped");
    }

    pub(crate) fn handle(&mut self, input: Input) {
        let now = self.clock.now();
        match input {
            Input::TaskDone { run_id, key, attempt, result } => {
                self.dispatcher.done(run_id, &key, attempt);
                if let Some(run) = self.runs.get_mut(&run_id) {
                    let commands = run.machine.handle_task_result(now, &key, attempt, result);
                    self.carry_out(run_id, commands);
                }
            }
            Input::Trigger { workflow_id, payload, key, context, reply } => {
                if self.shutdown.is_some() {
                    let _ = reply.send(Err(EngineError::ShuttingDown));
                    return;
                }
                let Some(def) = self.registry.latest(&workflow_id) else {
                    let _ = reply.send(Err(EngineError::UnknownWorkflow(workflow_id)));
                    return;
                };
                if let Some(&first) = key.as_ref().and_then(|k| self.turn_keys.get(k)) {
                    // The same key twice in one turn: one run, answered to both.
                    self.accepted.push((first, false, reply));
                    return;
                }
                let def = Arc::clone(def);
                let gated = def.is_flow_controlled();
                if gated && let Some(existing) = self.flow_debounce(&def, &payload) {
                    self.accepted.push((existing, false, reply));
                    return;
                }
                let run_id = RunId::new();
                if let Some(key) = &key {
                    self.turn_keys.insert(key.clone(), run_id);
                }
                self.batch.new_runs.push(NewRun {
                    id: run_id,
                    workflow_id,
                    revision: def.revision,
                    payload: payload.clone(),
                    created_at: now,
                    key,
                    context: context.clone(),
                });
                let (machine, commands) = if gated {
                    RunMachine::start_gated(def, run_id, payload, now)
                } else {
                    RunMachine::start(def, run_id, payload, now)
                };
                self.accepted.push((run_id, true, reply));
                if self.leases.is_some() && self.runs.len() >= self.config.max_active_runs {
                    // Full: record the run and leave its execution to another instance (its
                    // lease is released after the commit, which wakes their claimers).
                    for command in commands {
                        if let Command::Record(event) = command {
                            self.batch.events.push((run_id, event));
                        }
                    }
                    self.shed.push(run_id);
                    return;
                }
                let fence = if self.leases.is_some() { 1 } else { 0 };
                self.runs.insert(run_id, ActiveRun::new(machine, fence, context));
                self.carry_out(run_id, commands);
                if gated {
                    self.flow_accept(run_id);
                }
            }
            Input::Cancel { run_id, reason, reply } if self.wake_parked(run_id) => {
                self.after_unpark(Input::Cancel { run_id, reason, reply });
            }
            Input::Cancel { run_id, reason, reply } => {
                let Some(run) = self.runs.get_mut(&run_id) else {
                    let _ = reply.send(false);
                    return;
                };
                let commands = run.machine.cancel(now, reason);
                self.carry_out(run_id, commands);
                self.cancelled.push((run_id, reply));
            }
            Input::Watch { run_id, reply } => match self.runs.get_mut(&run_id) {
                Some(run) => run.watchers.push(reply),
                None if self.parked.contains_key(&run_id) => {
                    if let Some(parked) = self.parked.get_mut(&run_id) {
                        parked.watchers.push(reply);
                    }
                }
                None if self.unresumable.contains(&run_id) => {
                    let _ = reply.send(WatchEnd::Unresumable);
                }
                None => {
                    let _ = reply.send(WatchEnd::Done);
                }
            },
            Input::Register { def, reply } => {
                self.registry.insert(def);
                let _ = reply.send(());
            }
            Input::Shutdown { deadline } => {
                info!("engine shutting down");
                self.shutdown = Some(deadline);
                self.dispatcher.stop_dispatching();
            }
            // Adopted after the drain: replay needs the store. A run claimed while stopping is
            // adopted too, so that the stop releases its lease.
            Input::Claimed(claimed) => self.claimed.extend(claimed),
            Input::Held { held, asked_at } => self.renewed(held, asked_at),
            Input::HeartbeatFailed => self.heartbeat_failed(),
            Input::Resume { token, payload, reply }
                if self
                    .waits
                    .run_of_token(&token_hash(&token))
                    .is_some_and(|run| self.wake_parked(run)) =>
            {
                self.after_unpark(Input::Resume { token, payload, reply });
            }
            Input::Resume { token, payload, reply } => {
                let answer = self.resume_token(&token, payload);
                self.replies.resumed.push((reply, answer));
            }
            Input::ResumeWait { run_id, node, payload, reply } if self.wake_parked(run_id) => {
                self.after_unpark(Input::ResumeWait { run_id, node, payload, reply });
            }
            Input::ResumeWait { run_id, node, payload, reply } => {
                let answer = self.resume_wait(run_id, &node, payload);
                self.replies.resumed.push((reply, answer));
            }
            Input::Publish { name, payload, reply } if self.wake_event_waiters(&name) => {
                self.after_unpark(Input::Publish { name, payload, reply });
            }
            Input::Publish { name, payload, reply } => {
                let resumed = self.deliver_event(&name, &payload);
                self.replies.published.push((reply, resumed));
            }
            Input::Paused { reply } => {
                let _ = reply.send(self.paused_runs());
            }
        }
        self.drain_signals();
    }

    /// Sorts a machine's commands into this turn's buffers and re-arms its timer.
    pub(crate) fn carry_out(&mut self, run_id: RunId, commands: Vec<Command>) {
        if !commands.is_empty() {
            self.touched.push(run_id);
        }
        for command in commands {
            match command {
                Command::Record(event) => {
                    log_event(run_id, &event.event);
                    self.waits.note(run_id, &event.event);
                    if let Some(status) = event.event.terminal_status() {
                        if let (Some(parent), Some(outcome)) =
                            (self.waits.parent_of(run_id), child_outcome(&event.event))
                        {
                            let child = run_id;
                            self.replies.signals.push_back(Signal::ChildEnded {
                                parent,
                                child,
                                outcome,
                            });
                        }
                        self.waits.forget(run_id);
                        let (output, failure) = match &event.event {
                            RunEvent::RunCompleted { output } => (Some(output.clone()), None),
                            RunEvent::RunFailed { failure } => (None, Some(failure.clone())),
                            _ => (None, None),
                        };
                        self.batch.finished.push(FinishedRun {
                            id: run_id,
                            status,
                            output,
                            failure,
                            finished_at: event.at,
                        });
                        self.finished.push(run_id);
                    }
                    self.batch.events.push((run_id, event));
                }
                Command::Dispatch(mut task) => {
                    if let Some(run) = self.runs.get(&run_id) {
                        task.context.trigger = run.trigger.clone();
                    }
                    task.context.state = Some(self.state.workflow(&task.workflow_id));
                    self.dispatcher.submit(*task)
                }
                Command::Abort { key, attempt } => self.dispatcher.abort(run_id, &key, attempt),
                other => self.carry_out_wait(run_id, other),
            }
        }
        if let Some(run) = self.runs.get_mut(&run_id) {
            let due = run.machine.poll_timeout();
            if due.is_some() && due != run.armed {
                run.armed = due;
                self.timers.push(Reverse((due.unwrap_or_default(), run_id)));
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = self.clock.now();
        while let Some(Reverse((at, run_id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(run) = self.runs.get_mut(&run_id) else {
                self.parked_timer(run_id, at);
                continue;
            };
            if run.armed != Some(at) {
                continue; // superseded by an earlier or later timer of the same run
            }
            run.armed = None;
            let commands = run.machine.handle_timeout(now);
            self.carry_out(run_id, commands);
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((at, _))| {
            Instant::now() + (*at - self.clock.now()).to_std().unwrap_or(Duration::ZERO)
        });
        [timer, self.shutdown, self.flow.next_wake()].into_iter().flatten().min()
    }

    /// Makes this turn's events durable, then answers triggers, dispatches tasks and wakes
    /// the watchers of finished runs. Returns false if the store keeps failing: the engine
    /// then stops, and the next start resumes from what was committed.
    async fn finish_turn(&mut self) -> bool {
        if !self.batch.is_empty() {
            let Some(outcome) = self.commit_turn().await else { return false };
            self.forget_duplicates(&outcome.duplicates);
            self.batch.clear();
        }
        self.turn_keys.clear();
        let committed_at = Instant::now();
        for (run_id, created, reply) in self.accepted.drain(..) {
            // A heartbeat that asked before this commit could not list the new run.
            if let Some(run) = self.runs.get_mut(&run_id) {
                run.since = committed_at;
            }
            let answer = match self.duplicates.get(&run_id) {
                // The key's holder is unknown (see `engine::commit`): a new trigger names it.
                Some(&existing) if existing == run_id => {
                    Err(EngineError::Store(StoreError::Conflict(
                        "the trigger key is taken; trigger again to get its run".into(),
                    )))
                }
                Some(&existing) => Ok(Triggered { run_id: existing, created: false }),
                None => Ok(Triggered { run_id, created }),
            };
            let _ = reply.send(answer);
        }
        self.duplicates.clear();
        for (_, reply) in self.cancelled.drain(..) {
            let _ = reply.send(true);
        }
        self.replies.answer();
        self.release_shed().await;
        for run_id in std::mem::take(&mut self.finished) {
            self.flow_finished(run_id);
            if let Some(run) = self.runs.remove(&run_id) {
                for watcher in run.watchers {
                    let _ = watcher.send(WatchEnd::Done);
                }
            }
        }
        self.dispatcher.flush();
        self.park_idle();
        let room = self.config.max_active_runs.saturating_sub(self.runs.len());
        self.room.store(room, Ordering::Relaxed);
        self.parked_gauge.store(self.parked.len(), Ordering::Relaxed);
        true
    }
}

impl Driver {
    /// Forgets the new runs the store left out because their trigger key was taken: they
    /// never existed, so none of their work may be dispatched.
    fn forget_duplicates(&mut self, duplicates: &[DuplicateRun]) {
        for duplicate in duplicates {
            debug!(run_id = %duplicate.run, existing = %duplicate.existing, "trigger key taken");
            self.runs.remove(&duplicate.run);
            self.dispatcher.forget_run(duplicate.run);
            self.finished.retain(|r| *r != duplicate.run);
            self.shed.retain(|r| *r != duplicate.run);
            self.duplicates.insert(duplicate.run, duplicate.existing);
        }
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

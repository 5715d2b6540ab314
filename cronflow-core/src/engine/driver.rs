//! The driver: one tokio task that owns every active run's state machine, turns inputs into
//! commands, group-commits the recorded events, and only then carries the commands out.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::engine::clock::Clock;
use crate::engine::config::EngineConfig;
use crate::engine::dispatch::Dispatcher;
use crate::engine::registry::Registry;
use crate::error::EngineError;
use crate::event::{RunEvent, RunStatus};
use crate::id::{RunId, TaskKey};
use crate::json::Json;
use crate::machine::{Command, RunDefinition, RunMachine};
use crate::store::{CommitBatch, FinishedRun, NewRun, Store};
use crate::task::TaskError;

/// Everything that reaches the driver.
pub(crate) enum Input {
    Trigger {
        workflow_id: String,
        payload: Json,
        reply: oneshot::Sender<Result<RunId, EngineError>>,
    },
    TaskDone {
        run_id: RunId,
        key: TaskKey,
        attempt: u32,
        result: Result<Json, TaskError>,
    },
    /// Answered `true`, once durable, if the run was active here and is now cancelled.
    Cancel {
        run_id: RunId,
        reason: Option<String>,
        reply: oneshot::Sender<bool>,
    },
    /// Answered when the run is not, or no longer, active here.
    Watch {
        run_id: RunId,
        reply: oneshot::Sender<()>,
    },
    Register {
        def: Arc<RunDefinition>,
        reply: oneshot::Sender<()>,
    },
    Shutdown {
        deadline: Instant,
    },
}

struct ActiveRun {
    machine: RunMachine,
    /// The timer currently in the heap for this run, if any.
    armed: Option<DateTime<Utc>>,
    watchers: Vec<oneshot::Sender<()>>,
}

pub(crate) struct Driver {
    rx: mpsc::UnboundedReceiver<Input>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    registry: Registry,
    dispatcher: Dispatcher,
    runs: HashMap<RunId, ActiveRun>,
    timers: BinaryHeap<Reverse<(DateTime<Utc>, RunId)>>,
    // Per-turn buffers, emptied by `finish_turn`.
    batch: CommitBatch,
    accepted: Vec<(RunId, oneshot::Sender<Result<RunId, EngineError>>)>,
    /// Cancel requests answered once the cancellation is durable.
    cancelled: Vec<oneshot::Sender<bool>>,
    finished: Vec<RunId>,
    shutdown: Option<Instant>,
}

impl Driver {
    pub(crate) fn new(
        rx: mpsc::UnboundedReceiver<Input>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
        registry: Registry,
        dispatcher: Dispatcher,
    ) -> Self {
        Self {
            rx,
            store,
            clock,
            config,
            registry,
            dispatcher,
            runs: HashMap::new(),
            timers: BinaryHeap::new(),
            batch: CommitBatch::default(),
            accepted: Vec::new(),
            cancelled: Vec::new(),
            finished: Vec::new(),
            shutdown: None,
        }
    }

    /// Replays every unfinished run in the store and queues its work for the first turn.
    pub(crate) async fn recover(&mut self) -> Result<usize, EngineError> {
        let stored = self.store.active_runs().await?;
        let now = self.clock.now();
        let mut resumed = 0;
        for stored in stored {
            let run = &stored.run;
            let store = Arc::clone(&self.store);
            let Some(def) = self.registry.revision(&run.workflow_id, run.revision, &*store).await?
            else {
                error!(run_id = %run.id, workflow = %run.workflow_id, revision = run.revision,
                    "cannot resume run: its workflow definition is not in the store");
                continue;
            };
            match RunMachine::replay(def, run.id, run.payload.clone(), &stored.events) {
                Ok(mut machine) => {
                    let commands = machine.resume(now);
                    self.runs
                        .insert(run.id, ActiveRun { machine, armed: None, watchers: Vec::new() });
                    self.carry_out(run.id, commands);
                    resumed += 1;
                }
                Err(e) => error!(run_id = %run.id, error = %e, "cannot resume run"),
            }
        }
        Ok(resumed)
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
            self.fire_timers();
        }
        let interrupted = self.dispatcher.abort_all();
        info!(active_runs = self.runs.len(), interrupted, "engine stopped");
    }

    fn handle(&mut self, input: Input) {
        let now = self.clock.now();
        match input {
            Input::TaskDone { run_id, key, attempt, result } => {
                self.dispatcher.done(run_id, &key, attempt);
                if let Some(run) = self.runs.get_mut(&run_id) {
                    let commands = run.machine.handle_task_result(now, &key, attempt, result);
                    self.carry_out(run_id, commands);
                }
            }
            Input::Trigger { workflow_id, payload, reply } => {
                if self.shutdown.is_some() {
                    let _ = reply.send(Err(EngineError::ShuttingDown));
                    return;
                }
                let Some(def) = self.registry.latest(&workflow_id) else {
                    let _ = reply.send(Err(EngineError::UnknownWorkflow(workflow_id)));
                    return;
                };
                let run_id = RunId::new();
                self.batch.new_runs.push(NewRun {
                    id: run_id,
                    workflow_id,
                    revision: def.revision,
                    payload: payload.clone(),
                    created_at: now,
                });
                let (machine, commands) = RunMachine::start(Arc::clone(def), run_id, payload, now);
                self.runs.insert(run_id, ActiveRun { machine, armed: None, watchers: Vec::new() });
                self.accepted.push((run_id, reply));
                self.carry_out(run_id, commands);
            }
            Input::Cancel { run_id, reason, reply } => {
                let Some(run) = self.runs.get_mut(&run_id) else {
                    let _ = reply.send(false);
                    return;
                };
                let commands = run.machine.cancel(now, reason);
                self.carry_out(run_id, commands);
                self.cancelled.push(reply);
            }
            Input::Watch { run_id, reply } => match self.runs.get_mut(&run_id) {
                Some(run) => run.watchers.push(reply),
                None => {
                    let _ = reply.send(());
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
        }
    }

    /// Sorts a machine's commands into this turn's buffers and re-arms its timer.
    fn carry_out(&mut self, run_id: RunId, commands: Vec<Command>) {
        for command in commands {
            match command {
                Command::Record(event) => {
                    log_event(run_id, &event.event);
                    if let Some(status) = event.event.terminal_status() {
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
                Command::Dispatch(task) => self.dispatcher.submit(*task),
                Command::Abort { key, attempt } => self.dispatcher.abort(run_id, &key, attempt),
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
            let Some(run) = self.runs.get_mut(&run_id) else { continue };
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
        match (timer, self.shutdown) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Makes this turn's events durable, then answers triggers, dispatches tasks and wakes
    /// the watchers of finished runs. Returns false if the store keeps failing: the engine
    /// then stops, and the next start resumes from what was committed.
    async fn finish_turn(&mut self) -> bool {
        if !self.batch.is_empty() {
            let mut delay = Duration::from_millis(10);
            let mut attempt = 1;
            while let Err(e) = self.store.commit(&self.batch).await {
                if attempt == 5 {
                    error!(error = %e, "store commit failed; stopping the engine");
                    for (_, reply) in self.accepted.drain(..) {
                        let _ = reply.send(Err(EngineError::Store(
                            crate::error::StoreError::Database(e.to_string()),
                        )));
                    }
                    return false;
                }
                warn!(error = %e, attempt, "store commit failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 4;
                attempt += 1;
            }
            self.batch.clear();
        }
        for (run_id, reply) in self.accepted.drain(..) {
            let _ = reply.send(Ok(run_id));
        }
        for reply in self.cancelled.drain(..) {
            let _ = reply.send(true);
        }
        for run_id in self.finished.drain(..) {
            if let Some(run) = self.runs.remove(&run_id) {
                for watcher in run.watchers {
                    let _ = watcher.send(());
                }
            }
        }
        self.dispatcher.flush();
        true
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn log_event(run_id: RunId, event: &RunEvent) {
    match event {
        RunEvent::RunStarted => info!(%run_id, "run started"),
        RunEvent::TaskSucceeded { task, attempt, .. } => {
            debug!(%run_id, node_id = task.node_id(), task = %task, attempt, "task succeeded")
        }
        RunEvent::TaskFailed { task, attempt, error, retry_at: Some(at), .. } => {
            warn!(%run_id, node_id = task.node_id(), task = %task, attempt, %error, retry_at = %at,
                "task failed; retry scheduled")
        }
        RunEvent::TaskFailed { task, attempt, error, retry_at: None, .. } => {
            warn!(%run_id, node_id = task.node_id(), task = %task, attempt, %error, "task failed")
        }
        RunEvent::RunCompleted { .. } => {
            info!(%run_id, status = RunStatus::Completed.as_str(), "run completed")
        }
        RunEvent::RunFailed { failure } => {
            warn!(%run_id, status = RunStatus::Failed.as_str(), reason = %failure.message, "run failed")
        }
        RunEvent::RunCancelled { reason } => {
            info!(%run_id, status = RunStatus::Cancelled.as_str(), reason = reason.as_deref().unwrap_or(""), "run cancelled")
        }
    }
}

//! [`Triggers`]: starts the schedules, intervals and polls that the registered workflows
//! declare, on one engine handle.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use cronflow_core::{EngineHandle, TriggerDef, WorkflowDef};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};

use crate::schedule::runner::{self, Env, Poll};
use crate::schedule::{MisfirePolicy, Schedule, TriggerClock, WallClock};
use crate::{CronError, CronSchedule};

/// Why the triggers of a workflow cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TriggerError {
    /// A schedule trigger's cron expression or time zone is invalid.
    #[error("workflow `{workflow}`: trigger #{index}: {error}")]
    InvalidCron {
        /// The workflow.
        workflow: String,
        /// The position of the trigger in the workflow's `triggers`.
        index: usize,
        /// What is wrong (it names the bad field).
        #[source]
        error: CronError,
    },
    /// An interval or poll trigger has no (or a zero) period.
    #[error("workflow `{workflow}`: trigger #{index}: {message}")]
    InvalidTrigger {
        /// The workflow.
        workflow: String,
        /// The position of the trigger in the workflow's `triggers`.
        index: usize,
        /// What is wrong.
        message: String,
    },
}

/// The time-driven trigger sources of an engine: cron `schedule` triggers, `interval`
/// triggers and `poll` triggers of every registered workflow. (Webhooks are served by
/// [`Webhooks`](crate::Webhooks); events are published with
/// [`EngineHandle::publish_event`].)
///
/// ```no_run
/// # async fn demo(engine: cronflow_core::Engine) -> Result<(), Box<dyn std::error::Error>> {
/// use cronflow_triggers::{MisfirePolicy, Triggers};
///
/// let triggers = Triggers::new(engine.handle()).misfire(MisfirePolicy::FireOnce);
/// let server = triggers.webhooks().serve().await?; // 127.0.0.1:3000
/// let running = triggers.start()?;
/// // ... the host runs ...
/// server.shutdown(std::time::Duration::from_secs(5)).await?;
/// running.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Triggers {
    handle: EngineHandle,
    clock: Arc<dyn TriggerClock>,
    policy: MisfirePolicy,
    grace: Duration,
}

impl std::fmt::Debug for Triggers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Triggers")
            .field("policy", &self.policy)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl Triggers {
    /// The trigger sources of the engine behind `handle`, on the wall clock.
    pub fn new(handle: EngineHandle) -> Self {
        Self {
            handle,
            clock: Arc::new(WallClock),
            policy: MisfirePolicy::default(),
            grace: Duration::from_secs(60),
        }
    }

    /// The clock schedules run on (default [`WallClock`]; tests use a
    /// [`SimulatedClock`](crate::SimulatedClock)).
    pub fn clock(mut self, clock: impl TriggerClock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// What happens to slots missed while the engine was down (default
    /// [`MisfirePolicy::FireOnce`]).
    pub fn misfire(mut self, policy: MisfirePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How late a slot may be seen and still count as on time rather than missed (default
    /// 60 s).
    pub fn misfire_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The webhook side of the same engine: [`Webhooks`](crate::Webhooks) on this handle, to
    /// [`serve`](crate::Webhooks::serve) or turn [`into_service`](crate::Webhooks::into_service).
    pub fn webhooks(&self) -> crate::Webhooks {
        crate::Webhooks::new(self.handle.clone())
    }

    /// The schedules (cron and interval triggers) and polls of the registered workflows, or
    /// the first invalid trigger.
    pub fn sources(&self) -> Result<(Vec<Schedule>, Vec<Poll>), TriggerError> {
        let mut schedules = Vec::new();
        let mut polls = Vec::new();
        for def in self.handle.workflows() {
            sources_of(&def, &mut schedules, &mut polls)?;
        }
        Ok((schedules, polls))
    }

    /// Starts one task per schedule and poll. Every cron expression is checked first: an
    /// invalid one is an error naming the workflow and the bad field, and nothing starts.
    pub fn start(self) -> Result<RunningTriggers, TriggerError> {
        let (stop, stopped) = watch::channel(false);
        let env = Env {
            handle: self.handle,
            clock: self.clock,
            policy: self.policy,
            grace: self.grace,
            stop: stopped,
        };
        let mut running =
            RunningTriggers { env, stop, tasks: JoinSet::new(), started: HashMap::new() };
        running.refresh()?;
        Ok(running)
    }
}

/// Checks every trigger of `def` that this crate runs: cron expressions and time zones,
/// interval and poll periods, webhook settings. Install it on the engine so that a bad
/// trigger is refused when the workflow is registered, with a message naming the workflow,
/// the trigger and the bad field, rather than when the triggers start:
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use cronflow_core::{Engine, EngineError, InProcessExecutor, MemoryStore, TriggerDef, Workflow};
///
/// let nightly = Workflow::new("nightly").trigger(TriggerDef::schedule("0 25 * * *")).build()?;
/// let refused = Engine::builder()
///     .store(MemoryStore::new())
///     .executor(InProcessExecutor::new())
///     .validator(cronflow_triggers::check_workflow)
///     .workflow(nightly)
///     .start()
///     .await;
/// let Err(EngineError::Rejected { reason, .. }) = refused else { panic!() };
/// assert!(reason.contains("hour field `25`"), "{reason}");
/// # Ok(()) }
/// ```
pub fn check_workflow(def: &WorkflowDef) -> Result<(), String> {
    // The engine's error names the workflow already.
    sources_of(def, &mut Vec::new(), &mut Vec::new()).map_err(|e| match e {
        TriggerError::InvalidCron { index, error, .. } => format!("trigger #{index}: {error}"),
        TriggerError::InvalidTrigger { index, message, .. } => {
            format!("trigger #{index}: {message}")
        }
    })?;
    crate::WebhookConfig::from_workflow(def).map_err(|e| e.to_string())?;
    Ok(())
}

/// Adds the schedules and polls `def` declares.
fn sources_of(
    def: &WorkflowDef,
    schedules: &mut Vec<Schedule>,
    polls: &mut Vec<Poll>,
) -> Result<(), TriggerError> {
    let invalid = |index: usize, message: &str| TriggerError::InvalidTrigger {
        workflow: def.id.clone(),
        index,
        message: message.to_string(),
    };
    for (index, trigger) in def.triggers.iter().enumerate() {
        match trigger {
            TriggerDef::Schedule { cron, timezone } => {
                let parsed = match timezone {
                    Some(tz) => CronSchedule::parse_in(cron, tz),
                    None => CronSchedule::parse(cron),
                };
                let cron = parsed.map_err(|error| TriggerError::InvalidCron {
                    workflow: def.id.clone(),
                    index,
                    error,
                })?;
                schedules.push(Schedule::cron(&def.id, cron));
            }
            TriggerDef::Interval { every } => {
                let every = every.filter(|d| !d.is_zero());
                let every = every.ok_or_else(|| invalid(index, "an interval needs `every`"))?;
                schedules.push(Schedule::every(&def.id, every));
            }
            TriggerDef::Poll { handler, every, key } => {
                let every = every.filter(|d| !d.is_zero());
                let every = every.ok_or_else(|| invalid(index, "a poll needs `every`"))?;
                polls.push(Poll {
                    id: format!("poll:{}:{handler}", def.id),
                    workflow_id: def.id.clone(),
                    handler: handler.clone(),
                    every,
                    key: key.clone(),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// The running schedules and polls. Dropping it stops them too (without waiting).
pub struct RunningTriggers {
    env: Env,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    /// The task of each schedule or poll id.
    started: HashMap<String, AbortHandle>,
}

impl std::fmt::Debug for RunningTriggers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<&String> = self.started.keys().collect();
        ids.sort();
        f.debug_struct("RunningTriggers").field("sources", &ids).finish_non_exhaustive()
    }
}

impl RunningTriggers {
    /// Catches up with the registered workflows: starts the schedules and polls of
    /// workflows registered (or re-registered with other triggers) since, and stops those
    /// no workflow declares any more. Call it after [`EngineHandle::register`]. A stopped
    /// schedule keeps its cursor in the store.
    pub fn refresh(&mut self) -> Result<(), TriggerError> {
        let mut schedules = Vec::new();
        let mut polls = Vec::new();
        for def in self.env.handle.workflows() {
            sources_of(&def, &mut schedules, &mut polls)?;
        }
        let wanted: HashSet<&str> = schedules
            .iter()
            .map(|s| s.id.as_str())
            .chain(polls.iter().map(|p| p.id.as_str()))
            .collect();
        self.started.retain(|id, task| {
            let keep = wanted.contains(id.as_str());
            if !keep {
                tracing::info!(id = %id, "trigger source stopped: no workflow declares it");
                task.abort();
            }
            keep
        });
        for schedule in schedules {
            if !self.started.contains_key(&schedule.id) {
                tracing::info!(schedule = %schedule.id, "schedule started");
                let id = schedule.id.clone();
                let task = self.tasks.spawn(runner::run_schedule(self.env.clone(), schedule));
                self.started.insert(id, task);
            }
        }
        for poll in polls {
            if !self.started.contains_key(&poll.id) {
                tracing::info!(poll = %poll.id, every = ?poll.every, "poll started");
                let id = poll.id.clone();
                let task = self.tasks.spawn(runner::run_poll(self.env.clone(), poll));
                self.started.insert(id, task);
            }
        }
        Ok(())
    }

    /// The ids of the running schedules and polls (their cursors' ids in the store).
    pub fn sources(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.started.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Stops every schedule and poll and waits for them: a slot being fired finishes first.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

impl Drop for RunningTriggers {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

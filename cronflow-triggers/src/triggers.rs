//! [`Triggers`]: starts the schedules, intervals and polls that the registered workflows
//! declare, on one engine handle.

use std::sync::Arc;
use std::time::Duration;

use cronflow_core::{EngineHandle, TriggerDef, WorkflowDef};
use tokio::sync::watch;
use tokio::task::JoinSet;

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
/// let running = Triggers::new(engine.handle())
///     .misfire(MisfirePolicy::FireOnce)
///     .start()?;
/// // ... the host runs ...
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
        let (schedules, polls) = self.sources()?;
        let (stop, stopped) = watch::channel(false);
        let env = Env {
            handle: self.handle,
            clock: self.clock,
            policy: self.policy,
            grace: self.grace,
            stop: stopped,
        };
        let mut tasks = JoinSet::new();
        for schedule in schedules {
            tracing::info!(schedule = %schedule.id, "schedule started");
            tasks.spawn(runner::run_schedule(env.clone(), schedule));
        }
        for poll in polls {
            tracing::info!(poll = %poll.id, every = ?poll.every, "poll started");
            tasks.spawn(runner::run_poll(env.clone(), poll));
        }
        Ok(RunningTriggers { stop, tasks })
    }
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
#[derive(Debug)]
pub struct RunningTriggers {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl RunningTriggers {
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

//! The loops behind schedules and polling triggers: one task per schedule or poll, sleeping
//! on the [`TriggerClock`] until its cursor is due, then acting through the engine handle.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use cronflow_core::{EngineError, EngineHandle, Json, TriggerOptions};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::plan::{Fire, plan};
use super::{Cadence, MisfirePolicy, Schedule, TriggerClock};

/// What every schedule and poll task shares.
#[derive(Clone)]
pub(crate) struct Env {
    pub(crate) handle: EngineHandle,
    pub(crate) clock: Arc<dyn TriggerClock>,
    pub(crate) policy: MisfirePolicy,
    pub(crate) grace: Duration,
    pub(crate) stop: watch::Receiver<bool>,
}

/// A polling trigger: every `every`, `handler` of `workflow_id` returns items; each item
/// whose key was never seen starts a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    /// The store id of the poll's cursor: `poll:<workflow>:<handler>`.
    pub id: String,
    /// The workflow whose runs the items start (and whose handler is called).
    pub workflow_id: String,
    /// The handler returning the items (a JSON array).
    pub handler: String,
    /// How often.
    pub every: Duration,
    /// JSON pointer to each item's key (`/id`); without it the item's JSON text is its key.
    pub key: Option<String>,
}

/// What to do after one look at a cursor.
enum Next {
    Sleep(DateTime<Utc>),
    Again,
    Done,
}

/// Errors back off from 100 ms to 30 s: a store or engine that is down is waited out.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(30));

/// Runs `step` until it is done or `env.stop` is set.
async fn drive<'a, F, Fut>(env: &'a Env, what: &'a str, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Next, EngineError>> + 'a,
{
    let mut stop = env.stop.clone();
    let mut backoff = BACKOFF.0;
    while !*stop.borrow() {
        let wait: std::pin::Pin<Box<dyn Future<Output = ()> + Send>> = match step().await {
            Ok(Next::Again) => continue,
            Ok(Next::Done) => {
                tracing::info!(id = what, "no more slots: the schedule ends");
                return;
            }
            Ok(Next::Sleep(until)) => {
                backoff = BACKOFF.0;
                let clock = Arc::clone(&env.clock);
                Box::pin(async move { clock.sleep_until(until).await })
            }
            Err(EngineError::ShuttingDown) => return,
            Err(e) => {
                tracing::warn!(id = what, error = %e, retry_in = ?backoff, "trigger source failed");
                let delay = backoff;
                backoff = (backoff * 2).min(BACKOFF.1);
                Box::pin(tokio::time::sleep(delay))
            }
        };
        tokio::select! {
            () = wait => {}
            _ = stop.changed() => {}
        }
    }
}

/// Fires `schedule` at each of its slots until stopped.
pub(crate) async fn run_schedule(env: Env, schedule: Schedule) {
    drive(&env, &schedule.id, || schedule_step(&env, &schedule)).await;
}

async fn schedule_step(env: &Env, schedule: &Schedule) -> Result<Next, EngineError> {
    let Some(cursor) = cursor_or_first(env, &schedule.id, &schedule.cadence).await? else {
        return Ok(Next::Done);
    };
    let now = env.clock.now();
    if cursor > now {
        return Ok(Next::Sleep(cursor));
    }
    let plan = plan(&schedule.cadence, cursor, now, env.policy, env.grace);
    for fire in &plan.fire {
        fire_slot(env, schedule, fire, now).await?;
    }
    match plan.next {
        // Moved only once the slots are durable; if another instance moved it first, look
        // again.
        Some(next) => {
            env.handle.advance_schedule(&schedule.id, Some(cursor), next).await?;
            Ok(Next::Again)
        }
        None => Ok(Next::Done),
    }
}

/// The cursor of `id`, creating it at the first slot after now for a new schedule (slots
/// before a schedule existed are not missed). `None`: the cadence has no slot left.
async fn cursor_or_first(
    env: &Env,
    id: &str,
    cadence: &Cadence,
) -> Result<Option<DateTime<Utc>>, EngineError> {
    if let Some(cursor) = env.handle.schedule_cursor(id).await? {
        return Ok(Some(cursor));
    }
    let Some(first) = cadence.next_after(env.clock.now()) else { return Ok(None) };
    if env.handle.advance_schedule(id, None, first).await? {
        return Ok(Some(first));
    }
    // Another instance created it a moment ago.
    env.handle.schedule_cursor(id).await
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Starts the run of one slot, keyed by the slot so that it is created once.
async fn fire_slot(
    env: &Env,
    schedule: &Schedule,
    fire: &Fire,
    now: DateTime<Utc>,
) -> Result<(), EngineError> {
    let slot = rfc3339(fire.slot);
    let context = json!({
        "type": "schedule",
        "schedule": schedule.id,
        "slot": slot,
        "missed": fire.stands_for,
    });
    let options = TriggerOptions::new()
        .key(format!("{}@{slot}", schedule.id))
        .context(Json::from_value(&context)?);
    let triggered = env.handle.trigger_with(&schedule.workflow_id, Json::null(), options).await?;
    let late_ms = (now - fire.slot).num_milliseconds();
    tracing::info!(
        schedule = %schedule.id,
        slot,
        run_id = %triggered.run_id,
        created = triggered.created,
        late_ms,
        "schedule fired"
    );
    Ok(())
}

/// Polls at each interval until stopped. The instance that moves the cursor polls: one poll
/// per interval across instances. Items are deduplicated by key in the store, forever.
pub(crate) async fn run_poll(env: Env, poll: Poll) {
    drive(&env, &poll.id, || poll_step(&env, &poll)).await;
}

async fn poll_step(env: &Env, poll: &Poll) -> Result<Next, EngineError> {
    let cadence = Cadence::Every(poll.every);
    let Some(cursor) = cursor_or_first(env, &poll.id, &cadence).await? else {
        return Ok(Next::Done);
    };
    let now = env.clock.now();
    if cursor > now {
        return Ok(Next::Sleep(cursor));
    }
    let Some(next) = cadence.next_after(now) else { return Ok(Next::Done) };
    if !env.handle.advance_schedule(&poll.id, Some(cursor), next).await? {
        return Ok(Next::Again);
    }
    // A failing handler is logged and asked again at the next interval: the items it did
    // not return are not lost.
    if let Err(e) = poll_once(env, poll, cursor).await {
        tracing::warn!(poll = %poll.id, error = %e, "polling failed");
    }
    Ok(Next::Again)
}

async fn poll_once(env: &Env, poll: &Poll, slot: DateTime<Utc>) -> Result<(), EngineError> {
    let slot = rfc3339(slot);
    let idempotency_key = format!("{}@{slot}", poll.id);
    let out =
        env.handle.run_handler(&poll.workflow_id, &poll.handler, Json::null(), idempotency_key);
    let items = match out.await?.to_value() {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        other => {
            return Err(EngineError::Handler(cronflow_core::TaskError::new(
                "InvalidPollOutput",
                format!(
                    "poll handler `{}` of workflow `{}` must return an array of items, \
                     returned {}",
                    poll.handler,
                    poll.workflow_id,
                    kind_of(&other)
                ),
            )));
        }
    };
    let context =
        Json::from_value(&json!({ "type": "poll", "handler": poll.handler, "slot": slot }))?;
    for item in items {
        let Some(key) = item_key(&item, poll.key.as_deref()) else {
            tracing::warn!(poll = %poll.id, pointer = ?poll.key, "an item has no key: skipped");
            continue;
        };
        let options = TriggerOptions::new()
            .key(format!("poll:{}:{key}", poll.workflow_id))
            .context(context.clone());
        env.handle.trigger_with(&poll.workflow_id, Json::from_value(&item)?, options).await?;
    }
    Ok(())
}

/// The key of a polled item: the string or number at `pointer`, or the item's JSON text.
fn item_key(item: &Value, pointer: Option<&str>) -> Option<String> {
    match pointer {
        None => Some(item.to_string()),
        Some(pointer) => match item.pointer(pointer)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(_) | Value::Null | Value::Array(_) | Value::Object(_) => None,
        },
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_keys_come_from_the_pointer_or_the_whole_item() {
        let item = json!({ "id": 7, "sku": "A-1", "tags": [] });
        assert_eq!(item_key(&item, Some("/id")).as_deref(), Some("7"));
        assert_eq!(item_key(&item, Some("/sku")).as_deref(), Some("A-1"));
        assert_eq!(item_key(&item, Some("/tags")), None);
        assert_eq!(item_key(&item, Some("/missing")), None);
        assert_eq!(item_key(&json!("x"), None).as_deref(), Some("\"x\""));
    }
}

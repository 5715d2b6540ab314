//! Trigger sources for cronflow: cron schedules, intervals, polling and webhooks, starting
//! runs through the engine's public [`EngineHandle`](cronflow_core::EngineHandle) (events are
//! published on the handle itself: [`EngineHandle::publish_event`](cronflow_core::EngineHandle::publish_event)).
//! Everything is durable and exactly-once through keyed triggers: a cron slot, a webhook's
//! idempotency key or a polled item starts one run, across restarts and engine instances.
//!
//! ```no_run
//! # async fn demo(engine: cronflow_core::Engine) -> Result<(), Box<dyn std::error::Error>> {
//! use cronflow_triggers::{Triggers, Webhooks};
//!
//! // Cron, interval and poll triggers of every registered workflow.
//! let schedules = Triggers::new(engine.handle()).start()?;
//! // Webhook triggers on 127.0.0.1:3000 (or `.into_service()` to mount in your own server).
//! let server = Webhooks::new(engine.handle()).serve().await?;
//! # let _ = (schedules, server);
//! # Ok(()) }
//! ```
//!
//! - [`CronSchedule`]: crontab(5) expressions (names, lists, ranges, steps, macros, an
//!   optional seconds field) evaluated in any IANA time zone, DST included;
//!   [`CronSchedule::next_after`] is public for hosts' own use.
//! - [`Triggers`]: the schedules (cron and interval triggers, each slot fired once, missed
//!   slots per a [`MisfirePolicy`]) and polls (each new item one run) of every registered
//!   workflow, on a [`TriggerClock`] ([`WallClock`], or a [`SimulatedClock`] in tests).
//! - [`Webhooks`]: HTTP requests start runs of the workflows declaring `webhook` triggers,
//!   each checked (HMAC signature, body size, content type, required headers, JSON Schema,
//!   rate limit, idempotency key) and answered only once its run is durable; as a tower
//!   [`WebhookService`] to mount in a host's own hyper or axum server, or as a
//!   [`WebhookServer`] of their own. Its documentation is the guide (settings, responses,
//!   trigger context, the manual trigger route).

mod cron;
mod schedule;
mod triggers;
mod webhook;

pub use cron::{CronError, CronField, CronIter, CronSchedule};
pub use schedule::runner::Poll;
pub use schedule::{Cadence, MisfirePolicy, Schedule, SimulatedClock, TriggerClock, WallClock};
pub use triggers::{RunningTriggers, TriggerError, Triggers, check_workflow};
pub use webhook::{
    DEFAULT_ADDR, DEFAULT_BODY_TIMEOUT, DEFAULT_CONTENT_TYPE, DEFAULT_IDEMPOTENCY_HEADER,
    DEFAULT_MAX_BODY_BYTES, DEFAULT_SIGNATURE_HEADER, RateLimit, ResponseBody, ResponseFuture,
    WebhookConfig, WebhookError, WebhookServer, WebhookService, Webhooks,
};

/// The README's examples, compiled as doc tests so they cannot rot (here because this crate
/// sees the others: the core, and the store as a dev-dependency).
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

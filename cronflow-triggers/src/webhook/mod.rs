//! Webhooks on hyper 1: the route table built from the registered workflows' webhook
//! triggers, the checks of a delivery, the tower service and the standalone server.
//!
//! The user guide is on [`Webhooks`](crate::Webhooks). Files, one concept each:
//! `config.rs` (a trigger's settings, typed), `routes.rs` (the route table), `verify.rs`
//! (the checks), `context.rs` (the trigger context), `service.rs` (the tower service and
//! the delivery flow), `manual.rs` (the `/runs/` routes), `reply.rs` (JSON responses),
//! `server.rs` (hyper server, graceful shutdown), `builder.rs`, `error.rs`.

mod builder;
mod config;
mod context;
mod error;
mod manual;
mod reply;
mod routes;
mod server;
mod service;
mod verify;

pub use builder::{DEFAULT_ADDR, DEFAULT_BODY_TIMEOUT, Webhooks};
pub use config::{
    DEFAULT_CONTENT_TYPE, DEFAULT_IDEMPOTENCY_HEADER, DEFAULT_MAX_BODY_BYTES,
    DEFAULT_SIGNATURE_HEADER, RateLimit, WebhookConfig,
};
pub use error::WebhookError;
pub use reply::ResponseBody;
pub use server::WebhookServer;
pub use service::{ResponseFuture, WebhookService};

//! [`WebhookError`]: why webhooks could not be built, served or shut down.
//!
//! Requests are never answered with these: a rejected request gets a JSON error response
//! (see `reply.rs`).

use std::net::SocketAddr;
use std::time::Duration;

/// Why the webhook service or server could not be built, bound or shut down cleanly.
///
/// Configuration errors name the workflow, the route and the setting, so a host can print
/// them as they are:
///
/// ```
/// use cronflow_core::{TriggerDef, Workflow};
/// use cronflow_triggers::{WebhookConfig, WebhookError};
///
/// let trigger: TriggerDef = serde_json::from_value(serde_json::json!({
///     "type": "webhook", "path": "/hooks/orders", "max_body_bytes": "1mb"
/// }))?;
/// let def = Workflow::new("orders").trigger(trigger).step("ship").build()?;
/// let err = WebhookConfig::from_workflow(&def).unwrap_err();
/// assert!(matches!(err, WebhookError::InvalidSetting { .. }));
/// assert_eq!(
///     err.to_string(),
///     "workflow `orders`, webhook POST /hooks/orders: setting `max_body_bytes`: \
///      must be a positive integer number of bytes, found \"1mb\""
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// A webhook trigger's setting (or its path or method) is invalid or unknown.
    #[error("workflow `{workflow}`, webhook {route}: setting `{setting}`: {reason}")]
    InvalidSetting {
        /// The workflow declaring the trigger.
        workflow: String,
        /// The route as declared, such as `POST /hooks/orders`.
        route: String,
        /// The setting (`path`, `method`, or a key of the trigger's settings).
        setting: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two webhook triggers declare the same method and path.
    #[error("webhook {route} is declared twice: by workflow `{first}` and by workflow `{second}`")]
    DuplicateRoute {
        /// The route, such as `POST /hooks/orders`.
        route: String,
        /// The workflow declaring it first (in workflow id order).
        first: String,
        /// The other workflow (the same one if it declares the route twice).
        second: String,
    },
    /// An option of the [`Webhooks`](crate::Webhooks) builder is invalid.
    #[error("webhook server option `{option}`: {reason}")]
    InvalidOption {
        /// The builder method.
        option: &'static str,
        /// What is wrong with the value.
        reason: String,
    },
    /// The server could not listen on its address.
    #[error("cannot listen for webhooks on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// [`WebhookServer::shutdown`](crate::WebhookServer::shutdown) closed connections whose
    /// requests had not finished within the grace period.
    #[error(
        "{connections} connection(s) still busy after the shutdown grace of {grace:?} were closed"
    )]
    ShutdownTimedOut {
        /// Connections closed before their requests finished.
        connections: usize,
        /// The grace period given.
        grace: Duration,
    },
}

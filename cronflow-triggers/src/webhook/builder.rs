//! [`Webhooks`]: the builder of the webhook service and server.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use cronflow_core::EngineHandle;

use super::config::DEFAULT_MAX_BODY_BYTES;

/// How long a request body may take to arrive by default (see [`Webhooks::body_timeout`]).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
use super::error::WebhookError;
use super::manual::Manual;
use super::server::WebhookServer;
use super::service::WebhookService;

/// Where [`Webhooks::serve`] listens unless told otherwise: `127.0.0.1:3000`.
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 3000);

/// Builds the webhook routes of every workflow registered on an engine, as a tower service
/// to mount in a host's server ([`into_service`](Webhooks::into_service)) or as a server of
/// its own ([`serve`](Webhooks::serve)).
///
/// ```
/// # use std::time::Duration;
/// # use cronflow_core::{Engine, InProcessExecutor, MemoryStore, TaskError, TriggerDef, Workflow};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let engine = Engine::builder()
/// #     .store(MemoryStore::new())
/// #     .executor(InProcessExecutor::new().handler("ship", |_| async { Ok::<_, TaskError>(()) }))
/// #     .workflow(Workflow::new("orders").trigger(TriggerDef::webhook("/hooks/orders")).step("ship").build()?)
/// #     .start()
/// #     .await?;
/// use cronflow_triggers::Webhooks;
///
/// let server = Webhooks::new(engine.handle())
///     .addr("127.0.0.1:0".parse()?)          // default 127.0.0.1:3000
///     .manual_token("a-long-random-token")   // turns on POST /runs/{workflow_id}
///     .serve()
///     .await?;
/// assert_eq!(server.service().webhooks().len(), 1);
/// server.shutdown(Duration::from_secs(5)).await?;
/// # Ok(()) }
/// ```
///
#[doc = include_str!("webhooks.md")]
#[derive(Clone)]
#[must_use = "a builder does nothing until `into_service` or `serve`"]
pub struct Webhooks {
    handle: EngineHandle,
    addr: SocketAddr,
    manual_token: Option<String>,
    manual_max_body_bytes: usize,
    body_timeout: Duration,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("addr", &self.addr)
            .field("manual_token", &self.manual_token.as_ref().map(|_| "<redacted>"))
            .field("manual_max_body_bytes", &self.manual_max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    /// Webhooks starting runs through `handle`, with the defaults: listening on
    /// [`DEFAULT_ADDR`], manual trigger route off.
    pub fn new(handle: EngineHandle) -> Self {
        Self {
            handle,
            addr: DEFAULT_ADDR,
            manual_token: None,
            manual_max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }

    /// The address [`serve`](Webhooks::serve) listens on (port 0: any free port, see
    /// [`WebhookServer::local_addr`]).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Turns on the manual trigger route `POST /runs/{workflow_id}`, which starts a run of
    /// any registered workflow for a caller sending `Authorization: Bearer <token>`.
    ///
    /// Without a token the route answers `404`. Use a long random token and TLS in front
    /// of the server: whoever has it can start any workflow.
    pub fn manual_token(mut self, token: impl Into<String>) -> Self {
        self.manual_token = Some(token.into());
        self
    }

    /// How long a request body may take to arrive once its headers are in (default 30 s);
    /// a slower one is refused with `408` and its connection freed.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// The largest body of the `/runs/` routes, the manual trigger and the resume route
    /// (default 1 MiB, like webhooks); a larger one is refused with `413`.
    pub fn manual_max_body_bytes(mut self, limit: usize) -> Self {
        self.manual_max_body_bytes = limit;
        self
    }

    /// Builds the service from the workflows registered now.
    ///
    /// Fails on an invalid webhook setting (naming the workflow and the setting), a JSON
    /// Schema that does not compile, two workflows on one method and path, a path under the
    /// reserved `/runs/`, or an empty manual token.
    pub fn into_service(self) -> Result<WebhookService, WebhookError> {
        let token = match self.manual_token.as_deref() {
            Some(t) if t.trim().is_empty() || t.chars().any(char::is_whitespace) => {
                return Err(WebhookError::InvalidOption {
                    option: "manual_token",
                    reason: "must be non-empty and without whitespace".into(),
                });
            }
            token => token,
        };
        if self.manual_max_body_bytes == 0 {
            return Err(WebhookError::InvalidOption {
                option: "manual_max_body_bytes",
                reason: "must be positive".into(),
            });
        }
        let manual = Manual::new(token, self.manual_max_body_bytes);
        WebhookService::build(self.handle, manual, self.body_timeout)
    }

    /// Builds the service and serves it on [`addr`](Webhooks::addr) until
    /// [`WebhookServer::shutdown`]. Must be called within a tokio runtime.
    pub async fn serve(self) -> Result<WebhookServer, WebhookError> {
        let addr = self.addr;
        WebhookServer::bind(addr, self.into_service()?).await
    }
}

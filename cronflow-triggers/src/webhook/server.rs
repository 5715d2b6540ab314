//! [`WebhookServer`]: the service on a port of its own, HTTP/1.1 on hyper, with graceful
//! shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use super::error::WebhookError;
use super::service::{ResponseFuture, WebhookService};

/// How long a client may take to send a request's headers (slow-loris protection).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A running webhook server: [`WebhookService`] on a TCP port of its own.
///
/// Started by [`Webhooks::serve`](crate::Webhooks::serve). Connections are HTTP/1.1 with
/// keep-alive; a client has 30 s to send a request's headers. Stop it with
/// [`shutdown`](WebhookServer::shutdown); dropping it without that starts the same graceful
/// shutdown in the background, with a grace of 30 s.
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
/// let server = Webhooks::new(engine.handle()).addr("127.0.0.1:0".parse()?).serve().await?;
/// println!("POST http://{}/hooks/orders", server.local_addr());
/// server.shutdown(Duration::from_secs(10)).await?; // in-flight requests finish first
/// engine.shutdown(Duration::from_secs(10)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "dropping the server shuts it down"]
pub struct WebhookServer {
    local_addr: SocketAddr,
    service: WebhookService,
    stop: watch::Sender<Option<Duration>>,
    task: Option<JoinHandle<usize>>,
}

impl WebhookServer {
    pub(crate) async fn bind(
        addr: SocketAddr,
        service: WebhookService,
    ) -> Result<Self, WebhookError> {
        let listener =
            TcpListener::bind(addr).await.map_err(|source| WebhookError::Bind { addr, source })?;
        let local_addr =
            listener.local_addr().map_err(|source| WebhookError::Bind { addr, source })?;
        let (stop, stopped) = watch::channel(None);
        let task = tokio::spawn(accept_loop(listener, service.clone(), stopped));
        tracing::info!(%local_addr, webhooks = service.webhooks().len(), "webhook server listening");
        Ok(Self { local_addr, service, stop, task: Some(task) })
    }

    /// The address the server listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The service it runs, e.g. to [`refresh`](WebhookService::refresh) its routes.
    pub fn service(&self) -> &WebhookService {
        &self.service
    }

    /// Stops accepting connections, lets requests in flight finish (each answered once its
    /// run is durable) and closes idle keep-alive connections, then returns.
    ///
    /// Connections still busy after `grace` are closed and reported as
    /// [`WebhookError::ShutdownTimedOut`]; a run whose trigger had been sent to the engine
    /// may still start, unanswered (senders retry; an idempotency key makes that safe).
    pub async fn shutdown(mut self, grace: Duration) -> Result<(), WebhookError> {
        let _ = self.stop.send(Some(grace));
        let task = self.task.take().expect("the accept loop runs until shutdown");
        match task.await {
            Ok(0) | Err(_) => Ok(()),
            Ok(connections) => Err(WebhookError::ShutdownTimedOut { connections, grace }),
        }
    }
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        if self.task.is_some() {
            let _ = self.stop.send(Some(Duration::from_secs(30)));
        }
    }
}

/// Accepts connections until told to stop, then drains them; returns how many connections
/// had to be closed after the grace period.
async fn accept_loop(
    listener: TcpListener,
    service: WebhookService,
    mut stop: watch::Receiver<Option<Duration>>,
) -> usize {
    let mut connections = JoinSet::new();
    let for_connections = stop.clone();
    let grace = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(stream, service.clone(), for_connections.clone()));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "webhook server: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            grace = async { stop.wait_for(Option::is_some).await.map(|g| g.unwrap_or_default()) } => {
                break grace.unwrap_or_default();
            }
        }
        while connections.try_join_next().is_some() {}
    };
    drop(listener);
    let drained =
        tokio::time::timeout(grace, async { while connections.join_next().await.is_some() {} });
    if drained.await.is_ok() {
        return 0;
    }
    let left = connections.len();
    connections.abort_all();
    tracing::warn!(connections = left, "webhook server: connections closed after the grace");
    left
}

/// Serves one connection; on shutdown, finishes the request in flight (if any) and closes.
async fn connection(
    stream: TcpStream,
    service: WebhookService,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    // Responses are small and written at once: do not let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = http.serve_connection(TokioIo::new(stream), Hyper(service));
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "webhook server: connection ended with an error");
            }
        }
        _ = async { stop.wait_for(Option::is_some).await.map(|_| ()) } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// The service as hyper calls it (hyper's `Service` takes `&self`).
struct Hyper(WebhookService);

impl hyper::service::Service<http::Request<Incoming>> for Hyper {
    type Response = http::Response<super::reply::ResponseBody>;
    type Error = std::convert::Infallible;
    type Future = ResponseFuture;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        tower_service::Service::call(&mut self.0.clone(), request)
    }
}

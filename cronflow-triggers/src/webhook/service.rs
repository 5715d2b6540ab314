//! [`WebhookService`]: the tower `Service` answering webhook deliveries and the `/runs/`
//! routes; the standalone server and a host's own router both run it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use cronflow_core::{EngineHandle, Json, MAX_TRIGGER_KEY_BYTES, TriggerOptions};
use http::{HeaderMap, HeaderName, Request, Response};
use http_body::Body;

use super::config::{RESERVED_PREFIX, WebhookConfig};
use super::context::trigger_context;
use super::error::WebhookError;
use super::manual::Manual;
use super::reply::{self, Rejection, ResponseBody};
use super::routes::{Endpoint, Lookup, Routes};
use super::verify::{self, BoxError};

/// The webhook service: a cheap-to-clone tower [`Service`](tower_service::Service) that
/// answers every webhook route of the registered workflows, plus the manual trigger and the
/// resume route `POST /runs/resume/{token}` (see [`Webhooks`](crate::Webhooks)).
///
/// Built by [`Webhooks::into_service`](crate::Webhooks::into_service). It is always ready
/// (`poll_ready` never waits: backpressure is the engine's), never fails (every problem is a
/// JSON error response) and answers only once a started run is durable. Clones share the
/// route table and the rate limiters.
///
/// Routes are read from [`EngineHandle::workflows`] when the service is built; call
/// [`refresh`](WebhookService::refresh) after registering workflows later.
///
/// Mounting it into a host's axum router, next to the host's own routes:
///
/// ```
/// # use cronflow_core::{Engine, InProcessExecutor, MemoryStore, TaskError, TriggerDef, Workflow};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let engine = Engine::builder()
/// #     .store(MemoryStore::new())
/// #     .executor(InProcessExecutor::new().handler("ship", |_| async { Ok::<_, TaskError>(()) }))
/// #     .workflow(Workflow::new("orders").trigger(TriggerDef::webhook("/orders")).step("ship").build()?)
/// #     .start()
/// #     .await?;
/// use cronflow_triggers::Webhooks;
///
/// let webhooks = Webhooks::new(engine.handle()).into_service()?;
/// let app: axum::Router = axum::Router::new()
///     .route("/health", axum::routing::get(|| async { "ok" }))
///     // `POST /hooks/orders` reaches the service as `POST /orders`.
///     .nest_service("/hooks", webhooks.clone());
/// // Or let it answer every path the host does not: `.fallback_service(webhooks)`.
/// # let _ = app;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WebhookService {
    inner: Arc<Inner>,
}

struct Inner {
    handle: EngineHandle,
    routes: RwLock<Arc<Routes>>,
    manual: Manual,
    body_timeout: Duration,
}

impl std::fmt::Debug for WebhookService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookService").field("webhooks", &self.webhooks()).finish_non_exhaustive()
    }
}

impl WebhookService {
    pub(crate) fn build(
        handle: EngineHandle,
        manual: Manual,
        body_timeout: Duration,
    ) -> Result<Self, WebhookError> {
        let routes = Routes::build(&handle.workflows(), None)?;
        let routes = RwLock::new(Arc::new(routes));
        let inner = Inner { handle, routes, manual, body_timeout };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// Rebuilds the route table from the workflows registered now (for workflows registered
    /// or changed after the service was built).
    ///
    /// On error the old table stays in use. Requests already routed finish on the old
    /// table. An unchanged route keeps its rate limiter's state; a changed one starts fresh.
    ///
    /// ```
    /// # use cronflow_core::{Engine, InProcessExecutor, MemoryStore, TaskError, TriggerDef, Workflow};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let engine = Engine::builder()
    /// #     .store(MemoryStore::new())
    /// #     .executor(InProcessExecutor::new().handler("ship", |_| async { Ok::<_, TaskError>(()) }))
    /// #     .start()
    /// #     .await?;
    /// let service = cronflow_triggers::Webhooks::new(engine.handle()).into_service()?;
    /// assert!(service.webhooks().is_empty());
    /// let def = Workflow::new("orders").trigger(TriggerDef::webhook("/orders")).step("ship").build()?;
    /// engine.handle().register(def).await?;
    /// service.refresh()?;
    /// assert_eq!(service.webhooks()[0].path, "/orders");
    /// # Ok(()) }
    /// ```
    pub fn refresh(&self) -> Result<(), WebhookError> {
        let current = self.routes();
        let fresh = Routes::build(&self.inner.handle.workflows(), Some(&current))?;
        *self.inner.routes.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
        Ok(())
    }

    /// The configuration of every webhook route served now, by path then method.
    pub fn webhooks(&self) -> Vec<WebhookConfig> {
        self.routes().configs()
    }

    fn routes(&self) -> Arc<Routes> {
        Arc::clone(&self.inner.routes.read().unwrap_or_else(|e| e.into_inner()))
    }

    async fn answer<B>(self, request: Request<B>) -> Response<ResponseBody>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let path = request.uri().path();
        let result = if path == RESERVED_PREFIX || path.starts_with("/runs/") {
            self.inner.manual.answer(&self.inner.handle, request, self.inner.body_timeout).await
        } else {
            let routes = self.routes();
            match routes.find(path, request.method()) {
                Lookup::Endpoint(endpoint) => {
                    deliver(&self.inner.handle, endpoint, request, self.inner.body_timeout).await
                }
                Lookup::WrongMethod(allow) => Err(Rejection::method_not_allowed(path, allow)),
                Lookup::NotFound => Err(Rejection::not_found(path)),
            }
        };
        result.unwrap_or_else(Rejection::into_response)
    }
}

/// A webhook delivery, checked in this order: rate limit (`429`), a signature present
/// (`401`), body size (`413`), signature valid (`401`), required headers (`400`), media
/// type (`415`), JSON (`400`), schema (`400`); then the run is started. Authenticating
/// before the other checks means an unsigned caller learns nothing about the route.
async fn deliver<B>(
    handle: &EngineHandle,
    endpoint: &Endpoint,
    request: Request<B>,
    body_timeout: Duration,
) -> Result<Response<ResponseBody>, Rejection>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let config = &endpoint.config;
    endpoint.check_rate()?;
    let (parts, body) = request.into_parts();
    let signature = match &endpoint.mac {
        Some(_) => Some(verify::signature(&parts.headers, &config.signature_header)?),
        None => None,
    };
    let body = verify::read_body(body, config.max_body_bytes, body_timeout).await?;
    if let (Some(mac), Some(signature)) = (&endpoint.mac, signature) {
        verify::check_signature(mac, &signature, &body)?;
    }
    verify::required_headers(&parts.headers, &config.required_headers)?;
    let payload = verify::payload(&parts.headers, body, &config.content_type)?;
    if let Some(schema) = &endpoint.schema {
        verify::schema(schema, &payload.json)?;
    }
    let workflow = &config.workflow_id;
    let key = idempotency_key(&parts.headers, &config.idempotency_header, "webhook", workflow)?;
    let context = trigger_context("webhook", workflow, &parts, &payload.raw, &[]);
    start(handle, workflow, payload.json, key, context).await
}

/// Starts the run and answers once it is durable (`202`, or `200` for a repeated key).
pub(crate) async fn start(
    handle: &EngineHandle,
    workflow_id: &str,
    payload: Json,
    key: Option<String>,
    context: Json,
) -> Result<Response<ResponseBody>, Rejection> {
    let mut options = TriggerOptions::new().context(context);
    if let Some(key) = key {
        options = options.key(key);
    }
    match handle.trigger_with(workflow_id, payload, options).await {
        Ok(triggered) => Ok(reply::accepted(workflow_id, triggered)),
        Err(error) => Err(Rejection::engine(error, workflow_id)),
    }
}

/// The trigger key `<source>:<workflow>:<header value>` when the request carries `header`.
pub(crate) fn idempotency_key(
    headers: &HeaderMap,
    header: &HeaderName,
    source: &str,
    workflow_id: &str,
) -> Result<Option<String>, Rejection> {
    let Some(value) = headers.get(header) else { return Ok(None) };
    let value = value.to_str().map(str::trim).unwrap_or_default();
    if value.is_empty() {
        return Err(Rejection::bad_request(format!(
            "header `{header}` must be a non-empty visible ASCII string"
        )));
    }
    let key = format!("{source}:{workflow_id}:{value}");
    if key.len() > MAX_TRIGGER_KEY_BYTES {
        return Err(Rejection::bad_request(format!("header `{header}` is too long")));
    }
    Ok(Some(key))
}

/// The future of [`WebhookService::call`](tower_service::Service::call).
pub type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Infallible>> + Send + 'static>>;

impl<B> tower_service::Service<Request<B>> for WebhookService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move { Ok(service.answer(request).await) })
    }
}

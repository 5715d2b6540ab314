//! The JSON responses: a run accepted (`202`/`200`) and every rejection (`Rejection`).

use bytes::Bytes;
use cronflow_core::{EngineError, RunId, Triggered};
use http::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Value, json};

/// The body of every response of the webhook service: one JSON document, sent whole.
pub type ResponseBody = Full<Bytes>;

/// `{"run_id", "workflow_id", "created"}`: `202 Accepted` for a new run, `200 OK` when the
/// idempotency key was already taken (nothing was started).
pub(crate) fn accepted(workflow_id: &str, triggered: Triggered) -> Response<ResponseBody> {
    let status = if triggered.created { StatusCode::ACCEPTED } else { StatusCode::OK };
    let body = json!({
        "run_id": triggered.run_id.to_string(),
        "workflow_id": workflow_id,
        "created": triggered.created,
    });
    respond(status, &body, Vec::new())
}

/// `200 OK` with `{"run_id"}`: the pause of run `run_id` was resumed (durably).
pub(crate) fn resumed(run_id: RunId) -> Response<ResponseBody> {
    respond(StatusCode::OK, &json!({"run_id": run_id.to_string()}), Vec::new())
}

/// A request the service refuses: a status, a JSON body `{"error": "...", ...}` and
/// perhaps headers (`Allow`, `Retry-After`, `WWW-Authenticate`).
#[derive(Debug)]
pub(crate) struct Rejection {
    status: StatusCode,
    body: Map<String, Value>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Rejection {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let mut body = Map::new();
        body.insert("error".into(), Value::String(message.into()));
        Self { status, body, headers: Vec::new() }
    }

    /// Adds a field to the JSON body.
    pub(crate) fn field(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.body.insert(name.into(), value.into());
        self
    }

    fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(path: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("no webhook at `{path}`"))
    }

    /// `405` with the `Allow` header listing the route's methods.
    pub(crate) fn method_not_allowed(path: &str, allow: HeaderValue) -> Self {
        let methods = allow.to_str().unwrap_or_default().to_string();
        Self::new(StatusCode::METHOD_NOT_ALLOWED, format!("`{path}` accepts only {methods}"))
            .header(ALLOW, allow)
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// `401` for the manual route, with the `WWW-Authenticate: Bearer` challenge.
    pub(crate) fn bearer_challenge(message: impl Into<String>) -> Self {
        Self::unauthorized(message).header(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    }

    pub(crate) fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body exceeds the limit of {limit} bytes"),
        )
        .field("limit", limit)
    }

    pub(crate) fn unsupported_media_type(expected: &str, found: Option<&str>) -> Self {
        let found = found.map_or_else(|| "none".to_string(), |f| format!("`{f}`"));
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("expected Content-Type `{expected}`, found {found}"),
        )
    }

    /// `429` with `Retry-After` in whole seconds, at least 1.
    pub(crate) fn rate_limited(retry_after: std::time::Duration) -> Self {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        let secs = secs.max(1);
        Self::new(StatusCode::TOO_MANY_REQUESTS, format!("rate limit exceeded: retry in {secs} s"))
            .field("retry_after", secs)
            .header(RETRY_AFTER, HeaderValue::from(secs))
    }

    /// What an engine error means to the caller: it could not take the run now (`503`), the
    /// payload is too big for it (`413`), or the request was wrong (`400`, `404`).
    pub(crate) fn engine(error: EngineError, workflow_id: &str) -> Self {
        let (status, message) = match &error {
            EngineError::ShuttingDown | EngineError::Store(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the engine cannot accept runs now: {error}"),
            ),
            EngineError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, error.to_string())
            }
            EngineError::UnknownWorkflow(_) => {
                (StatusCode::NOT_FOUND, format!("no workflow `{workflow_id}` is registered"))
            }
            EngineError::InvalidTriggerKey { .. } | EngineError::InvalidPayload(_) => {
                (StatusCode::BAD_REQUEST, error.to_string())
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, format!("the run was not started: {error}")),
        };
        if status.is_server_error() {
            tracing::warn!(workflow = workflow_id, %error, "webhook: the engine refused a run");
        }
        Self::new(status, message)
    }

    pub(crate) fn into_response(self) -> Response<ResponseBody> {
        respond(self.status, &Value::Object(self.body), self.headers)
    }
}

fn respond(
    status: StatusCode,
    body: &Value,
    headers: Vec<(HeaderName, HeaderValue)>,
) -> Response<ResponseBody> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    let map = response.headers_mut();
    map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in headers {
        map.insert(name, value);
    }
    response
}

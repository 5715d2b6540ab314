//! The service's own routes under `/runs/`: the manual trigger `POST /runs/{workflow_id}`
//! (off unless a token is configured) and `POST /runs/resume/{token}`, which resumes the
//! paused run that issued the token (always on: the token is the credential).

use cronflow_core::{EngineError, EngineHandle, Json};
use hmac::{Hmac, KeyInit, Mac};
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use sha2::Sha256;

use super::config::DEFAULT_IDEMPOTENCY_HEADER;
use super::context::trigger_context;
use super::reply::{self, Rejection, ResponseBody};
use super::service::{idempotency_key, start};
use super::verify::{self, BoxError};

/// The key under which tokens are hashed before comparing: any fixed key works, since the
/// HMAC only turns tokens of any length into equal-length digests that `verify_slice`
/// compares in constant time (so neither the token's bytes nor its length leak).
const TOKEN_KEY: &[u8] = b"cronflow manual trigger token";

/// What the manual route needs: the token's digest (`None`: route off) and a body limit.
pub(crate) struct Manual {
    token: Option<Vec<u8>>,
    max_body_bytes: usize,
}

impl Manual {
    pub(crate) fn new(token: Option<&str>, max_body_bytes: usize) -> Self {
        let token = token.map(|t| token_mac(t.as_bytes()).finalize().into_bytes().to_vec());
        Self { token, max_body_bytes }
    }

    pub(crate) async fn answer<B>(
        &self,
        handle: &EngineHandle,
        request: Request<B>,
        body_timeout: std::time::Duration,
    ) -> Result<Response<ResponseBody>, Rejection>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let path = request.uri().path().to_string();
        let segments: Vec<&str> = path.trim_start_matches("/runs/").split('/').collect();
        match segments.as_slice() {
            ["resume", token] if !token.is_empty() => {
                only_post(&request, &path)?;
                let token = token.to_string();
                self.resume(handle, &token, request, body_timeout).await
            }
            [workflow] if !workflow.is_empty() && self.token.is_some() => {
                only_post(&request, &path)?;
                self.authorize(request.headers())?;
                let workflow = workflow.to_string();
                self.trigger(handle, &workflow, request, body_timeout).await
            }
            _ => Err(Rejection::not_found(&path)),
        }
    }

    /// `Authorization: Bearer <token>`, compared in constant time.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), Rejection> {
        let Some(expected) = &self.token else {
            return Err(Rejection::bearer_challenge("the manual trigger route is off"));
        };
        let value = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let presented = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| {
                Rejection::bearer_challenge("missing `Authorization: Bearer <token>`")
            })?;
        token_mac(presented.as_bytes())
            .verify_slice(expected)
            .map_err(|_| Rejection::bearer_challenge("invalid token"))
    }

    async fn trigger<B>(
        &self,
        handle: &EngineHandle,
        workflow: &str,
        request: Request<B>,
        body_timeout: std::time::Duration,
    ) -> Result<Response<ResponseBody>, Rejection>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        let body = verify::read_body(body, self.max_body_bytes, body_timeout).await?;
        let payload = verify::payload(&parts.headers, body, "application/json")?;
        let header = HeaderName::from_static(DEFAULT_IDEMPOTENCY_HEADER);
        let key = idempotency_key(&parts.headers, &header, "manual", workflow)?;
        // The bearer token is a credential: it is not stored with the run.
        let context = trigger_context("manual", workflow, &parts, &payload.raw, &[AUTHORIZATION]);
        start(handle, workflow, payload.json, key, context).await
    }
}

impl Manual {
    /// `POST /runs/resume/{token}`: the JSON body (`null` when empty) becomes the pause's
    /// output. No bearer token: the resume token is the credential (244 random bits, single
    /// use, looked up by its SHA-256), and whoever holds it was meant to answer the pause.
    async fn resume<B>(
        &self,
        handle: &EngineHandle,
        token: &str,
        request: Request<B>,
        body_timeout: std::time::Duration,
    ) -> Result<Response<ResponseBody>, Rejection>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        let body = verify::read_body(body, self.max_body_bytes, body_timeout).await?;
        let payload = if body.iter().all(u8::is_ascii_whitespace) {
            Json::null()
        } else {
            verify::payload(&parts.headers, body, "application/json")?.json
        };
        match handle.resume(token, payload).await {
            Ok(run_id) => Ok(reply::resumed(run_id)),
            Err(error) => Err(resume_rejection(error)),
        }
    }
}

/// What a failed resume means to the caller: no open pause has the token (`404`: never
/// issued, used, timed out or its run ended), the engine cannot take it now (`503`), or the
/// payload was refused (`400`).
fn resume_rejection(error: EngineError) -> Rejection {
    let (status, message) = match &error {
        EngineError::UnknownResumeToken => (StatusCode::NOT_FOUND, error.to_string()),
        EngineError::ShuttingDown | EngineError::Store(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("the engine cannot resume runs now: {error}"))
        }
        EngineError::InvalidPayload(_) | EngineError::PayloadTooLarge { .. } => {
            (StatusCode::BAD_REQUEST, error.to_string())
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, format!("the run was not resumed: {error}")),
    };
    if status.is_server_error() {
        tracing::warn!(%error, "webhook: the engine did not resume a run");
    }
    Rejection::new(status, message)
}

fn token_mac(token: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(TOKEN_KEY)
        .expect("HMAC takes keys of any length");
    mac.update(token);
    mac
}

fn only_post<B>(request: &Request<B>, path: &str) -> Result<(), Rejection> {
    if request.method() == Method::POST {
        return Ok(());
    }
    Err(Rejection::method_not_allowed(path, HeaderValue::from_static("POST")))
}

//! The checks a delivery goes through: body size (while reading), signature, required
//! headers, content type, JSON and schema. Each failure is a [`Rejection`] saying what was
//! wrong.

use std::pin::pin;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use cronflow_core::Json;
use hmac::{Hmac, Mac};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use sha2::Sha256;

use super::config::is_json_type;
use super::reply::Rejection;

/// Errors of request bodies, as hyper and tower bodies type them.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Reads the whole body, refusing it (`413`) as soon as it would exceed `limit`: a declared
/// `Content-Length` over the limit is refused before reading anything, and a streamed body
/// is never held beyond the limit. A body not received within `timeout` is refused (`408`):
/// a sender trickling bytes cannot hold a connection and its buffer for ever.
pub(crate) async fn read_body<B>(
    body: B,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, Rejection>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    if body.size_hint().lower() > limit as u64 {
        return Err(Rejection::too_large(limit));
    }
    tokio::time::timeout(timeout, read_limited(body, limit)).await.map_err(|_| {
        Rejection::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body was not received within {timeout:?}"),
        )
    })?
}

async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, Rejection>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let mut body = pin!(body);
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            Rejection::bad_request(format!("could not read the request body: {}", e.into()))
        })?;
        let Ok(mut data) = frame.into_data() else { continue }; // trailers
        total = total.saturating_add(data.remaining());
        if total > limit {
            return Err(Rejection::too_large(limit));
        }
        // A body in one chunk (the usual case) is kept without copying.
        match &first {
            None => first = Some(data.copy_to_bytes(data.remaining())),
            Some(head) => {
                if rest.is_empty() {
                    rest.extend_from_slice(head);
                }
                rest.extend_from_slice(&data.copy_to_bytes(data.remaining()));
            }
        }
    }
    Ok(if rest.is_empty() { first.unwrap_or_default() } else { rest.freeze() })
}

/// The signature sent in `header`, decoded: `sha256=<hex>` or bare hex.
pub(crate) fn signature(headers: &HeaderMap, header: &HeaderName) -> Result<Vec<u8>, Rejection> {
    let value = headers
        .get(header)
        .ok_or_else(|| Rejection::unauthorized(format!("missing signature header `{header}`")))?;
    let text = value.to_str().unwrap_or_default().trim();
    let hex_digits = text.strip_prefix("sha256=").unwrap_or(text);
    hex::decode(hex_digits).map_err(|_| {
        Rejection::unauthorized(format!(
            "signature header `{header}` must be `sha256=<hex HMAC-SHA256 of the body>`"
        ))
    })
}

/// Checks `signature` against the HMAC-SHA256 of `body` under the key `mac` was made with,
/// in constant time.
pub(crate) fn check_signature(
    mac: &Hmac<Sha256>,
    signature: &[u8],
    body: &[u8],
) -> Result<(), Rejection> {
    let mut mac = mac.clone();
    mac.update(body);
    mac.verify_slice(signature)
        .map_err(|_| Rejection::unauthorized("the signature does not match the body"))
}

/// `400` naming every required header the request lacks.
pub(crate) fn required_headers(headers: &HeaderMap, names: &[HeaderName]) -> Result<(), Rejection> {
    let missing: Vec<&str> =
        names.iter().filter(|n| !headers.contains_key(*n)).map(HeaderName::as_str).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Rejection::bad_request(format!("missing required header(s): {}", missing.join(", ")))
        .field("missing_headers", missing))
}

/// The request's media type, lower-case, without parameters.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    Some(essence.to_ascii_lowercase())
}

/// A delivery's payload and its body as text.
pub(crate) struct Payload {
    pub(crate) json: Json,
    pub(crate) raw: String,
}

/// Turns the body into the run's payload: a JSON body is kept as it is (a body that does not
/// parse is a `400`); for another configured media type the payload is the body as a JSON
/// string. An empty body without a `Content-Type` is the payload `null` (a bare `POST` or a
/// `GET`); any other body must have the expected media type (`415`).
pub(crate) fn payload(
    headers: &HeaderMap,
    body: Bytes,
    expected: &str,
) -> Result<Payload, Rejection> {
    let found = media_type(headers);
    if body.is_empty() && found.is_none() {
        return Ok(Payload { json: Json::null(), raw: String::new() });
    }
    if found.as_deref() != Some(expected) {
        let shown = headers.get(CONTENT_TYPE).map(|v| v.to_str().unwrap_or("(not text)"));
        return Err(Rejection::unsupported_media_type(expected, shown));
    }
    let raw = String::from_utf8(body.into())
        .map_err(|_| Rejection::bad_request("the request body is not UTF-8 text"))?;
    let json = if is_json_type(expected) {
        Json::from_string(raw.clone()).map_err(|e| {
            Rejection::bad_request(format!("the request body is not valid JSON: {e}"))
        })?
    } else {
        Json::from_value(&raw).map_err(|e| Rejection::bad_request(e.to_string()))?
    };
    Ok(Payload { json, raw })
}

/// The most schema errors listed in one response; `error_count` still counts them all.
const MAX_LISTED_ERRORS: usize = 100;

/// `400` listing every way (up to [`MAX_LISTED_ERRORS`]) the payload fails the schema, each
/// as `{"instance_path": "/order/id", "message": "..."}`.
pub(crate) fn schema(validator: &jsonschema::Validator, payload: &Json) -> Result<(), Rejection> {
    let value: serde_json::Value = payload
        .parse()
        .map_err(|e| Rejection::bad_request(format!("the request body is not valid JSON: {e}")))?;
    let mut count = 0usize;
    let mut listed = Vec::new();
    for error in validator.iter_errors(&value) {
        count += 1;
        if listed.len() < MAX_LISTED_ERRORS {
            listed.push(serde_json::json!({
                "instance_path": error.instance_path().as_str(),
                "message": error.to_string(),
            }));
        }
    }
    if count == 0 {
        return Ok(());
    }
    Err(Rejection::bad_request(format!(
        "the request body does not match the webhook's schema ({count} error{})",
        if count == 1 { "" } else { "s" }
    ))
    .field("error_count", count)
    .field("errors", listed))
}

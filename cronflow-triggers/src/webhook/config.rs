//! [`WebhookConfig`]: a `TriggerDef::Webhook`'s free-form settings read into typed values,
//! with errors naming the workflow, the route and the bad setting.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use cronflow_core::{TriggerDef, WorkflowDef};
use http::{HeaderName, Method};
use serde_json::{Map, Value};

use super::error::WebhookError;

/// Settings a webhook trigger may carry, besides `path` and `method`.
pub(crate) const SETTINGS: [&str; 9] = [
    "secret",
    "secret_env",
    "signature_header",
    "content_type",
    "max_body_bytes",
    "required_headers",
    "schema",
    "idempotency_header",
    "rate_limit",
];

/// The default of [`WebhookConfig::max_body_bytes`]: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// The default of [`WebhookConfig::signature_header`].
pub const DEFAULT_SIGNATURE_HEADER: &str = "x-cronflow-signature";
/// The default of [`WebhookConfig::idempotency_header`].
pub const DEFAULT_IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// The default of [`WebhookConfig::content_type`].
pub const DEFAULT_CONTENT_TYPE: &str = "application/json";

/// One webhook trigger of one workflow, read from its
/// [`TriggerDef::Webhook`] (the settings are listed on [`Webhooks`](crate::Webhooks#settings-of-a-webhook-trigger)).
///
/// Built by [`WebhookConfig::from_workflow`]; the service builds these for every registered
/// workflow. `Debug` never shows the secret.
///
/// ```
/// use cronflow_core::{TriggerDef, Workflow};
/// use cronflow_triggers::WebhookConfig;
///
/// let trigger: TriggerDef = serde_json::from_value(serde_json::json!({
///     "type": "webhook", "path": "/hooks/orders", "secret": "s3cret",
///     "rate_limit": { "requests": 10, "per": "1s" }
/// }))?;
/// let def = Workflow::new("orders").trigger(trigger).step("ship").build()?;
/// let configs = WebhookConfig::from_workflow(&def)?;
/// assert_eq!(configs[0].method, http::Method::POST);
/// assert_eq!(configs[0].max_body_bytes, 1 << 20);
/// assert_eq!(configs[0].rate_limit.unwrap().requests.get(), 10);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct WebhookConfig {
    /// The workflow a delivery starts.
    pub workflow_id: String,
    /// The route path, matched exactly against the request's path.
    pub path: String,
    /// The route method (`method`, default `POST`).
    pub method: Method,
    /// The HMAC-SHA256 key (`secret`): when set, every request must be signed.
    pub secret: Option<String>,
    /// The header carrying the signature (`signature_header`, default `X-Cronflow-Signature`).
    pub signature_header: HeaderName,
    /// The media type a body must have (`content_type`, default `application/json`),
    /// lower-case and without parameters.
    pub content_type: String,
    /// The largest body accepted (`max_body_bytes`, default 1 MiB).
    pub max_body_bytes: usize,
    /// Headers every request must carry (`required_headers`).
    pub required_headers: Vec<HeaderName>,
    /// A JSON Schema the payload must match (`schema`).
    pub schema: Option<Value>,
    /// The header whose value makes a delivery idempotent (`idempotency_header`, default
    /// `Idempotency-Key`).
    pub idempotency_header: HeaderName,
    /// At most this many requests per period (`rate_limit`).
    pub rate_limit: Option<RateLimit>,
}

/// A webhook's rate limit: `{"requests": N, "per": "1s"}`, a burst of `requests` refilled
/// evenly over `per` (`per` defaults to `"1s"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RateLimit {
    /// Requests allowed per period (and the largest burst).
    pub requests: NonZeroU32,
    /// The period.
    pub per: Duration,
}

impl WebhookConfig {
    /// Reads every webhook trigger of `def`; other triggers are skipped.
    ///
    /// Fails on the first bad setting, naming the workflow, the route and the setting, or on
    /// a setting it does not know (a typo such as `signatureHeader` would otherwise be
    /// ignored silently). The JSON Schema is only checked to be an object or a boolean here;
    /// it is compiled when the service is built.
    pub fn from_workflow(def: &WorkflowDef) -> Result<Vec<WebhookConfig>, WebhookError> {
        def.triggers
            .iter()
            .filter_map(|trigger| match trigger {
                TriggerDef::Webhook { path, method, settings } => {
                    Some(Self::parse(&def.id, path, method.as_deref(), settings))
                }
                _ => None,
            })
            .collect()
    }

    /// `"POST /hooks/orders"`.
    pub(crate) fn route(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    fn parse(
        workflow: &str,
        path: &str,
        method: Option<&str>,
        settings: &Map<String, Value>,
    ) -> Result<Self, WebhookError> {
        let raw_route = format!("{} {path}", method.unwrap_or("POST"));
        let bad = |setting: &str, reason: String| WebhookError::InvalidSetting {
            workflow: workflow.to_string(),
            route: raw_route.clone(),
            setting: setting.to_string(),
            reason,
        };
        check_path(path).map_err(|reason| bad("path", reason))?;
        let method = match method {
            None => Method::POST,
            Some(m) => parse_method(m).map_err(|reason| bad("method", reason))?,
        };
        if let Some(unknown) = settings.keys().find(|k| !SETTINGS.contains(&k.as_str())) {
            let reason = format!("unknown setting (known: method, {})", SETTINGS.join(", "));
            return Err(bad(unknown, reason));
        }
        let get = |name: &str| settings.get(name).filter(|v| !v.is_null());
        let header = |name: &str, default: &'static str| match get(name) {
            None => Ok(HeaderName::from_static(default)),
            Some(v) => header_name(v).map_err(|reason| bad(name, reason)),
        };
        let secret = match (get("secret"), get("secret_env")) {
            (None, None) => None,
            (Some(_), Some(_)) => {
                return Err(bad("secret_env", "give `secret` or `secret_env`, not both".into()));
            }
            (Some(Value::String(s)), None) if !s.is_empty() => Some(s.clone()),
            (Some(v), None) => {
                return Err(bad("secret", format!("must be a non-empty string, found {v}")));
            }
            // The key stays out of the definition (and so out of the store): it is read from
            // the host's environment when the routes are built.
            (None, Some(Value::String(var))) if !var.is_empty() => match std::env::var(var) {
                Ok(key) if !key.is_empty() => Some(key),
                _ => {
                    let reason = format!("the environment variable `{var}` is not set or empty");
                    return Err(bad("secret_env", reason));
                }
            },
            (None, Some(v)) => {
                let reason = format!("must be the name of an environment variable, found {v}");
                return Err(bad("secret_env", reason));
            }
        };
        let content_type = match get("content_type") {
            None => DEFAULT_CONTENT_TYPE.to_string(),
            Some(v) => media_type(v).map_err(|reason| bad("content_type", reason))?,
        };
        let max_body_bytes = match get("max_body_bytes") {
            None => DEFAULT_MAX_BODY_BYTES,
            Some(v) => byte_count(v).map_err(|reason| bad("max_body_bytes", reason))?,
        };
        let required_headers = match get("required_headers") {
            None => Vec::new(),
            Some(Value::Array(names)) => names
                .iter()
                .map(header_name)
                .collect::<Result<_, _>>()
                .map_err(|reason| bad("required_headers", reason))?,
            Some(v) => {
                let reason = format!("must be an array of header names, found {v}");
                return Err(bad("required_headers", reason));
            }
        };
        let schema = match get("schema") {
            None => None,
            Some(v @ (Value::Object(_) | Value::Bool(_))) => Some(v.clone()),
            Some(v) => {
                let reason = format!("must be a JSON Schema (an object or a boolean), found {v}");
                return Err(bad("schema", reason));
            }
        };
        let rate_limit = match get("rate_limit") {
            None => None,
            Some(v) => Some(rate_limit(v).map_err(|reason| bad("rate_limit", reason))?),
        };
        Ok(Self {
            workflow_id: workflow.to_string(),
            path: path.to_string(),
            method,
            secret,
            signature_header: header("signature_header", DEFAULT_SIGNATURE_HEADER)?,
            content_type,
            max_body_bytes,
            required_headers,
            schema,
            idempotency_header: header("idempotency_header", DEFAULT_IDEMPOTENCY_HEADER)?,
            rate_limit,
        })
    }
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("workflow_id", &self.workflow_id)
            .field("path", &self.path)
            .field("method", &self.method)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("signature_header", &self.signature_header)
            .field("content_type", &self.content_type)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("required_headers", &self.required_headers)
            .field("schema", &self.schema)
            .field("idempotency_header", &self.idempotency_header)
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

/// The prefix of the service's own routes (manual trigger, resume).
pub(crate) const RESERVED_PREFIX: &str = "/runs";

/// A route path: absolute, a valid URI path without query or fragment, outside `/runs/`.
fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("`{path}` must start with `/`, such as \"/hooks/orders\""));
    }
    let valid = path.parse::<http::uri::PathAndQuery>();
    if path.contains(['?', '#']) || valid.map(|p| p.path() != path).unwrap_or(true) {
        return Err(format!(
            "`{path}` is not a plain URI path (no spaces, query or fragment; percent-encode \
             other characters)"
        ));
    }
    if path == RESERVED_PREFIX || path.starts_with("/runs/") {
        return Err(format!(
            "`{path}` is under `/runs/`, which is reserved for the manual trigger and resume \
             routes"
        ));
    }
    Ok(())
}

fn parse_method(method: &str) -> Result<Method, String> {
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(format!("`{method}` is not an HTTP method such as \"POST\""));
    }
    Method::from_bytes(method.to_ascii_uppercase().as_bytes()).map_err(|e| e.to_string())
}

fn header_name(value: &Value) -> Result<HeaderName, String> {
    match value {
        Value::String(s) => HeaderName::from_bytes(s.as_bytes())
            .map_err(|_| format!("`{s}` is not a valid HTTP header name")),
        other => Err(format!("header names must be strings, found {other}")),
    }
}

fn byte_count(value: &Value) -> Result<usize, String> {
    let n = value.as_u64().filter(|n| *n > 0).and_then(|n| usize::try_from(n).ok());
    n.ok_or_else(|| format!("must be a positive integer number of bytes, found {value}"))
}

fn media_type(value: &Value) -> Result<String, String> {
    let text = value.as_str().unwrap_or_default().trim().to_ascii_lowercase();
    let token = |s: &str| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match text.split_once('/') {
        Some((kind, sub)) if token(kind) && token(sub) => Ok(text),
        _ => Err(format!(
            "must be a media type without parameters, such as \"application/json\", found {value}"
        )),
    }
}

pub(crate) fn is_json_type(media_type: &str) -> bool {
    media_type == "application/json"
        || (media_type.starts_with("application/") && media_type.ends_with("+json"))
}

fn rate_limit(value: &Value) -> Result<RateLimit, String> {
    let shape = || format!("must be {{\"requests\": N, \"per\": \"1s\"}}, found {value}");
    let Value::Object(map) = value else { return Err(shape()) };
    if let Some(key) = map.keys().find(|k| *k != "requests" && *k != "per") {
        return Err(format!("unknown field `{key}`: {}", shape()));
    }
    let requests = map
        .get("requests")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .and_then(NonZeroU32::new)
        .ok_or_else(|| format!("`requests` must be a positive integer: {}", shape()))?;
    let per = match map.get("per") {
        None => Duration::from_secs(1),
        Some(Value::String(s)) => {
            cronflow_core::parse_duration(s).map_err(|e| format!("`per`: {e}"))?
        }
        Some(other) => {
            return Err(format!("`per` must be a duration such as \"1s\", found {other}"));
        }
    };
    // governor refills one request every `per / requests`, which must not round to zero.
    if per.checked_div(requests.get()).is_none_or(|d| d.is_zero()) {
        return Err(format!("`per` must be positive and at least {} ns", requests.get()));
    }
    Ok(RateLimit { requests, per })
}

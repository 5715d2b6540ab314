//! The route table: every registered workflow's webhook triggers by path and method, each
//! with what it needs ready (the keyed HMAC, the compiled schema, the rate limiter).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cronflow_core::WorkflowDef;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hmac::{Hmac, KeyInit};
use http::{HeaderValue, Method};
use sha2::Sha256;

use super::config::{RateLimit, WebhookConfig};
use super::error::WebhookError;
use super::reply::Rejection;

/// One webhook route, ready to serve.
pub(crate) struct Endpoint {
    pub(crate) config: WebhookConfig,
    /// The HMAC keyed with the secret once; each request clones it.
    pub(crate) mac: Option<Hmac<Sha256>>,
    pub(crate) schema: Option<jsonschema::Validator>,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
}

impl Endpoint {
    fn new(config: WebhookConfig, previous: Option<&Routes>) -> Result<Self, WebhookError> {
        let bad = |setting: &str, reason: String| WebhookError::InvalidSetting {
            workflow: config.workflow_id.clone(),
            route: config.route(),
            setting: setting.to_string(),
            reason,
        };
        let mac = match &config.secret {
            None => None,
            Some(secret) => Some(
                <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
                    .map_err(|e| bad("secret", e.to_string()))?,
            ),
        };
        let schema = match &config.schema {
            None => None,
            Some(schema) => Some(
                jsonschema::validator_for(schema)
                    .map_err(|e| bad("schema", format!("not a valid JSON Schema: {e}")))?,
            ),
        };
        // A rebuilt table keeps the limiter of an unchanged route, so a refresh does not
        // hand out a fresh burst.
        let limiter = config.rate_limit.map(|limit| {
            previous
                .and_then(|routes| routes.limiter_of(&config, limit))
                .unwrap_or_else(|| Arc::new(RateLimiter::direct(quota(limit))))
        });
        Ok(Self { config, mac, schema, limiter })
    }

    /// `429` if the rate limit is used up; otherwise takes one request from it.
    pub(crate) fn check_rate(&self) -> Result<(), Rejection> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        limiter.check().map_err(|not_until| {
            Rejection::rate_limited(not_until.wait_time_from(DefaultClock::default().now()))
        })
    }
}

fn quota(limit: RateLimit) -> Quota {
    // `config.rs` refused periods that divide to zero, so `with_period` always succeeds.
    let period = (limit.per / limit.requests.get()).max(Duration::from_nanos(1));
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(limit.requests))
        .allow_burst(limit.requests)
}

/// The endpoints of one path, and the `Allow` header listing their methods.
struct PathRoutes {
    endpoints: Vec<Arc<Endpoint>>,
    allow: HeaderValue,
}

/// What a request's path and method lead to.
pub(crate) enum Lookup<'a> {
    Endpoint(&'a Arc<Endpoint>),
    WrongMethod(HeaderValue),
    NotFound,
}

/// Every webhook route, built from the workflows registered when it was built.
#[derive(Default)]
pub(crate) struct Routes {
    by_path: HashMap<String, PathRoutes>,
}

impl Routes {
    /// Builds the table; two triggers on one method and path, or any bad setting, fail it.
    pub(crate) fn build(
        workflows: &[WorkflowDef],
        previous: Option<&Routes>,
    ) -> Result<Self, WebhookError> {
        let mut workflows: Vec<&WorkflowDef> = workflows.iter().collect();
        workflows.sort_by(|a, b| a.id.cmp(&b.id));
        let mut grouped: HashMap<String, Vec<Arc<Endpoint>>> = HashMap::new();
        for def in workflows {
            for config in WebhookConfig::from_workflow(def)? {
                let endpoints = grouped.entry(config.path.clone()).or_default();
                if let Some(taken) = endpoints.iter().find(|e| e.config.method == config.method) {
                    return Err(WebhookError::DuplicateRoute {
                        route: config.route(),
                        first: taken.config.workflow_id.clone(),
                        second: config.workflow_id,
                    });
                }
                endpoints.push(Arc::new(Endpoint::new(config, previous)?));
            }
        }
        let by_path = grouped
            .into_iter()
            .map(|(path, endpoints)| {
                let allow = allow_header(endpoints.iter().map(|e| &e.config.method));
                (path, PathRoutes { endpoints, allow })
            })
            .collect();
        Ok(Self { by_path })
    }

    pub(crate) fn find(&self, path: &str, method: &Method) -> Lookup<'_> {
        let Some(routes) = self.by_path.get(path) else { return Lookup::NotFound };
        match routes.endpoints.iter().find(|e| e.config.method == *method) {
            Some(endpoint) => Lookup::Endpoint(endpoint),
            None => Lookup::WrongMethod(routes.allow.clone()),
        }
    }

    /// Every route's configuration, by path then method.
    pub(crate) fn configs(&self) -> Vec<WebhookConfig> {
        let mut all: Vec<WebhookConfig> = self
            .by_path
            .values()
            .flat_map(|r| r.endpoints.iter().map(|e| e.config.clone()))
            .collect();
        all.sort_by(|a, b| (&a.path, a.method.as_str()).cmp(&(&b.path, b.method.as_str())));
        all
    }

    fn limiter_of(
        &self,
        config: &WebhookConfig,
        limit: RateLimit,
    ) -> Option<Arc<DefaultDirectRateLimiter>> {
        let routes = self.by_path.get(&config.path)?;
        let old = routes.endpoints.iter().find(|e| e.config.method == config.method)?;
        let same =
            old.config.workflow_id == config.workflow_id && old.config.rate_limit == Some(limit);
        if same { old.limiter.clone() } else { None }
    }
}

/// `Allow: GET, POST` (sorted, so the header does not depend on declaration order).
pub(crate) fn allow_header<'a>(methods: impl Iterator<Item = &'a Method>) -> HeaderValue {
    let mut names: Vec<&str> = methods.map(Method::as_str).collect();
    names.sort_unstable();
    // Method names are tokens, always valid header text.
    HeaderValue::from_str(&names.join(", ")).unwrap_or_else(|_| HeaderValue::from_static("POST"))
}

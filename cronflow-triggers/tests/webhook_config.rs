//! Build-time checks of webhook triggers: settings read into `WebhookConfig` (as the
//! JavaScript SDK writes them), and every configuration error naming the workflow, the
//! route and the setting. No HTTP and no durable store needed: an in-memory engine.

use std::time::Duration;

use cronflow_core::{
    Engine, InProcessExecutor, MemoryStore, TaskError, TriggerDef, Workflow, WorkflowDef,
};
use cronflow_triggers::{WebhookConfig, WebhookError, Webhooks};
use serde_json::{Value, json};

fn def(id: &str, trigger: Value) -> WorkflowDef {
    let mut trigger = trigger;
    trigger["type"] = "webhook".into();
    let trigger: TriggerDef = serde_json::from_value(trigger).unwrap();
    Workflow::new(id).trigger(trigger).step("noop").build().unwrap()
}

/// The error of building the service over `defs`.
async fn build_error(defs: Vec<WorkflowDef>) -> WebhookError {
    let executor = InProcessExecutor::new().handler("noop", |_| async { Ok::<_, TaskError>(()) });
    let engine = Engine::builder().store(MemoryStore::new()).executor(executor).workflows(defs);
    let engine = engine.start().await.unwrap();
    let err = Webhooks::new(engine.handle()).into_service().unwrap_err();
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
    err
}

fn setting_error(trigger: Value) -> (String, String) {
    match WebhookConfig::from_workflow(&def("orders", trigger)).unwrap_err() {
        WebhookError::InvalidSetting { workflow, setting, reason, .. } => {
            assert_eq!(workflow, "orders");
            (setting, reason)
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn settings_as_the_sdk_writes_them_are_read_into_typed_values() {
    // What `.onWebhook('/hooks/orders', { method: 'put', secret, signatureHeader, ... })` emits.
    let trigger = json!({
        "path": "/hooks/orders", "method": "PUT", "secret": "k",
        "signature_header": "X-Hub-Signature-256", "content_type": "Application/Vnd.Api+JSON",
        "max_body_bytes": 4096, "required_headers": ["X-Tenant"],
        "schema": {"type": "object"}, "idempotency_header": "X-Delivery",
        "rate_limit": {"requests": 5, "per": "1m"}
    });
    let configs = WebhookConfig::from_workflow(&def("orders", trigger)).unwrap();
    let config = &configs[0];
    assert_eq!(config.workflow_id, "orders");
    assert_eq!(config.method, http::Method::PUT);
    assert_eq!(config.signature_header, "x-hub-signature-256");
    assert_eq!(config.content_type, "application/vnd.api+json");
    assert_eq!(config.max_body_bytes, 4096);
    assert_eq!(config.required_headers, vec![http::HeaderName::from_static("x-tenant")]);
    assert_eq!(config.idempotency_header, "x-delivery");
    let limit = config.rate_limit.unwrap();
    assert_eq!((limit.requests.get(), limit.per), (5, Duration::from_secs(60)));
    assert!(!format!("{config:?}").contains("\"k\""), "Debug hides the secret");

    let defaults = &WebhookConfig::from_workflow(&def("d", json!({"path": "/d"}))).unwrap()[0];
    assert_eq!(defaults.method, http::Method::POST);
    assert_eq!(defaults.signature_header, "x-cronflow-signature");
    assert_eq!(defaults.idempotency_header, "idempotency-key");
    assert_eq!(defaults.content_type, "application/json");
    assert_eq!(defaults.max_body_bytes, 1 << 20);
    assert!(
        defaults.secret.is_none() && defaults.schema.is_none() && defaults.rate_limit.is_none()
    );
}

#[test]
fn a_secret_can_come_from_the_environment_instead_of_the_definition() {
    // `PATH` is set in every test environment; any non-empty variable works as a key here.
    let trigger = json!({ "path": "/h", "secret_env": "PATH" });
    let configs = WebhookConfig::from_workflow(&def("orders", trigger)).unwrap();
    assert_eq!(configs[0].secret.as_deref(), std::env::var("PATH").ok().as_deref());
}

#[test]
fn bad_settings_are_named_with_a_reason() {
    let cases = [
        (json!({"path": "/h", "signatureHeader": "X-Sig"}), "signatureHeader", "unknown setting"),
        (json!({"path": "/h", "secret": 42}), "secret", "non-empty string"),
        (json!({"path": "/h", "secret": ""}), "secret", "non-empty string"),
        (json!({"path": "/h", "secret": "k", "secret_env": "K"}), "secret_env", "not both"),
        (json!({"path": "/h", "secret_env": 7}), "secret_env", "environment variable"),
        (
            json!({"path": "/h", "secret_env": "CRONFLOW_TEST_SURELY_UNSET_4f1c"}),
            "secret_env",
            "`CRONFLOW_TEST_SURELY_UNSET_4f1c` is not set",
        ),
        (json!({"path": "/h", "max_body_bytes": 0}), "max_body_bytes", "positive integer"),
        (json!({"path": "/h", "required_headers": "X-A"}), "required_headers", "array"),
        (
            json!({"path": "/h", "required_headers": ["bad header"]}),
            "required_headers",
            "not a valid HTTP header",
        ),
        (json!({"path": "/h", "content_type": "json"}), "content_type", "media type"),
        (json!({"path": "/h", "schema": "object"}), "schema", "JSON Schema"),
        (json!({"path": "/h", "rate_limit": 10}), "rate_limit", "\"requests\""),
        (json!({"path": "/h", "rate_limit": {"requests": 0}}), "rate_limit", "positive integer"),
        (
            json!({"path": "/h", "rate_limit": {"requests": 1, "per": "soon"}}),
            "rate_limit",
            "`per`",
        ),
        (
            json!({"path": "/h", "rate_limit": {"requests": 1, "every": "1s"}}),
            "rate_limit",
            "unknown field `every`",
        ),
        (json!({"path": "/h", "method": "P0ST"}), "method", "not an HTTP method"),
        (json!({"path": "/a b"}), "path", "not a plain URI path"),
        (json!({"path": "/h?x=1"}), "path", "not a plain URI path"),
        (json!({"path": "/runs/mine"}), "path", "reserved"),
        (json!({"path": "/runs"}), "path", "reserved"),
    ];
    for (trigger, setting, reason) in cases {
        let (got_setting, got_reason) = setting_error(trigger.clone());
        assert_eq!(got_setting, setting, "{trigger}");
        assert!(got_reason.contains(reason), "{trigger}: {got_reason}");
    }
}

#[tokio::test]
async fn building_the_service_refuses_bad_schemas_duplicates_and_bad_options() {
    let err = build_error(vec![def("a", json!({"path": "/h", "schema": {"type": 12}}))]).await;
    let text = err.to_string();
    assert!(
        text.starts_with(
            "workflow `a`, webhook POST /h: setting `schema`: not a valid JSON Schema"
        ),
        "{text}"
    );

    // Remote references are not fetched: a schema must be self-contained.
    let remote = json!({"path": "/h", "schema": {"$ref": "https://example.invalid/s.json"}});
    let err = build_error(vec![def("a", remote)]).await;
    assert!(
        matches!(&err, WebhookError::InvalidSetting { setting, .. } if setting == "schema"),
        "{err}"
    );

    let dup =
        vec![def("b", json!({"path": "/h"})), def("a", json!({"path": "/h", "method": "post"}))];
    let err = build_error(dup).await;
    assert_eq!(
        err.to_string(),
        "webhook POST /h is declared twice: by workflow `a` and by workflow `b`"
    );

    // One path with two methods is fine.
    let executor = InProcessExecutor::new().handler("noop", |_| async { Ok::<_, TaskError>(()) });
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .executor(executor)
        .workflow(def("a", json!({"path": "/h"})))
        .workflow(def("b", json!({"path": "/h", "method": "GET"})))
        .start()
        .await
        .unwrap();
    let service = Webhooks::new(engine.handle()).into_service().unwrap();
    let routes: Vec<_> =
        service.webhooks().iter().map(|c| (c.method.to_string(), c.workflow_id.clone())).collect();
    assert_eq!(routes, [("GET".to_string(), "b".to_string()), ("POST".into(), "a".into())]);
    let err = Webhooks::new(engine.handle()).manual_token(" ").into_service().unwrap_err();
    assert!(matches!(err, WebhookError::InvalidOption { option: "manual_token", .. }), "{err}");
    engine.shutdown(Duration::from_secs(1)).await.unwrap();
}

//! Webhook deliveries over real HTTP on 127.0.0.1 into a real engine on a SQLite file (and
//! PostgreSQL when `CRONFLOW_TEST_DATABASE_URL` is set): every status code of a webhook
//! route, that accepted runs really run with their payload, and what handlers see.

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use common::{Harness, Req, hook, on_every_backend, sign};
use cronflow_core::WorkflowDef;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};

const SECRET: &str = "whsec_test_8f2d";

fn workflows() -> Vec<WorkflowDef> {
    let schema = json!({
        "type": "object",
        "required": ["order"],
        "properties": {
            "order": {"type": "integer", "minimum": 1},
            "email": {"type": "string"}
        }
    });
    vec![
        hook("plain", json!({"path": "/hooks/plain"})),
        hook("plain-get", json!({"path": "/hooks/plain", "method": "GET"})),
        hook("signed", json!({"path": "/hooks/signed", "secret": SECRET})),
        hook(
            "strict",
            json!({
                "path": "/hooks/strict",
                "required_headers": ["X-Tenant", "X-Request-Id"],
                "max_body_bytes": 256,
                "schema": schema,
            }),
        ),
        hook(
            "limited",
            json!({"path": "/hooks/limited", "rate_limit": {"requests": 2, "per": "1h"}}),
        ),
        hook(
            "text",
            json!({"path": "/hooks/text", "content_type": "text/plain", "max_body_bytes": 4096}),
        ),
    ]
}

async fn start(backend: common::Backend) -> Harness {
    Harness::start(backend, workflows(), |w| w).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_starts_a_durable_run_and_a_repeated_key_starts_nothing() {
    on_every_backend(|backend| async move {
        let h = start(backend).await;
        let db = h.backend.name();
        let body = r#"{"order": 42, "items": [1, 2.5]}"#;
        let req = || Req::post("/hooks/plain").json(body).header("idempotency-key", "delivery-1");

        let first = h.send(req()).await;
        assert_eq!(first.status, StatusCode::ACCEPTED, "{db}: {first:?}");
        assert_eq!(first.header("content-type"), "application/json");
        assert_eq!(first.body["workflow_id"], "plain");
        assert_eq!(first.body["created"], true);
        let run = first.run_id();
        // The run really ran, with the body as its payload.
        let report = h.completed(run).await;
        assert_eq!(report.run.payload.as_str(), body, "{db}: the payload is the body as sent");
        assert_eq!(report.run.output.unwrap().to_value(), json!({"order": 42, "items": [1, 2.5]}));
        assert_eq!(h.seen(run).payload, json!({"order": 42, "items": [1, 2.5]}));

        // The same delivery again: the same run, nothing started.
        let again = h.send(req()).await;
        assert_eq!(again.status, StatusCode::OK, "{db}: {again:?}");
        assert_eq!(again.body["created"], false);
        assert_eq!(again.run_id(), run);
        assert_eq!(h.runs_of("plain").await, 1, "{db}: a repeated key starts no second run");

        // Without the header every delivery is a new run.
        let other = h.send(Req::post("/hooks/plain").json(body)).await;
        assert_eq!(other.status, StatusCode::ACCEPTED);
        assert_ne!(other.run_id(), run);
        h.completed(other.run_id()).await;
        assert_eq!(h.runs_of("plain").await, 2);
        assert_eq!(h.seen.lock().unwrap().len(), 2, "{db}: the handler ran once per run");
        h.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_answers_404_405_with_allow_and_serves_other_methods() {
    on_every_backend(|backend| async move {
        let h = start(backend).await;
        let missing = h.send(Req::post("/hooks/nope").json("{}")).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert_eq!(missing.body["error"], "no webhook at `/hooks/nope`");

        let wrong = h.send(Req::new(Method::PUT, "/hooks/plain").json("{}")).await;
        assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(wrong.header("allow"), "GET, POST");
        assert!(wrong.body["error"].as_str().unwrap().contains("GET, POST"));

        // A bodiless GET is a delivery with the payload `null`.
        let get = h.send(Req::new(Method::GET, "/hooks/plain?x=1")).await;
        assert_eq!(get.status, StatusCode::ACCEPTED, "{get:?}");
        assert_eq!(get.body["workflow_id"], "plain-get");
        let report = h.completed(get.run_id()).await;
        assert_eq!(report.run.payload.as_str(), "null");
        assert_eq!(h.runs_of("plain").await, 0);
        h.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deliveries_get_400_naming_the_problem_and_start_nothing() {
    on_every_backend(|backend| async move {
        let h = start(backend).await;
        let headers = |req: Req| req.header("x-tenant", "acme").header("x-request-id", "r1");

        let bad_json = h.send(headers(Req::post("/hooks/strict")).json("{\"order\": ")).await;
        assert_eq!(bad_json.status, StatusCode::BAD_REQUEST);
        let message = bad_json.body["error"].as_str().unwrap();
        assert!(message.starts_with("the request body is not valid JSON"), "{message}");

        let missing =
            h.send(Req::post("/hooks/strict").header("x-tenant", "acme").json("{}")).await;
        assert_eq!(missing.status, StatusCode::BAD_REQUEST);
        assert_eq!(missing.body["missing_headers"], json!(["x-request-id"]));
        assert!(missing.body["error"].as_str().unwrap().contains("x-request-id"));

        // Every schema error is listed with where it is.
        let invalid =
            h.send(headers(Req::post("/hooks/strict")).json(r#"{"order": 0, "email": 5}"#)).await;
        assert_eq!(invalid.status, StatusCode::BAD_REQUEST, "{invalid:?}");
        assert_eq!(invalid.body["error_count"], 2);
        let mut paths: Vec<&str> = invalid.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                assert!(!e["message"].as_str().unwrap().is_empty());
                e["instance_path"].as_str().unwrap()
            })
            .collect();
        paths.sort_unstable();
        assert_eq!(paths, ["/email", "/order"]);
        let absent =
            h.send(headers(Req::post("/hooks/strict")).json(r#"{"email": "a@b.c"}"#)).await;
        assert_eq!(absent.status, StatusCode::BAD_REQUEST);
        assert_eq!(absent.body["errors"][0]["instance_path"], "");
        assert!(absent.body["errors"][0]["message"].as_str().unwrap().contains("order"));

        let empty_key = headers(Req::post("/hooks/strict")).header("idempotency-key", " ");
        let empty_key = h.send(empty_key.json(r#"{"order": 1}"#)).await;
        assert_eq!(empty_key.status, StatusCode::BAD_REQUEST);
        assert_eq!(h.runs_of("strict").await, 0, "rejected deliveries start nothing");

        let good = h.send(headers(Req::post("/hooks/strict")).json(r#"{"order": 7}"#)).await;
        assert_eq!(good.status, StatusCode::ACCEPTED, "{good:?}");
        h.completed(good.run_id()).await;
        h.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhooks_refuse_missing_and_wrong_signatures() {
    on_every_backend(|backend| async move {
        let h = start(backend).await;
        let body = r#"{"event": "paid"}"#;
        let post = || Req::post("/hooks/signed").json(body);

        let unsigned = h.send(post()).await;
        assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED);
        assert_eq!(unsigned.body["error"], "missing signature header `x-cronflow-signature`");
        let wrong = h.send(post().header("x-cronflow-signature", &sign("other", body))).await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        assert_eq!(wrong.body["error"], "the signature does not match the body");
        let tampered = sign(SECRET, r#"{"event": "refunded"}"#);
        let tampered = h.send(post().header("x-cronflow-signature", &tampered)).await;
        assert_eq!(tampered.status, StatusCode::UNAUTHORIZED);
        let garbage = h.send(post().header("x-cronflow-signature", "sha256=zz")).await;
        assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
        assert_eq!(h.runs_of("signed").await, 0);

        let good = h.send(post().header("x-cronflow-signature", &sign(SECRET, body))).await;
        assert_eq!(good.status, StatusCode::ACCEPTED, "{good:?}");
        h.completed(good.run_id()).await;
        // Bare hex, upper case, is accepted too.
        let bare = sign(SECRET, body).trim_start_matches("sha256=").to_uppercase();
        let bare = h.send(post().header("x-cronflow-signature", &bare)).await;
        assert_eq!(bare.status, StatusCode::ACCEPTED, "{bare:?}");
        assert_eq!(h.runs_of("signed").await, 2);
        h.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_limited_in_size_and_media_type() {
    on_every_backend(|backend| async move {
        let h = start(backend).await;
        let headers = |req: Req| req.header("x-tenant", "acme").header("x-request-id", "r1");
        let big = format!(r#"{{"order": 1, "pad": "{}"}}"#, "x".repeat(300));

        // Declared too large: refused before reading.
        let declared = h.send(headers(Req::post("/hooks/strict")).json(&big)).await;
        assert_eq!(declared.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(declared.body["limit"], 256);

        // Streamed (chunked, no length): refused once past the limit.
        let (mut tx, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(8);
        let request = headers(Req::post("/hooks/strict"))
            .header("content-type", "application/json")
            .build(h.addr, body.boxed());
        tokio::spawn(async move {
            for _ in 0..6 {
                if tx.send_data(Bytes::from(vec![b' '; 100])).await.is_err() {
                    break;
                }
            }
        });
        let streamed = common::send_on(&mut common::connect(h.addr).await, request).await;
        assert_eq!(streamed.status, StatusCode::PAYLOAD_TOO_LARGE, "{streamed:?}");

        let xml =
            h.send(Req::post("/hooks/plain").header("content-type", "text/xml").body("<a/>")).await;
        assert_eq!(xml.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(xml.body["error"], "expected Content-Type `application/json`, found `text/xml`");
        let untyped = h.send(Req::post("/hooks/plain").body("{}")).await;
        assert_eq!(untyped.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(h.runs_of("plain").await, 0);
        assert_eq!(h.runs_of("strict").await, 0);

        let charset =
            Req::post("/hooks/plain").header("content-type", "Application/JSON; charset=utf-8");
        let charset = h.send(charset.body(r#"{"ok": true}"#)).await;
        assert_eq!(charset.status, StatusCode::ACCEPTED, "{charset:?}");
        h.completed(charset.run_id()).await;

        // Another configured media type: the payload is the body as a JSON string.
        let text =
            Req::post("/hooks/text").header("content-type", "text/plain").body("hello\nworld");
        let text = h.send(text).await;
        assert_eq!(text.status, StatusCode::ACCEPTED, "{text:?}");
        h.completed(text.run_id()).await;
        assert_eq!(h.seen(text.run_id()).payload, json!("hello\nworld"));

        // Within the webhook's limit but over the engine's payload limit: 413 from the engine.
        let huge = "y".repeat(common::ENGINE_MAX_PAYLOAD + 100);
        let huge =
            h.send(Req::post("/hooks/text").header("content-type", "text/plain").body(huge)).await;
        assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE, "{huge:?}");
        assert!(huge.body["error"].as_str().unwrap().contains("exceeds the limit"));
        assert_eq!(h.runs_of("text").await, 1);
        h.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_deliveries_get_429_with_retry_after_and_start_nothing() {
    on_every_backend(|backend| async move {
        let h = start(backend).await;
        for n in 0..2 {
            let ok = h.send(Req::post("/hooks/limited").json(&format!(r#"{{"n": {n}}}"#))).await;
            assert_eq!(ok.status, StatusCode::ACCEPTED, "{ok:?}");
        }
        let limited = h.send(Req::post("/hooks/limited").json(r#"{"n": 2}"#)).await;
        assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS, "{limited:?}");
        let retry_after: u64 = limited.header("retry-after").parse().unwrap();
        // Two per hour: the next one is free in about half an hour.
        assert!((1_000..=1_800).contains(&retry_after), "Retry-After {retry_after}");
        assert_eq!(limited.body["retry_after"], retry_after);
        assert_eq!(h.runs_of("limited").await, 2, "a rate-limited delivery starts nothing");
        // Other webhooks have limits of their own (none here).
        let other = h.send(Req::post("/hooks/plain").json("{}")).await;
        assert_eq!(other.status, StatusCode::ACCEPTED);
        h.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_see_headers_query_and_raw_body_in_the_trigger_context() {
    on_every_backend(|backend| async move {
        let h = start(backend).await;
        let db = h.backend.name();
        let body = "{ \"order\" : 7,\n  \"note\": \"caf\u{e9}\" }";
        let req = Req::post("/hooks/signed?source=shop&tag=a&tag=b")
            .json(body)
            .header("x-cronflow-signature", &sign(SECRET, body))
            .header("X-Custom", "one")
            .header("x-custom", "two");
        let reply = h.send(req).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
        let report = h.completed(reply.run_id()).await;
        let seen = h.seen(reply.run_id());
        assert_eq!(seen.workflow_id, "signed");
        assert_eq!(seen.payload, json!({"order": 7, "note": "café"}));

        let trigger = &seen.trigger;
        assert_eq!(trigger["type"], "webhook", "{db}: task.context.trigger = {trigger}");
        assert_eq!(trigger["workflow_id"], "signed");
        assert_eq!(trigger["method"], "POST");
        assert_eq!(trigger["path"], "/hooks/signed");
        assert_eq!(trigger["query"], json!({"source": "shop", "tag": ["a", "b"]}));
        assert_eq!(trigger["raw_body"], body, "{db}: the exact body text");
        let headers = &trigger["headers"];
        assert_eq!(headers["x-custom"], "one, two");
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["x-cronflow-signature"], sign(SECRET, body));
        assert_eq!(headers["content-length"], body.len().to_string());
        // The context is stored with the run.
        let stored: Value =
            report.run.context.expect("the run keeps its trigger context").to_value();
        assert_eq!(&stored, trigger, "{db}");
        h.stop().await;
    })
    .await;
}

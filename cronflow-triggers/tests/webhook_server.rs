//! The webhook server's own routes and lifecycle, over real HTTP on 127.0.0.1 into a real
//! engine (SQLite file, and PostgreSQL when `CRONFLOW_TEST_DATABASE_URL` is set): the manual
//! trigger route, the resume route without a token, `503` when the engine is down, idempotency
//! across a restart, and graceful shutdown.

mod common;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use common::{Harness, Req, hook, on_every_backend};
use cronflow_core::WorkflowDef;
use cronflow_triggers::WebhookError;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;

const TOKEN: &str = "manual-token-5b1e9a";

fn workflows() -> Vec<WorkflowDef> {
    vec![hook("plain", json!({"path": "/hooks/plain"}))]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manual_route_needs_a_token_and_starts_any_workflow() {
    on_every_backend(|backend| async move {
        let h = Harness::start(backend, workflows(), |w| w.manual_token(TOKEN)).await;
        let db = h.backend.name();
        let post = || Req::post("/runs/plain").json(r#"{"by": "hand"}"#);

        let anonymous = h.send(post()).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
        assert_eq!(anonymous.header("www-authenticate"), "Bearer");
        for wrong in ["Bearer nope", &format!("Bearer {TOKEN}x"), &format!("Basic {TOKEN}"), TOKEN]
        {
            let refused = h.send(post().header("authorization", wrong)).await;
            assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{wrong}: {refused:?}");
        }
        assert_eq!(h.runs_of("plain").await, 0);

        let bearer = format!("Bearer {TOKEN}");
        let keyed = || post().header("authorization", &bearer).header("idempotency-key", "k1");
        let started = h.send(keyed()).await;
        assert_eq!(started.status, StatusCode::ACCEPTED, "{db}: {started:?}");
        assert_eq!(started.body["workflow_id"], "plain");
        let report = h.completed(started.run_id()).await;
        assert_eq!(report.run.output.unwrap().to_value(), json!({"by": "hand"}));
        let trigger = h.seen(started.run_id()).trigger;
        assert_eq!(trigger["type"], "manual", "{trigger}");
        assert_eq!(trigger["path"], "/runs/plain");
        assert!(trigger["headers"].get("authorization").is_none(), "the token is not stored");
        assert_eq!(trigger["headers"]["idempotency-key"], "k1");

        let again = h.send(keyed()).await;
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!((again.run_id(), &again.body["created"]), (started.run_id(), &json!(false)));
        assert_eq!(h.runs_of("plain").await, 1);

        let unknown =
            h.send(Req::post("/runs/ghost").json("{}").header("authorization", &bearer)).await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        assert_eq!(unknown.body["error"], "no workflow `ghost` is registered");
        let bad = h.send(Req::post("/runs/plain").json("{").header("authorization", &bearer)).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        let get =
            h.send(Req::new(Method::GET, "/runs/plain").header("authorization", &bearer)).await;
        assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(get.header("allow"), "POST");
        h.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_manual_route_is_404_and_resume_is_on() {
    on_every_backend(|backend| async move {
        let h = Harness::start(backend, workflows(), |w| w).await;
        let off = Req::post("/runs/plain").json("{}").header("authorization", "Bearer x");
        let off = h.send(off).await;
        assert_eq!(off.status, StatusCode::NOT_FOUND, "{off:?}");
        assert_eq!(h.runs_of("plain").await, 0);

        // The resume route needs no manual token (see `webhook_resume.rs`).
        let resume = h.send(Req::post("/runs/resume/tok_123").json("{}")).await;
        assert_eq!(resume.status, StatusCode::NOT_FOUND, "{resume:?}");
        assert!(resume.body["error"].as_str().unwrap().contains("resume token"), "{resume:?}");
        let get = h.send(Req::new(Method::GET, "/runs/resume/tok_123")).await;
        assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
        for path in ["/runs", "/runs/", "/runs/plain/extra", "/runs/resume/"] {
            let missing = h.send(Req::post(path).json("{}")).await;
            assert_eq!(missing.status, StatusCode::NOT_FOUND, "{path}");
        }
        h.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_engine_gives_503_and_keys_hold_across_a_restart() {
    on_every_backend(|backend| async move {
        let h = Harness::start(backend, workflows(), |w| w).await;
        let keyed =
            || Req::post("/hooks/plain").json(r#"{"n": 1}"#).header("idempotency-key", "once");
        let first = h.send(keyed()).await;
        assert_eq!(first.status, StatusCode::ACCEPTED);
        h.completed(first.run_id()).await;
        let backend = h.stop().await;

        // A new engine and server on the same database: the key still names the run.
        let mut h = Harness::start(backend, workflows(), |w| w).await;
        let db = h.backend.name();
        let again = h.send(keyed()).await;
        assert_eq!(again.status, StatusCode::OK, "{db}: {again:?}");
        assert_eq!(again.run_id(), first.run_id());
        assert_eq!(h.runs_of("plain").await, 1);

        // The engine stops while the server still listens.
        let engine = h.engine.take().unwrap();
        engine.shutdown(Duration::from_secs(5)).await.unwrap();
        let down = h.send(Req::post("/hooks/plain").json("{}")).await;
        assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE, "{db}: {down:?}");
        assert!(down.body["error"].as_str().unwrap().contains("shutting down"), "{down:?}");
        h.stop().await;
    })
    .await;
}

/// Opens a request whose body is still being sent: the sender of the rest, and the reply.
async fn half_sent(
    h: &Harness,
) -> (http_body_util::channel::Sender<Bytes, Infallible>, tokio::task::JoinHandle<common::Reply>) {
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(4);
    let request = Req::post("/hooks/plain")
        .header("content-type", "application/json")
        .build(h.addr, body.boxed());
    let mut sender = common::connect(h.addr).await;
    let reply = tokio::spawn(async move { common::send_on(&mut sender, request).await });
    tx.send_data(Bytes::from_static(b"{\"slow\":")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await; // the server is reading the body
    (tx, reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_requests_in_flight() {
    on_every_backend(|backend| async move {
        let mut h = Harness::start(backend, workflows(), |w| w).await;
        let (mut tx, reply) = half_sent(&h).await;
        let server = h.server.take().unwrap();
        let shutdown = tokio::spawn(server.shutdown(Duration::from_secs(10)));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!shutdown.is_finished(), "shutdown returned with a request in flight");
        // New connections are refused while the last request finishes.
        assert!(tokio::net::TcpStream::connect(h.addr).await.is_err());

        tx.send_data(Bytes::from_static(b" true}")).await.unwrap();
        drop(tx);
        let reply = reply.await.unwrap();
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
        let result = tokio::time::timeout(Duration::from_secs(5), shutdown).await;
        result.expect("shutdown returns once the request is done").unwrap().unwrap();
        let report = h.completed(reply.run_id()).await;
        assert_eq!(report.run.payload.as_str(), r#"{"slow": true}"#);
        h.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_connections_still_busy_after_the_grace() {
    on_every_backend(|backend| async move {
        let mut h = Harness::start(backend, workflows(), |w| w).await;
        let (_tx, _reply) = half_sent(&h).await; // never finished
        let server = h.server.take().unwrap();
        let started = std::time::Instant::now();
        let result = server.shutdown(Duration::from_millis(300)).await;
        assert!(
            matches!(result, Err(WebhookError::ShutdownTimedOut { connections: 1, .. })),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        assert_eq!(h.runs_of("plain").await, 0);
        h.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickling_past_the_body_timeout_is_a_408_and_starts_nothing() {
    on_every_backend(|backend| async move {
        let h =
            Harness::start(backend, workflows(), |w| w.body_timeout(Duration::from_millis(300)))
                .await;
        let (tx, reply) = half_sent(&h).await;
        let reply = tokio::time::timeout(Duration::from_secs(10), reply)
            .await
            .expect("the server answers without waiting for the rest")
            .unwrap();
        assert_eq!(reply.status, StatusCode::REQUEST_TIMEOUT, "{reply:?}");
        drop(tx);
        let runs = h.handle.list_runs(&cronflow_core::RunQuery::default()).await.unwrap();
        assert!(runs.is_empty(), "no run was started: {runs:?}");
        h.stop().await;
    })
    .await;
}

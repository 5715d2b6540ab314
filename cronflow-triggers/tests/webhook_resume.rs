//! `POST /runs/resume/{token}` over real HTTP on 127.0.0.1 into a real engine (SQLite file,
//! and PostgreSQL when `CRONFLOW_TEST_DATABASE_URL` is set): the body becomes the pause's
//! output; a used or unknown token is `404`; bad JSON `400`, a wrong media type `415`, a
//! body over the limit `413`, a trickling body `408`, all without resuming; no bearer token
//! is needed; `503` when the engine is down.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{Backend, Reply, Req, TIMEOUT, on_every_backend, send};
use cronflow_core::{
    Engine, EngineHandle, InProcessExecutor, RunId, RunStatus, TaskError, Workflow,
};
use cronflow_triggers::{WebhookServer, Webhooks};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;

const LIMIT: usize = 256;

/// Tokens the `ask` handler received, by run.
type Tokens = Arc<Mutex<Vec<(RunId, String)>>>;

struct Paused {
    engine: Option<Engine>,
    handle: EngineHandle,
    server: WebhookServer,
    tokens: Tokens,
}

impl Paused {
    async fn start(backend: &Backend) -> Self {
        let tokens = Tokens::default();
        let noted = Arc::clone(&tokens);
        let executor = InProcessExecutor::new()
            .handler("ask", move |task| {
                let token = task.context.token.as_deref().unwrap_or_default().to_owned();
                noted.lock().unwrap().push((task.run_id, token));
                async { Ok::<_, TaskError>(()) }
            })
            .handler("ship", |task| async move {
                Ok::<_, TaskError>(json!({"shipped": task.context.last.to_value()}))
            });
        let flow = Workflow::new("expense")
            .pause_with("approve", |p| p.on_pause("ask"))
            .step("ship")
            .build()
            .unwrap();
        let engine = backend.start(executor, |b| b.workflow(flow)).await;
        let handle = engine.handle();
        let server = Webhooks::new(handle.clone())
            .addr("127.0.0.1:0".parse().unwrap())
            .manual_token("manual-token-not-needed-to-resume")
            .manual_max_body_bytes(LIMIT)
            .body_timeout(Duration::from_millis(300))
            .serve()
            .await
            .expect("the server starts");
        Self { engine: Some(engine), handle, server, tokens }
    }

    /// Starts a run and returns it with the token its `on_pause` handler received.
    async fn pause(&self) -> (RunId, String) {
        let run = self.handle.trigger("expense", json!(null)).await.unwrap();
        let token = tokio::time::timeout(TIMEOUT, async {
            loop {
                let found = self.tokens.lock().unwrap().iter().find(|(r, _)| *r == run).cloned();
                if let Some((_, token)) = found {
                    return token;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the on_pause handler runs");
        (run, token)
    }

    async fn post(&self, token: &str, req: impl FnOnce(Req) -> Req) -> Reply {
        send(self.server.local_addr(), req(Req::post(&format!("/runs/resume/{token}")))).await
    }

    async fn output(&self, run: RunId) -> serde_json::Value {
        let report = tokio::time::timeout(TIMEOUT, self.handle.wait(run)).await.unwrap().unwrap();
        assert_eq!(report.status(), RunStatus::Completed, "{report:?}");
        report.run.output.unwrap().to_value()
    }

    async fn still_paused(&self, run: RunId) -> bool {
        self.handle.paused_runs().await.unwrap().iter().any(|p| p.run_id == run)
    }

    async fn stop(mut self) {
        self.server.shutdown(Duration::from_secs(5)).await.expect("server shutdown");
        if let Some(engine) = self.engine.take() {
            engine.shutdown(Duration::from_secs(5)).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_resumes_its_run_once_with_the_body_as_payload() {
    on_every_backend(|backend| async move {
        let s = Paused::start(&backend).await;
        let db = backend.name();
        let (run, token) = s.pause().await;
        // No `Authorization` header: the resume token is the credential.
        let resumed = s.post(&token, |r| r.json(r#"{"approved": true}"#)).await;
        assert_eq!(resumed.status, StatusCode::OK, "{db}: {resumed:?}");
        assert_eq!(resumed.body, json!({"run_id": run.to_string()}));
        let again = s.post(&token, |r| r.json(r#"{"approved": false}"#)).await;
        assert_eq!(again.status, StatusCode::NOT_FOUND, "{db}: a used token: {again:?}");
        assert!(again.body["error"].as_str().unwrap().contains("resume token"), "{again:?}");
        assert_eq!(s.output(run).await, json!({"shipped": {"approved": true}}));

        // An empty body (no content type) is the payload `null`.
        let (run, token) = s.pause().await;
        assert_eq!(s.post(&token, |r| r).await.status, StatusCode::OK, "{db}");
        assert_eq!(s.output(run).await, json!({"shipped": null}));

        let unknown = s.post(&"ab".repeat(32), |r| r.json("{}")).await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{db}: {unknown:?}");
        let get = send(s.server.local_addr(), Req::new(Method::GET, "/runs/resume/x")).await;
        assert_eq!((get.status, get.header("allow")), (StatusCode::METHOD_NOT_ALLOWED, "POST"));
        s.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_body_does_not_resume_and_the_token_still_works() {
    on_every_backend(|backend| async move {
        let s = Paused::start(&backend).await;
        let db = backend.name();
        let (run, token) = s.pause().await;

        let bad = s.post(&token, |r| r.json(r#"{"approved": "#)).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{db}: {bad:?}");
        let big = format!(r#"{{"note": "{}"}}"#, "x".repeat(LIMIT));
        let too_large = s.post(&token, |r| r.json(&big)).await;
        assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE, "{db}: {too_large:?}");
        assert_eq!(too_large.body["limit"], LIMIT);
        let text = s.post(&token, |r| r.header("content-type", "text/plain").body("yes")).await;
        assert_eq!(text.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{db}: {text:?}");

        // A body that does not arrive within the body timeout.
        let (mut tx, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(4);
        let request = Req::post(&format!("/runs/resume/{token}"))
            .header("content-type", "application/json")
            .build(s.server.local_addr(), body.boxed());
        let mut sender = common::connect(s.server.local_addr()).await;
        let reply = tokio::spawn(async move { common::send_on(&mut sender, request).await });
        tx.send_data(Bytes::from_static(b"{\"slow\":")).await.unwrap();
        let slow = reply.await.unwrap();
        assert_eq!(slow.status, StatusCode::REQUEST_TIMEOUT, "{db}: {slow:?}");
        drop(tx);

        assert!(s.still_paused(run).await, "{db}: no refused request resumed the run");
        let ok = s.post(&token, |r| r.json(r#""finally""#)).await;
        assert_eq!(ok.status, StatusCode::OK, "{db}: {ok:?}");
        assert_eq!(s.output(run).await, json!({"shipped": "finally"}));
        s.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_engine_answers_503_and_the_token_works_after_a_restart() {
    on_every_backend(|backend| async move {
        let mut s = Paused::start(&backend).await;
        let db = backend.name();
        let (run, token) = s.pause().await;
        let engine = s.engine.take().unwrap();
        engine.shutdown(Duration::from_secs(5)).await.unwrap();
        let down = s.post(&token, |r| r.json("1")).await;
        assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE, "{db}: {down:?}");
        s.stop().await;

        // A new engine and server on the same database: the token issued before works.
        let s = Paused::start(&backend).await;
        let resumed = s.post(&token, |r| r.json("2")).await;
        assert_eq!(resumed.status, StatusCode::OK, "{db}: {resumed:?}");
        assert_eq!(s.output(run).await, json!({"shipped": 2}));
        s.stop().await;
    })
    .await;
}

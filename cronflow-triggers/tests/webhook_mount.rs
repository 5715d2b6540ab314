//! The webhook service mounted in a host's own axum server, next to the host's routes, on
//! the host's port; and `refresh` picking up workflows registered later. Real HTTP on
//! 127.0.0.1, a real engine on a SQLite file (and PostgreSQL when
//! `CRONFLOW_TEST_DATABASE_URL` is set).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Req, SeenLog, hook, on_every_backend, recording_executor};
use cronflow_core::RunStatus;
use cronflow_triggers::Webhooks;
use http::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_mounts_in_an_axum_router_next_to_the_hosts_routes() {
    on_every_backend(|backend| async move {
        let seen = SeenLog::default();
        let engine = backend
            .start(recording_executor(Arc::clone(&seen)), |b| {
                b.workflow(hook("orders", json!({"path": "/orders"})))
            })
            .await;
        let webhooks = Webhooks::new(engine.handle()).manual_token("tok").into_service().unwrap();

        // The host keeps its own routes and port; webhooks live under /hooks, and the
        // service also answers whatever the host does not (here the manual route).
        let health =
            || async { ([(http::header::CONTENT_TYPE, "application/json")], r#"{"ok":true}"#) };
        let app = axum::Router::new()
            .route("/health", axum::routing::get(health))
            .nest_service("/hooks", webhooks.clone())
            .fallback_service(webhooks.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });

        let health = common::send(addr, Req::new(http::Method::GET, "/health")).await;
        assert_eq!((health.status, health.body), (StatusCode::OK, json!({"ok": true})));

        let hook = common::send(addr, Req::post("/hooks/orders").json(r#"{"order": 1}"#)).await;
        assert_eq!(hook.status, StatusCode::ACCEPTED, "{}: {hook:?}", backend.name());
        let report = engine.handle().wait(hook.run_id()).await.unwrap();
        assert_eq!(report.status(), RunStatus::Completed);
        assert_eq!(seen.lock().unwrap()[0].payload, json!({"order": 1}));
        // The service saw the path below the mount point, and so does the context.
        assert_eq!(seen.lock().unwrap()[0].trigger["path"], "/orders");

        let manual = Req::post("/runs/orders").json("{}").header("authorization", "Bearer tok");
        let manual = common::send(addr, manual).await;
        assert_eq!(manual.status, StatusCode::ACCEPTED, "{manual:?}");
        let unknown = common::send(addr, Req::post("/elsewhere").json("{}")).await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        assert_eq!(unknown.header("content-type"), "application/json");

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
        engine.shutdown(Duration::from_secs(5)).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_serves_workflows_registered_later() {
    on_every_backend(|backend| async move {
        let seen = SeenLog::default();
        let limited = json!({"path": "/a", "rate_limit": {"requests": 1, "per": "1h"}});
        let engine = backend
            .start(recording_executor(Arc::clone(&seen)), |b| {
                b.workflow(hook("a", limited.clone()))
            })
            .await;
        let server = Webhooks::new(engine.handle())
            .addr("127.0.0.1:0".parse().unwrap())
            .serve()
            .await
            .unwrap();
        let addr = server.local_addr();
        let first = common::send(addr, Req::post("/a").json("{}")).await;
        assert_eq!(first.status, StatusCode::ACCEPTED);

        engine.handle().register(hook("b", json!({"path": "/b"}))).await.unwrap();
        let before = common::send(addr, Req::post("/b").json("{}")).await;
        assert_eq!(before.status, StatusCode::NOT_FOUND, "not served before a refresh");
        server.service().refresh().unwrap();
        let after = common::send(addr, Req::post("/b").json("{}")).await;
        assert_eq!(after.status, StatusCode::ACCEPTED, "{}: {after:?}", backend.name());
        // An unchanged route keeps its rate limiter: the refresh gave no fresh burst.
        let limited_again = common::send(addr, Req::post("/a").json("{}")).await;
        assert_eq!(limited_again.status, StatusCode::TOO_MANY_REQUESTS);

        // A refresh that fails keeps the routes served.
        engine.handle().register(hook("c", json!({"path": "/b"}))).await.unwrap();
        let err = server.service().refresh().unwrap_err();
        assert_eq!(
            err.to_string(),
            "webhook POST /b is declared twice: by workflow `b` and by workflow `c`"
        );
        let still = common::send(addr, Req::post("/b").json("{}")).await;
        assert_eq!((still.status, &still.body["workflow_id"]), (StatusCode::ACCEPTED, &json!("b")));

        server.shutdown(Duration::from_secs(5)).await.unwrap();
        engine.shutdown(Duration::from_secs(5)).await.unwrap();
    })
    .await;
}

//! Webhook benchmarks: HTTP/1.1 deliveries on loopback into an engine on a SQLite file (WAL),
//! with a one-step workflow whose handler is a no-op. A request counts once its response
//! arrived, that is once its run is durable.
//!
//! - `throughput`: 64 keep-alive connections sending 10,000 deliveries in all; prints
//!   accepted requests per second.
//! - `latency`: one keep-alive connection, one delivery at a time; prints p50/p99.
//!
//! Run with: `cargo bench -p cronflow-benches --bench webhook`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use cronflow_benches::{human, noop_executor, quantile, sum_of};
use cronflow_core::{Engine, Json, RunQuery, RunStatus, TriggerDef, TriggerOptions, Workflow};
use cronflow_store::SqliteStore;
use cronflow_triggers::{WebhookServer, Webhooks};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

const CONNECTIONS: usize = 64;
const REQUESTS: usize = 10_000;
const BODY: &str = r#"{"order": 42, "customer": "c-1138", "items": [1, 2, 3]}"#;

/// The engine with the webhook workflow, and its webhook server on 127.0.0.1.
async fn start(dir: &tempfile::TempDir) -> (Engine, WebhookServer) {
    let store = SqliteStore::open(dir.path().join("bench.db")).await.expect("open store");
    let hook = Workflow::new("hook")
        .trigger(TriggerDef::webhook("/hooks/bench"))
        .step_with("s0", |s| s.handler("noop"))
        .build()
        .expect("valid workflow");
    let engine = Engine::builder()
        .store(store)
        .executor(noop_executor())
        .workflow(hook)
        .start()
        .await
        .expect("start engine");
    let server = Webhooks::new(engine.handle())
        .addr("127.0.0.1:0".parse().expect("address"))
        .serve()
        .await
        .expect("serve webhooks");
    (engine, server)
}

async fn stop(engine: Engine, server: WebhookServer) {
    server.shutdown(Duration::from_secs(10)).await.expect("server shutdown");
    engine.shutdown(Duration::from_secs(10)).await.expect("engine shutdown");
}

async fn connect(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    sender
}

/// One delivery on `sender`, checked to be accepted.
async fn deliver(sender: &mut SendRequest<Full<Bytes>>, addr: SocketAddr) {
    let request = Request::post("/hooks/bench")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .expect("request");
    sender.ready().await.expect("connection ready");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    response.into_body().collect().await.expect("body");
}

/// `REQUESTS` deliveries over `CONNECTIONS` keep-alive connections; the time they took.
async fn batch(addr: SocketAddr) -> Duration {
    let mut senders = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        senders.push(connect(addr).await);
    }
    let started = Instant::now();
    let clients: Vec<_> = senders
        .into_iter()
        .map(|mut sender| {
            tokio::spawn(async move {
                for _ in 0..REQUESTS / CONNECTIONS {
                    deliver(&mut sender, addr).await;
                }
            })
        })
        .collect();
    for client in clients {
        client.await.expect("client");
    }
    started.elapsed()
}

fn throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, server) = rt.block_on(start(&dir));
    let addr = server.local_addr();
    let sent = REQUESTS / CONNECTIONS * CONNECTIONS;
    let mut rates = Vec::new();
    let mut backlogs = Vec::new();
    let mut group = c.benchmark_group("webhook");
    group.sample_size(10).measurement_time(Duration::from_secs(15));
    group.bench_function("throughput_10000_deliveries_64_connections", |b| {
        b.iter_custom(|iters| {
            sum_of(iters, || {
                let took = rt.block_on(batch(addr));
                rates.push(sent as f64 / took.as_secs_f64());
                // Not timed: how far execution lagged behind the accepts.
                backlogs.push(rt.block_on(drain(&engine)));
                took
            })
        })
    });
    group.finish();
    rt.block_on(stop(engine, server));
    if rates.is_empty() {
        return; // filtered out on the command line
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    println!(
        "webhook throughput: {:.0} requests/s median, best {:.0}, worst {:.0} [{sent} deliveries \
         per batch over {CONNECTIONS} keep-alive connections, each answered once its run is \
         durable; SQLite file, 1-step no-op workflow, {} batches]",
        rates[rates.len() / 2],
        rates.last().copied().unwrap_or(0.0),
        rates[0],
        rates.len()
    );
    backlogs.sort_unstable();
    let (backlog, drained) = backlogs[backlogs.len() / 2];
    let (worst, worst_drain) = backlogs.last().copied().unwrap_or_default();
    println!(
        "webhook throughput: when a batch ended, a median {backlog} of its runs were still \
         unfinished, all done within {} (worst {worst}, within {}; polled every 20 ms)",
        human(drained),
        human(worst_drain)
    );
}

/// How many runs are unfinished now, and how long until none is.
async fn drain(engine: &Engine) -> (usize, Duration) {
    let handle = engine.handle();
    let running =
        RunQuery { status: Some(RunStatus::Running), limit: Some(u32::MAX), ..RunQuery::default() };
    let count = || async { handle.list_runs(&running).await.expect("list runs").len() };
    let backlog = count().await;
    let started = Instant::now();
    while count().await > 0 && started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (backlog, started.elapsed())
}

fn latency(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, server) = rt.block_on(start(&dir));
    let addr = server.local_addr();
    let mut sender = rt.block_on(connect(addr));
    let mut samples = Vec::new();
    let mut group = c.benchmark_group("webhook");
    group.sample_size(200).measurement_time(Duration::from_secs(5));
    group.bench_function("latency_one_delivery", |b| {
        b.iter_custom(|iters| {
            sum_of(iters, || {
                let started = Instant::now();
                rt.block_on(deliver(&mut sender, addr));
                let took = started.elapsed();
                samples.push(took);
                took
            })
        })
    });
    group.finish();
    drop(sender);
    let mut direct =
        if samples.is_empty() { Vec::new() } else { rt.block_on(trigger_alone(&engine)) };
    rt.block_on(stop(engine, server));
    let n = samples.len();
    if n == 0 {
        return; // filtered out on the command line
    }
    println!(
        "webhook latency (one delivery at a time on a keep-alive connection, request to \
         response, run durable on a SQLite file): p50 {} p99 {} over {n} requests",
        human(quantile(&mut samples, 0.50)),
        human(quantile(&mut samples, 0.99)),
    );
    println!(
        "webhook latency baseline (`trigger_with` alone, same payload and a context, no HTTP): \
         p50 {} p99 {} over {} triggers",
        human(quantile(&mut direct, 0.50)),
        human(quantile(&mut direct, 0.99)),
        direct.len()
    );
}

/// The engine's share of a delivery: `trigger_with` called directly, one at a time.
async fn trigger_alone(engine: &Engine) -> Vec<Duration> {
    let handle = engine.handle();
    let context = serde_json::json!({"type": "webhook", "raw_body": BODY, "headers": {}});
    let mut samples = Vec::with_capacity(5_000);
    for _ in 0..5_000 {
        let options = TriggerOptions::new().context(Json::from_value(&context).expect("JSON"));
        let payload = Json::from_raw_str(BODY).expect("JSON");
        let started = Instant::now();
        handle.trigger_with("hook", payload, options).await.expect("trigger");
        samples.push(started.elapsed());
    }
    samples
}

criterion_group!(benches, throughput, latency);
criterion_main!(benches);

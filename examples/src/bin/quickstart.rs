//! Quickstart: a small order workflow on an embedded SQLite file.
//!
//! Shows a step that fails once and succeeds on its retry, an if/else, and a parallel block,
//! then prints every recorded transition and the final output.
//!
//! Run with: `cargo run -p cronflow-examples --bin quickstart` (add a path argument to choose
//! the database file; the default is `cronflow-quickstart.db` in the current directory).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cronflow_core::{Engine, InProcessExecutor, RetryPolicy, RunEvent, TaskError, Workflow};
use cronflow_store::SqliteStore;
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "cronflow_core=info".into()),
        )
        .init();
    let path = std::env::args().nth(1).unwrap_or_else(|| "cronflow-quickstart.db".into());

    // 1. The workflow: what runs, in which order, with which retry policy.
    let flow = Workflow::new("order-fulfilment")
        .retry(RetryPolicy::exponential(3, Duration::from_millis(50)))
        .step("reserve-stock")
        .if_("shipping", |b| {
            b.when("is-international", |s| s.step("customs-declaration"))
                .otherwise(|s| s.step("domestic-label"))
        })
        .parallel("notify", |p| p.branch(|s| s.step("email")).branch(|s| s.step("sms")))
        .build()?;

    // 2. The handlers: plain async Rust closures, looked up by name.
    let flaky = Arc::new(AtomicU32::new(0));
    let executor = InProcessExecutor::new()
        .handler("reserve-stock", move |task| {
            let calls = flaky.fetch_add(1, Ordering::SeqCst);
            async move {
                if calls == 0 {
                    // The first attempt fails; the retry policy tries again 50 ms later.
                    return Err(TaskError::new("WarehouseBusy", "try again"));
                }
                let order: Value = task.context.payload()?;
                Ok(json!({ "reserved": order["items"], "attempt": task.attempt }))
            }
        })
        .handler("is-international", |task| async move {
            let order: Value = task.context.payload()?;
            Ok::<_, TaskError>(order["country"] != "FR")
        })
        .handler("customs-declaration", |_| async { Ok::<_, TaskError>("CN22 filed") })
        .handler("domestic-label", |_| async { Ok::<_, TaskError>("Colissimo label") })
        .handler("email", |_| async { Ok::<_, TaskError>("email sent") })
        .handler("sms", |_| async { Ok::<_, TaskError>("sms sent") });

    // 3. The engine: a durable store, an executor, the workflows.
    let engine = Engine::builder()
        .store(SqliteStore::open(&path).await?)
        .executor(executor)
        .workflow(flow)
        .start()
        .await?;

    // 4. Trigger a run, wait for it, and read its history.
    let handle = engine.handle();
    let run = handle.trigger("order-fulfilment", json!({ "items": 3, "country": "DE" })).await?;
    let report = handle.wait(run).await?;

    println!("run {run} on {path}:");
    for event in &report.history {
        let what = match &event.event {
            RunEvent::RunStarted => "run started".to_string(),
            RunEvent::TaskSucceeded { task, attempt, output, .. } => {
                format!("{task} succeeded (attempt {attempt}) -> {output}")
            }
            RunEvent::TaskFailed { task, attempt, error, retry_at, .. } => match retry_at {
                Some(at) => format!("{task} failed (attempt {attempt}): {error}; retry at {at}"),
                None => format!("{task} failed (attempt {attempt}): {error}"),
            },
            RunEvent::RunCompleted { .. } => "run completed".to_string(),
            RunEvent::RunFailed { failure } => format!("run failed: {}", failure.message),
            RunEvent::RunCancelled { reason } => format!("run cancelled: {reason:?}"),
            other => other.kind().replace('_', " "),
        };
        println!("  #{:<2} {}  {what}", event.seq, event.at.format("%H:%M:%S%.3f"));
    }
    println!("status: {:?}", report.status());
    println!("output: {}", report.run.output.as_ref().map(|o| o.as_str()).unwrap_or("none"));

    engine.shutdown(Duration::from_secs(5)).await?;
    Ok(())
}

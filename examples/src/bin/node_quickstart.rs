//! Node quickstart: workflows written in JavaScript with the cronflow SDK
//! (`examples/workflows/orders.mjs`), run by the Rust engine on a SQLite file through a pool of
//! Node.js workers.
//!
//! Run with: `cargo run -p cronflow-examples --bin node_quickstart` (add a path argument to
//! choose the database file; the default is `cronflow-node-quickstart.db`). Needs `node` 20+.

use std::path::Path;
use std::time::Duration;

use cronflow_core::{Engine, RunEvent};
use cronflow_executor_node::NodeExecutor;
use cronflow_store::SqliteStore;
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "cronflow_core=info,cronflow_executor_node=info".into()),
        )
        .init();
    let path = std::env::args().nth(1).unwrap_or_else(|| "cronflow-node-quickstart.db".into());
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows/orders.mjs");

    // 1. Two Node.js workers load the module; its workflow definitions come back with them.
    let (executor, workflows) =
        NodeExecutor::builder().module(module.as_path()).workers(2).spawn().await?;

    // 2. The same engine and store as with Rust handlers.
    let engine = Engine::builder()
        .store(SqliteStore::open(&path).await?)
        .executor(executor.clone())
        .workflows(workflows)
        .start()
        .await?;

    // 3. Trigger a run and print its history.
    let handle = engine.handle();
    let payload = json!({ "items": 3, "country": "DE", "customer": "ada" });
    let run = handle.trigger("js-order", payload).await?;
    let report = handle.wait(run).await?;
    println!("run {run} on {path}:");
    for event in &report.history {
        let what = match &event.event {
            RunEvent::TaskSucceeded { task, attempt, output, .. } => {
                format!("{task} succeeded (attempt {attempt}) -> {output}")
            }
            RunEvent::TaskFailed { task, attempt, error, .. } => {
                format!("{task} failed (attempt {attempt}): {error}")
            }
            other => other.kind().replace('_', " "),
        };
        println!("  #{:<2} {what}", event.seq);
    }
    println!("status: {:?}", report.status());
    println!("output: {}", report.run.output.as_ref().map(|o| o.as_str()).unwrap_or("none"));

    engine.shutdown(Duration::from_secs(5)).await?;
    executor.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

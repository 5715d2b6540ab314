//! Triggers: runs started by a cron schedule, by webhook deliveries and by an event, on an
//! embedded SQLite file. The engine refuses a bad trigger at registration
//! (`cronflow_triggers::check_workflow`), the schedule fires every 5 seconds, and the webhook
//! answers once the run is durable, with its id.
//!
//! Run with: `cargo run -p cronflow-examples --bin triggers` (options: `--addr 127.0.0.1:3000`,
//! `--db cronflow-triggers.db`), then deliver an order, twice with the same key:
//!
//! ```text
//! curl -i localhost:3000/webhooks/orders -H 'content-type: application/json' \
//!      -H 'Idempotency-Key: order-42' -d '{"order": 42, "items": 3}'
//! ```
//!
//! The first answer is `202` with a new run id, the second `200` with the same id: the key
//! started one run. Stop with Ctrl-C.

use std::net::SocketAddr;
use std::time::Duration;

use cronflow_core::{Engine, InProcessExecutor, Json, TaskError, TriggerDef, Workflow};
use cronflow_store::SqliteStore;
use cronflow_triggers::{Triggers, Webhooks, check_workflow};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "cronflow_triggers=info,cronflow_core=warn".into()),
        )
        .init();
    let mut addr: SocketAddr = "127.0.0.1:3000".parse()?;
    let mut db = "cronflow-triggers.db".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--addr", Some(value)) => addr = value.parse()?,
            ("--db", Some(value)) => db = value,
            _ => return Err(format!("unknown argument `{arg}` (use --addr, --db)").into()),
        }
    }

    // 1. Three workflows, each declaring what starts it.
    let heartbeat = Workflow::new("heartbeat")
        .trigger(TriggerDef::schedule("*/5 * * * * *")) // 6 fields: every 5 seconds
        .step("beat")
        .build()?;
    let mut orders_hook = serde_json::Map::new();
    // The body must be an object with a numeric `order`: anything else is a 400.
    orders_hook.insert(
        "schema".into(),
        json!({ "type": "object", "required": ["order"], "properties": { "order": { "type": "number" } } }),
    );
    let orders = Workflow::new("orders")
        .trigger(TriggerDef::Webhook {
            path: "/webhooks/orders".into(),
            method: None,
            settings: orders_hook,
        })
        .step("accept")
        .build()?;
    let greeter = Workflow::new("greeter")
        .trigger(TriggerDef::event("host.started"))
        .step("greet")
        .build()?;

    // 2. The handlers, which print what they see.
    let executor = InProcessExecutor::new()
        .handler("beat", |task| async move {
            let slot = task.context.trigger.to_value()["slot"].clone();
            println!("heartbeat for slot {slot}");
            Ok::<_, TaskError>(Value::Null)
        })
        .handler("accept", |task| async move {
            let order: Value = task.context.payload()?;
            let key = task.context.trigger.to_value()["headers"]["idempotency-key"].clone();
            println!("order {} accepted (run {}, key {key})", order["order"], task.run_id);
            Ok::<_, TaskError>(json!({ "accepted": order["order"] }))
        })
        .handler("greet", |task| async move {
            println!("greeter started by event {}", task.context.trigger.to_value()["name"]);
            Ok::<_, TaskError>(Value::Null)
        });

    // 3. The engine, refusing triggers that could not run, then the trigger sources.
    let engine = Engine::builder()
        .store(SqliteStore::open(&db).await?)
        .executor(executor)
        .validator(check_workflow)
        .workflows([heartbeat, orders, greeter])
        .start()
        .await?;
    let handle = engine.handle();
    let schedules = Triggers::new(handle.clone()).start()?;
    let server = Webhooks::new(handle.clone()).addr(addr).serve().await?;
    println!("listening on http://{}", server.local_addr());
    handle.publish_event("host.started", Json::null(), None).await?;

    tokio::signal::ctrl_c().await?;
    server.shutdown(Duration::from_secs(5)).await?;
    schedules.shutdown().await;
    engine.shutdown(Duration::from_secs(5)).await?;
    Ok(())
}

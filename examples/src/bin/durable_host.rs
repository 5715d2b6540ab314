//! Durable host: many runs of a slow five-step workflow on a SQLite file, surviving `kill -9`.
//!
//! Start it with `--trigger N` and kill it (Ctrl-C or `kill -9`) while the runs are going;
//! start it again without `--trigger`: the engine resumes every unfinished run from the
//! store, and the host exits once none is left running. Each accepted run is printed as
//! `accepted <run_id>` as soon as its trigger returns (from then on it is durable); the last
//! line is `all done`. The crash-recovery integration test drives this program.
//!
//! Run with: `cargo run -p cronflow-examples --bin durable_host -- --db /tmp/x.db --trigger 100`
//!
//! Options: `--db PATH` (required), `--trigger N` (runs to start, default 0) and
//! `--step-ms M` (how long each step's handler sleeps, default 20).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use cronflow_core::{
    Engine, EngineHandle, InProcessExecutor, RunQuery, RunStatus, TaskError, Workflow,
};
use cronflow_store::SqliteStore;
use serde_json::json;

/// The workflow's steps, run one after the other; each handler has the step's name.
const STEPS: [&str; 5] = ["s1", "s2", "s3", "s4", "s5"];

const USAGE: &str = "usage: durable_host --db PATH [--trigger N] [--step-ms M]";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The command line.
struct Args {
    db: String,
    trigger: u32,
    step: Duration,
}

fn parse_args() -> Result<Args, String> {
    let (mut db, mut trigger, mut step_ms) = (None, 0, 20);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--db" => db = Some(value()?),
            "--trigger" => trigger = value()?.parse().map_err(|e| format!("--trigger: {e}"))?,
            "--step-ms" => step_ms = value()?.parse().map_err(|e| format!("--step-ms: {e}"))?,
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    let db = db.ok_or("--db is required")?;
    Ok(Args { db, trigger, step: Duration::from_millis(step_ms) })
}

#[tokio::main]
async fn main() -> ExitCode {
    // Logs go to stderr: stdout carries only the `accepted` and `all done` lines. By default
    // only the engine's start-up summary ("resuming unfinished runs") is shown, not every
    // run's transitions (set `RUST_LOG=cronflow_core=info` for those).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(
            |_| {
                "cronflow_core=warn,cronflow_core::engine=info,cronflow_core::engine::driver=warn"
                    .into()
            },
        ))
        .init();
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("error: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    let mut flow = Workflow::new("durable-demo");
    let mut executor = InProcessExecutor::new();
    for step in STEPS {
        flow = flow.step(step);
        let pause = args.step;
        executor = executor.handler(step, move |task| async move {
            tokio::time::sleep(pause).await;
            Ok::<_, TaskError>(json!({ "step": step, "attempt": task.attempt }))
        });
    }

    // Starting the engine replays every run the store still has as running: this is where
    // the runs of a killed host carry on.
    let engine = Engine::builder()
        .store(SqliteStore::open(&args.db).await?)
        .executor(executor)
        .workflow(flow.build()?)
        .start()
        .await?;
    let handle = engine.handle();

    // Trigger the new runs concurrently; each is durable once its trigger returns.
    let triggers: Vec<_> = (0..args.trigger)
        .map(|i| {
            let handle = handle.clone();
            tokio::spawn(async move {
                let run = handle.trigger("durable-demo", json!({ "i": i })).await?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "accepted {run}")?;
                out.flush()?;
                Ok::<_, BoxError>(())
            })
        })
        .collect();
    for trigger in triggers {
        trigger.await??;
    }

    wait_until_idle(&handle).await?;
    println!("all done");
    engine.shutdown(Duration::from_secs(5)).await?;
    Ok(())
}

/// Polls the store until no run is left running (new, resumed or waiting for a retry).
async fn wait_until_idle(handle: &EngineHandle) -> Result<(), BoxError> {
    let running =
        RunQuery { status: Some(RunStatus::Running), limit: Some(1), ..Default::default() };
    while !handle.list_runs(&running).await?.is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

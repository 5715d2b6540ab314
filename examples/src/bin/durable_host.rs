//! Durable host: many runs of a slow five-step workflow on SQLite or PostgreSQL, surviving
//! `kill -9`, alone or as one of several instances sharing a PostgreSQL database.
//!
//! Start it with `--trigger N` and kill it (Ctrl-C or `kill -9`) while the runs are going;
//! start it again without `--trigger`: the engine resumes every unfinished run from the
//! store, and the host exits once none is left running. On PostgreSQL several hosts may run
//! at once on one database: each executes the runs it holds under a lease, and the runs of a
//! host that dies continue on the others once its lease has expired.
//!
//! Output on stdout, one line each: `instance <pid>` once the engine has started (it has
//! claimed what it could), then `accepted <run_id>` for each new run as soon as its trigger
//! returns (from then on it is durable); once the store has no running run left, whoever
//! started it, `completed-by-me <n>` (how many step handlers this process ran to the end)
//! and `all done`. The crash-recovery and multi-instance integration tests drive this program.
//!
//! Run with: `cargo run -p cronflow-examples --bin durable_host -- --db /tmp/x.db --trigger 100`
//!
//! Options: `--db PATH` or `--postgres URL` (one is required), `--trigger N` (runs to start,
//! default 0), `--step-ms M` (how long each step's handler sleeps, default 20), and for
//! PostgreSQL `--lease-ms N` and `--claim-ms N` (the engine's lease and claim interval,
//! default the engine's: 10 s and 1 s).

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cronflow_core::{
    Engine, EngineBuilder, EngineHandle, InProcessExecutor, NoStore, RunQuery, RunStatus, Store,
    TaskError, Workflow,
};
use cronflow_store::{PostgresStore, SqliteStore};
use serde_json::json;

/// The workflow's steps, run one after the other; each handler has the step's name.
const STEPS: [&str; 5] = ["s1", "s2", "s3", "s4", "s5"];

const USAGE: &str = "usage: durable_host (--db PATH | --postgres URL) [--trigger N] \
                     [--step-ms M] [--lease-ms N] [--claim-ms N]";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where the runs are kept.
enum Db {
    Sqlite(String),
    Postgres(String),
}

/// The command line.
struct Args {
    db: Db,
    trigger: u32,
    step: Duration,
    lease: Option<Duration>,
    claim: Option<Duration>,
}

fn parse_args() -> Result<Args, String> {
    let (mut db, mut trigger, mut step_ms, mut lease, mut claim) = (None, 0, 20, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let millis = |v: String| v.parse().map(Duration::from_millis);
        match flag.as_str() {
            "--db" => db = Some(Db::Sqlite(value()?)),
            "--postgres" => db = Some(Db::Postgres(value()?)),
            "--trigger" => trigger = value()?.parse().map_err(|e| format!("--trigger: {e}"))?,
            "--step-ms" => step_ms = value()?.parse().map_err(|e| format!("--step-ms: {e}"))?,
            "--lease-ms" => lease = Some(millis(value()?).map_err(|e| format!("{flag}: {e}"))?),
            "--claim-ms" => claim = Some(millis(value()?).map_err(|e| format!("{flag}: {e}"))?),
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    let db = db.ok_or("--db or --postgres is required")?;
    Ok(Args { db, trigger, step: Duration::from_millis(step_ms), lease, claim })
}

#[tokio::main]
async fn main() -> ExitCode {
    // Logs go to stderr: stdout carries only the lines described above. By default only the
    // engine's start-up summary ("resuming unfinished runs") and lease warnings are shown,
    // not every run's transitions (set `RUST_LOG=cronflow_core=info` for those).
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
    // Counts the step handlers this process ran to the end (on several instances, its share).
    let completed = Arc::new(AtomicU64::new(0));
    let mut flow = Workflow::new("durable-demo");
    let mut executor = InProcessExecutor::new();
    for step in STEPS {
        flow = flow.step(step);
        let (pause, completed) = (args.step, Arc::clone(&completed));
        executor = executor.handler(step, move |task| {
            let completed = Arc::clone(&completed);
            async move {
                tokio::time::sleep(pause).await;
                completed.fetch_add(1, Ordering::Relaxed);
                Ok::<_, TaskError>(json!({ "step": step, "attempt": task.attempt }))
            }
        });
    }
    let mut builder = Engine::builder().executor(executor).workflow(flow.build()?);
    if let Some(lease) = args.lease {
        builder = builder.lease(lease);
    }
    if let Some(every) = args.claim {
        builder = builder.claim_interval(every);
    }

    // Starting the engine replays every run the store still has as running (on PostgreSQL,
    // those no live instance holds): this is where the runs of a killed host carry on.
    let engine = match &args.db {
        Db::Sqlite(path) => start(builder, SqliteStore::open(path).await?).await?,
        Db::Postgres(url) => start(builder, PostgresStore::connect(url).await?).await?,
    };
    let handle = engine.handle();
    println!("instance {}", std::process::id());

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
    println!("completed-by-me {}", completed.load(Ordering::Relaxed));
    println!("all done");
    engine.shutdown(Duration::from_secs(5)).await?;
    Ok(())
}

/// Starts the engine on `store`.
async fn start<S: Store>(
    builder: EngineBuilder<NoStore, InProcessExecutor>,
    store: S,
) -> Result<Engine, BoxError> {
    Ok(builder.store(store).start().await?)
}

/// Polls the store until no run is left running (new, resumed or waiting for a retry),
/// whichever instance holds it.
async fn wait_until_idle(handle: &EngineHandle) -> Result<(), BoxError> {
    let running =
        RunQuery { status: Some(RunStatus::Running), limit: Some(1), ..Default::default() };
    while !handle.list_runs(&running).await?.is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

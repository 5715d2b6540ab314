//! Group commit: a [`CommitBatch`] written in one transaction with a handful of multi-row
//! statements, after one statement checking the committing instance's leases when the store
//! is shared (see [`crate::lease`]).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use cronflow_core::{Claim, CommitBatch, RunId, StoreError};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait, Value};

use crate::codec::{
    self, EVENT_INSERT_ARITY, EVENT_INSERT_COLUMNS, encode_failure, micros, push_event,
};
use crate::dialect::{Col, Dialect};
use crate::error::{db, write};
use crate::lease;
use crate::sql::{chunk_sizes, int, opt_text, text};

/// What a statement of the batch does, for error messages and checks.
enum Step {
    /// Inserts new runs.
    NewRuns,
    /// Appends events.
    Events,
    /// Finishes these runs.
    Finish(Vec<RunId>),
}

/// Writes `batch` atomically. An empty batch touches nothing.
///
/// `claim` is the batch's [`Claim`] for a shared store (PostgreSQL), `None` for a store that
/// ignores leases: with it, new runs are created held by `claim.owner` (fence 1) and every
/// existing run the batch touches is first checked against `batch.fences`
/// ([`lease::check_fences`]).
pub(crate) async fn commit(
    conn: &DatabaseConnection,
    batch: &CommitBatch,
    claim: Option<Claim>,
) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    let dialect = Dialect::of(conn);
    // Encode everything before taking the write lock.
    let mut steps = build(batch, dialect, claim)?;
    let fenced =
        claim.map(|c| (c, lease::touched_runs(batch))).filter(|(_, runs)| !runs.is_empty());
    if steps.len() == 1 && fenced.is_none() {
        // One statement is atomic on its own (in SQLite and in PostgreSQL): skipping BEGIN
        // and COMMIT saves two round trips to the database, which is most of a lone run's
        // per-step latency.
        let (step, stmt) = steps.remove(0);
        return run_steps(conn, vec![(step, stmt)]).await;
    }
    let txn = conn
        .begin_with_options(dialect.write_transaction())
        .await
        .map_err(|e| db("beginning a commit", e))?;
    let written = async {
        if let Some((claim, runs)) = fenced {
            lease::check_fences(&txn, claim, &runs, &batch.fences).await?;
        }
        run_steps(&txn, steps).await
    };
    match written.await {
        Ok(()) => txn.commit().await.map_err(|e| db("committing a batch", e)),
        Err(err) => {
            if let Err(e) = txn.rollback().await {
                tracing::warn!(error = %e, "rolling back a failed commit failed");
            }
            Err(err)
        }
    }
}

async fn run_steps(
    txn: &impl ConnectionTrait,
    steps: Vec<(Step, Statement)>,
) -> Result<(), StoreError> {
    for (step, stmt) in steps {
        let context = match &step {
            Step::NewRuns => "inserting new runs",
            Step::Events => "appending events",
            Step::Finish(_) => "finishing runs",
        };
        let done = txn.execute_raw(stmt).await.map_err(|e| write(context, e))?;
        if let Step::Finish(ids) = step
            && done.rows_affected() != ids.len() as u64
        {
            // Like `MemoryStore`, finishing an unknown run is not an error: the batch's
            // events are what must be recorded exactly once.
            let ids: Vec<String> = ids.iter().map(RunId::to_string).collect();
            tracing::warn!(
                runs = %ids.join(", "),
                updated = done.rows_affected(),
                "some finished runs of a batch are not stored runs"
            );
        }
    }
    Ok(())
}

/// The statements writing `batch`, in order: new runs, events, finished runs.
fn build(
    batch: &CommitBatch,
    dialect: Dialect,
    claim: Option<Claim>,
) -> Result<Vec<(Step, Statement)>, StoreError> {
    let mut steps = Vec::new();

    const RUN_ARITY: usize = 6;
    let mut runs = batch.new_runs.iter();
    for size in chunk_sizes(batch.new_runs.len()) {
        let mut values: Vec<Value> = Vec::with_capacity(size * RUN_ARITY);
        for run in runs.by_ref().take(size) {
            values.extend([
                dialect.run_id(run.id),
                text(run.workflow_id.as_str()),
                int(i64::from(run.revision)),
                text("running"),
                text(run.payload.as_str()),
                int(micros(run.created_at)),
            ]);
        }
        let sql = match claim {
            None => format!(
                "INSERT INTO runs (id, workflow_id, revision, status, payload, created_at) \
                 VALUES {}",
                dialect.rows(size, RUN_ARITY)
            ),
            Some(claim) => {
                values.extend([lease::owner(claim.owner), lease::lease_micros(claim.lease)]);
                lease::insert_held_runs_sql(dialect, size, RUN_ARITY)
            }
        };
        steps.push((Step::NewRuns, dialect.statement(sql, values)));
    }

    // `run_started` (seq 0) is stored as the run row itself: one statement fewer for every
    // new run, which makes accepting a run a single statement. Reads put it back.
    let mut stored_events = Vec::with_capacity(batch.events.len());
    let created: HashMap<RunId, DateTime<Utc>> =
        batch.new_runs.iter().map(|r| (r.id, r.created_at)).collect();
    for (run, event) in &batch.events {
        if !codec::is_run_row_event(event) {
            stored_events.push((run, event));
        } else if created.get(run) != Some(&event.at) {
            return Err(StoreError::Conflict(format!(
                "run {run}: run_started must be committed with its new run, at its created_at"
            )));
        }
    }
    let mut events = stored_events.into_iter();
    for size in chunk_sizes(events.len()) {
        let mut values: Vec<Value> = Vec::with_capacity(size * EVENT_INSERT_ARITY);
        for (run, event) in events.by_ref().take(size) {
            push_event(&mut values, dialect, *run, event)?;
        }
        let sql = format!(
            "INSERT INTO run_events ({EVENT_INSERT_COLUMNS}) VALUES {}",
            dialect.rows(size, EVENT_INSERT_ARITY)
        );
        steps.push((Step::Events, dialect.statement(sql, values)));
    }

    // A finished run is held by nobody: its lease ends (its owner stays, a record of the
    // instance that finished it). The columns of the `VALUES` list: PostgreSQL needs their
    // types spelled out.
    const FINISH_COLUMNS: [Col; 5] = [Col::RunId, Col::Text, Col::Text, Col::Text, Col::Int];
    let mut finished = batch.finished.iter();
    for size in chunk_sizes(batch.finished.len()) {
        let mut values: Vec<Value> = Vec::with_capacity(size * FINISH_COLUMNS.len());
        let mut ids = Vec::with_capacity(size);
        for run in finished.by_ref().take(size) {
            let failure = run.failure.as_ref().map(|f| encode_failure(f, run.id)).transpose()?;
            values.extend([
                dialect.run_id(run.id),
                text(run.status.as_str()),
                opt_text(run.output.as_ref().map(|o| o.as_str())),
                opt_text(failure),
                int(micros(run.finished_at)),
            ]);
            ids.push(run.id);
        }
        let sql = format!(
            "WITH v (id, status, output, failure, finished_at) AS (VALUES {}) \
             UPDATE runs SET status = v.status, output = v.output, failure = v.failure, \
             finished_at = v.finished_at, lease_until = NULL \
             FROM v WHERE runs.id = v.id",
            dialect.typed_rows(size, &FINISH_COLUMNS)
        );
        steps.push((Step::Finish(ids), dialect.statement(sql, values)));
    }
    Ok(steps)
}

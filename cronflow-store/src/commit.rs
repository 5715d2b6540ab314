//! Group commit: a [`CommitBatch`] written in one transaction with a handful of multi-row
//! statements, after one statement checking the committing instance's leases when the store
//! is shared (see [`crate::lease`]).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use cronflow_core::{Claim, CommitBatch, CommitOutcome, DuplicateRun, RunId, StoreError};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait, Value};

use crate::codec::{
    self, EVENT_INSERT_ARITY, EVENT_INSERT_COLUMNS, encode_failure, micros, push_event,
};
use crate::dialect::{Col, Dialect};
use crate::error::{db, write};
use crate::lease;
use crate::sql::{CHUNK_ROWS, chunk_sizes, int, opt_text, text};

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
/// ([`lease::check_fences`]). New runs with a trigger key are created only if the key is free
/// ([`claim_keys`]); the others are left out and reported.
pub(crate) async fn commit(
    conn: &DatabaseConnection,
    batch: &CommitBatch,
    claim: Option<Claim>,
) -> Result<CommitOutcome, StoreError> {
    if batch.is_empty() {
        return Ok(CommitOutcome::default());
    }
    let dialect = Dialect::of(conn);
    let keys: Vec<(&str, RunId)> = batch.trigger_keys().collect();
    // Encode everything before taking the write lock (a keyed batch is encoded once its
    // duplicates are known).
    let mut steps = if keys.is_empty() { Some(build(batch, dialect, claim)?) } else { None };
    let fenced =
        claim.map(|c| (c, lease::touched_runs(batch))).filter(|(_, runs)| !runs.is_empty());
    if let Some(only) = steps.as_mut().filter(|s| s.len() == 1 && fenced.is_none()) {
        // One statement is atomic on its own (in SQLite and in PostgreSQL): skipping BEGIN
        // and COMMIT saves two round trips to the database, which is most of a lone run's
        // per-step latency.
        run_steps(conn, std::mem::take(only)).await?;
        return Ok(CommitOutcome::default());
    }
    let txn = conn
        .begin_with_options(dialect.write_transaction())
        .await
        .map_err(|e| db("beginning a commit", e))?;
    let written = async {
        if let Some((claim, runs)) = fenced {
            lease::check_fences(&txn, claim, &runs, &batch.fences).await?;
        }
        let mut outcome = CommitOutcome::default();
        let steps = match steps {
            Some(steps) => steps,
            None => {
                let at = batch.new_runs.first().map_or(0, |r| micros(r.created_at));
                outcome.duplicates = claim_keys(&txn, dialect, &keys, at).await?;
                if outcome.duplicates.is_empty() {
                    build(batch, dialect, claim)?
                } else {
                    let left_out: HashSet<RunId> =
                        outcome.duplicates.iter().map(|d| d.run).collect();
                    build(&batch.without_runs(&left_out), dialect, claim)?
                }
            }
        };
        run_steps(&txn, steps).await?;
        Ok(outcome)
    };
    match written.await {
        Ok(outcome) => {
            txn.commit().await.map_err(|e| db("committing a batch", e))?;
            Ok(outcome)
        }
        Err(err) => {
            if let Err(e) = txn.rollback().await {
                tracing::warn!(error = %e, "rolling back a failed commit failed");
            }
            Err(err)
        }
    }
}

/// Takes the trigger keys of a batch's new runs: inserts those still free, then reads who
/// holds each. A key held by another run makes its new run a duplicate. On PostgreSQL an
/// insert racing another transaction's insert of the same key waits for it; the read, a
/// later statement, then sees the winner.
async fn claim_keys(
    txn: &impl ConnectionTrait,
    dialect: Dialect,
    keys: &[(&str, RunId)],
    at: i64,
) -> Result<Vec<DuplicateRun>, StoreError> {
    for chunk in keys.chunks(CHUNK_ROWS) {
        let mut values = Vec::with_capacity(chunk.len() * 3);
        for (key, run) in chunk {
            values.extend([text(*key), dialect.run_id(*run), int(at)]);
        }
        let sql = format!(
            "INSERT INTO trigger_keys (key, run_id, created_at) VALUES {} \
             ON CONFLICT (key) DO NOTHING",
            dialect.rows(chunk.len(), 3)
        );
        txn.execute_raw(dialect.statement(sql, values))
            .await
            .map_err(|e| write("taking trigger keys", e))?;
    }
    let mut holders: HashMap<String, RunId> = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(CHUNK_ROWS) {
        let list = vec!["?"; chunk.len()].join(",");
        let sql = format!("SELECT key, run_id FROM trigger_keys WHERE key IN ({list})");
        let values = chunk.iter().map(|(key, _)| text(*key)).collect();
        let stmt = dialect.statement(dialect.numbered(&sql), values);
        let rows = txn.query_all_raw(stmt).await.map_err(|e| db("reading trigger keys", e))?;
        for row in rows {
            let key: String = codec::get(&row, 0, || "trigger key".to_owned())?;
            holders.insert(key, dialect.get_run_id(&row, 1)?);
        }
    }
    let mut duplicates = Vec::new();
    for (key, run) in keys {
        match holders.get(*key) {
            Some(&existing) if existing != *run => {
                duplicates.push(DuplicateRun { run: *run, existing });
            }
            Some(_) => {}
            None => {
                return Err(StoreError::Conflict(format!("trigger key `{key}` was not stored")));
            }
        }
    }
    Ok(duplicates)
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

    const RUN_ARITY: usize = 7;
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
                opt_text(run.context.as_ref().map(|c| c.as_str())),
            ]);
        }
        let sql = match claim {
            None => format!(
                "INSERT INTO runs (id, workflow_id, revision, status, payload, created_at, \
                 context) VALUES {}",
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

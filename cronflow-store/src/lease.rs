//! Leases and fencing, for several engine instances sharing one PostgreSQL database.
//!
//! A running run is held by the instance in its `owner` column while its `lease_until` is set;
//! it is claimable when `lease_until` is NULL (never claimed, created unowned, or released) or
//! in the past. Every claim bumps its `fence`; a run created held (a commit with a
//! [`Claim`]) starts at fence 1. A commit with a claim checks, in its transaction, that the
//! committing instance is the owner of every existing run it touches with the fence it was
//! given, and otherwise stores nothing and fails with [`StoreError::LeaseLost`].
//!
//! Lease times are read from the database's clock (`clock_timestamp()`), never the engine's,
//! so that instances whose clocks disagree still agree on when a lease expires.
//!
//! The SQL here is PostgreSQL's: only a [shared](cronflow_core::Store::shared) store uses it.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use cronflow_core::{Claim, CommitBatch, InstanceId, RunId, StoreError};
use sea_orm::{ConnectionTrait, Value};

use crate::codec::get;
use crate::dialect::Dialect;
use crate::error::db;
use crate::sql::text;

/// The database's current time in microseconds since the Unix epoch (the unit of every time
/// column). `clock_timestamp()` rather than `now()`, which is frozen at the start of the
/// transaction.
pub(crate) const NOW_MICROS: &str = "(extract(epoch from clock_timestamp()) * 1000000)::bigint";

/// The longest lease: about 100 years, so that `now + lease` never overflows a `BIGINT`.
const MAX_LEASE_MICROS: i64 = 100 * 366 * 24 * 3600 * 1_000_000;

/// `lease` in microseconds, as bound.
pub(crate) fn lease_micros(lease: Duration) -> Value {
    let us = i64::try_from(lease.as_micros()).unwrap_or(i64::MAX).min(MAX_LEASE_MICROS);
    Value::BigInt(Some(us))
}

/// An instance id, as bound.
pub(crate) fn owner(owner: InstanceId) -> Value {
    Value::Uuid(Some(owner.as_uuid()))
}

/// `ids` as one bound value, a PostgreSQL array literal (`{id,id}`) to cast with
/// `::uuid[]`: one parameter and one statement text, whatever the number of runs.
pub(crate) fn run_id_array(ids: impl IntoIterator<Item = RunId>) -> Value {
    let ids: Vec<String> =
        ids.into_iter().map(|id| id.as_uuid().hyphenated().to_string()).collect();
    text(format!("{{{}}}", ids.join(",")))
}

/// A stored fence as the API's `u64`.
#[cfg(feature = "postgres")]
fn fence(v: i64, run: RunId) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("run {run}: fence {v} is negative")))
}

/// The `INSERT` of `rows` new runs created held by the committing instance: the values of
/// each run as in an unowned insert (id, workflow id, revision, status, payload, created at),
/// then the owner and the lease in microseconds.
pub(crate) fn insert_held_runs_sql(dialect: Dialect, rows: usize, arity: usize) -> String {
    use crate::dialect::Col;
    const COLS: [Col; 7] =
        [Col::RunId, Col::Text, Col::Int, Col::Text, Col::Text, Col::Int, Col::Text];
    debug_assert_eq!(arity, COLS.len());
    let n = rows * arity;
    format!(
        "INSERT INTO runs (id, workflow_id, revision, status, payload, created_at, context, \
         owner, lease_until, fence) \
         SELECT v.id, v.workflow_id, v.revision, v.status, v.payload, v.created_at, v.context, \
         ${}::uuid, {NOW_MICROS} + ${}::bigint, 1 \
         FROM (VALUES {}) AS v (id, workflow_id, revision, status, payload, created_at, context)",
        n + 1,
        n + 2,
        dialect.typed_rows(rows, &COLS)
    )
}

/// The existing runs `batch` touches (with events or finished, and not created by it), each
/// once, in order of first appearance.
pub(crate) fn touched_runs(batch: &CommitBatch) -> Vec<RunId> {
    let new: HashSet<RunId> = batch.new_runs.iter().map(|r| r.id).collect();
    let mut seen = HashSet::new();
    let events = batch.events.iter().map(|(run, _)| *run);
    let finished = batch.finished.iter().map(|f| f.id);
    events.chain(finished).filter(|run| !new.contains(run) && seen.insert(*run)).collect()
}

/// Checks, in the commit's transaction `txn`, that `claim.owner` holds each of `runs` with the
/// fence given in `fences`, and locks their rows until the transaction ends (so that no claim
/// can take them over before the batch is written). One statement for the whole batch; rows
/// are locked in id order, as [`renew_leases`] locks them, so the two never deadlock.
///
/// A run is lost when it is not stored, has another owner (or none), has another fence, or
/// has no fence in `fences`. An expired lease that no other instance has claimed yet still
/// holds: a claim would have bumped the fence. Fails with [`StoreError::LeaseLost`] naming
/// every lost run, in the order of `runs`.
pub(crate) async fn check_fences(
    txn: &impl ConnectionTrait,
    claim: Claim,
    runs: &[RunId],
    fences: &[(RunId, u64)],
) -> Result<(), StoreError> {
    let dialect = Dialect::of(txn);
    // A join with the unnested ids, not `id = ANY($1)`: with the array bound as a parameter
    // the planner cannot hash it, and on a table without statistics it chose a full scan that
    // compared every row with every id (300 ms per commit at 10,000 runs).
    let sql = "SELECT runs.id, runs.owner, runs.fence FROM unnest($1::uuid[]) AS t(id) \
               JOIN runs ON runs.id = t.id ORDER BY runs.id FOR UPDATE OF runs";
    let rows = txn
        .query_all_raw(dialect.statement(sql, vec![run_id_array(runs.iter().copied())]))
        .await
        .map_err(|e| db("checking the leases of a batch", e))?;
    let mut stored: HashMap<RunId, (Option<sea_orm::prelude::Uuid>, i64)> =
        HashMap::with_capacity(rows.len());
    for row in &rows {
        let id = dialect.get_run_id(row, 0)?;
        let owner: Option<sea_orm::prelude::Uuid> = get(row, 1, || format!("run {id}: owner"))?;
        let fence: i64 = get(row, 2, || format!("run {id}: fence"))?;
        stored.insert(id, (owner, fence));
    }
    let given: HashMap<RunId, u64> = fences.iter().copied().collect();
    let lost: Vec<RunId> = runs
        .iter()
        .copied()
        .filter(|run| match (stored.get(run), given.get(run)) {
            (Some((owner, fence)), Some(given)) => {
                *owner != Some(claim.owner.as_uuid()) || u64::try_from(*fence).ok() != Some(*given)
            }
            _ => true,
        })
        .collect();
    if lost.is_empty() { Ok(()) } else { Err(StoreError::LeaseLost { runs: lost }) }
}

/// Claims up to `limit` claimable running runs for `owner` until now + `lease` (oldest
/// first), bumping their fences, and returns them with their histories. One transaction: an
/// `UPDATE` of the rows picked with `FOR UPDATE SKIP LOCKED` (so that instances claiming at
/// once take different runs without waiting for each other), then their events.
#[cfg(feature = "postgres")]
pub(crate) async fn claim_runs(
    conn: &sea_orm::DatabaseConnection,
    owner_id: InstanceId,
    lease: Duration,
    limit: usize,
) -> Result<Vec<cronflow_core::ClaimedRun>, StoreError> {
    use crate::codec::{EVENT_COLUMNS, RUN_COLUMN_COUNT, RUN_COLUMNS, decode_run};
    use cronflow_core::ClaimedRun;
    use sea_orm::TransactionTrait;

    if limit == 0 {
        return Ok(Vec::new());
    }
    let dialect = Dialect::of(conn);
    let txn = conn.begin().await.map_err(|e| db("beginning to claim runs", e))?;
    let claim_sql = format!(
        "WITH c AS (SELECT id AS claimed FROM runs \
         WHERE status = 'running' AND (lease_until IS NULL OR lease_until < {NOW_MICROS}) \
         ORDER BY created_at, id LIMIT $1 FOR UPDATE SKIP LOCKED) \
         UPDATE runs SET owner = $2, lease_until = {NOW_MICROS} + $3, fence = fence + 1 \
         FROM c WHERE runs.id = c.claimed RETURNING {RUN_COLUMNS}, fence"
    );
    let limit = Value::BigInt(Some(i64::try_from(limit).unwrap_or(i64::MAX)));
    let values = vec![limit, owner(owner_id), lease_micros(lease)];
    let run_rows = txn
        .query_all_raw(dialect.statement(claim_sql, values))
        .await
        .map_err(|e| db("claiming runs", e))?;
    let mut claimed = Vec::with_capacity(run_rows.len());
    for row in &run_rows {
        let run = decode_run(row, dialect)?;
        let stored: i64 = get(row, RUN_COLUMN_COUNT, || format!("run {}: fence", run.id))?;
        claimed.push((fence(stored, run.id)?, run));
    }
    claimed.sort_by_key(|(_, run)| (run.created_at, run.id));
    if claimed.is_empty() {
        txn.commit().await.map_err(|e| db("ending a claim of no runs", e))?;
        return Ok(Vec::new());
    }
    let events_sql = format!(
        "SELECT run_id, {EVENT_COLUMNS} FROM unnest($1::uuid[]) AS t(id) \
         JOIN run_events ON run_events.run_id = t.id ORDER BY run_id, seq"
    );
    let ids = run_id_array(claimed.iter().map(|(_, run)| run.id));
    let event_rows = txn
        .query_all_raw(dialect.statement(events_sql, vec![ids]))
        .await
        .map_err(|e| db("reading the histories of claimed runs", e))?;
    txn.commit().await.map_err(|e| db("committing a claim", e))?;

    let (fences, runs): (Vec<u64>, Vec<_>) = claimed.into_iter().unzip();
    let stored = crate::read::with_histories(dialect, runs, &event_rows)?;
    Ok(stored
        .into_iter()
        .zip(fences)
        .map(|(s, fence)| ClaimedRun { run: s.run, events: s.events, fence })
        .collect())
}

/// Extends to now + `lease` every running run `owner` holds and returns them with their
/// fences (in id order, the order their rows are locked in).
#[cfg(feature = "postgres")]
pub(crate) async fn renew_leases(
    conn: &sea_orm::DatabaseConnection,
    owner_id: InstanceId,
    lease: Duration,
) -> Result<Vec<(RunId, u64)>, StoreError> {
    let dialect = Dialect::of(conn);
    let sql = format!(
        "WITH h AS (SELECT id AS held FROM runs WHERE owner = $1 AND status = 'running' \
         ORDER BY id FOR UPDATE) \
         UPDATE runs SET lease_until = {NOW_MICROS} + $2 FROM h WHERE runs.id = h.held \
         RETURNING id, fence"
    );
    let rows = conn
        .query_all_raw(dialect.statement(sql, vec![owner(owner_id), lease_micros(lease)]))
        .await
        .map_err(|e| db("renewing leases", e))?;
    let mut held = Vec::with_capacity(rows.len());
    for row in &rows {
        let id = dialect.get_run_id(row, 0)?;
        let stored: i64 = get(row, 1, || format!("run {id}: fence"))?;
        held.push((id, fence(stored, id)?));
    }
    held.sort_unstable();
    Ok(held)
}

/// Gives up `owner`'s leases on those of `runs` it holds and that are still running (a
/// finished run keeps its owner, as a record of who finished it).
#[cfg(feature = "postgres")]
pub(crate) async fn release_runs(
    conn: &sea_orm::DatabaseConnection,
    owner_id: InstanceId,
    runs: &[RunId],
) -> Result<(), StoreError> {
    if runs.is_empty() {
        return Ok(());
    }
    let dialect = Dialect::of(conn);
    // The NOTIFY is delivered when the statement's transaction commits, so a woken claimer
    // finds the runs released.
    let sql = "WITH r AS (SELECT runs.id AS released FROM unnest($2::uuid[]) AS t(id) \
         JOIN runs ON runs.id = t.id WHERE owner = $1 AND status = 'running' \
         ORDER BY runs.id FOR UPDATE OF runs), \
         u AS (UPDATE runs SET owner = NULL, lease_until = NULL FROM r \
         WHERE runs.id = r.released RETURNING runs.id) \
         SELECT pg_notify('cronflow_work', count(*)::text) FROM u HAVING count(*) > 0";
    let values = vec![owner(owner_id), run_id_array(runs.iter().copied())];
    conn.execute_raw(dialect.statement(sql, values)).await.map_err(|e| db("releasing runs", e))?;
    Ok(())
}

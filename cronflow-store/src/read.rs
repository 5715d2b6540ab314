//! Queries: runs, histories, the active runs to recover, run listings.

use std::collections::HashMap;

use cronflow_core::{RunId, RunQuery, RunRecord, RunReport, StoreError, StoredRun};
use sea_orm::{ConnectionTrait, DatabaseConnection, QueryResult, TransactionTrait, Value};

use crate::codec::{
    EVENT_COLUMNS, RUN_COLUMN_COUNT, RUN_COLUMNS, decode_event_row, decode_run, get, run_started,
};
use crate::dialect::Dialect;
use crate::error::db;
use crate::sql::{int, text};

/// Default of [`RunQuery::limit`].
const DEFAULT_LIMIT: u32 = 100;

/// Every running run with its history, read in one snapshot with two queries.
pub(crate) async fn active_runs(conn: &DatabaseConnection) -> Result<Vec<StoredRun>, StoreError> {
    let dialect = Dialect::of(conn);
    // One read transaction, so that both queries see the same snapshot.
    let txn = conn
        .begin_with_options(dialect.snapshot_transaction())
        .await
        .map_err(|e| db("beginning to read active runs", e))?;
    let runs_sql =
        format!("SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running' ORDER BY created_at, id");
    let run_rows = txn
        .query_all_raw(dialect.statement(runs_sql, vec![]))
        .await
        .map_err(|e| db("reading active runs", e))?;
    let events_sql = format!(
        "SELECT run_id, {EVENT_COLUMNS} FROM run_events \
         WHERE run_id IN (SELECT id FROM runs WHERE status = 'running') \
         ORDER BY run_id, seq"
    );
    let event_rows = txn
        .query_all_raw(dialect.statement(events_sql, vec![]))
        .await
        .map_err(|e| db("reading the histories of active runs", e))?;
    txn.commit().await.map_err(|e| db("ending the read of active runs", e))?;

    let runs = run_rows.iter().map(|row| decode_run(row, dialect)).collect::<Result<_, _>>()?;
    with_histories(dialect, runs, &event_rows)
}

/// Runs `ids` with their histories, a few hundred per pair of queries.
pub(crate) async fn load_runs(
    conn: &DatabaseConnection,
    ids: &[RunId],
) -> Result<Vec<StoredRun>, StoreError> {
    const CHUNK: usize = 500;
    let dialect = Dialect::of(conn);
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let list = vec!["?"; chunk.len()].join(",");
        let values: Vec<_> = chunk.iter().map(|id| dialect.run_id(*id)).collect();
        let runs_sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id IN ({list})");
        let events_sql = format!(
            "SELECT run_id, {EVENT_COLUMNS} FROM run_events WHERE run_id IN ({list}) \
             ORDER BY run_id, seq"
        );
        let txn = conn
            .begin_with_options(dialect.snapshot_transaction())
            .await
            .map_err(|e| db("beginning to load runs", e))?;
        let run_rows = txn
            .query_all_raw(dialect.statement(dialect.numbered(&runs_sql), values.clone()))
            .await
            .map_err(|e| db("loading runs", e))?;
        let event_rows = txn
            .query_all_raw(dialect.statement(dialect.numbered(&events_sql), values))
            .await
            .map_err(|e| db("loading the histories of runs", e))?;
        txn.commit().await.map_err(|e| db("ending the load of runs", e))?;
        let runs = run_rows.iter().map(|row| decode_run(row, dialect)).collect::<Result<_, _>>()?;
        out.extend(with_histories(dialect, runs, &event_rows)?);
    }
    Ok(out)
}

/// `runs` with their histories: `run_started` from the run row, then `event_rows` (`run_id`
/// then [`EVENT_COLUMNS`], ordered by run then `seq`), which must all belong to `runs`.
pub(crate) fn with_histories(
    dialect: Dialect,
    runs: Vec<RunRecord>,
    event_rows: &[QueryResult],
) -> Result<Vec<StoredRun>, StoreError> {
    let mut out = Vec::with_capacity(runs.len());
    let mut index: HashMap<RunId, usize> = HashMap::with_capacity(runs.len());
    for run in runs {
        index.insert(run.id, out.len());
        let events = vec![run_started(run.created_at)];
        out.push(StoredRun { run, events });
    }
    // Rows come grouped by run: look each run up once per group.
    let mut current: Option<(RunId, usize)> = None;
    for row in event_rows {
        let id = dialect.get_run_id(row, 0)?;
        let slot = match current {
            Some((run, slot)) if run == id => slot,
            _ => {
                let Some(&slot) = index.get(&id) else {
                    return Err(StoreError::Corrupt(format!(
                        "events of run {id} were read but the run was not"
                    )));
                };
                current = Some((id, slot));
                slot
            }
        };
        out[slot].events.push(decode_event_row(row, 1, id)?);
    }
    Ok(out)
}

/// One run's record.
pub(crate) async fn run(
    conn: &DatabaseConnection,
    id: RunId,
) -> Result<Option<RunRecord>, StoreError> {
    let dialect = Dialect::of(conn);
    let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = {}", dialect.numbered("?"));
    let row = conn
        .query_one_raw(dialect.statement(sql, vec![dialect.run_id(id)]))
        .await
        .map_err(|e| db(&format!("reading run {id}"), e))?;
    row.as_ref().map(|row| decode_run(row, dialect)).transpose()
}

/// One run's record and history, in one query.
pub(crate) async fn run_report(
    conn: &DatabaseConnection,
    id: RunId,
) -> Result<Option<RunReport>, StoreError> {
    let dialect = Dialect::of(conn);
    // No column name is shared by the two tables, so none needs a table prefix.
    let sql = format!(
        "SELECT {RUN_COLUMNS}, {EVENT_COLUMNS} FROM runs \
         LEFT JOIN run_events ON run_events.run_id = runs.id WHERE runs.id = {} ORDER BY seq",
        dialect.numbered("?")
    );
    let rows = conn
        .query_all_raw(dialect.statement(sql, vec![dialect.run_id(id)]))
        .await
        .map_err(|e| db(&format!("reading run {id} and its history"), e))?;
    let Some(first) = rows.first() else { return Ok(None) };
    let run = decode_run(first, dialect)?;
    let mut history = Vec::with_capacity(rows.len() + 1);
    history.push(run_started(run.created_at));
    for row in &rows {
        let seq: Option<i64> = get(row, RUN_COLUMN_COUNT, || format!("run {id}: event"))?;
        if seq.is_some() {
            history.push(decode_event_row(row, RUN_COLUMN_COUNT, id)?);
        }
    }
    Ok(Some(RunReport { run, history }))
}

/// Runs matching `query`, newest first.
pub(crate) async fn list_runs(
    conn: &DatabaseConnection,
    query: &RunQuery,
) -> Result<Vec<RunRecord>, StoreError> {
    let mut sql = format!("SELECT {RUN_COLUMNS} FROM runs");
    let mut values: Vec<Value> = Vec::with_capacity(3);
    let mut conditions = Vec::with_capacity(2);
    if let Some(workflow) = &query.workflow_id {
        conditions.push("workflow_id = ?");
        values.push(text(workflow.as_str()));
    }
    if let Some(status) = query.status {
        conditions.push("status = ?");
        values.push(text(status.as_str()));
    }
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT ?");
    values.push(int(i64::from(query.limit.unwrap_or(DEFAULT_LIMIT))));
    let dialect = Dialect::of(conn);
    let stmt = dialect.statement(dialect.numbered(&sql), values);
    let rows = conn.query_all_raw(stmt).await.map_err(|e| db("listing runs", e))?;
    rows.iter().map(|row| decode_run(row, dialect)).collect()
}

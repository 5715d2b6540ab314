//! Workflow state (the `cronflow_state` table): JSON values by `(namespace, key)`, with an
//! optional expiry. Time is the engine's `now`, passed in; a row whose `expires_at` is at or
//! before it reads as absent.
//!
//! `incr` is one statement on both backends: an `INSERT ... ON CONFLICT DO UPDATE ... WHERE
//! ... RETURNING` (SQLite 3.35 and later; the bundled SQLite is newer). Its `WHERE` lets the
//! update happen only when the stored value is expired, or an integer that the increment
//! keeps inside `i64`; otherwise no row comes back and nothing changed, and a second read
//! tells which error it is. Two increments never interleave: SQLite has one writer at a
//! time, and PostgreSQL's `ON CONFLICT DO UPDATE` locks the row (a concurrent insert of the
//! same key waits for the first and then updates it).

use chrono::{DateTime, Utc};
use cronflow_core::{Json, StoreError};
use sea_orm::{ConnectionTrait, DatabaseConnection, Value};

use crate::codec::{get, micros};
use crate::dialect::Dialect;
use crate::error::{db, write};
use crate::sql::{int, opt_int, text};

/// The live value of `key` in `namespace` at `now`.
pub(crate) async fn get_value(
    conn: &DatabaseConnection,
    namespace: &str,
    key: &str,
    now: DateTime<Utc>,
) -> Result<Option<Json>, StoreError> {
    let dialect = Dialect::of(conn);
    let sql = dialect.numbered(
        "SELECT value FROM cronflow_state WHERE namespace = ? AND key = ? \
         AND (expires_at IS NULL OR expires_at > ?)",
    );
    let values = vec![text(namespace), text(key), int(micros(now))];
    let row = conn
        .query_one_raw(dialect.statement(sql, values))
        .await
        .map_err(|e| db("reading workflow state", e))?;
    let Some(row) = row else { return Ok(None) };
    let what = || format!("state `{key}` in `{namespace}`");
    let value: String = get(&row, 0, what)?;
    Json::from_string(value)
        .map(Some)
        .map_err(|e| StoreError::Corrupt(format!("{}: invalid JSON: {e}", what())))
}

/// Stores `value` under `key` in `namespace`, replacing any row.
pub(crate) async fn set(
    conn: &DatabaseConnection,
    namespace: &str,
    key: &str,
    value: &Json,
    expires_at: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    let dialect = Dialect::of(conn);
    let sql = dialect.numbered(
        "INSERT INTO cronflow_state (namespace, key, value, expires_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (namespace, key) DO UPDATE \
         SET value = excluded.value, expires_at = excluded.expires_at",
    );
    let values =
        vec![text(namespace), text(key), text(value.as_str()), opt_int(expires_at.map(micros))];
    conn.execute_raw(dialect.statement(sql, values))
        .await
        .map_err(|e| write("writing workflow state", e))?;
    Ok(())
}

/// SQLite's increment. A stored integer is recognised by its text: it must be exactly what
/// casting it to an integer and back gives (`json_type` alone calls too large numbers
/// integers, and `CAST` clamps them), or `-0`. The bounds keep the sum inside `i64` (SQLite
/// would silently turn an overflowing sum into a float).
const SQLITE_INCR: &str = "INSERT INTO cronflow_state (namespace, key, value, expires_at) \
     VALUES (?1, ?2, ?3, NULL) \
     ON CONFLICT (namespace, key) DO UPDATE SET \
       value = CASE WHEN cronflow_state.expires_at <= ?4 THEN excluded.value \
         ELSE CAST(CAST(cronflow_state.value AS INTEGER) + ?5 AS TEXT) END, \
       expires_at = CASE WHEN cronflow_state.expires_at <= ?4 THEN NULL \
         ELSE cronflow_state.expires_at END \
     WHERE cronflow_state.expires_at <= ?4 \
       OR ((CAST(CAST(cronflow_state.value AS INTEGER) AS TEXT) = cronflow_state.value \
            OR cronflow_state.value = '-0') \
           AND CAST(cronflow_state.value AS INTEGER) BETWEEN ?6 AND ?7) \
     RETURNING value";

/// PostgreSQL's increment: a stored integer matches the JSON integer grammar (the text is
/// stored without surrounding whitespace), then its bounds are checked as a `numeric`, so
/// that a number outside `bigint` never reaches the `bigint` cast.
const POSTGRES_INCR: &str = "INSERT INTO cronflow_state (namespace, key, value, expires_at) \
     VALUES ($1, $2, $3, NULL) \
     ON CONFLICT (namespace, key) DO UPDATE SET \
       value = CASE WHEN cronflow_state.expires_at <= $4 THEN excluded.value \
         ELSE (cronflow_state.value::bigint + $5)::text END, \
       expires_at = CASE WHEN cronflow_state.expires_at <= $4 THEN NULL \
         ELSE cronflow_state.expires_at END \
     WHERE cronflow_state.expires_at <= $4 \
       OR CASE WHEN cronflow_state.value ~ '^-{0,1}(0|[1-9][0-9]*)$' \
          THEN cronflow_state.value::numeric BETWEEN $6 AND $7 ELSE false END \
     RETURNING value";

/// Atomically adds `by` to the integer under `key` in `namespace`; returns the new value.
pub(crate) async fn incr(
    conn: &DatabaseConnection,
    namespace: &str,
    key: &str,
    by: i64,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let dialect = Dialect::of(conn);
    // The stored values that can take `by` without leaving `i64`.
    let (low, high) = if by >= 0 { (i64::MIN, i64::MAX - by) } else { (i64::MIN - by, i64::MAX) };
    let sql = match dialect {
        Dialect::Sqlite => SQLITE_INCR,
        Dialect::Postgres => POSTGRES_INCR,
    };
    let what = || format!("state `{key}` in `{namespace}`");
    // A refused update is told apart by reading the value; if it vanished or expired in
    // between, the increment is tried again.
    for _ in 0..3 {
        let values: Vec<Value> = vec![
            text(namespace),
            text(key),
            text(by.to_string()),
            int(micros(now)),
            int(by),
            int(low),
            int(high),
        ];
        let row = conn
            .query_one_raw(dialect.statement(sql, values))
            .await
            .map_err(|e| write("incrementing workflow state", e))?;
        if let Some(row) = row {
            let value: String = get(&row, 0, what)?;
            return value.parse::<i64>().map_err(|_| {
                StoreError::Corrupt(format!("{}: `{value}` is not an integer", what()))
            });
        }
        let Some(current) = get_value(conn, namespace, key, now).await? else { continue };
        let (namespace, key) = (namespace.to_owned(), key.to_owned());
        return Err(match current.as_str().parse::<i64>() {
            Ok(_) => StoreError::IncrOverflow { namespace, key, by },
            Err(_) => StoreError::NotAnInteger { namespace, key },
        });
    }
    Err(StoreError::Conflict(format!(
        "incrementing {}: the value kept changing between the update and the read",
        what()
    )))
}

/// Deletes `key` in `namespace`; true if it was live at `now`.
pub(crate) async fn delete(
    conn: &DatabaseConnection,
    namespace: &str,
    key: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let dialect = Dialect::of(conn);
    let sql = dialect.numbered(
        "DELETE FROM cronflow_state WHERE namespace = ? AND key = ? RETURNING expires_at",
    );
    let row = conn
        .query_one_raw(dialect.statement(sql, vec![text(namespace), text(key)]))
        .await
        .map_err(|e| write("deleting workflow state", e))?;
    let Some(row) = row else { return Ok(false) };
    let expires_at: Option<i64> = get(&row, 0, || format!("state `{key}` in `{namespace}`"))?;
    Ok(expires_at.is_none_or(|at| at > micros(now)))
}

/// Deletes every value expired at `now`; returns how many.
pub(crate) async fn purge_expired(
    conn: &DatabaseConnection,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let dialect = Dialect::of(conn);
    let sql = dialect
        .numbered("DELETE FROM cronflow_state WHERE expires_at IS NOT NULL AND expires_at <= ?");
    let done = conn
        .execute_raw(dialect.statement(sql, vec![int(micros(now))]))
        .await
        .map_err(|e| write("purging expired workflow state", e))?;
    Ok(done.rows_affected())
}

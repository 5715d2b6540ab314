//! Schedule cursors (the `schedules` table): the next slot of each schedule, moved with
//! compare-and-set so that of several instances advancing one cursor, one wins.

use chrono::{DateTime, Utc};
use cronflow_core::StoreError;
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::codec::{from_micros, get, micros};
use crate::dialect::Dialect;
use crate::error::{db, write};
use crate::sql::{int, text};

/// The cursor of schedule `id`, if it has one.
pub(crate) async fn cursor(
    conn: &DatabaseConnection,
    id: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let dialect = Dialect::of(conn);
    let sql = dialect.numbered("SELECT next_slot FROM schedules WHERE id = ?");
    let row = conn
        .query_one_raw(dialect.statement(sql, vec![text(id)]))
        .await
        .map_err(|e| db("reading a schedule cursor", e))?;
    row.map(|row| {
        let us: i64 = get(&row, 0, || format!("cursor of schedule `{id}`"))?;
        from_micros(us, || format!("cursor of schedule `{id}`"))
    })
    .transpose()
}

/// Moves the cursor of schedule `id` from `from` to `to`; false if it is not at `from`.
pub(crate) async fn advance(
    conn: &DatabaseConnection,
    id: &str,
    from: Option<DateTime<Utc>>,
    to: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let dialect = Dialect::of(conn);
    let now = micros(Utc::now());
    let (sql, values) = match from {
        // The first cursor of a schedule: the primary key lets one instance create it.
        None => (
            "INSERT INTO schedules (id, next_slot, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT (id) DO NOTHING",
            vec![text(id), int(micros(to)), int(now)],
        ),
        Some(from) => (
            "UPDATE schedules SET next_slot = ?, updated_at = ? WHERE id = ? AND next_slot = ?",
            vec![int(micros(to)), int(now), text(id), int(micros(from))],
        ),
    };
    let done = conn
        .execute_raw(dialect.statement(dialect.numbered(sql), values))
        .await
        .map_err(|e| write("moving a schedule cursor", e))?;
    Ok(done.rows_affected() == 1)
}

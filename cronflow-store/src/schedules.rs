//! Schedule cursors (the `schedules` table): the next slot of each schedule, moved with
//! compare-and-set so that of several instances advancing one cursor, one wins; and pruning
//! the `trigger_keys` that trigger sources no longer need.

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

/// Deletes the trigger keys starting with `prefix` taken before `created_before`.
pub(crate) async fn prune_keys(
    conn: &DatabaseConnection,
    prefix: &str,
    created_before: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let dialect = Dialect::of(conn);
    // A range on the primary key, not LIKE: no escaping of `%` and `_` in prefixes, and the
    // index serves it. Keys are compared byte-wise (`COLLATE "C"` on PostgreSQL).
    let upper = prefix_upper_bound(prefix);
    let collate = match dialect {
        Dialect::Postgres => " COLLATE \"C\"",
        Dialect::Sqlite => "",
    };
    let (sql, values) = match &upper {
        Some(upper) => (
            format!(
                "DELETE FROM trigger_keys WHERE key{collate} >= ? AND key{collate} < ? \
                 AND created_at < ?"
            ),
            vec![text(prefix), text(upper.as_str()), int(micros(created_before))],
        ),
        None => (
            format!("DELETE FROM trigger_keys WHERE key{collate} >= ? AND created_at < ?"),
            vec![text(prefix), int(micros(created_before))],
        ),
    };
    let done = conn
        .execute_raw(dialect.statement(dialect.numbered(&sql), values))
        .await
        .map_err(|e| write("pruning trigger keys", e))?;
    Ok(done.rows_affected())
}

/// The smallest string greater than every string starting with `prefix`, if any (`None` for
/// the empty prefix or one of only `char::MAX`).
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        // After the last code point before the surrogates comes the first one after them.
        let next = char::from_u32(last as u32 + 1).or((last == '\u{D7FF}').then_some('\u{E000}'));
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::prefix_upper_bound;

    #[test]
    fn the_upper_bound_of_a_prefix_is_just_past_every_key_with_it() {
        assert_eq!(prefix_upper_bound("webhook:").as_deref(), Some("webhook;"));
        assert_eq!(prefix_upper_bound("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_upper_bound(""), None);
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
    }
}

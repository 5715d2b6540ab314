//! Workflow definitions and their revisions (the `workflows` table).

use chrono::Utc;
use cronflow_core::{StoreError, WorkflowDef};
use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};

use crate::codec::{get, micros, to_u32};
use crate::dialect::Dialect;
use crate::error::db;
use crate::sql::{int, opt_text, text};

const LATEST: &str =
    "SELECT revision, definition FROM workflows WHERE id = ? ORDER BY revision DESC LIMIT 1";

const INSERT: &str = "INSERT INTO workflows (id, revision, version, definition, created_at) \
     VALUES (?, ?, ?, ?, ?)";

const LOAD: &str = "SELECT definition FROM workflows WHERE id = ? AND revision = ?";

/// PostgreSQL: serialises the saves of one workflow id (in this schema) until the end of the
/// transaction, so that two instances saving at once cannot both pick the same next
/// revision. The first key is cronflow's lock class for workflow saves.
const PG_LOCK_WORKFLOW: &str = "SELECT pg_advisory_xact_lock(1667629058, \
     hashtext(coalesce(current_schema(), '') || '.' || $1))";

/// Stores `def` as a new revision unless the latest revision has the same serialised text.
pub(crate) async fn save(
    db_conn: &DatabaseConnection,
    def: &WorkflowDef,
) -> Result<u32, StoreError> {
    let definition = serde_json::to_string(def)
        .map_err(|e| StoreError::Database(format!("cannot encode workflow `{}`: {e}", def.id)))?;
    let what = || format!("workflow `{}`", def.id);
    let dialect = Dialect::of(db_conn);
    // Take the write lock before reading the latest revision, so two writers cannot both
    // pick the same next revision: SQLite's IMMEDIATE transaction takes it at BEGIN (nor can
    // a read lock then fail to upgrade), PostgreSQL takes an advisory lock on the id.
    let txn = db_conn
        .begin_with_options(dialect.write_transaction())
        .await
        .map_err(|e| db("beginning to save a workflow", e))?;
    if dialect == Dialect::Postgres {
        txn.execute_raw(dialect.statement(PG_LOCK_WORKFLOW, vec![text(def.id.as_str())]))
            .await
            .map_err(|e| db(&format!("locking {}", what()), e))?;
    }
    let latest = txn
        .query_one_raw(dialect.statement(dialect.numbered(LATEST), vec![text(def.id.as_str())]))
        .await
        .map_err(|e| db(&format!("reading {}", what()), e))?;
    let next = match latest {
        Some(row) => {
            let revision: i64 = get(&row, 0, what)?;
            let stored: String = get(&row, 1, what)?;
            if stored == definition {
                txn.rollback().await.map_err(|e| db("ending a read", e))?;
                return to_u32(revision, what);
            }
            revision + 1
        }
        None => 1,
    };
    let revision = u32::try_from(next)
        .map_err(|_| StoreError::Database(format!("{}: too many revisions", what())))?;
    let values = vec![
        text(def.id.as_str()),
        int(next),
        opt_text(def.version.as_deref()),
        text(definition),
        int(micros(Utc::now())),
    ];
    txn.execute_raw(dialect.statement(dialect.numbered(INSERT), values))
        .await
        .map_err(|e| db(&format!("saving {}", what()), e))?;
    txn.commit().await.map_err(|e| db(&format!("saving {}", what()), e))?;
    Ok(revision)
}

/// Loads revision `revision` of workflow `id`.
pub(crate) async fn load(
    db_conn: &DatabaseConnection,
    id: &str,
    revision: u32,
) -> Result<Option<WorkflowDef>, StoreError> {
    let what = || format!("workflow `{id}` revision {revision}");
    let dialect = Dialect::of(db_conn);
    let values = vec![text(id), int(i64::from(revision))];
    let row = db_conn
        .query_one_raw(dialect.statement(dialect.numbered(LOAD), values))
        .await
        .map_err(|e| db(&format!("loading {}", what()), e))?;
    let Some(row) = row else { return Ok(None) };
    let definition: String = get(&row, 0, what)?;
    serde_json::from_str(&definition)
        .map(Some)
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", what())))
}

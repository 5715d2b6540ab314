//! The schema and its migrations.
//!
//! `cronflow_meta` holds the `schema_version`: the number of [`MIGRATIONS`] applied. At open,
//! the missing migrations are applied in order, all in one transaction; a database whose
//! version is newer than this code knows is refused.

use cronflow_core::StoreError;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbErr, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
};

use crate::error::db;
use crate::sql::{statement, text};

/// The bookkeeping table, created before the first migration.
const META_TABLE: &str = "cronflow_meta";

/// The ordered migrations; migration `i` (0-based) takes the schema from version `i` to
/// `i + 1`. Never edit a released entry: append a new one.
pub(crate) const MIGRATIONS: &[&[&str]] = &[
    // 1: workflows, runs, run_events.
    &[
        "CREATE TABLE workflows (
            id TEXT NOT NULL,
            revision INTEGER NOT NULL,
            version TEXT,
            definition TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            PRIMARY KEY (id, revision)
        )",
        "CREATE TABLE runs (
            id TEXT NOT NULL PRIMARY KEY,
            workflow_id TEXT NOT NULL,
            revision INTEGER NOT NULL,
            status TEXT NOT NULL,
            payload TEXT NOT NULL,
            output TEXT,
            failure TEXT,
            created_at BIGINT NOT NULL,
            finished_at BIGINT
        )",
        "CREATE INDEX runs_status_created ON runs (status, created_at)",
        "CREATE INDEX runs_workflow_created ON runs (workflow_id, created_at)",
        "CREATE INDEX runs_created ON runs (created_at)",
        // A rowid table (appends go to its last pages) with a unique index, rather than a
        // WITHOUT ROWID table clustered on (run_id, seq): a group commit appends a few events
        // to each of many runs in flight, and clustering made every commit rewrite one large
        // leaf page per run (measured: 2.8x the bytes written per commit).
        "CREATE TABLE run_events (
            run_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            at BIGINT NOT NULL,
            kind TEXT NOT NULL,
            task TEXT,
            attempt INTEGER,
            data TEXT NOT NULL
        )",
        "CREATE UNIQUE INDEX run_events_run_seq ON run_events (run_id, seq)",
    ],
];

/// The schema version this code writes and reads.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// What an existing database holds, as far as opening it is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Contents {
    /// No tables at all: a new or empty database, to initialise.
    Empty,
    /// A cronflow store at this schema version.
    Cronflow(i64),
    /// Someone else's database: these are (some of) its tables.
    Foreign(Vec<String>),
}

/// SQL listing the user tables of the database.
pub(crate) const LIST_TABLES: &str = "SELECT name FROM sqlite_master \
     WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name";

/// SQL reading the schema version.
pub(crate) const READ_VERSION: &str =
    "SELECT value FROM cronflow_meta WHERE key = 'schema_version'";

/// Classifies a database from its table names and, when it has `cronflow_meta`, the stored
/// `schema_version` text (`None` when the row is missing).
pub(crate) fn classify(
    tables: Vec<String>,
    version: Option<Option<String>>,
) -> Result<Contents, String> {
    if tables.is_empty() {
        return Ok(Contents::Empty);
    }
    match version {
        None => Ok(Contents::Foreign(tables)),
        Some(None) => Err("cronflow_meta has no schema_version".to_owned()),
        Some(Some(v)) => v
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 0)
            .map(Contents::Cronflow)
            .ok_or_else(|| format!("schema_version `{v}` is not a version number")),
    }
}

/// Checks that `contents` can be opened by this code; the error is the reason for
/// [`StoreError::Incompatible`].
pub(crate) fn check_openable(contents: &Contents) -> Result<(), String> {
    match contents {
        Contents::Empty => Ok(()),
        Contents::Cronflow(v) if *v <= latest_version() => Ok(()),
        Contents::Cronflow(v) => Err(format!(
            "its schema version {v} is newer than this cronflow-store supports ({}); \
             upgrade cronflow",
            latest_version()
        )),
        Contents::Foreign(tables) => Err(format!(
            "it is a SQLite database of another application (it has no cronflow_meta table \
             but has the tables {})",
            tables.join(", ")
        )),
    }
}

/// Reads what `conn` holds. The outer error is a database error, the inner one the reason
/// the contents are not a usable cronflow store.
pub(crate) async fn contents(
    conn: &impl ConnectionTrait,
) -> Result<Result<Contents, String>, DbErr> {
    let rows = conn.query_all_raw(statement(LIST_TABLES.to_owned(), vec![])).await?;
    let mut tables = Vec::with_capacity(rows.len());
    for row in rows {
        tables.push(row.try_get_by_index::<String>(0)?);
    }
    let version = if tables.iter().any(|t| t == META_TABLE) {
        match conn.query_one_raw(statement(READ_VERSION.to_owned(), vec![])).await? {
            Some(row) => Some(row.try_get_by_index::<Option<String>>(0)?),
            None => Some(None),
        }
    } else {
        None
    };
    Ok(classify(tables, version))
}

/// Brings the schema of `conn` up to date in one transaction. `location` names the database
/// in errors.
pub(crate) async fn migrate(conn: &DatabaseConnection, location: &str) -> Result<(), StoreError> {
    let incompatible =
        |message: String| StoreError::Incompatible { location: location.to_owned(), message };
    let options = TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    };
    let txn = conn.begin_with_options(options).await.map_err(|e| db("beginning migration", e))?;
    let found = contents(&txn)
        .await
        .map_err(|e| db("reading the schema version", e))?
        .map_err(incompatible)?;
    check_openable(&found).map_err(incompatible)?;
    let from = match found {
        Contents::Cronflow(v) => v,
        _ => {
            txn.execute_unprepared(
                "CREATE TABLE cronflow_meta (key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL)",
            )
            .await
            .map_err(|e| db("creating cronflow_meta", e))?;
            txn.execute_raw(statement(
                "INSERT INTO cronflow_meta (key, value) VALUES ('schema_version', '0')".to_owned(),
                vec![],
            ))
            .await
            .map_err(|e| db("initialising cronflow_meta", e))?;
            0
        }
    };
    if from == latest_version() {
        return txn.commit().await.map_err(|e| db("ending migration", e));
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        for sql in *migration {
            txn.execute_unprepared(sql)
                .await
                .map_err(|e| db(&format!("applying migration {}", i + 1), e))?;
        }
    }
    txn.execute_raw(statement(
        "UPDATE cronflow_meta SET value = ? WHERE key = 'schema_version'".to_owned(),
        vec![text(latest_version().to_string())],
    ))
    .await
    .map_err(|e| db("recording the schema version", e))?;
    txn.commit().await.map_err(|e| db("committing migration", e))?;
    tracing::info!(location, from, to = latest_version(), "migrated the cronflow schema");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_databases() {
        assert_eq!(classify(vec![], None), Ok(Contents::Empty));
        let foreign = classify(vec!["customers".into()], None).unwrap();
        assert_eq!(foreign, Contents::Foreign(vec!["customers".into()]));
        assert!(check_openable(&foreign).unwrap_err().contains("customers"));
        let meta = vec!["cronflow_meta".to_owned()];
        assert_eq!(classify(meta.clone(), Some(Some("1".into()))), Ok(Contents::Cronflow(1)));
        assert!(classify(meta.clone(), Some(None)).is_err());
        assert!(classify(meta, Some(Some("x".into()))).is_err());
        assert!(check_openable(&Contents::Cronflow(latest_version() + 1)).is_err());
        assert!(check_openable(&Contents::Cronflow(latest_version())).is_ok());
    }
}

//! Recognising and migrating the schema.
//!
//! `cronflow_meta` holds the `schema_version`: the number of [`MIGRATIONS`] applied. At open,
//! the missing migrations are applied in order, all in one transaction; a database whose
//! version is newer than this code knows is refused. On PostgreSQL the transaction first
//! takes an advisory lock, so that instances starting at once migrate one after the other.

use cronflow_core::StoreError;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait};

use crate::dialect::Dialect;
use crate::error::db;
use crate::migrations::{MIGRATIONS, TABLES, latest_version};
use crate::sql::text;

/// The bookkeeping table, created before the first migration.
const META_TABLE: &str = "cronflow_meta";

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

/// SQL listing the user tables of a SQLite database: a SQLite file belongs to one
/// application, so any table makes it someone else's database.
const SQLITE_LIST_TABLES: &str = "SELECT name FROM sqlite_master \
     WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name";

/// SQL listing the tables of the current PostgreSQL schema that have the name of one of ours
/// (the list is appended): a schema is commonly shared with the host application's tables,
/// which are none of our business, but tables with our names and no `cronflow_meta` are
/// someone else's.
const PG_LIST_TABLES: &str = "SELECT tablename::text FROM pg_catalog.pg_tables \
     WHERE schemaname = current_schema() AND tablename IN ";

/// PostgreSQL: serialises migrations of the current schema until the end of the transaction.
/// The first key is cronflow's lock class for migrations.
const PG_LOCK_MIGRATIONS: &str =
    "SELECT pg_advisory_xact_lock(1667629057, hashtext(coalesce(current_schema(), '')))";

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
pub(crate) fn check_openable(contents: &Contents, dialect: Dialect) -> Result<(), String> {
    match contents {
        Contents::Empty => Ok(()),
        Contents::Cronflow(v) if *v <= latest_version() => Ok(()),
        Contents::Cronflow(v) => Err(format!(
            "its schema version {v} is newer than this cronflow-store supports ({}); \
             upgrade cronflow",
            latest_version()
        )),
        Contents::Foreign(tables) => Err(match dialect {
            Dialect::Sqlite => format!(
                "it is a SQLite database of another application (it has no cronflow_meta \
                 table but has the tables {})",
                tables.join(", ")
            ),
            Dialect::Postgres => format!(
                "its schema has tables of another application named like cronflow's (it has \
                 no cronflow_meta table but has the tables {}); give cronflow a schema of its \
                 own, e.g. with `?options=-c%20search_path%3Dcronflow` in the URL",
                tables.join(", ")
            ),
        }),
    }
}

/// Reads what `conn` holds. The outer error is a database error, the inner one the reason
/// the contents are not a usable cronflow store.
pub(crate) async fn contents(
    conn: &impl ConnectionTrait,
) -> Result<Result<Contents, String>, DbErr> {
    let dialect = Dialect::of(conn);
    let list = match dialect {
        Dialect::Sqlite => dialect.statement(SQLITE_LIST_TABLES, vec![]),
        Dialect::Postgres => {
            let names: Vec<String> = TABLES.iter().map(|t| format!("'{t}'")).collect();
            let sql = format!("{PG_LIST_TABLES}({}) ORDER BY tablename", names.join(", "));
            dialect.statement(sql, vec![])
        }
    };
    let rows = conn.query_all_raw(list).await?;
    let mut tables = Vec::with_capacity(rows.len());
    for row in rows {
        tables.push(row.try_get_by_index::<String>(0)?);
    }
    let version = if tables.iter().any(|t| t == META_TABLE) {
        match conn.query_one_raw(dialect.statement(READ_VERSION, vec![])).await? {
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
    let dialect = Dialect::of(conn);
    let txn = conn
        .begin_with_options(dialect.write_transaction())
        .await
        .map_err(|e| db("beginning migration", e))?;
    if dialect == Dialect::Postgres {
        // Under READ COMMITTED, every statement after the lock sees what an instance that
        // held it before committed.
        txn.execute_raw(dialect.statement(PG_LOCK_MIGRATIONS, vec![]))
            .await
            .map_err(|e| db("locking the schema for migration", e))?;
        let schema = txn
            .query_one_raw(dialect.statement("SELECT current_schema()::text", vec![]))
            .await
            .and_then(|row| row.map(|r| r.try_get_by_index::<Option<String>>(0)).transpose())
            .map_err(|e| db("reading the current schema", e))?
            .flatten();
        if schema.is_none() {
            return Err(incompatible(
                "no schema to use: none of the schemas on the search_path exists".to_owned(),
            ));
        }
    }
    let found = contents(&txn)
        .await
        .map_err(|e| db("reading the schema version", e))?
        .map_err(incompatible)?;
    check_openable(&found, dialect).map_err(incompatible)?;
    let from = match found {
        Contents::Cronflow(v) => v,
        _ => {
            txn.execute_unprepared(
                "CREATE TABLE cronflow_meta (key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL)",
            )
            .await
            .map_err(|e| db("creating cronflow_meta", e))?;
            txn.execute_raw(dialect.statement(
                "INSERT INTO cronflow_meta (key, value) VALUES ('schema_version', '0')",
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
        let statements = match dialect {
            Dialect::Sqlite => migration.sqlite,
            Dialect::Postgres => migration.postgres,
        };
        for sql in statements {
            txn.execute_unprepared(sql)
                .await
                .map_err(|e| db(&format!("applying migration {}", i + 1), e))?;
        }
    }
    let update =
        dialect.numbered("UPDATE cronflow_meta SET value = ? WHERE key = 'schema_version'");
    txn.execute_raw(dialect.statement(update, vec![text(latest_version().to_string())]))
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
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            assert!(check_openable(&foreign, dialect).unwrap_err().contains("customers"));
        }
        let meta = vec!["cronflow_meta".to_owned()];
        assert_eq!(classify(meta.clone(), Some(Some("1".into()))), Ok(Contents::Cronflow(1)));
        assert!(classify(meta.clone(), Some(None)).is_err());
        assert!(classify(meta, Some(Some("x".into()))).is_err());
        let newer = Contents::Cronflow(latest_version() + 1);
        assert!(check_openable(&newer, Dialect::Postgres).unwrap_err().contains("newer"));
        assert!(check_openable(&Contents::Cronflow(latest_version()), Dialect::Sqlite).is_ok());
    }
}

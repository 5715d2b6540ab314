//! Mapping of sea-orm / sqlx errors to [`StoreError`].

use cronflow_core::StoreError;
use sea_orm::{DbErr, RuntimeErr, SqlErr};

/// A database error, with what the store was doing when it happened. The database reporting
/// damaged data (SQLite: a damaged file; PostgreSQL: `data_corrupted`, `index_corrupted`) is
/// [`StoreError::Corrupt`].
pub(crate) fn db(context: &str, err: DbErr) -> StoreError {
    if sqlx_error(&err).is_some_and(is_corruption) {
        StoreError::Corrupt(format!("{context}: {err}"))
    } else {
        StoreError::Database(format!("{context}: {err}"))
    }
}

/// Like [`db`], but a unique-constraint violation (SQLite's constraint codes, PostgreSQL's
/// SQLSTATE 23505) becomes [`StoreError::Conflict`].
pub(crate) fn write(context: &str, err: DbErr) -> StoreError {
    match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(message)) => StoreError::Conflict(format!(
            "{context}: already recorded ({message}); nothing from this batch was stored"
        )),
        _ => db(context, err),
    }
}

/// Whether a sqlx error says that stored data is damaged.
fn is_corruption(err: &sea_orm::sqlx::Error) -> bool {
    #[cfg(feature = "sqlite")]
    if is_not_a_database(err) {
        return true;
    }
    #[cfg(feature = "postgres")]
    if let sea_orm::sqlx::Error::Database(e) = err
        && e.try_downcast_ref::<sea_orm::sqlx::postgres::PgDatabaseError>().is_some()
        && matches!(e.code().as_deref(), Some("XX001" | "XX002"))
    {
        return true;
    }
    let _ = err;
    false
}

/// The SQLite primary result code of a sqlx error, if it is a SQLite error.
#[cfg(feature = "sqlite")]
pub(crate) fn sqlite_code(err: &sea_orm::sqlx::Error) -> Option<i32> {
    match err {
        sea_orm::sqlx::Error::Database(e)
            if e.try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>().is_some() =>
        {
            e.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff)
        }
        _ => None,
    }
}

/// `SQLITE_CORRUPT`.
#[cfg(feature = "sqlite")]
pub(crate) const SQLITE_CORRUPT: i32 = 11;
/// `SQLITE_NOTADB`.
#[cfg(feature = "sqlite")]
pub(crate) const SQLITE_NOTADB: i32 = 26;

/// Whether a sqlx error says the file is not (or no longer) a readable SQLite database.
#[cfg(feature = "sqlite")]
pub(crate) fn is_not_a_database(err: &sea_orm::sqlx::Error) -> bool {
    matches!(sqlite_code(err), Some(SQLITE_CORRUPT | SQLITE_NOTADB))
}

/// The sqlx error inside a sea-orm error, if there is one.
pub(crate) fn sqlx_error(err: &DbErr) -> Option<&sea_orm::sqlx::Error> {
    match err {
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => Some(e),
        _ => None,
    }
}

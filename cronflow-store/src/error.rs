//! Mapping of sea-orm / sqlx errors to [`StoreError`].

use cronflow_core::StoreError;
use sea_orm::{DbErr, RuntimeErr, SqlErr};

/// A database error, with what the store was doing when it happened. SQLite reporting a
/// damaged file is [`StoreError::Corrupt`].
pub(crate) fn db(context: &str, err: DbErr) -> StoreError {
    if sqlx_error(&err).is_some_and(is_not_a_database) {
        StoreError::Corrupt(format!("{context}: {err}"))
    } else {
        StoreError::Database(format!("{context}: {err}"))
    }
}

/// Like [`db`], but a unique-constraint violation becomes [`StoreError::Conflict`].
pub(crate) fn write(context: &str, err: DbErr) -> StoreError {
    match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(message)) => StoreError::Conflict(format!(
            "{context}: already recorded ({message}); nothing from this batch was stored"
        )),
        _ => db(context, err),
    }
}

/// The SQLite primary result code of a sqlx error, if it is a database error.
pub(crate) fn sqlite_code(err: &sea_orm::sqlx::Error) -> Option<i32> {
    match err {
        sea_orm::sqlx::Error::Database(e) => {
            e.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff)
        }
        _ => None,
    }
}

/// `SQLITE_CORRUPT`.
pub(crate) const SQLITE_CORRUPT: i32 = 11;
/// `SQLITE_NOTADB`.
pub(crate) const SQLITE_NOTADB: i32 = 26;

/// Whether a sqlx error says the file is not (or no longer) a readable SQLite database.
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

//! Looking at an existing file before opening it for writing, so that a file that is not a
//! cronflow store is refused without a single byte of it being changed.
//!
//! Switching a database to WAL (what the writing pool does on connect) rewrites its header, and
//! migrating creates tables; both must only ever happen to a new file, an empty SQLite database
//! or a cronflow store. So an existing file is first checked for the SQLite header, then opened
//! **read-only** (`immutable` when no `-wal` file is beside it, so that not even `-wal`/`-shm`
//! files get created) and classified by its tables.

use std::io::Read;
use std::path::{Path, PathBuf};

use cronflow_core::StoreError;
use sea_orm::SqlxSqliteConnector;
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sea_orm::sqlx::{self, ConnectOptions};

use crate::dialect::Dialect;
use crate::error::{is_not_a_database, sqlx_error};
use crate::schema::{Contents, check_openable, contents};

/// The first 16 bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// What is at the path.
enum Existing {
    /// Nothing, or a zero-length file: SQLite treats both as an empty database.
    Nothing,
    /// A file starting with the SQLite header; `true` when a `-wal` file exists beside it.
    Sqlite(bool),
}

/// Why a file cannot be opened.
enum Refusal {
    /// It cannot be read at all.
    Unreadable(std::io::Error),
    /// It is not a SQLite database.
    NotSqlite,
}

/// Reads the start of `path`.
fn sniff(path: &Path) -> Result<Existing, Refusal> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Nothing),
        Err(e) => return Err(Refusal::Unreadable(e)),
    };
    let mut head = Vec::with_capacity(100);
    (&mut file).take(100).read_to_end(&mut head).map_err(Refusal::Unreadable)?;
    if head.is_empty() {
        Ok(Existing::Nothing)
    } else if head.len() < 100 || !head.starts_with(SQLITE_HEADER) {
        Err(Refusal::NotSqlite)
    } else {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        Ok(Existing::Sqlite(Path::new(&wal).try_exists().unwrap_or(true)))
    }
}

/// Checks that the file at `path` may be opened for writing: it is missing, empty, an empty
/// SQLite database, or a cronflow store whose schema this code knows.
pub(crate) async fn check_file(path: &Path, location: &str) -> Result<(), StoreError> {
    let incompatible =
        |message: String| StoreError::Incompatible { location: location.to_owned(), message };
    let owned: PathBuf = path.to_owned();
    let open_error = |message: String| StoreError::Open { location: location.to_owned(), message };
    let existing = tokio::task::spawn_blocking(move || sniff(&owned))
        .await
        .map_err(|e| open_error(e.to_string()))?
        .map_err(|refusal| match refusal {
            Refusal::Unreadable(e) => open_error(format!("cannot read it: {e}")),
            Refusal::NotSqlite => incompatible(
                "file is not a database (it does not start with the SQLite header)".to_owned(),
            ),
        })?;
    let in_use = match existing {
        Existing::Nothing => return Ok(()),
        Existing::Sqlite(in_use) => in_use,
    };
    // Without a `-wal` file beside it, the main file holds the whole database: open it
    // `immutable`, which reads it without locking and without creating `-wal`/`-shm` files
    // (a read-only connection to a WAL database would create them). With a `-wal` file (the
    // database is in use, or its writer crashed), read it the normal read-only way so the
    // log is taken into account. The migration checks again inside its write transaction.
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .immutable(!in_use)
        .create_if_missing(false)
        .foreign_keys(false)
        .disable_statement_logging();
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(|e| probe_error(location, &e))?;
    let conn = SqlxSqliteConnector::from_sqlx_sqlite_pool(pool.clone());
    let found = read_contents(&conn, location).await;
    pool.close().await;
    check_openable(&found?, Dialect::Sqlite).map_err(incompatible)
}

/// Classifies the database behind the probing connection.
async fn read_contents(
    conn: &sea_orm::DatabaseConnection,
    location: &str,
) -> Result<Contents, StoreError> {
    match contents(conn).await {
        Ok(found) => found
            .map_err(|message| StoreError::Incompatible { location: location.to_owned(), message }),
        Err(err) => Err(match sqlx_error(&err) {
            Some(e) => probe_error(location, e),
            None => StoreError::Open { location: location.to_owned(), message: err.to_string() },
        }),
    }
}

/// Maps an error met while probing: "not a database" and corruption are incompatibility,
/// anything else is an open failure.
fn probe_error(location: &str, err: &sqlx::Error) -> StoreError {
    if is_not_a_database(err) {
        StoreError::Incompatible { location: location.to_owned(), message: err.to_string() }
    } else {
        StoreError::Open { location: location.to_owned(), message: err.to_string() }
    }
}

//! [`SqliteStore`]: opening a SQLite database (file or in-memory) and the
//! [`Store`](cronflow_core::Store) impl.

use std::path::Path;
use std::time::Duration;

use cronflow_core::StoreError;
use sea_orm::sqlx::ConnectOptions as _;
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::{DatabaseConnection, SqlxSqliteConnector};

use crate::{probe, schema};

/// How to open a SQLite file store; see [`SqliteStore::open_with`].
///
/// ```
/// use std::time::Duration;
/// use cronflow_store::SqliteOptions;
///
/// let options = SqliteOptions::default()
///     .max_connections(8)
///     .busy_timeout(Duration::from_secs(10));
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    max_connections: u32,
    busy_timeout: Duration,
    synchronous_full: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self { max_connections: 4, busy_timeout: Duration::from_secs(5), synchronous_full: false }
    }
}

impl SqliteOptions {
    /// Connections in the pool (default 4, at least 1). SQLite has one writer at a time;
    /// more connections let reads run while a commit is being written.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// How long a statement waits for a lock held by another connection or process before
    /// failing with "database is locked" (default 5 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Use `synchronous=FULL` instead of the default `NORMAL`.
    ///
    /// With WAL and `NORMAL`, a committed batch survives a crash or `kill -9` of the process
    /// but the last commits may be lost if the machine loses power; `FULL` makes each commit
    /// survive power loss too, at the price of an `fsync` per commit.
    pub fn synchronous_full(mut self, full: bool) -> Self {
        self.synchronous_full = full;
        self
    }
}

/// A [`Store`](cronflow_core::Store) in a SQLite database: a file (WAL mode) or memory.
///
/// A file store's connections are opened by sqlx with `journal_mode=WAL`,
/// `synchronous=NORMAL` (or `FULL`), a busy timeout and `foreign_keys=OFF` (the schema has no
/// foreign keys); the pool skips the ping before handing out a connection. Writes use
/// `BEGIN IMMEDIATE` transactions, so concurrent writers queue on the busy timeout instead of
/// failing on a lock upgrade.
///
/// One SQLite file has one engine: the store is not
/// [shared](cronflow_core::Store::shared). It keeps the trait's lease defaults (claiming
/// returns every running run with fence 0, nothing is held, releasing does nothing) and
/// ignores the [`claim`](cronflow_core::CommitBatch::claim) and fences of a batch. For several
/// engine instances, use PostgreSQL.
///
/// Cloning is cheap: clones share the connection pool.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    db: DatabaseConnection,
}

impl SqliteStore {
    /// Opens the store in the SQLite file at `path` with default [`SqliteOptions`], creating
    /// the file if it is missing and migrating its schema.
    ///
    /// Fails with [`StoreError::Incompatible`], leaving the file untouched, when the file is
    /// not a SQLite database, is someone else's SQLite database, or has a newer schema than
    /// this code knows.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Like [`SqliteStore::open`], with explicit options.
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let location = path.display().to_string();
        probe::check_file(path, &location).await?;
        let synchronous = if options.synchronous_full {
            SqliteSynchronous::Full
        } else {
            SqliteSynchronous::Normal
        };
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(options.busy_timeout)
            .foreign_keys(false)
            .disable_statement_logging();
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections)
            .test_before_acquire(false)
            .connect_with(connect)
            .await
            .map_err(|e| StoreError::Open { location: location.clone(), message: e.to_string() })?;
        Self::start(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool), &location).await
    }

    /// Opens a new, empty store in memory: nothing is written to disk and the data is gone
    /// when the last clone is dropped. Each call creates a separate database.
    ///
    /// The pool holds a single connection that is never closed, so every clone sees the
    /// same data.
    pub async fn open_in_memory() -> Result<Self, StoreError> {
        let location = ":memory:";
        let connect = SqliteConnectOptions::new()
            .in_memory(true)
            .foreign_keys(false)
            .disable_statement_logging();
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .connect_with(connect)
            .await
            .map_err(|e| StoreError::Open { location: location.into(), message: e.to_string() })?;
        Self::start(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool), location).await
    }

    async fn start(db: DatabaseConnection, location: &str) -> Result<Self, StoreError> {
        schema::migrate(&db, location).await?;
        Ok(Self { db })
    }

    /// Closes the pool, waiting for connections in use to be returned. Other clones of this
    /// store fail afterwards.
    pub async fn close(self) -> Result<(), StoreError> {
        self.db.close().await.map_err(|e| StoreError::Database(e.to_string()))
    }
}

crate::store_impl::delegate_store!(SqliteStore);

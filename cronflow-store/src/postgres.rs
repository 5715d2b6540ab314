//! [`PostgresStore`]: connecting to a PostgreSQL database and the
//! [`Store`](cronflow_core::Store) impl.

use std::time::Duration;

use cronflow_core::StoreError;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPoolOptions};
use sea_orm::sqlx::{ConnectOptions as _, Connection as _};
use sea_orm::{DatabaseConnection, SqlxPostgresConnector};

use crate::redact::{redact_url, scrub};
use crate::schema;

/// How to connect to PostgreSQL; see [`PostgresStore::connect_with`].
///
/// ```
/// use std::time::Duration;
/// use cronflow_store::PostgresOptions;
///
/// let options = PostgresOptions::default()
///     .max_connections(16)
///     .connect_timeout(Duration::from_secs(3));
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    max_connections: u32,
    connect_timeout: Duration,
    idle_in_transaction_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            connect_timeout: Duration::from_secs(10),
            idle_in_transaction_timeout: Duration::from_secs(2),
        }
    }
}

impl PostgresOptions {
    /// Connections in the pool (default 8, at least 1). Commits come from one task per engine
    /// instance; the other connections serve reads (`wait`, listings, recovery).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// How long connecting may take (default 10 s): at start, a database that does not
    /// answer within it is an [`StoreError::Open`] error; later, a statement waits at most
    /// this long for a connection of the pool.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long the server lets a session sit inside an open transaction (default 2 s):
    /// PostgreSQL's `idle_in_transaction_session_timeout`. An instance frozen in the middle of
    /// a commit (a VM pause, SIGSTOP) holds row locks that stop other instances from taking
    /// its runs over; this ends such a session and frees them. When the instance wakes, its
    /// commit fails, is retried, and finds its leases lost.
    pub fn idle_in_transaction_timeout(mut self, timeout: Duration) -> Self {
        self.idle_in_transaction_timeout = timeout.max(Duration::from_millis(100));
        self
    }
}

/// A [`Store`](cronflow_core::Store) in a PostgreSQL database.
///
/// Its tables live in the connection's current schema: the first schema of the
/// `search_path` that exists (`public` by default). To give cronflow a schema of its own,
/// create it and name it in the URL:
/// `postgres://host/db?options=-c%20search_path%3Dcronflow`.
///
/// The pool does not ping a connection before handing it out (that would be one more round
/// trip per statement); the application name is `cronflow` unless the URL sets one.
///
/// The store is [shared](cronflow_core::Store::shared): several engine instances may use one
/// database, each executing the runs it holds under a lease, with fencing (see the crate
/// docs, "Several instances").
///
/// Cloning is cheap: clones share the connection pool.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    db: DatabaseConnection,
    notifications: Notifications,
}

/// The `LISTEN cronflow_work` side of the wake-up: one listening connection per store
/// (shared by its clones), opened on first use and reopened after an error.
#[derive(Clone)]
pub(crate) struct Notifications {
    pool: sea_orm::sqlx::PgPool,
    listener: std::sync::Arc<tokio::sync::Mutex<Option<PgListener>>>,
}

impl std::fmt::Debug for Notifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifications").finish_non_exhaustive()
    }
}

impl Notifications {
    /// Waits for the next notification; after an error, waits a second so that the caller
    /// falls back to polling rather than spinning.
    pub(crate) async fn next(&self) {
        let mut listener = self.listener.lock().await;
        if listener.is_none() {
            match PgListener::connect_with(&self.pool).await {
                Ok(mut l) => match l.listen("cronflow_work").await {
                    Ok(()) => *listener = Some(l),
                    Err(e) => tracing::warn!(error = %e, "LISTEN failed; polling only"),
                },
                Err(e) => tracing::warn!(error = %e, "no listening connection; polling only"),
            }
        }
        let Some(l) = listener.as_mut() else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            return;
        };
        if let Err(e) = l.recv().await {
            tracing::warn!(error = %e, "listening connection lost; reopening");
            *listener = None;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`, with
    /// the parameters sqlx accepts, such as `sslmode` and `options`) with default
    /// [`PostgresOptions`], and migrates its schema.
    ///
    /// Fails with [`StoreError::Open`] when the database cannot be reached or refuses the
    /// login, and with [`StoreError::Incompatible`] when its schema is newer than this code
    /// knows or has tables of another application with cronflow's table names; the location
    /// in either error is the URL without its password.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// Like [`PostgresStore::connect`], with explicit options.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let location = redact_url(url);
        let open_error = |message: String| StoreError::Open { location: location.clone(), message };
        let mut connect: PgConnectOptions = url
            .parse()
            .map_err(|e: sea_orm::sqlx::Error| open_error(scrub(&e.to_string(), url)))?;
        if connect.get_application_name().is_none() {
            connect = connect.application_name("cronflow");
        }
        let idle_ms = options.idle_in_transaction_timeout.as_millis().to_string();
        let connect = connect
            .options([("idle_in_transaction_session_timeout", idle_ms.as_str())])
            .disable_statement_logging();

        // A first connection made directly, so that a database that is down fails at once
        // with the reason: the pool would retry a refused connection until its timeout and
        // then report only that it timed out.
        let first =
            tokio::time::timeout(options.connect_timeout, PgConnection::connect_with(&connect))
                .await
                .map_err(|_| {
                    open_error(format!("no connection within {:?}", options.connect_timeout))
                })?
                .map_err(|e| open_error(scrub(&e.to_string(), url)))?;
        if let Err(e) = first.close().await {
            tracing::debug!(error = %e, "closing the first connection failed");
        }

        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.connect_timeout)
            .test_before_acquire(false)
            .connect_with(connect)
            .await
            .map_err(|e| open_error(scrub(&e.to_string(), url)))?;
        let notifications =
            Notifications { pool: pool.clone(), listener: std::sync::Arc::default() };
        let db = SqlxPostgresConnector::from_sqlx_postgres_pool(pool);
        schema::migrate(&db, &location).await?;
        Ok(Self { db, notifications })
    }

    /// Closes the pool, waiting for connections in use to be returned. Other clones of this
    /// store fail afterwards.
    pub async fn close(self) -> Result<(), StoreError> {
        self.db.close().await.map_err(|e| StoreError::Database(e.to_string()))
    }
}

crate::store_impl::delegate_store!(PostgresStore, shared);

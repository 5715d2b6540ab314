//! Test support (feature `testing`): a PostgreSQL schema of its own for one test or
//! benchmark, so that tests run in parallel on one database without seeing each other.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cronflow_core::StoreError> {
//! use cronflow_store::PostgresStore;
//! use cronflow_store::testing::{TestSchema, test_database_url};
//!
//! let Some(url) = test_database_url() else { return Ok(()) }; // prints that it is skipped
//! let schema = TestSchema::create(&url).await?;
//! let store = PostgresStore::connect(&schema.url()).await?;
//! // ... the schema and everything in it are dropped with `schema` ...
//! # Ok(()) }
//! ```

use std::io::Write as _;
use std::time::Duration;

use cronflow_core::StoreError;
use sea_orm::sqlx::postgres::PgConnection;
use sea_orm::sqlx::{AssertSqlSafe, Connection, Executor};

/// The environment variable naming the PostgreSQL database tests may use, such as
/// `postgres://postgres@127.0.0.1:5432/test`.
pub const TEST_DATABASE_URL_VAR: &str = "CRONFLOW_TEST_DATABASE_URL";

/// The database URL of [`TEST_DATABASE_URL_VAR`], or `None` after printing (on stderr, past
/// the test harness's capture) that the PostgreSQL part of the running test is skipped.
pub fn test_database_url() -> Option<String> {
    match std::env::var(TEST_DATABASE_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            let test = std::thread::current().name().unwrap_or("a test").to_owned();
            let _ = writeln!(
                std::io::stderr(),
                "note: {test}: PostgreSQL part skipped ({TEST_DATABASE_URL_VAR} is not set)"
            );
            None
        }
    }
}

/// `url` with `schema` as every connection's `search_path` (an `options` query parameter).
pub fn with_search_path(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

fn failed(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("{what}: {e}"))
}

/// A schema `cf_test_<random>` created for one test and dropped (with everything in it) when
/// this value is dropped, even during a panic.
#[derive(Debug)]
pub struct TestSchema {
    base_url: String,
    name: String,
}

impl TestSchema {
    /// Creates a fresh schema in the database at `base_url` (connecting for at most 10 s).
    pub async fn create(base_url: &str) -> Result<Self, StoreError> {
        let name = format!("cf_test_{}", uuid::Uuid::now_v7().simple());
        let schema = Self { base_url: base_url.to_owned(), name };
        schema.exec_at(&schema.base_url, &format!("CREATE SCHEMA {}", schema.name)).await?;
        Ok(schema)
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database URL with this schema as every connection's `search_path`: give it to
    /// [`PostgresStore::connect`](crate::PostgresStore::connect).
    pub fn url(&self) -> String {
        with_search_path(&self.base_url, &self.name)
    }

    /// Runs `sql` in this schema.
    pub async fn exec(&self, sql: &str) -> Result<(), StoreError> {
        self.exec_at(&self.url(), sql).await
    }

    /// The first column (text) of the first row of `sql`, run in this schema: `None` when
    /// there is no row or the value is NULL.
    pub async fn query_text(&self, sql: &str) -> Result<Option<String>, StoreError> {
        let mut conn = connect(&self.url()).await?;
        let value: Option<Option<String>> =
            sea_orm::sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
                .fetch_optional(&mut conn)
                .await
                .map_err(|e| failed(sql, e))?;
        let _ = conn.close().await;
        Ok(value.flatten())
    }

    async fn exec_at(&self, url: &str, sql: &str) -> Result<(), StoreError> {
        let mut conn = connect(url).await?;
        conn.execute(AssertSqlSafe(sql.to_owned())).await.map_err(|e| failed(sql, e))?;
        let _ = conn.close().await;
        Ok(())
    }
}

async fn connect(url: &str) -> Result<PgConnection, StoreError> {
    tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(url))
        .await
        .map_err(|_| failed("connecting to PostgreSQL", "no connection within 10 s"))?
        .map_err(|e| failed("connecting to PostgreSQL", e))
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // On a thread of its own with its own runtime: this may run inside the test's
        // runtime, and during a panic.
        let (url, name) = (self.base_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut conn = connect(&url).await?;
                conn.execute("SET lock_timeout = '10s'").await.map_err(|e| failed("lock", e))?;
                let drop = format!("DROP SCHEMA IF EXISTS {name} CASCADE");
                conn.execute(AssertSqlSafe(drop.clone())).await.map_err(|e| failed(&drop, e))?;
                let _ = conn.close().await;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            let _ = writeln!(std::io::stderr(), "warning: schema {} was not dropped", self.name);
        }
    }
}

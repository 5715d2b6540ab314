//! The databases the webhook tests run on: a SQLite file always, and PostgreSQL when
//! `CRONFLOW_TEST_DATABASE_URL` is set (e.g. `postgres://postgres@127.0.0.1:5432/test`),
//! each test in a schema of its own (`cf_test_<uuid>`), dropped afterwards even on panic.

use std::io::Write as _;

use cronflow_core::{Engine, EngineBuilder, Executor, NoStore, Store};
use cronflow_store::{PostgresStore, SqliteStore};
use sea_orm::sqlx::postgres::PgConnection;
use sea_orm::sqlx::{AssertSqlSafe, Connection, Executor as _};
use tempfile::TempDir;

/// The variable naming the PostgreSQL database the tests may use.
const DATABASE_URL_VAR: &str = "CRONFLOW_TEST_DATABASE_URL";

/// A fresh database for one test.
pub(crate) enum Backend {
    /// A SQLite file in a temporary directory.
    Sqlite(TempDir),
    /// A PostgreSQL schema of its own.
    Postgres(PgSchema),
}

impl Backend {
    /// `"SQLite file"` or `"PostgreSQL"`, for assertion messages.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "SQLite file",
            Backend::Postgres(_) => "PostgreSQL",
        }
    }

    /// Starts an engine on this database, configured by `configure`.
    pub(crate) async fn start<E: Executor>(
        &self,
        executor: E,
        configure: impl FnOnce(EngineBuilder<NoStore, E>) -> EngineBuilder<NoStore, E>,
    ) -> Engine {
        let builder = configure(Engine::builder().executor(executor));
        match self {
            Backend::Sqlite(dir) => {
                let store = SqliteStore::open(dir.path().join("cronflow.db")).await.unwrap();
                start_on(builder, store).await
            }
            Backend::Postgres(schema) => {
                let store = PostgresStore::connect(&schema.url()).await.unwrap();
                start_on(builder, store).await
            }
        }
    }
}

async fn start_on<S: Store, E: Executor>(builder: EngineBuilder<NoStore, E>, store: S) -> Engine {
    builder.store(store).start().await.expect("the engine starts")
}

/// Runs `check` on a fresh SQLite file, then on a fresh PostgreSQL schema when
/// `CRONFLOW_TEST_DATABASE_URL` is set (printing that it is skipped otherwise).
pub(crate) async fn on_every_backend<F, Fut>(check: F)
where
    F: Fn(Backend) -> Fut,
    Fut: Future<Output = ()>,
{
    check(Backend::Sqlite(tempfile::tempdir().unwrap())).await;
    match std::env::var(DATABASE_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => {
            check(Backend::Postgres(PgSchema::create(&url).await)).await;
        }
        _ => {
            let test = std::thread::current().name().unwrap_or("a test").to_owned();
            // Straight to stderr, past the harness's capture, so that the skip shows.
            let _ = writeln!(
                std::io::stderr(),
                "note: {test}: PostgreSQL part skipped ({DATABASE_URL_VAR} is not set)"
            );
        }
    }
}

/// A PostgreSQL schema of its own for one test, dropped with it.
pub(crate) struct PgSchema {
    base_url: String,
    name: String,
}

impl PgSchema {
    pub(crate) async fn create(base_url: &str) -> Self {
        let name = format!("cf_test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = PgConnection::connect(base_url).await.expect("connect to PostgreSQL");
        conn.execute(AssertSqlSafe(format!("CREATE SCHEMA {name}"))).await.unwrap();
        conn.close().await.unwrap();
        Self { base_url: base_url.to_owned(), name }
    }

    /// The database's URL with this schema as every connection's `search_path`.
    pub(crate) fn url(&self) -> String {
        let sep = if self.base_url.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-c%20search_path%3D{}", self.base_url, self.name)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        // On a thread of its own with its own runtime: this may run inside the test's
        // runtime, and during a panic.
        let (url, name) = (self.base_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&url).await?;
                conn.execute("SET lock_timeout = '10s'").await?;
                conn.execute(AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {name} CASCADE")))
                    .await?;
                conn.close().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            let _ = writeln!(std::io::stderr(), "warning: schema {} was not dropped", self.name);
        }
    }
}

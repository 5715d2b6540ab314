//! The databases the webhook tests run on: a SQLite file always, and PostgreSQL when
//! `CRONFLOW_TEST_DATABASE_URL` is set (e.g. `postgres://postgres@127.0.0.1:5432/test`),
//! each test in a schema of its own (`cf_test_<uuid>`), dropped afterwards even on panic.

use cronflow_core::{Engine, EngineBuilder, Executor, NoStore, Store};
use cronflow_store::testing::{TestSchema, test_database_url};
use cronflow_store::{PostgresStore, SqliteStore};
use tempfile::TempDir;

/// A fresh database for one test.
pub(crate) enum Backend {
    /// A SQLite file in a temporary directory.
    Sqlite(TempDir),
    /// A PostgreSQL schema of its own.
    Postgres(TestSchema),
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
    if let Some(url) = test_database_url() {
        let schema = TestSchema::create(&url).await.expect("create a test schema");
        check(Backend::Postgres(schema)).await;
    }
}

/// The store's per-test PostgreSQL schema, under the name the tests use.
pub(crate) type PgSchema = TestSchema;

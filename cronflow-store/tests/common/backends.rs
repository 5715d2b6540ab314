//! The backends the store tests run on: a SQLite file, SQLite in memory, and PostgreSQL when
//! `CRONFLOW_TEST_DATABASE_URL` is set (e.g. `postgres://postgres@127.0.0.1:5432/test`).
//!
//! Every PostgreSQL test gets a schema of its own, `cf_test_<random>`, created for it and
//! dropped when the test is done (even when it panics): the stores connect with
//! `?options=-c search_path=<schema>`, so tests run in parallel without seeing each other.

use std::future::Future;
use std::path::PathBuf;

use async_trait::async_trait;
use cronflow_core::{
    CommitBatch, CommitOutcome, RecordedEvent, RunId, RunQuery, RunRecord, RunReport, Store,
    StoreError, StoredRun, WorkflowDef,
};
use cronflow_store::testing::TestSchema;
use cronflow_store::{PostgresStore, SqliteStore};
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sea_orm::sqlx::{AssertSqlSafe, ConnectOptions, Connection, Executor};
use tempfile::TempDir;

#[allow(unused_imports)]
pub(crate) use cronflow_store::testing::{
    TEST_DATABASE_URL_VAR as DATABASE_URL_VAR, test_database_url as postgres_url,
};

/// A store of either backend.
#[derive(Debug, Clone)]
pub(crate) enum TestStore {
    /// SQLite, file or memory.
    Sqlite(SqliteStore),
    /// PostgreSQL.
    Postgres(PostgresStore),
}

macro_rules! each {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            TestStore::Sqlite($store) => $call,
            TestStore::Postgres($store) => $call,
        }
    };
}

#[async_trait]
impl Store for TestStore {
    async fn save_workflow(&self, def: &WorkflowDef) -> Result<u32, StoreError> {
        each!(self, s => s.save_workflow(def).await)
    }
    async fn load_workflow(
        &self,
        id: &str,
        revision: u32,
    ) -> Result<Option<WorkflowDef>, StoreError> {
        each!(self, s => s.load_workflow(id, revision).await)
    }
    async fn commit(&self, batch: &CommitBatch) -> Result<CommitOutcome, StoreError> {
        each!(self, s => s.commit(batch).await)
    }
    async fn schedule_cursor(
        &self,
        id: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        each!(self, s => s.schedule_cursor(id).await)
    }
    async fn advance_schedule(
        &self,
        id: &str,
        from: Option<chrono::DateTime<chrono::Utc>>,
        to: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        each!(self, s => s.advance_schedule(id, from, to).await)
    }
    async fn prune_trigger_keys(
        &self,
        prefix: &str,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError> {
        each!(self, s => s.prune_trigger_keys(prefix, before).await)
    }
    async fn active_runs(&self) -> Result<Vec<StoredRun>, StoreError> {
        each!(self, s => s.active_runs().await)
    }
    async fn run(&self, id: RunId) -> Result<Option<RunRecord>, StoreError> {
        each!(self, s => s.run(id).await)
    }
    async fn run_events(&self, id: RunId) -> Result<Vec<RecordedEvent>, StoreError> {
        each!(self, s => s.run_events(id).await)
    }
    async fn run_report(&self, id: RunId) -> Result<Option<RunReport>, StoreError> {
        each!(self, s => s.run_report(id).await)
    }
    async fn list_runs(&self, query: &RunQuery) -> Result<Vec<RunRecord>, StoreError> {
        each!(self, s => s.list_runs(query).await)
    }
    async fn state_get(
        &self,
        namespace: &str,
        key: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<cronflow_core::Json>, StoreError> {
        each!(self, s => s.state_get(namespace, key, now).await)
    }
    async fn state_set(
        &self,
        namespace: &str,
        key: &str,
        value: cronflow_core::Json,
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), StoreError> {
        each!(self, s => s.state_set(namespace, key, value, expires_at).await)
    }
    async fn state_incr(
        &self,
        namespace: &str,
        key: &str,
        by: i64,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<i64, StoreError> {
        each!(self, s => s.state_incr(namespace, key, by, now).await)
    }
    async fn state_delete(
        &self,
        namespace: &str,
        key: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        each!(self, s => s.state_delete(namespace, key, now).await)
    }
    async fn state_purge_expired(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError> {
        each!(self, s => s.state_purge_expired(now).await)
    }
}

/// A fresh PostgreSQL schema of its own for one test, dropped with it: the store's
/// [`TestSchema`], with calls that fail the test instead of returning errors.
pub(crate) struct PgSchema(TestSchema);

impl PgSchema {
    /// Creates `cf_test_<random>` in the database at `base_url`.
    pub(crate) async fn create(base_url: &str) -> Self {
        Self(TestSchema::create(base_url).await.expect("create a test schema"))
    }

    /// Its name.
    pub(crate) fn name(&self) -> &str {
        self.0.name()
    }

    /// The URL of the database with this schema as the `search_path`.
    pub(crate) fn url(&self) -> String {
        self.0.url()
    }

    /// Runs `sql` in this schema.
    pub(crate) async fn exec(&self, sql: &str) {
        self.0.exec(sql).await.unwrap_or_else(|e| panic!("{e}"));
    }

    /// The first column of the first row of `sql` (a text column), run in this schema: `None`
    /// when there is no row or the value is NULL.
    pub(crate) async fn query_text(&self, sql: &str) -> Option<String> {
        self.0.query_text(sql).await.unwrap_or_else(|e| panic!("{e}"))
    }
}

#[allow(unused_imports)]
pub(crate) use cronflow_store::testing::with_search_path;

/// A durable database to test on: it can be opened again (a restart) and changed behind the
/// store's back.
pub(crate) struct TestDb {
    kind: Kind,
}

enum Kind {
    SqliteFile { _dir: TempDir, path: PathBuf },
    Postgres(PgSchema),
}

impl TestDb {
    /// A new SQLite file in a temporary directory.
    pub(crate) fn sqlite_file() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        Self { kind: Kind::SqliteFile { _dir: dir, path } }
    }

    /// A new schema in the PostgreSQL database at `url`.
    pub(crate) async fn postgres(url: &str) -> Self {
        Self { kind: Kind::Postgres(PgSchema::create(url).await) }
    }

    /// Which backend this is.
    pub(crate) fn name(&self) -> &'static str {
        match self.kind {
            Kind::SqliteFile { .. } => "SQLite file",
            Kind::Postgres(_) => "PostgreSQL",
        }
    }

    /// Whether this is PostgreSQL.
    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self.kind, Kind::Postgres(_))
    }

    /// Opens (again) a store on this database.
    pub(crate) async fn open(&self) -> TestStore {
        match &self.kind {
            Kind::SqliteFile { path, .. } => {
                TestStore::Sqlite(SqliteStore::open(path).await.unwrap())
            }
            Kind::Postgres(schema) => {
                TestStore::Postgres(PostgresStore::connect(&schema.url()).await.unwrap())
            }
        }
    }

    /// The first column (text) of the first row of `sql`, read behind the store's back.
    pub(crate) async fn query_text(&self, sql: &str) -> Option<String> {
        match &self.kind {
            Kind::SqliteFile { path, .. } => {
                let mut conn: SqliteConnection =
                    SqliteConnectOptions::new().filename(path).connect().await.unwrap();
                let value: Option<Option<String>> =
                    sea_orm::sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
                        .fetch_optional(&mut conn)
                        .await
                        .unwrap();
                conn.close().await.unwrap();
                value.flatten()
            }
            Kind::Postgres(schema) => schema.query_text(sql).await,
        }
    }

    /// Runs `sql` on the database behind the store's back.
    pub(crate) async fn exec(&self, sql: &str) {
        match &self.kind {
            Kind::SqliteFile { path, .. } => {
                let mut conn: SqliteConnection =
                    SqliteConnectOptions::new().filename(path).connect().await.unwrap();
                conn.execute(AssertSqlSafe(sql.to_owned())).await.unwrap();
                conn.close().await.unwrap();
            }
            Kind::Postgres(schema) => schema.exec(sql).await,
        }
    }
}

/// Runs `check` on a fresh store of every backend: a SQLite file, SQLite in memory, and
/// PostgreSQL when [`DATABASE_URL_VAR`] is set (saying so when it is not).
pub(crate) async fn on_every_backend<F, Fut>(check: F)
where
    F: Fn(TestStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let file = TestDb::sqlite_file();
    check(file.open().await).await;
    check(TestStore::Sqlite(SqliteStore::open_in_memory().await.unwrap())).await;
    if let Some(url) = postgres_url() {
        let db = TestDb::postgres(&url).await;
        check(db.open().await).await;
    }
}

/// Runs `check` on a fresh durable database of every backend: a SQLite file, and a
/// PostgreSQL schema when [`DATABASE_URL_VAR`] is set (saying so when it is not).
pub(crate) async fn on_every_database<F, Fut>(check: F)
where
    F: Fn(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    check(TestDb::sqlite_file()).await;
    if let Some(url) = postgres_url() {
        check(TestDb::postgres(&url).await).await;
    }
}

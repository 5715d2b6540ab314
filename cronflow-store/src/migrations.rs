//! The schema migrations, for both backends side by side.
//!
//! Migration `i` (0-based) takes a schema from version `i` to `i + 1`, on SQLite and on
//! PostgreSQL alike: a version number means the same tables and columns on both. Never edit a
//! released entry: append a new one (and add its new tables to [`TABLES`]).
//!
//! PostgreSQL uses its natural types where the shared row codec allows: `uuid` run ids (16
//! bytes instead of 36 characters, in `runs` and in the `run_events` key). Integers are all
//! `BIGINT`, the codec reading every integer column as an `i64`; next to the `BIGINT` times,
//! alignment would pad an `INTEGER` to 8 bytes anyway. JSON stays `TEXT`, never `jsonb`, so
//! that documents come back byte for byte.
//!
//! Migration 2 adds what several instances sharing a database need: `owner`, `lease_until`
//! and `fence` columns on `runs` (`ALTER TABLE ... ADD COLUMN` with a constant default only
//! changes the catalog in PostgreSQL 11 and later, so it is instant on a large table) and a
//! partial index over the running runs by lease, which is what claiming scans. SQLite gets the
//! same columns (unused there: one SQLite file has one engine), so that a version still means
//! the same tables on both backends.
//!
//! Migration 3 adds the tables of trigger sources: `trigger_keys` (one row per keyed trigger,
//! the key its primary key) and `schedules` (one cursor per schedule).
//!
//! Migration 4 adds `cronflow_state`, the workflow state: one row per `(namespace, key)`,
//! the value as JSON text, an optional expiry in microseconds.

/// One migration: the statements applying it on each backend, in order.
pub(crate) struct Migration {
    /// The SQLite statements.
    pub(crate) sqlite: &'static [&'static str],
    /// The PostgreSQL statements.
    pub(crate) postgres: &'static [&'static str],
}

/// Every table the migrations create, `cronflow_meta` included.
pub(crate) const TABLES: &[&str] = &[
    "cronflow_meta",
    "workflows",
    "runs",
    "run_events",
    "trigger_keys",
    "schedules",
    "cronflow_state",
];

/// The ordered migrations.
pub(crate) const MIGRATIONS: &[Migration] = &[
    // 1: workflows, runs, run_events.
    Migration {
        sqlite: &[
            "CREATE TABLE workflows (
                id TEXT NOT NULL,
                revision INTEGER NOT NULL,
                version TEXT,
                definition TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (id, revision)
            )",
            "CREATE TABLE runs (
                id TEXT NOT NULL PRIMARY KEY,
                workflow_id TEXT NOT NULL,
                revision INTEGER NOT NULL,
                status TEXT NOT NULL,
                payload TEXT NOT NULL,
                output TEXT,
                failure TEXT,
                created_at BIGINT NOT NULL,
                finished_at BIGINT
            )",
            "CREATE INDEX runs_status_created ON runs (status, created_at)",
            "CREATE INDEX runs_workflow_created ON runs (workflow_id, created_at)",
            "CREATE INDEX runs_created ON runs (created_at)",
            // A rowid table (appends go to its last pages) with a unique index, rather than a
            // WITHOUT ROWID table clustered on (run_id, seq): a group commit appends a few
            // events to each of many runs in flight, and clustering made every commit rewrite
            // one large leaf page per run (measured: 2.8x the bytes written per commit).
            "CREATE TABLE run_events (
                run_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                at BIGINT NOT NULL,
                kind TEXT NOT NULL,
                task TEXT,
                attempt INTEGER,
                data TEXT NOT NULL
            )",
            "CREATE UNIQUE INDEX run_events_run_seq ON run_events (run_id, seq)",
        ],
        postgres: &[
            "CREATE TABLE workflows (
                id TEXT NOT NULL,
                revision BIGINT NOT NULL,
                version TEXT,
                definition TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (id, revision)
            )",
            "CREATE TABLE runs (
                id UUID NOT NULL PRIMARY KEY,
                workflow_id TEXT NOT NULL,
                revision BIGINT NOT NULL,
                status TEXT NOT NULL,
                payload TEXT NOT NULL,
                output TEXT,
                failure TEXT,
                created_at BIGINT NOT NULL,
                finished_at BIGINT
            )",
            "CREATE INDEX runs_status_created ON runs (status, created_at)",
            "CREATE INDEX runs_workflow_created ON runs (workflow_id, created_at)",
            "CREATE INDEX runs_created ON runs (created_at)",
            // A heap table, so appends never rewrite other runs' rows; the key is a separate
            // B-tree, in which UUID v7 run ids arrive roughly in order.
            "CREATE TABLE run_events (
                run_id UUID NOT NULL,
                seq BIGINT NOT NULL,
                at BIGINT NOT NULL,
                kind TEXT NOT NULL,
                task TEXT,
                attempt BIGINT,
                data TEXT NOT NULL,
                CONSTRAINT run_events_run_seq PRIMARY KEY (run_id, seq)
            )",
        ],
    },
    // 2: leases. A running run is held while `lease_until` is set (and `owner` with it); the
    // claimable runs are those whose `lease_until` is NULL or past.
    Migration {
        sqlite: &[
            "ALTER TABLE runs ADD COLUMN owner TEXT",
            "ALTER TABLE runs ADD COLUMN lease_until BIGINT",
            "ALTER TABLE runs ADD COLUMN fence BIGINT NOT NULL DEFAULT 0",
            "CREATE INDEX runs_running_lease ON runs (lease_until) WHERE status = 'running'",
        ],
        postgres: &[
            "ALTER TABLE runs ADD COLUMN owner UUID, ADD COLUMN lease_until BIGINT, \
             ADD COLUMN fence BIGINT NOT NULL DEFAULT 0",
            "CREATE INDEX runs_running_lease ON runs (lease_until) WHERE status = 'running'",
        ],
    },
    // 3: trigger sources. `runs.context` keeps what the trigger source recorded of the delivery
    // (a webhook's headers and raw body). `trigger_keys` makes keyed triggers idempotent (a cron slot, a
    // webhook idempotency key, a polled item): the primary key is the whole mechanism.
    // `schedules` holds each schedule's cursor, the next slot it fires.
    Migration {
        sqlite: &[
            "ALTER TABLE runs ADD COLUMN context TEXT",
            "CREATE TABLE trigger_keys (
                key TEXT NOT NULL PRIMARY KEY,
                run_id TEXT NOT NULL,
                created_at BIGINT NOT NULL
            )",
            "CREATE TABLE schedules (
                id TEXT NOT NULL PRIMARY KEY,
                next_slot BIGINT NOT NULL,
                updated_at BIGINT NOT NULL
            )",
        ],
        postgres: &[
            "ALTER TABLE runs ADD COLUMN context TEXT",
            "CREATE TABLE trigger_keys (
                key TEXT NOT NULL PRIMARY KEY,
                run_id UUID NOT NULL,
                created_at BIGINT NOT NULL
            )",
            "CREATE TABLE schedules (
                id TEXT NOT NULL PRIMARY KEY,
                next_slot BIGINT NOT NULL,
                updated_at BIGINT NOT NULL
            )",
        ],
    },
    // 4: workflow state, a key-value map per namespace (`workflow:<id>`, `global`). The
    // primary key is the lookup; the partial index serves purging expired values. The table
    // is `cronflow_state`, not `state`, so that it cannot collide with a host's table in a
    // shared PostgreSQL schema.
    Migration {
        sqlite: &[
            "CREATE TABLE cronflow_state (
                namespace TEXT NOT NULL,
                key TEXT NOT NULL,
                value TEXT NOT NULL,
                expires_at BIGINT,
                PRIMARY KEY (namespace, key)
            )",
            "CREATE INDEX cronflow_state_expires ON cronflow_state (expires_at) \
             WHERE expires_at IS NOT NULL",
        ],
        postgres: &[
            "CREATE TABLE cronflow_state (
                namespace TEXT NOT NULL,
                key TEXT NOT NULL,
                value TEXT NOT NULL,
                expires_at BIGINT,
                PRIMARY KEY (namespace, key)
            )",
            "CREATE INDEX cronflow_state_expires ON cronflow_state (expires_at) \
             WHERE expires_at IS NOT NULL",
        ],
    },
];

/// The schema version this code writes and reads.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

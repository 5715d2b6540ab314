//! What differs between the SQL backends, in one place: placeholders (`?` or `$1`), how a
//! run id is stored (text or `uuid`), transaction modes. Everything else (the statements, the
//! group commit, the queries, the row codec) is shared.

use std::borrow::Cow;
use std::fmt::Write as _;

use cronflow_core::{RunId, StoreError};
use sea_orm::{
    AccessMode, ConnectionTrait, DbBackend, IsolationLevel, QueryResult, SqliteTransactionMode,
    Statement, TransactionOptions, Value,
};

use crate::codec::{get, parse_run_id};

/// The SQL dialect of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// SQLite: `?` placeholders, run ids as text.
    Sqlite,
    /// PostgreSQL: `$1` placeholders, run ids as `uuid`.
    Postgres,
}

/// The SQL type of a column of a `VALUES` list, for the explicit casts PostgreSQL needs there
/// (in a `VALUES` list a parameter has no column to take its type from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Col {
    /// A run id.
    RunId,
    /// Text.
    Text,
    /// A 64-bit integer.
    Int,
}

impl Dialect {
    /// The dialect of `conn`. Only SQLite and PostgreSQL connections are ever made by this
    /// crate.
    pub(crate) fn of(conn: &impl ConnectionTrait) -> Self {
        match conn.get_database_backend() {
            DbBackend::Postgres => Dialect::Postgres,
            _ => Dialect::Sqlite,
        }
    }

    /// A statement from its text (placeholders already in this dialect) and values.
    pub(crate) fn statement(self, sql: impl Into<String>, values: Vec<Value>) -> Statement {
        let backend = match self {
            Dialect::Sqlite => DbBackend::Sqlite,
            Dialect::Postgres => DbBackend::Postgres,
        };
        Statement::from_sql_and_values(backend, sql, values)
    }

    /// `sql` written with `?` placeholders, in this dialect: unchanged for SQLite, each `?`
    /// numbered `$1`, `$2`, ... in order for PostgreSQL. Only for this crate's own SQL,
    /// which has no `?` inside literals.
    pub(crate) fn numbered(self, sql: &str) -> Cow<'_, str> {
        match self {
            Dialect::Sqlite => Cow::Borrowed(sql),
            Dialect::Postgres => {
                let mut out = String::with_capacity(sql.len() + 16);
                let mut n = 0;
                for c in sql.chars() {
                    if c == '?' {
                        n += 1;
                        let _ = write!(out, "${n}");
                    } else {
                        out.push(c);
                    }
                }
                Cow::Owned(out)
            }
        }
    }

    /// `rows` groups of `cols` placeholders: `(?,?),(?,?)` or `($1,$2),($3,$4)` for
    /// `rows = 2, cols = 2`.
    pub(crate) fn rows(self, rows: usize, cols: usize) -> String {
        self.build_rows(rows, cols, |_| "")
    }

    /// Like [`Dialect::rows`], with the column types of `cols` as explicit casts on
    /// PostgreSQL: `($1::uuid,$2::text)`. SQLite needs none.
    pub(crate) fn typed_rows(self, rows: usize, cols: &[Col]) -> String {
        match self {
            Dialect::Sqlite => self.rows(rows, cols.len()),
            Dialect::Postgres => self.build_rows(rows, cols.len(), |c| match cols[c] {
                Col::RunId => "::uuid",
                Col::Text => "::text",
                Col::Int => "::bigint",
            }),
        }
    }

    fn build_rows(self, rows: usize, cols: usize, cast: impl Fn(usize) -> &'static str) -> String {
        let mut out = String::with_capacity(rows * cols * 8);
        let mut n = 0;
        for r in 0..rows {
            if r > 0 {
                out.push(',');
            }
            out.push('(');
            for c in 0..cols {
                if c > 0 {
                    out.push(',');
                }
                match self {
                    Dialect::Sqlite => out.push('?'),
                    Dialect::Postgres => {
                        n += 1;
                        let _ = write!(out, "${n}{}", cast(c));
                    }
                }
            }
            out.push(')');
        }
        out
    }

    /// A run id as bound: hyphenated lower-case text for SQLite, a `uuid` for PostgreSQL.
    pub(crate) fn run_id(self, id: RunId) -> Value {
        match self {
            Dialect::Sqlite => Value::String(Some(id.as_uuid().hyphenated().to_string())),
            Dialect::Postgres => Value::Uuid(Some(id.as_uuid())),
        }
    }

    /// Reads the run id in column `idx` of `row`.
    pub(crate) fn get_run_id(self, row: &QueryResult, idx: usize) -> Result<RunId, StoreError> {
        let what = || "run id".to_owned();
        match self {
            Dialect::Sqlite => parse_run_id(&get::<String>(row, idx, what)?),
            Dialect::Postgres => Ok(RunId::from_uuid(get(row, idx, what)?)),
        }
    }

    /// Options of a write transaction: SQLite takes the write lock at `BEGIN` (`IMMEDIATE`),
    /// so writers queue instead of failing on a lock upgrade; PostgreSQL's default
    /// (`READ COMMITTED`) suits writes that only insert and update by key.
    pub(crate) fn write_transaction(self) -> TransactionOptions {
        match self {
            Dialect::Sqlite => TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            },
            Dialect::Postgres => TransactionOptions::default(),
        }
    }

    /// Options of a read-only transaction whose statements all see one snapshot. A SQLite
    /// read transaction does; PostgreSQL needs `REPEATABLE READ` (under `READ COMMITTED`
    /// each statement takes a new snapshot).
    pub(crate) fn snapshot_transaction(self) -> TransactionOptions {
        match self {
            Dialect::Sqlite => TransactionOptions::default(),
            Dialect::Postgres => TransactionOptions {
                isolation_level: Some(IsolationLevel::RepeatableRead),
                access_mode: Some(AccessMode::ReadOnly),
                ..TransactionOptions::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_placeholder_groups() {
        assert_eq!(Dialect::Sqlite.rows(1, 1), "(?)");
        assert_eq!(Dialect::Sqlite.rows(2, 3), "(?,?,?),(?,?,?)");
        assert_eq!(Dialect::Sqlite.rows(0, 3), "");
        assert_eq!(Dialect::Postgres.rows(2, 3), "($1,$2,$3),($4,$5,$6)");
        assert_eq!(Dialect::Postgres.rows(0, 3), "");
        let cols = [Col::RunId, Col::Text, Col::Int];
        assert_eq!(Dialect::Sqlite.typed_rows(2, &cols), "(?,?,?),(?,?,?)");
        assert_eq!(
            Dialect::Postgres.typed_rows(2, &cols),
            "($1::uuid,$2::text,$3::bigint),($4::uuid,$5::text,$6::bigint)"
        );
    }

    #[test]
    fn numbers_placeholders_for_postgres() {
        let sql = "SELECT a FROM t WHERE b = ? AND c = ? LIMIT ?";
        assert_eq!(Dialect::Sqlite.numbered(sql), sql);
        assert_eq!(
            Dialect::Postgres.numbered(sql),
            "SELECT a FROM t WHERE b = $1 AND c = $2 LIMIT $3"
        );
        let many = ["?"; 12].join(",");
        assert!(Dialect::Postgres.numbered(&many).ends_with("$11,$12"));
    }
}

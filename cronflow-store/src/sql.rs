//! Small helpers to build multi-row statements: `(?,?,?),(?,?,?)` placeholder lists and
//! statements with their bound values.

use sea_orm::{DbBackend, Statement, Value};

/// Rows per multi-row statement.
///
/// 128 rows of at most 7 columns bind at most 896 parameters: below SQLite's limit of 32,766
/// (and even the 999 of builds older than 3.32). A batch is written as full chunks of this
/// many rows plus one statement for the remainder.
pub(crate) const CHUNK_ROWS: usize = 128;

/// `rows` groups of `cols` placeholders: `(?,?),(?,?)` for `rows = 2, cols = 2`.
pub(crate) fn placeholders(rows: usize, cols: usize) -> String {
    let mut group = String::with_capacity(2 * cols + 1);
    group.push('(');
    for c in 0..cols {
        if c > 0 {
            group.push(',');
        }
        group.push('?');
    }
    group.push(')');
    let mut out = String::with_capacity(rows * (group.len() + 1));
    for r in 0..rows {
        if r > 0 {
            out.push(',');
        }
        out.push_str(&group);
    }
    out
}

/// Splits `len` rows into chunk sizes: full chunks of [`CHUNK_ROWS`], then the remainder
/// (so `len = 300` gives `128, 128, 44`).
///
/// Splitting the remainder further into powers of two (fewer distinct SQL texts, better
/// prepared-statement cache hits) or padding it with NULL rows were measured: neither made a
/// difference next to the cost of the WAL writes, so the simplest split stays.
pub(crate) fn chunk_sizes(len: usize) -> Vec<usize> {
    let mut sizes = vec![CHUNK_ROWS; len / CHUNK_ROWS];
    if !len.is_multiple_of(CHUNK_ROWS) {
        sizes.push(len % CHUNK_ROWS);
    }
    sizes
}

/// A SQLite statement from its text and values.
pub(crate) fn statement(sql: String, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
}

/// A text value.
pub(crate) fn text(s: impl Into<String>) -> Value {
    Value::String(Some(s.into()))
}

/// A nullable text value.
pub(crate) fn opt_text(s: Option<impl Into<String>>) -> Value {
    Value::String(s.map(Into::into))
}

/// An integer value.
pub(crate) fn int(i: i64) -> Value {
    Value::BigInt(Some(i))
}

/// A nullable integer value.
pub(crate) fn opt_int(i: Option<i64>) -> Value {
    Value::BigInt(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_placeholder_groups() {
        assert_eq!(placeholders(1, 1), "(?)");
        assert_eq!(placeholders(2, 3), "(?,?,?),(?,?,?)");
        assert_eq!(placeholders(0, 3), "");
    }

    #[test]
    fn splits_into_full_chunks_then_the_rest() {
        assert_eq!(chunk_sizes(0), Vec::<usize>::new());
        assert_eq!(chunk_sizes(1), vec![1]);
        assert_eq!(chunk_sizes(128), vec![128]);
        assert_eq!(chunk_sizes(300), vec![128, 128, 44]);
        for len in 0..1000 {
            assert_eq!(chunk_sizes(len).iter().sum::<usize>(), len);
        }
    }
}

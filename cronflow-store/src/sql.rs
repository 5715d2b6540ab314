//! Small helpers to build multi-row statements: chunk sizes and bound values. (Placeholder
//! lists, which differ between backends, are built by [`Dialect`](crate::dialect::Dialect).)

use sea_orm::Value;

/// Rows per multi-row statement.
///
/// 128 rows of at most 7 columns bind at most 896 parameters: below SQLite's limit of 32,766
/// (and even the 999 of builds older than 3.32) and PostgreSQL's 65,535. A batch is written
/// as full chunks of this many rows plus one statement for the remainder.
pub(crate) const CHUNK_ROWS: usize = 128;

/// Splits `len` rows into chunk sizes: full chunks of [`CHUNK_ROWS`], then the remainder
/// (so `len = 300` gives `128, 128, 44`).
///
/// Splitting the remainder further into powers of two (fewer distinct SQL texts, better
/// prepared-statement cache hits) or padding it with NULL rows were measured: on SQLite
/// neither made a difference next to the cost of the WAL writes; on PostgreSQL powers of two
/// made commits slower (1.0-1.5 ms instead of 0.8-0.95 ms per commit of 1 to 100 events: more
/// statements per commit weigh more than the statements prepared for each new size). Larger
/// chunks on PostgreSQL (512, 1,024 rows) did not speed up a 12,000-event batch either. So the
/// simplest split stays.
pub(crate) fn chunk_sizes(len: usize) -> Vec<usize> {
    let mut sizes = vec![CHUNK_ROWS; len / CHUNK_ROWS];
    if !len.is_multiple_of(CHUNK_ROWS) {
        sizes.push(len % CHUNK_ROWS);
    }
    sizes
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

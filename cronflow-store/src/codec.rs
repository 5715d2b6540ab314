//! Conversions between rows and cronflow types, shared by the backends: times as integer
//! microseconds since the Unix epoch, JSON documents as their raw text, run ids as the
//! [`Dialect`] stores them (text in SQLite, `uuid` in PostgreSQL).
//!
//! Decoding never panics: a stored value that does not decode is a [`StoreError::Corrupt`]
//! naming the run (and the event's `seq`).

use chrono::{DateTime, Utc};
use cronflow_core::{
    Json, RecordedEvent, RunEvent, RunFailure, RunId, RunRecord, RunStatus, StoreError, TaskKey,
};
use sea_orm::{QueryResult, TryGetable, Value};
use serde::Deserialize;

use crate::dialect::Dialect;
use crate::sql::{int, opt_int, opt_text, text};

/// The `runs` columns [`decode_run`] reads, in order.
pub(crate) const RUN_COLUMNS: &str = "id, workflow_id, revision, status, payload, output, failure, \
     created_at, finished_at, context";

/// Number of [`RUN_COLUMNS`].
pub(crate) const RUN_COLUMN_COUNT: usize = 10;

/// The `run_events` columns written per event, in order.
pub(crate) const EVENT_INSERT_COLUMNS: &str = "run_id, seq, at, kind, task, attempt, data";

/// Number of [`EVENT_INSERT_COLUMNS`].
pub(crate) const EVENT_INSERT_ARITY: usize = 7;

/// The `run_events` columns [`decode_event_row`] reads (after `run_id`), in order.
pub(crate) const EVENT_COLUMNS: &str = "seq, at, kind, data";

/// Microseconds since the Unix epoch (sub-microsecond precision is dropped).
pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The time `us` microseconds after the Unix epoch.
pub(crate) fn from_micros(
    us: i64,
    what: impl FnOnce() -> String,
) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| StoreError::Corrupt(format!("{}: timestamp {us} is out of range", what())))
}

/// Parses a run id stored as text.
pub(crate) fn parse_run_id(text: &str) -> Result<RunId, StoreError> {
    text.parse().map_err(|e| StoreError::Corrupt(format!("run id `{text}` is not a UUID: {e}")))
}

/// Column `idx` of `row`; a missing column or a value of the wrong type is corrupt data.
pub(crate) fn get<T: TryGetable>(
    row: &QueryResult,
    idx: usize,
    what: impl FnOnce() -> String,
) -> Result<T, StoreError> {
    row.try_get_by_index(idx)
        .map_err(|e| StoreError::Corrupt(format!("{}: column {idx}: {e}", what())))
}

/// Converts a stored integer to `u32`.
pub(crate) fn to_u32(v: i64, what: impl FnOnce() -> String) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{}: {v} is not a u32", what())))
}

fn json(text: String, what: impl FnOnce() -> String) -> Result<Json, StoreError> {
    Json::from_string(text)
        .map_err(|e| StoreError::Corrupt(format!("{}: invalid JSON: {e}", what())))
}

/// Appends the values of one `run_events` row (see [`EVENT_INSERT_COLUMNS`]) to `values`.
pub(crate) fn push_event(
    values: &mut Vec<Value>,
    dialect: Dialect,
    run: RunId,
    event: &RecordedEvent,
) -> Result<(), StoreError> {
    let data = serde_json::to_string(&event.event).map_err(|e| {
        StoreError::Database(format!("cannot encode event {} of run {run}: {e}", event.seq))
    })?;
    let ev = &event.event;
    values.extend([
        dialect.run_id(run),
        int(i64::from(event.seq)),
        int(micros(event.at)),
        text(ev.kind()),
        opt_text(ev.task().map(TaskKey::as_str)),
        opt_int(ev.attempt().map(i64::from)),
        text(data),
    ]);
    Ok(())
}

/// Whether `event` is stored as the run row rather than in `run_events`: the `run_started`
/// event at seq 0, whose time is the run's `created_at`.
pub(crate) fn is_run_row_event(event: &RecordedEvent) -> bool {
    event.seq == 0 && event.event == RunEvent::RunStarted
}

/// The `run_started` event of a run accepted at `created_at`.
pub(crate) fn run_started(created_at: DateTime<Utc>) -> RecordedEvent {
    RecordedEvent { seq: 0, at: created_at, event: RunEvent::RunStarted }
}

/// `task_succeeded` data, decoded without going through `RunEvent`'s internally tagged
/// representation (which cannot hold a [`Json`]: serde buffers the fields and a raw JSON value
/// cannot be read back from that buffer).
#[derive(Deserialize)]
struct TaskSucceededData {
    kind: String,
    task: TaskKey,
    attempt: u32,
    started_at: DateTime<Utc>,
    #[serde(deserialize_with = "Json::deserialize_raw")]
    output: Json,
}

/// `run_completed` data; see [`TaskSucceededData`].
#[derive(Deserialize)]
struct RunCompletedData {
    kind: String,
    #[serde(deserialize_with = "Json::deserialize_raw")]
    output: Json,
}

/// Decodes the `data` column of an event whose `kind` column is `kind`.
fn decode_event_data(kind: &str, data: &str) -> Result<RunEvent, String> {
    let (event, tag) = match kind {
        "task_succeeded" => {
            let d: TaskSucceededData = serde_json::from_str(data).map_err(|e| e.to_string())?;
            let event = RunEvent::TaskSucceeded {
                task: d.task,
                attempt: d.attempt,
                started_at: d.started_at,
                output: d.output,
            };
            (event, d.kind)
        }
        "run_completed" => {
            let d: RunCompletedData = serde_json::from_str(data).map_err(|e| e.to_string())?;
            (RunEvent::RunCompleted { output: d.output }, d.kind)
        }
        _ => {
            let event: RunEvent = serde_json::from_str(data).map_err(|e| e.to_string())?;
            let tag = event.kind().to_owned();
            (event, tag)
        }
    };
    if tag != kind || event.kind() != kind {
        return Err(format!("kind column `{kind}` does not match data kind `{tag}`"));
    }
    Ok(event)
}

/// Decodes the columns [`EVENT_COLUMNS`] of `row` starting at index `first`, for run `run`.
pub(crate) fn decode_event_row(
    row: &QueryResult,
    first: usize,
    run: RunId,
) -> Result<RecordedEvent, StoreError> {
    let seq: i64 = get(row, first, || format!("run {run}: event"))?;
    let what = || format!("run {run}, event seq {seq}");
    let at: i64 = get(row, first + 1, what)?;
    let kind: String = get(row, first + 2, what)?;
    let data: String = get(row, first + 3, what)?;
    let event = decode_event_data(&kind, &data)
        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", what())))?;
    Ok(RecordedEvent { seq: to_u32(seq, what)?, at: from_micros(at, what)?, event })
}

/// Encodes a run failure for the `failure` column.
pub(crate) fn encode_failure(failure: &RunFailure, run: RunId) -> Result<String, StoreError> {
    serde_json::to_string(failure)
        .map_err(|e| StoreError::Database(format!("cannot encode the failure of run {run}: {e}")))
}

/// Decodes a row of the columns [`RUN_COLUMNS`].
pub(crate) fn decode_run(row: &QueryResult, dialect: Dialect) -> Result<RunRecord, StoreError> {
    let id = dialect.get_run_id(row, 0)?;
    let what = || format!("run {id}");
    let workflow_id: String = get(row, 1, what)?;
    let revision: i64 = get(row, 2, what)?;
    let status: String = get(row, 3, what)?;
    let status = RunStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("{}: unknown status `{status}`", what())))?;
    let payload: String = get(row, 4, what)?;
    let output: Option<String> = get(row, 5, what)?;
    let failure: Option<String> = get(row, 6, what)?;
    let failure = match failure {
        Some(f) => Some(
            serde_json::from_str::<RunFailure>(&f)
                .map_err(|e| StoreError::Corrupt(format!("{}: invalid failure: {e}", what())))?,
        ),
        None => None,
    };
    let created_at: i64 = get(row, 7, what)?;
    let finished_at: Option<i64> = get(row, 8, what)?;
    let context: Option<String> = get(row, 9, what)?;
    Ok(RunRecord {
        id,
        workflow_id,
        revision: to_u32(revision, what)?,
        status,
        payload: json(payload, || format!("{}: payload", what()))?,
        output: output.map(|o| json(o, || format!("{}: output", what()))).transpose()?,
        failure,
        created_at: from_micros(created_at, what)?,
        finished_at: finished_at.map(|t| from_micros(t, what)).transpose()?,
        context: context.map(|c| json(c, || format!("{}: trigger context", what()))).transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use cronflow_core::{FailureKind, TaskError};

    use super::*;

    fn round_trip(event: RunEvent) {
        let data = serde_json::to_string(&event).unwrap();
        let back = decode_event_data(event.kind(), &data).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn every_event_kind_round_trips() {
        let now = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let error = TaskError {
            name: "TypeError".into(),
            message: "boom".into(),
            stack: None,
            code: Some("E1".into()),
            retryable: false,
        };
        round_trip(RunEvent::RunStarted);
        round_trip(RunEvent::TaskSucceeded {
            task: TaskKey::new("a"),
            attempt: 2,
            started_at: now,
            output: Json::from_raw_str(r#"{"x": [1, 2.50]}"#).unwrap(),
        });
        round_trip(RunEvent::TaskFailed {
            task: TaskKey::new("b"),
            attempt: 1,
            started_at: now,
            error: error.clone(),
            retry_at: Some(now),
        });
        round_trip(RunEvent::RunCompleted { output: Json::from_raw_str(" 5 ").unwrap() });
        round_trip(RunEvent::RunFailed {
            failure: RunFailure {
                kind: FailureKind::TaskFailed,
                message: "b failed".into(),
                task: Some(TaskKey::new("b")),
                error: Some(error),
            },
        });
        round_trip(RunEvent::RunCancelled { reason: Some("stop".into()) });
    }

    #[test]
    fn mismatched_kind_is_an_error() {
        let data = serde_json::to_string(&RunEvent::RunStarted).unwrap();
        assert!(decode_event_data("run_cancelled", &data).is_err());
        assert!(decode_event_data("task_succeeded", &data).is_err());
        assert!(decode_event_data("run_started", "{not json").is_err());
    }
}

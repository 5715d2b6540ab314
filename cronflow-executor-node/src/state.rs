//! Serving a handler's workflow state: a `state` request from the worker is carried out with
//! the [`StateHandle`] of its task, on a tokio task of its own (the reader goes on reading),
//! and answered with a `state_result` line. See `js/PROTOCOL.md`.

use std::sync::Arc;
use std::time::Duration;

use cronflow_core::{Json, StateError, StateHandle};
use serde_json::json;

use crate::framing::push_raw;
use crate::worker::{Incoming, Worker};

/// One state operation, checked.
enum Op {
    Get,
    Set { value: Json, ttl: Option<Duration> },
    Incr { by: i64 },
    Delete,
}

/// What an operation answers: a value, or none (`get` of an absent key, `set`).
type Answer = Result<Option<Json>, (&'static str, String, bool)>;

/// Handles a `state` message. A request without its number is a protocol error (nothing can
/// be answered); any other problem is answered as a failed `state_result`.
pub(crate) fn serve(worker: &Arc<Worker>, message: &Incoming<'_>) -> Result<(), String> {
    let req = message.req.ok_or("a state request without a req")?;
    let request = parse(worker, message);
    let worker = Arc::clone(worker);
    tokio::spawn(async move {
        let answer = match request {
            Ok((handle, key, op)) => run(&handle, &key, op).await,
            Err(e) => Err(e),
        };
        let line = result_line(req, answer, worker.max_frame);
        worker.send(line);
    });
    Ok(())
}

fn invalid(message: impl Into<String>) -> (&'static str, String, bool) {
    ("InvalidStateRequest", message.into(), false)
}

/// The task's handle (global or its workflow's), the key and the operation of a request.
fn parse(
    worker: &Worker,
    message: &Incoming<'_>,
) -> Result<(StateHandle, String, Op), (&'static str, String, bool)> {
    let id = message.id.ok_or_else(|| invalid("a state request needs the id of its task"))?;
    let handle = worker
        .task_state(id)
        .map_err(|why| ("StateUnavailable", format!("task {id}: {why}"), false))?;
    let handle = match message.scope.as_deref() {
        None | Some("workflow") => handle,
        Some("global") => handle.global(),
        Some(other) => {
            return Err(invalid(format!("unknown scope `{other}` (workflow or global)")));
        }
    };
    let key = message.key.clone().ok_or_else(|| invalid("a state request needs a key"))?;
    let op = match message.op.as_deref() {
        Some("get") => Op::Get,
        Some("set") => Op::Set {
            value: message.value.clone().ok_or_else(|| invalid("`set` needs a value"))?,
            ttl: message.ttl_ms.map(Duration::from_millis),
        },
        Some("incr") => Op::Incr { by: message.by.unwrap_or(1) },
        Some("delete") => Op::Delete,
        other => {
            return Err(invalid(format!(
                "unknown state operation {other:?} (get, set, incr or delete)"
            )));
        }
    };
    Ok((handle, key, op))
}

async fn run(handle: &StateHandle, key: &str, op: Op) -> Answer {
    let answer = match op {
        Op::Get => handle.get(key).await,
        Op::Set { value, ttl } => handle.set_json(key, value, ttl).await.map(|()| None),
        Op::Incr { by } => handle.incr(key, by).await.map(|n| Some(Json::from(json!(n)))),
        Op::Delete => handle.delete(key).await.map(|found| Some(Json::from(json!(found)))),
    };
    answer.map_err(|e: StateError| (e.name(), e.to_string(), e.is_retryable()))
}

/// The `state_result` line of request `req`; an answer too large for a line becomes an error.
fn result_line(req: u64, answer: Answer, max_frame: usize) -> String {
    match answer {
        Ok(value) => {
            let mut line = format!(r#"{{"type":"state_result","req":{req},"ok":true"#);
            if let Some(value) = value {
                line.push_str(r#","value":"#);
                push_raw(&mut line, &value);
            }
            line.push('}');
            if line.len() <= max_frame {
                return line;
            }
            let message = format!(
                "the value is {} bytes once framed, over the maximum frame of {max_frame} bytes",
                line.len()
            );
            result_line(req, Err(("StateValueTooLarge", message, false)), max_frame)
        }
        Err((name, message, retryable)) => {
            let mut error = json!({ "name": name, "message": message });
            if !retryable {
                error["retryable"] = false.into();
            }
            json!({ "type": "state_result", "req": req, "ok": false, "error": error }).to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_one_line_and_never_over_the_frame() {
        let pretty = Json::from_raw_str("{\n  \"a\": [1,\n 2]\n}").unwrap();
        let line = result_line(7, Ok(Some(pretty)), 1000);
        assert_eq!(line, r#"{"type":"state_result","req":7,"ok":true,"value":{   "a": [1,  2] }}"#);
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["value"]["a"][1], 2);
        assert_eq!(result_line(1, Ok(None), 1000), r#"{"type":"state_result","req":1,"ok":true}"#);

        let big = Json::from(serde_json::json!("x".repeat(200)));
        let line = result_line(2, Ok(Some(big)), 100);
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["ok"], false);
        assert_eq!(parsed["error"]["name"], "StateValueTooLarge");
        assert_eq!(parsed["error"]["retryable"], false);

        let store = ("StoreError", "database error: gone".to_owned(), true);
        let parsed: serde_json::Value =
            serde_json::from_str(&result_line(3, Err(store), 100)).unwrap();
        assert!(parsed["error"].get("retryable").is_none(), "retryable is the default");
    }
}

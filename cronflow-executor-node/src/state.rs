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
    use crate::worker::Pending;
    use cronflow_core::{MemoryStore, SystemClock};
    use tokio::sync::{mpsc, oneshot, watch};

    /// A worker without a process, holding task 1 with the state of workflow `w`; and the
    /// receiver of the lines it sends.
    fn worker() -> (Arc<Worker>, mpsc::UnboundedReceiver<String>, StateHandle) {
        let (out, lines) = mpsc::unbounded_channel();
        let (stops, _) = mpsc::unbounded_channel();
        let (_, exited) = watch::channel(false);
        let worker = Arc::new(Worker::new(1, 0, out, stops, exited, 1 << 20));
        let state =
            StateHandle::new_workflow(Arc::new(MemoryStore::new()), Arc::new(SystemClock), "w");
        let (reply, _) = oneshot::channel();
        let pending = Pending {
            reply,
            run_id: "r".into(),
            node_id: Arc::from("n"),
            state: Some(state.clone()),
        };
        assert!(worker.register(1, pending).is_ok());
        (worker, lines, state)
    }

    async fn ask(
        worker: &Arc<Worker>,
        lines: &mut mpsc::UnboundedReceiver<String>,
        request: &str,
    ) -> serde_json::Value {
        let message: Incoming<'_> = serde_json::from_str(request).unwrap();
        serve(worker, &message).unwrap();
        serde_json::from_str(lines.recv().await.unwrap().trim_end()).unwrap()
    }

    #[tokio::test]
    async fn requests_are_served_with_the_state_of_their_task() {
        let (worker, mut lines, state) = worker();
        let set = r#"{"type":"state","id":1,"req":1,"op":"set","scope":"workflow","key":"k","value":{"a":1},"ttl_ms":60000}"#;
        assert_eq!(
            ask(&worker, &mut lines, set).await,
            json!({"type":"state_result","req":1,"ok":true})
        );
        assert_eq!(state.get_as::<serde_json::Value>("k").await.unwrap(), Some(json!({"a":1})));
        let get = r#"{"type":"state","id":1,"req":2,"op":"get","key":"k"}"#;
        assert_eq!(ask(&worker, &mut lines, get).await["value"], json!({"a":1}));
        let incr =
            r#"{"type":"state","id":1,"req":3,"op":"incr","scope":"global","key":"n","by":5}"#;
        assert_eq!(ask(&worker, &mut lines, incr).await["value"], 5);
        assert_eq!(state.global().get_as::<i64>("n").await.unwrap(), Some(5));
        let missing = r#"{"type":"state","id":1,"req":4,"op":"get","key":"nope"}"#;
        assert!(ask(&worker, &mut lines, missing).await.get("value").is_none(), "absent: no value");
        let delete = r#"{"type":"state","id":1,"req":5,"op":"delete","key":"k"}"#;
        assert_eq!(ask(&worker, &mut lines, delete).await["value"], true);

        // Bad requests are answered with typed errors, never a protocol error.
        for (request, name) in [
            (
                r#"{"type":"state","id":1,"req":6,"op":"incr","key":"k","scope":"elsewhere"}"#,
                "InvalidStateRequest",
            ),
            (r#"{"type":"state","id":1,"req":7,"op":"merge","key":"k"}"#, "InvalidStateRequest"),
            (r#"{"type":"state","id":1,"req":8,"op":"set","key":"k"}"#, "InvalidStateRequest"),
            (r#"{"type":"state","id":1,"req":9,"op":"get","key":""}"#, "InvalidStateKey"),
            (
                r#"{"type":"state","id":1,"req":10,"op":"set","key":"k","value":1,"ttl_ms":0}"#,
                "InvalidStateTtl",
            ),
            (r#"{"type":"state","id":2,"req":11,"op":"get","key":"k"}"#, "StateUnavailable"),
        ] {
            let answer = ask(&worker, &mut lines, request).await;
            assert_eq!(
                (answer["ok"].clone(), answer["error"]["name"].clone()),
                (json!(false), json!(name)),
                "{request}"
            );
            assert_eq!(answer["error"]["retryable"], false);
        }
        let no_req: Incoming<'_> =
            serde_json::from_str(r#"{"type":"state","id":1,"op":"get","key":"k"}"#).unwrap();
        assert!(serve(&worker, &no_req).is_err(), "nothing to answer: a protocol error");

        // Once the engine gave up on the task, its handler may not use state any more.
        assert!(worker.abandon(1));
        let late = r#"{"type":"state","id":1,"req":12,"op":"incr","key":"n"}"#;
        let answer = ask(&worker, &mut lines, late).await;
        assert_eq!(answer["error"]["name"], "StateUnavailable");
        assert!(answer["error"]["message"].as_str().unwrap().contains("no longer in flight"));
    }

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

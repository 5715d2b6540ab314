//! Newline-delimited JSON framing with a size cap, and the `task` line built from raw JSON text.

use std::fmt::Write as _;

use cronflow_core::{Json, Task, TaskError};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The default maximum line size in bytes (newline excluded), both directions: 16 MiB, the
/// worker's default too.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    /// The connection failed.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    /// A line exceeded the cap.
    #[error("a line from the worker exceeds the maximum frame of {limit} bytes")]
    TooLarge {
        /// The cap.
        limit: usize,
    },
    /// A line is not UTF-8.
    #[error("a line from the worker is not valid UTF-8")]
    NotUtf8,
}

/// Reads `\n`-terminated lines in linear time: chunks are appended to one buffer and only the
/// bytes not yet scanned are searched for the newline.
pub(crate) struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Start of the first unconsumed line in `buf`.
    start: usize,
    /// Bytes of `buf` already scanned for `\n` (from `start`).
    scanned: usize,
    limit: usize,
    chunk: Box<[u8]>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader of lines of at most `limit` bytes.
    pub(crate) fn new(inner: R, limit: usize) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            limit,
            chunk: vec![0; 64 * 1024].into_boxed_slice(),
        }
    }

    /// The next line (without its newline), or `None` at end of stream. A partial last line
    /// at end of stream is dropped.
    pub(crate) async fn next_frame(&mut self) -> Result<Option<String>, FrameError> {
        loop {
            if let Some(pos) = memchr_newline(&self.buf[self.scanned..]) {
                let end = self.scanned + pos;
                if end - self.start > self.limit {
                    return Err(FrameError::TooLarge { limit: self.limit });
                }
                let line = std::str::from_utf8(&self.buf[self.start..end])
                    .map_err(|_| FrameError::NotUtf8)?
                    .to_owned();
                self.start = end + 1;
                self.scanned = self.start;
                return Ok(Some(line));
            }
            self.scanned = self.buf.len();
            if self.scanned - self.start > self.limit {
                return Err(FrameError::TooLarge { limit: self.limit });
            }
            // Drop consumed lines before growing: what remains is the current partial line,
            // which started in the last chunk read, so the copy stays linear overall.
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.scanned -= self.start;
                self.start = 0;
            }
            let n = self.inner.read(&mut self.chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&self.chunk[..n]);
        }
    }
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// Appends `text` as a JSON string literal.
fn push_str_literal(out: &mut String, text: &str) {
    // Serialising a `str` cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned()));
}

/// Appends a raw JSON document. Valid JSON holds a raw newline only as whitespace outside
/// strings, so replacing it by a space keeps the document and the framing intact.
pub(crate) fn push_raw(out: &mut String, json: &Json) {
    let text = json.as_str();
    if text.contains('\n') {
        out.push_str(&text.replace('\n', " "));
    } else {
        out.push_str(text);
    }
}

/// Appends a task error as `{"name","message","stack"?,"code"?}` (the fields of a failed
/// `result`; whether it was retryable is the engine's business, not the handler's).
fn push_error(out: &mut String, error: &TaskError) {
    out.push_str(r#"{"name":"#);
    push_str_literal(out, &error.name);
    out.push_str(r#","message":"#);
    push_str_literal(out, &error.message);
    if let Some(stack) = &error.stack {
        out.push_str(r#","stack":"#);
        push_str_literal(out, stack);
    }
    if let Some(code) = &error.code {
        out.push_str(r#","code":"#);
        push_str_literal(out, code);
    }
    out.push('}');
}

/// The `{"type":"task",...}` line of request `id` (without its newline). Payload, step
/// outputs, the last output and the loop item are embedded as their raw text, never
/// re-serialised. `item`, `index`, `token` and `error` are written only when the task has them.
pub(crate) fn task_line(id: u64, task: &Task) -> String {
    let ctx = &task.context;
    let raw: usize = ctx.payload.len()
        + ctx.last.len()
        + ctx.trigger.len()
        + ctx.item.as_ref().map_or(0, Json::len)
        + ctx
            .error
            .as_ref()
            .map_or(0, |e| e.message.len() + e.stack.as_ref().map_or(0, String::len) + 64)
        + ctx.steps.iter().map(|(k, v)| k.len() + v.len() + 8).sum::<usize>();
    let mut out = String::with_capacity(raw + 512);
    let _ = write!(out, r#"{{"type":"task","id":{id},"handler":"#);
    push_str_literal(&mut out, &task.handler);
    let _ = write!(out, r#","task":{{"run_id":"{}","workflow_id":"#, task.run_id);
    push_str_literal(&mut out, &task.workflow_id);
    out.push_str(r#","node_id":"#);
    push_str_literal(&mut out, &task.node_id);
    out.push_str(r#","key":"#);
    push_str_literal(&mut out, task.key.as_str());
    let _ = write!(
        out,
        r#","kind":"{}","attempt":{},"idempotency_key":"#,
        task.kind.as_str(),
        task.attempt
    );
    push_str_literal(&mut out, &task.idempotency_key);
    out.push_str(r#","deadline":"#);
    match &task.deadline {
        Some(d) => push_str_literal(&mut out, &d.to_rfc3339()),
        None => out.push_str("null"),
    }
    out.push_str(r#","payload":"#);
    push_raw(&mut out, &ctx.payload);
    out.push_str(r#","steps":{"#);
    for (i, (node, output)) in ctx.steps.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str_literal(&mut out, node);
        out.push(':');
        push_raw(&mut out, output);
    }
    out.push_str(r#"},"last":"#);
    push_raw(&mut out, &ctx.last);
    out.push_str(r#","trigger":"#);
    push_raw(&mut out, &ctx.trigger);
    if let Some(item) = &ctx.item {
        out.push_str(r#","item":"#);
        push_raw(&mut out, item);
    }
    if let Some(index) = ctx.index {
        let _ = write!(out, r#","index":{index}"#);
    }
    if let Some(token) = &ctx.token {
        out.push_str(r#","token":"#);
        push_str_literal(&mut out, token);
    }
    if let Some(error) = &ctx.error {
        out.push_str(r#","error":"#);
        push_error(&mut out, error);
    }
    out.push_str("}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cronflow_core::TaskKind;
    use serde_json::{Value, json};

    #[test]
    fn the_task_line_writes_control_flow_fields_only_when_present() {
        let mut task = Task::new("w", "h");
        task.context.payload = Json::from(json!({"n": 1}));
        let plain = task_line(7, &task);
        let v: Value = serde_json::from_str(&plain).unwrap();
        assert_eq!(v["task"]["kind"], "step");
        for field in ["item", "index", "token", "error"] {
            assert!(v["task"].get(field).is_none(), "{field} written without a value: {plain}");
        }

        task.kind = TaskKind::OnError;
        // Raw text, number formatting and a newline (whitespace) of the item are kept.
        task.context.item = Some(Json::from_raw_str("{\"b\":1,\n\"a\":2.50}").unwrap());
        task.context.index = Some(3);
        task.context.token = Some("tok-\"1\"".into());
        let mut error = TaskError::new("PaymentDeclined", "card\nexpired").with_code("E42");
        error.stack = Some("PaymentDeclined: card\n    at charge (x.mjs:1:1)".into());
        task.context.error = Some(error.non_retryable());
        let line = task_line(8, &task);
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains(r#""item":{"b":1, "a":2.50}"#), "{line}");
        let v: Value = serde_json::from_str(&line).unwrap();
        let t = &v["task"];
        assert_eq!(t["kind"], "on_error");
        assert_eq!(t["index"], 3);
        assert_eq!(t["token"], "tok-\"1\"");
        assert_eq!(
            t["error"],
            json!({"name": "PaymentDeclined", "message": "card\nexpired",
                   "stack": "PaymentDeclined: card\n    at charge (x.mjs:1:1)", "code": "E42"})
        );
    }

    #[tokio::test]
    async fn splits_lines_and_enforces_the_cap() {
        let data: &[u8] = b"{\"a\":1}\n{\"b\":2}\npartial";
        let mut r = FrameReader::new(data, 100);
        assert_eq!(r.next_frame().await.unwrap().as_deref(), Some("{\"a\":1}"));
        assert_eq!(r.next_frame().await.unwrap().as_deref(), Some("{\"b\":2}"));
        assert!(r.next_frame().await.unwrap().is_none());

        let long = format!("{}\n", "x".repeat(11));
        let mut r = FrameReader::new(long.as_bytes(), 10);
        assert!(matches!(r.next_frame().await, Err(FrameError::TooLarge { limit: 10 })));
    }

    #[tokio::test]
    async fn a_large_line_arrives_whole() {
        let big = format!("\"{}\"\n\"end\"\n", "y".repeat(3 * 1024 * 1024));
        let mut r = FrameReader::new(big.as_bytes(), DEFAULT_MAX_FRAME_BYTES);
        assert_eq!(r.next_frame().await.unwrap().unwrap().len(), 3 * 1024 * 1024 + 2);
        assert_eq!(r.next_frame().await.unwrap().as_deref(), Some("\"end\""));
    }
}

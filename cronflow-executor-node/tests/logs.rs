//! What handlers log reaches the host's `tracing` subscriber: `ctx.log.*` and `console.*`
//! inside a handler (also after an `await`) carry the run and node; output outside tasks
//! carries the worker's pid and stream.

mod common;

use std::sync::{Arc, Mutex};

use common::{fixture, node_available};
use cronflow_executor_node::NodeExecutor;
use serde_json::json;

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn line_with(&self, text: &str) -> String {
        let bytes = self.0.lock().unwrap().clone();
        let all = String::from_utf8_lossy(&bytes).into_owned();
        all.lines()
            .find(|l| l.contains(text))
            .unwrap_or_else(|| panic!("no log line contains {text:?}:\n{all}"))
            .to_string()
    }
}

// A current-thread runtime: every task of the pool runs on this thread, where the
// subscriber is the default.
#[tokio::test]
async fn handler_logs_carry_the_run_and_the_node() {
    if !node_available() {
        return;
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let (exec, defs) = common::spawn(NodeExecutor::builder().module(fixture("logs.mjs"))).await;
    let report = common::run(&exec, defs, "chatty", json!({})).await;
    exec.shutdown(std::time::Duration::from_secs(5)).await;
    let run = report.run.id.to_string();

    let structured = captured.line_with("structured");
    assert!(structured.contains(" INFO "), "{structured}");
    assert!(structured.contains(&format!("run={run}")), "{structured}");
    assert!(structured.contains("node=talk"), "{structured}");
    assert!(structured.contains(r#"fields={"order":7}"#), "{structured}");

    let console = captured.line_with("after await 42");
    assert!(console.contains(&format!("run={run}")), "{console}");
    assert!(console.contains("node=talk"), "{console}");
    let odd = captured.line_with("something odd");
    assert!(odd.contains(" ERROR ") && odd.contains("node=talk"), "{odd}");

    let import = captured.line_with("import noise");
    assert!(import.contains("stream=\"stdout\"") || import.contains("stream=stdout"), "{import}");
    assert!(!import.contains("run="), "{import}");
}

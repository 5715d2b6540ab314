//! Starting one worker: a private Unix socket, the `node` process, the `ready` handshake, and
//! the three tasks that serve the worker afterwards (writer, reader, monitor).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use cronflow_core::{TaskError, WorkflowDef};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};

use crate::builder::Config;
use crate::error::NodeExecutorError;
use crate::framing::FrameReader;
use crate::process::{self, GroupGuard, Stop, describe_status};
use crate::worker::{Incoming, Worker, WorkerEvents, handle_line};

/// A started worker and the workflow definitions of its `ready` message.
pub(crate) struct Started {
    pub(crate) worker: Arc<Worker>,
    pub(crate) workflows: Vec<WorkflowDef>,
}

static SOCKET_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Starts worker number `number`. Once it is running, `events` hears of its results, heap
/// reports and exit.
pub(crate) async fn start(
    config: &Config,
    number: u64,
    events: Weak<dyn WorkerEvents>,
) -> Result<Started, NodeExecutorError> {
    let module = &config.module;
    let n = SOCKET_COUNTER.fetch_add(1, Ordering::Relaxed);
    let socket_path = config.socket_dir.join(format!("w{number}-{n}.sock"));
    let listener = UnixListener::bind(&socket_path).map_err(|source| NodeExecutorError::Io {
        context: format!("cannot listen on {}", socket_path.display()),
        source,
    })?;
    let mut child = process::spawn(config, number, &socket_path)?;
    let pid = child.id().unwrap_or(0);
    // Until the monitor owns the process, any early return kills its whole group.
    let starting = GroupGuard::new(pid);

    let deadline = Instant::now() + config.startup_timeout;
    let timeout = || NodeExecutorError::StartTimeout {
        module: module.clone(),
        timeout: config.startup_timeout,
    };
    let exited =
        |detail: String| NodeExecutorError::WorkerExited { module: module.clone(), detail };
    let stream = tokio::select! {
        accepted = listener.accept() => accepted.map_err(|source| NodeExecutorError::Io {
            context: format!("cannot accept on {}", socket_path.display()),
            source,
        })?.0,
        status = child.wait() => {
            let status = describe_status(status);
            return Err(exited(format!("{status} before connecting (its stderr is in the logs)")));
        }
        () = sleep_until(deadline) => return Err(timeout()),
    };
    drop(listener);
    let _ = std::fs::remove_file(&socket_path);

    let (read_half, mut write_half) = stream.into_split();
    let mut reader = FrameReader::new(read_half, config.max_frame);
    let first = tokio::select! {
        frame = reader.next_frame() => frame,
        () = sleep_until(deadline) => return Err(timeout()),
    };
    let protocol =
        |message: String| NodeExecutorError::Protocol { module: module.clone(), message };
    let line = match first {
        Ok(Some(line)) => line,
        Ok(None) => {
            let status = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
            let detail = match status {
                Ok(status) => describe_status(status),
                Err(_) => "the connection closed".to_string(),
            };
            return Err(exited(format!("{detail} (its stderr is in the logs)")));
        }
        Err(e) => return Err(protocol(e.to_string())),
    };
    let message: Incoming<'_> =
        serde_json::from_str(&line).map_err(|e| protocol(format!("invalid first message: {e}")))?;
    let workflows = match message.kind.as_ref() {
        "ready" => {
            if message.protocol != Some(1) {
                return Err(protocol(format!(
                    "unsupported protocol version {:?} (expected 1)",
                    message.protocol
                )));
            }
            let mut defs = Vec::new();
            for (index, value) in message.workflows.unwrap_or_default().into_iter().enumerate() {
                let def = WorkflowDef::from_value(value).map_err(|error| {
                    NodeExecutorError::InvalidWorkflow { module: module.clone(), index, error }
                })?;
                defs.push(def);
            }
            defs
        }
        "load_error" => {
            let error = message
                .error
                .unwrap_or_else(|| TaskError::new("Error", "load_error without an error"));
            return Err(NodeExecutorError::ModuleLoad {
                module: module.clone(),
                name: error.name,
                message: error.message,
                stack: error.stack,
            });
        }
        other => return Err(protocol(format!("expected `ready`, got a `{other}` message"))),
    };

    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
    let (stop_tx, stop_rx) = mpsc::unbounded_channel::<Stop>();
    let (exited_tx, exited_rx) = watch::channel(false);
    let worker = Arc::new(Worker::new(number, pid, out_tx, stop_tx, exited_rx, config.max_frame));

    // Writer: owns the write half; ends (closing the socket) when the worker is dropped.
    // Lines queued while a write was in progress go out together: one system call and one
    // wake-up of the worker for many tasks under load.
    tokio::spawn(async move {
        let mut lines = Vec::with_capacity(64);
        let mut buf = Vec::new();
        while out_rx.recv_many(&mut lines, 256).await > 0 {
            let bytes = if let [line] = lines.as_slice() {
                line.as_bytes()
            } else {
                buf.clear();
                lines.iter().for_each(|l| buf.extend_from_slice(l.as_bytes()));
                buf.as_slice()
            };
            if write_half.write_all(bytes).await.is_err() {
                break;
            }
            lines.clear();
        }
    });

    // Reader: delivers results; on end of stream or a protocol error, fails the in-flight
    // tasks and kills the process (the monitor then reports the exit).
    let weak = Arc::downgrade(&worker);
    let reader_events = events.clone();
    tokio::spawn(async move {
        let detail = loop {
            match reader.next_frame().await {
                Ok(Some(line)) => {
                    let Some(worker) = weak.upgrade() else { return };
                    if let Err(e) = handle_line(&worker, &reader_events, &line) {
                        break format!("protocol error: {e}");
                    }
                }
                Ok(None) => {
                    // Usually the process is exiting: let the monitor report how (exit code,
                    // signal) when it fails the tasks.
                    let Some(worker) = weak.upgrade() else { return };
                    let exit = tokio::time::timeout(Duration::from_secs(1), worker.wait_exit());
                    if exit.await.is_ok() {
                        return;
                    }
                    break "the worker closed its connection".to_string();
                }
                Err(e) => break format!("protocol error: {e}"),
            }
        };
        if let Some(worker) = weak.upgrade() {
            if detail.starts_with("protocol") {
                tracing::warn!(worker = worker.number, pid = worker.pid, "{detail}");
            }
            worker.fail_all(&detail);
            worker.stop(Stop::Kill);
        }
    });

    // Monitor: owns the process until it exits, then tells the pool.
    starting.disarm();
    let weak = Arc::downgrade(&worker);
    tokio::spawn(async move {
        let detail = process::monitor(child, stop_rx, exited_tx).await;
        tracing::info!(worker = number, pid, "{detail}");
        if let Some(worker) = weak.upgrade() {
            worker.fail_all(&detail);
            if let Some(events) = events.upgrade() {
                events.exited(&worker);
            }
        }
    });

    tracing::info!(worker = number, pid, module = %module.display(), "node worker ready");
    Ok(Started { worker, workflows })
}

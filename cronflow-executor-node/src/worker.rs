//! One worker: a `node` process, its socket connection and the map of its in-flight tasks.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use cronflow_core::{Json, TaskError, WorkflowDef};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};

use crate::error::NodeExecutorError;
use crate::framing::FrameReader;

/// Name of the retryable error of tasks in flight on a worker that exited or disconnected.
pub const WORKER_CRASHED: &str = "WorkerCrashed";

/// What every worker of a pool is started with.
#[derive(Debug)]
pub(crate) struct Config {
    /// Absolute path of the user's module.
    pub(crate) module: PathBuf,
    /// The `node` binary.
    pub(crate) node: PathBuf,
    /// `<js>/src/worker.js`.
    pub(crate) worker_js: PathBuf,
    /// Extra arguments given to node before the script.
    pub(crate) node_args: Vec<String>,
    /// Line size cap, both directions.
    pub(crate) max_frame: usize,
    /// How long a worker may take to connect and send `ready`.
    pub(crate) startup_timeout: Duration,
    /// Where the sockets are created.
    pub(crate) socket_dir: PathBuf,
}

/// A task waiting for its result.
pub(crate) struct Pending {
    /// Where the result goes.
    pub(crate) reply: oneshot::Sender<Result<Json, TaskError>>,
    /// For logs: the run.
    pub(crate) run_id: String,
    /// For logs: the node.
    pub(crate) node_id: Arc<str>,
}

#[derive(Default)]
struct InFlight {
    /// Set once the worker is gone: no task may be registered any more.
    closed: bool,
    tasks: HashMap<u64, Pending>,
}

/// A running worker. Dropping the last reference kills its process.
pub(crate) struct Worker {
    /// Pool slot, for logs.
    pub(crate) slot: usize,
    /// OS process id.
    pub(crate) pid: u32,
    next_id: AtomicU64,
    inflight: Mutex<InFlight>,
    out: mpsc::UnboundedSender<String>,
    kill: Mutex<Option<oneshot::Sender<()>>>,
    exited: watch::Receiver<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The error of a task lost with its worker.
pub(crate) fn worker_crashed(detail: &str) -> TaskError {
    TaskError::new(WORKER_CRASHED, detail.to_string())
}

impl Worker {
    /// Whether new tasks may be sent to this worker.
    pub(crate) fn is_live(&self) -> bool {
        !lock(&self.inflight).closed
    }

    /// Number of tasks in flight.
    pub(crate) fn in_flight(&self) -> usize {
        lock(&self.inflight).tasks.len()
    }

    /// A fresh request id.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a task; gives it back when the worker is already gone.
    pub(crate) fn register(&self, id: u64, pending: Pending) -> Result<(), Pending> {
        let mut inflight = lock(&self.inflight);
        if inflight.closed {
            return Err(pending);
        }
        inflight.tasks.insert(id, pending);
        Ok(())
    }

    /// Forgets task `id`; true if it was still in flight.
    pub(crate) fn forget(&self, id: u64) -> bool {
        lock(&self.inflight).tasks.remove(&id).is_some()
    }

    /// Queues one line (without its newline) for the socket; false if the connection is gone.
    pub(crate) fn send(&self, mut line: String) -> bool {
        line.push('\n');
        self.out.send(line).is_ok()
    }

    fn complete(&self, id: u64, result: Result<Json, TaskError>) {
        let pending = lock(&self.inflight).tasks.remove(&id);
        if let Some(p) = pending {
            let _ = p.reply.send(result);
        }
    }

    /// Fails every in-flight task as [`WORKER_CRASHED`] and refuses new ones.
    pub(crate) fn fail_all(&self, detail: &str) {
        let tasks = {
            let mut inflight = lock(&self.inflight);
            inflight.closed = true;
            std::mem::take(&mut inflight.tasks)
        };
        if !tasks.is_empty() {
            tracing::warn!(
                worker = self.slot,
                pid = self.pid,
                tasks = tasks.len(),
                "failing in-flight tasks: {detail}"
            );
        }
        for (_, p) in tasks {
            let _ = p.reply.send(Err(worker_crashed(detail)));
        }
    }

    /// Kills the process (SIGKILL).
    pub(crate) fn kill(&self) {
        if let Some(tx) = lock(&self.kill).take() {
            let _ = tx.send(());
        }
    }

    /// Waits until the process has exited.
    pub(crate) async fn wait_exit(&self) {
        let mut rx = self.exited.clone();
        let _ = rx.wait_for(|exited| *exited).await;
    }
}

/// A started worker and the workflow definitions of its `ready` message.
pub(crate) struct Started {
    pub(crate) worker: Arc<Worker>,
    pub(crate) workflows: Vec<WorkflowDef>,
}

/// A message from the worker. One flat struct (not a tagged enum) so `output` keeps its raw
/// text and is parsed only once.
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    ok: Option<bool>,
    #[serde(default, deserialize_with = "raw_json")]
    output: Option<Json>,
    #[serde(default)]
    error: Option<TaskError>,
    #[serde(default, borrow)]
    level: Option<Cow<'a, str>>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default, borrow)]
    fields: Option<&'a RawValue>,
    #[serde(default)]
    workflows: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    protocol: Option<u32>,
}

fn raw_json<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Json>, D::Error> {
    Json::deserialize_raw(d).map(Some)
}

static SOCKET_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Starts the worker of pool slot `slot`; `on_exit` runs once its process has exited (after
/// its in-flight tasks were failed).
pub(crate) async fn start(
    config: &Config,
    slot: usize,
    on_exit: Box<dyn FnOnce() + Send>,
) -> Result<Started, NodeExecutorError> {
    let module = &config.module;
    let n = SOCKET_COUNTER.fetch_add(1, Ordering::Relaxed);
    let socket_path = config.socket_dir.join(format!("w{slot}-{n}.sock"));
    let listener = UnixListener::bind(&socket_path).map_err(|source| NodeExecutorError::Io {
        context: format!("cannot listen on {}", socket_path.display()),
        source,
    })?;

    let mut child = Command::new(&config.node)
        .args(&config.node_args)
        .arg(&config.worker_js)
        .env("CRONFLOW_MODULE", module)
        .env("CRONFLOW_SOCKET", &socket_path)
        .env("CRONFLOW_MAX_FRAME", config.max_frame.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0)
        .spawn()
        .map_err(|source| NodeExecutorError::Runtime {
            runtime: config.node.clone(),
            module: module.clone(),
            source,
        })?;
    let pid = child.id().unwrap_or(0);
    if let Some(stdout) = child.stdout.take() {
        forward_output(stdout, slot, pid, false);
    }
    if let Some(stderr) = child.stderr.take() {
        forward_output(stderr, slot, pid, true);
    }

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
            return Err(exited(format!("{} before connecting (its stderr is in the logs)", describe_status(status))));
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
    let (kill_tx, kill_rx) = oneshot::channel::<()>();
    let (exited_tx, exited_rx) = watch::channel(false);
    let worker = Arc::new(Worker {
        slot,
        pid,
        next_id: AtomicU64::new(1),
        inflight: Mutex::new(InFlight::default()),
        out: out_tx,
        kill: Mutex::new(Some(kill_tx)),
        exited: exited_rx,
    });

    // Writer: owns the write half; ends (closing the socket) when the worker is dropped.
    tokio::spawn(async move {
        while let Some(line) = out_rx.recv().await {
            if write_half.write_all(line.as_bytes()).await.is_err() {
                break;
            }
        }
    });

    // Reader: delivers results; on end of stream or a protocol error, fails the in-flight
    // tasks and kills the process (the monitor then starts a replacement).
    let weak = Arc::downgrade(&worker);
    tokio::spawn(async move {
        let detail = loop {
            match reader.next_frame().await {
                Ok(Some(line)) => {
                    let Some(worker) = weak.upgrade() else { return };
                    if let Err(e) = handle_line(&worker, &line) {
                        break format!("protocol error: {e}");
                    }
                }
                Ok(None) => break "the worker closed its connection".to_string(),
                Err(e) => break format!("protocol error: {e}"),
            }
        };
        if let Some(worker) = weak.upgrade() {
            if detail.starts_with("protocol") {
                tracing::warn!(worker = worker.slot, pid = worker.pid, "{detail}");
            }
            worker.fail_all(&detail);
            worker.kill();
        }
    });

    // Monitor: owns the process; kills it on request or when the worker is dropped.
    let weak = Arc::downgrade(&worker);
    tokio::spawn(monitor(child, kill_rx, exited_tx, weak, slot, pid, on_exit));

    tracing::info!(worker = slot, pid, module = %module.display(), "node worker ready");
    Ok(Started { worker, workflows })
}

async fn monitor(
    mut child: Child,
    kill_rx: oneshot::Receiver<()>,
    exited_tx: watch::Sender<bool>,
    weak: Weak<Worker>,
    slot: usize,
    pid: u32,
    on_exit: Box<dyn FnOnce() + Send>,
) {
    let status = tokio::select! {
        status = child.wait() => status,
        _ = kill_rx => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    let detail = format!("worker process {pid} {}", describe_status(status));
    let _ = exited_tx.send(true);
    tracing::info!(worker = slot, pid, "{detail}");
    if let Some(worker) = weak.upgrade() {
        worker.fail_all(&detail);
    }
    on_exit();
}

fn describe_status(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(status) => format!("exited ({status})"),
        Err(e) => format!("could not be waited for ({e})"),
    }
}

/// Handles one line after `ready`.
fn handle_line(worker: &Worker, line: &str) -> Result<(), String> {
    let message: Incoming<'_> = serde_json::from_str(line).map_err(|e| e.to_string())?;
    match message.kind.as_ref() {
        "result" => {
            let id = message.id.ok_or("a result without an id")?;
            let result = if message.ok == Some(true) {
                Ok(message.output.unwrap_or_default())
            } else {
                Err(message.error.unwrap_or_else(|| {
                    TaskError::new("ProtocolError", "the worker sent a failed result without error")
                }))
            };
            worker.complete(id, result);
        }
        "log" => {
            let (run_id, node_id) = match message.id {
                Some(id) => {
                    let inflight = lock(&worker.inflight);
                    match inflight.tasks.get(&id) {
                        Some(p) => (p.run_id.clone(), p.node_id.to_string()),
                        None => (String::new(), String::new()),
                    }
                }
                None => (String::new(), String::new()),
            };
            let text = message.message.unwrap_or_default();
            let fields = message.fields.map(RawValue::get).unwrap_or("{}");
            let (slot, pid) = (worker.slot, worker.pid);
            match message.level.as_deref() {
                Some("error") => {
                    tracing::error!(worker = slot, pid, run = %run_id, node = %node_id, fields, "{text}")
                }
                Some("warn") => {
                    tracing::warn!(worker = slot, pid, run = %run_id, node = %node_id, fields, "{text}")
                }
                Some("debug") => {
                    tracing::debug!(worker = slot, pid, run = %run_id, node = %node_id, fields, "{text}")
                }
                _ => {
                    tracing::info!(worker = slot, pid, run = %run_id, node = %node_id, fields, "{text}")
                }
            }
        }
        other => {
            tracing::debug!(worker = worker.slot, "ignored a `{other}` message from the worker")
        }
    }
    Ok(())
}

/// Forwards a worker's stdout (info) or stderr (warn) to `tracing`, line by line.
fn forward_output<R: AsyncRead + Unpin + Send + 'static>(
    stream: R,
    slot: usize,
    pid: u32,
    is_stderr: bool,
) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\n', '\r']);
            if is_stderr {
                tracing::warn!(worker = slot, pid, stream = "stderr", "{line}");
            } else {
                tracing::info!(worker = slot, pid, stream = "stdout", "{line}");
            }
        }
    });
}

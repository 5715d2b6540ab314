//! [`NodeExecutor`]: the pool of workers, its builder and its [`Executor`] implementation.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use cronflow_core::{Executor, Json, Node, Task, TaskError, WorkflowDef};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::error::NodeExecutorError;
use crate::framing::{self, DEFAULT_MAX_FRAME_BYTES};
use crate::worker::{self, Config, Pending, Worker, worker_crashed};

/// Configures and starts a [`NodeExecutor`].
#[derive(Debug, Clone)]
pub struct NodeExecutorBuilder {
    module: Option<PathBuf>,
    workers: usize,
    max_frame_bytes: usize,
    runtime: PathBuf,
    node: PathBuf,
    node_args: Vec<String>,
    startup_timeout: Duration,
}

impl Default for NodeExecutorBuilder {
    fn default() -> Self {
        Self {
            module: None,
            workers: 1,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            runtime: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js"),
            node: PathBuf::from("node"),
            node_args: Vec::new(),
            startup_timeout: Duration::from_secs(10),
        }
    }
}

impl NodeExecutorBuilder {
    /// The user's JavaScript module (ESM or CommonJS) defining the workflows. Required.
    pub fn module(mut self, path: impl Into<PathBuf>) -> Self {
        self.module = Some(path.into());
        self
    }

    /// Number of worker processes (at least 1; default 1).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Maximum size of one protocol line in bytes, both directions (default 16 MiB).
    pub fn max_frame_bytes(mut self, bytes: usize) -> Self {
        self.max_frame_bytes = bytes.max(1024);
        self
    }

    /// The directory of the JavaScript package whose `src/worker.js` is run (default: the
    /// `js/` directory of this crate's sources).
    pub fn runtime(mut self, dir: impl Into<PathBuf>) -> Self {
        self.runtime = dir.into();
        self
    }

    /// The `node` binary (default: `node` on `PATH`).
    pub fn node(mut self, path: impl Into<PathBuf>) -> Self {
        self.node = path.into();
        self
    }

    /// An extra argument for `node`, before the script (e.g. `--max-old-space-size=512`).
    pub fn node_arg(mut self, arg: impl Into<String>) -> Self {
        self.node_args.push(arg.into());
        self
    }

    /// How long a worker may take to connect and report `ready` (default 10 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Starts the workers and waits until each has loaded the module; returns the executor
    /// and the workflow definitions the module defines.
    pub async fn spawn(self) -> Result<(NodeExecutor, Vec<WorkflowDef>), NodeExecutorError> {
        let module = self.module.ok_or(NodeExecutorError::NoModule)?;
        let module = std::fs::canonicalize(&module)
            .map_err(|source| NodeExecutorError::ModuleNotFound { module, source })?;
        let socket_dir =
            tempfile::Builder::new().prefix("cronflow-node-").tempdir().map_err(|source| {
                NodeExecutorError::Io {
                    context: "cannot create a temporary directory for the worker sockets".into(),
                    source,
                }
            })?;
        let config = Arc::new(Config {
            module,
            node: self.node,
            worker_js: self.runtime.join("src").join("worker.js"),
            node_args: self.node_args,
            max_frame: self.max_frame_bytes,
            startup_timeout: self.startup_timeout,
            socket_dir: socket_dir.path().to_path_buf(),
        });
        let shared = Arc::new(Shared {
            config: config.clone(),
            slots: (0..self.workers).map(|_| RwLock::new(None)).collect(),
            next: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            handlers: OnceLock::new(),
            _socket_dir: socket_dir,
        });

        let mut starting = JoinSet::new();
        for slot in 0..self.workers {
            let config = config.clone();
            let on_exit = shared.on_exit(slot);
            starting.spawn(async move { (slot, worker::start(&config, slot, on_exit).await) });
        }
        let mut workflows = None;
        while let Some(joined) = starting.join_next().await {
            let (slot, started) = joined.map_err(|e| NodeExecutorError::Io {
                context: "a worker start-up task failed".into(),
                source: std::io::Error::other(e.to_string()),
            })?;
            // On error, the JoinSet and the workers started so far are dropped: killed.
            let started = started?;
            *write(&shared.slots[slot]) = Some(started.worker);
            workflows.get_or_insert(started.workflows);
        }
        let workflows = workflows.unwrap_or_default();
        let mut handlers = HashSet::new();
        for def in &workflows {
            collect_handlers(&def.nodes, &mut handlers);
        }
        let _ = shared.handlers.set(handlers);
        Ok((NodeExecutor { shared }, workflows))
    }
}

/// Every handler name the nodes reference.
fn collect_handlers(nodes: &[Node], out: &mut HashSet<String>) {
    for node in nodes {
        match node {
            Node::Step(n) | Node::Action(n) => {
                out.insert(n.handler.clone());
            }
            Node::If(n) => out.extend(n.branches.iter().map(|b| b.condition.clone())),
            Node::ForEach(n) => {
                out.insert(n.items.clone());
            }
            Node::Batch(n) => {
                out.insert(n.items.clone());
            }
            Node::While(n) => {
                out.insert(n.condition.clone());
            }
            Node::Pause(n) => out.extend(n.on_pause.clone()),
            Node::Subflow(n) => out.extend(n.payload.clone()),
            _ => {}
        }
        for (_, children) in node.children() {
            collect_handlers(children, out);
        }
    }
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

struct Shared {
    config: Arc<Config>,
    slots: Vec<RwLock<Option<Arc<Worker>>>>,
    next: AtomicUsize,
    shutting_down: AtomicBool,
    handlers: OnceLock<HashSet<String>>,
    _socket_dir: tempfile::TempDir,
}

impl Shared {
    fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// What a worker of `slot` does once its process exited: start a replacement.
    fn on_exit(self: &Arc<Self>, slot: usize) -> Box<dyn FnOnce() + Send> {
        let weak = Arc::downgrade(self);
        Box::new(move || {
            if let Some(shared) = weak.upgrade()
                && !shared.shutting_down()
            {
                shared.respawn(slot);
            }
        })
    }

    /// Starts a fresh worker in `slot`, in the background, with backoff between failures.
    fn respawn(self: &Arc<Self>, slot: usize) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(50);
            loop {
                let Some(shared) = weak.upgrade() else { return };
                if shared.shutting_down() {
                    return;
                }
                let on_exit = shared.on_exit(slot);
                match worker::start(&shared.config, slot, on_exit).await {
                    Ok(started) => {
                        *write(&shared.slots[slot]) = Some(started.worker);
                        return;
                    }
                    Err(e) => tracing::warn!(worker = slot, "cannot restart the worker: {e}"),
                }
                drop(shared);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        });
    }

    /// A live worker, round-robin.
    fn pick(&self) -> Option<Arc<Worker>> {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n).find_map(|i| {
            read(&self.slots[(start + i) % n]).as_ref().filter(|w| w.is_live()).cloned()
        })
    }

    fn workers(&self) -> Vec<Arc<Worker>> {
        self.slots.iter().filter_map(|s| read(s).clone()).collect()
    }
}

/// Runs JavaScript handlers in a pool of Node.js worker processes. Cheap to clone: clones
/// share the pool; the processes are killed when the last clone is dropped.
#[derive(Clone)]
pub struct NodeExecutor {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for NodeExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeExecutor")
            .field("module", &self.shared.config.module)
            .field("workers", &self.shared.slots.len())
            .finish_non_exhaustive()
    }
}

impl NodeExecutor {
    /// A builder; set at least [`NodeExecutorBuilder::module`].
    pub fn builder() -> NodeExecutorBuilder {
        NodeExecutorBuilder::default()
    }

    /// Process ids of the live workers (for operations and tests).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.shared.workers().iter().filter(|w| w.is_live()).map(|w| w.pid).collect()
    }

    /// Number of tasks in flight over all workers.
    pub fn in_flight(&self) -> usize {
        self.shared.workers().iter().map(|w| w.in_flight()).sum()
    }

    /// Stops the pool: asks each worker to finish its in-flight tasks and exit, waits up to
    /// `grace`, then kills the workers still running. New tasks fail with `ShuttingDown`.
    pub async fn shutdown(&self, grace: Duration) {
        self.shared.shutting_down.store(true, Ordering::Release);
        let workers = self.shared.workers();
        for w in &workers {
            w.send(r#"{"type":"shutdown"}"#.to_string());
        }
        let all_exited = || async {
            for w in &workers {
                w.wait_exit().await;
            }
        };
        if tokio::time::timeout(grace, all_exited()).await.is_err() {
            for w in &workers {
                w.kill();
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), all_exited()).await;
        }
    }

    /// A live worker, waiting up to the start-up timeout while all are being restarted.
    async fn live_worker(&self) -> Option<Arc<Worker>> {
        let deadline = tokio::time::Instant::now() + self.shared.config.startup_timeout;
        loop {
            if let Some(w) = self.shared.pick() {
                return Some(w);
            }
            if self.shared.shutting_down() || tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Sends `cancel` for the task if the `execute` future is dropped before its result.
struct CancelOnDrop {
    worker: Arc<Worker>,
    id: u64,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed && self.worker.forget(self.id) {
            self.worker.send(format!(r#"{{"type":"cancel","id":{}}}"#, self.id));
        }
    }
}

#[async_trait]
impl Executor for NodeExecutor {
    async fn execute(&self, task: Task) -> Result<Json, TaskError> {
        if self.shared.shutting_down() {
            return Err(TaskError::new("ShuttingDown", "the Node executor is shutting down"));
        }
        let Some(worker) = self.live_worker().await else {
            return Err(TaskError::new("NoWorker", "no Node worker is running"));
        };
        let id = worker.next_id();
        let line = framing::task_line(id, &task);
        let limit = self.shared.config.max_frame;
        if line.len() > limit {
            return Err(TaskError::new(
                "PayloadTooLarge",
                format!(
                    "the task message for handler `{}` is {} bytes, over the maximum frame of \
                     {limit} bytes",
                    task.handler,
                    line.len()
                ),
            )
            .non_retryable());
        }
        let (reply, answer) = oneshot::channel();
        let pending =
            Pending { reply, run_id: task.run_id.to_string(), node_id: task.node_id.clone() };
        if worker.register(id, pending).is_err() {
            return Err(worker_crashed("the worker exited before the task was sent"));
        }
        let mut guard = CancelOnDrop { worker: worker.clone(), id, armed: true };
        if !worker.send(line) {
            worker.forget(id);
            guard.armed = false;
            return Err(worker_crashed("the worker's connection is closed"));
        }
        let result = answer.await;
        guard.armed = false;
        result.unwrap_or_else(|_| Err(worker_crashed("the worker dropped the task")))
    }

    fn has_handler(&self, handler: &str) -> bool {
        self.shared.handlers.get().is_none_or(|h| h.contains(handler))
    }
}

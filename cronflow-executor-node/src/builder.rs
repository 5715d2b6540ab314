//! [`NodeExecutorBuilder`]: every setting of the pool, with its default and why it exists.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cronflow_core::WorkflowDef;

use crate::error::NodeExecutorError;
use crate::executor::NodeExecutor;
use crate::framing::DEFAULT_MAX_FRAME_BYTES;
use crate::pool::Pool;

/// The settings every worker of a pool is started and managed with.
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
    /// `--max-old-space-size`, in MiB.
    pub(crate) max_old_space_mb: Option<u64>,
    /// Line size cap, both directions.
    pub(crate) max_frame: usize,
    /// How long a worker may take to connect and send `ready`.
    pub(crate) startup_timeout: Duration,
    /// Where the sockets are created.
    pub(crate) socket_dir: PathBuf,
    pub(crate) min_workers: usize,
    pub(crate) max_workers: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) recycle_after_tasks: Option<u64>,
    pub(crate) max_heap_bytes: Option<u64>,
    pub(crate) idle_timeout: Duration,
    pub(crate) cancel_grace: Duration,
    pub(crate) kill_grace: Duration,
    pub(crate) stats_interval: Duration,
    pub(crate) restart_backoff: (Duration, Duration),
}

/// Configures and starts a [`NodeExecutor`].
///
/// ```no_run
/// # async fn demo() -> Result<(), cronflow_executor_node::NodeExecutorError> {
/// use std::time::Duration;
/// use cronflow_executor_node::NodeExecutor;
///
/// let (executor, workflows) = NodeExecutor::builder()
///     .module("workflows.mjs")
///     .min_workers(1)
///     .max_workers(4)                // grows when every worker is at its in-flight limit
///     .max_in_flight_per_worker(32)
///     .recycle_after_tasks(10_000)   // a fresh process now and then bounds slow leaks
///     .max_heap_mb(256)              // ... and so does a heap ceiling
///     .max_old_space_mb(512)         // V8's hard limit: over it the process dies
///     .kill_grace(Duration::from_secs(2))
///     .spawn()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct NodeExecutorBuilder {
    module: Option<PathBuf>,
    min_workers: usize,
    max_workers: usize,
    max_in_flight: usize,
    recycle_after_tasks: Option<u64>,
    max_heap_mb: Option<u64>,
    max_old_space_mb: Option<u64>,
    idle_timeout: Duration,
    cancel_grace: Duration,
    kill_grace: Duration,
    stats_interval: Duration,
    restart_backoff: (Duration, Duration),
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
            min_workers: 1,
            max_workers: 1,
            max_in_flight: 64,
            recycle_after_tasks: None,
            max_heap_mb: None,
            max_old_space_mb: None,
            idle_timeout: Duration::from_secs(60),
            cancel_grace: Duration::from_secs(1),
            kill_grace: Duration::from_secs(2),
            stats_interval: Duration::from_secs(1),
            restart_backoff: (Duration::from_millis(50), Duration::from_secs(5)),
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

    /// A fixed number of worker processes: sets both [`min_workers`](Self::min_workers) and
    /// [`max_workers`](Self::max_workers) (at least 1; default 1).
    pub fn workers(mut self, n: usize) -> Self {
        self.min_workers = n.max(1);
        self.max_workers = n.max(1);
        self
    }

    /// Workers kept running even when idle, started by `spawn` (at least 1; default 1).
    pub fn min_workers(mut self, n: usize) -> Self {
        self.min_workers = n.max(1);
        self
    }

    /// The most workers the pool grows to. A worker is added when a task finds every worker
    /// at its in-flight limit; one above the minimum that stays idle for the
    /// [`idle_timeout`](Self::idle_timeout) is retired. Default 1; raised to the minimum.
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = n.max(1);
        self
    }

    /// Tasks one worker runs at once (default 64). A JavaScript handler that awaits I/O
    /// leaves its worker free for others; this bounds how many share one event loop. Beyond
    /// it tasks wait in the pool, in no particular order, until a slot frees or the engine
    /// gives up on them.
    pub fn max_in_flight_per_worker(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// Replaces a worker after it was given `n` tasks: it finishes them and exits while a
    /// fresh process takes its place. Bounds the damage of slow leaks in user code. Off by
    /// default.
    pub fn recycle_after_tasks(mut self, n: u64) -> Self {
        self.recycle_after_tasks = Some(n.max(1));
        self
    }

    /// Replaces a worker (gracefully, as with [`recycle_after_tasks`](Self::recycle_after_tasks))
    /// once its V8 heap in use exceeds `mb` MiB, as reported every
    /// [`stats_interval`](Self::stats_interval). Off by default.
    pub fn max_heap_mb(mut self, mb: u64) -> Self {
        self.max_heap_mb = Some(mb.max(1));
        self
    }

    /// Starts `node` with `--max-old-space-size=<mb>`: V8's hard heap limit. A worker that
    /// exceeds it dies ("JavaScript heap out of memory"); its tasks fail as
    /// [`WORKER_CRASHED`](crate::WORKER_CRASHED) and are retried on a fresh worker.
    pub fn max_old_space_mb(mut self, mb: u64) -> Self {
        self.max_old_space_mb = Some(mb.max(1));
        self
    }

    /// How long a worker above [`min_workers`](Self::min_workers) may stay idle before it is
    /// retired (default 60 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long a handler may keep running after the engine gave up on its task (timeout or
    /// cancellation; the handler's `ctx.signal` is aborted) before its worker is declared
    /// stuck (default 1 s). A stuck worker gets no new task, a replacement starts at once, and
    /// once its other tasks are done it is stopped: SIGTERM to its process group, then SIGKILL
    /// after the [`kill_grace`](Self::kill_grace).
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = grace;
        self
    }

    /// Time between SIGTERM and SIGKILL when a worker is stopped (default 2 s).
    pub fn kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    /// How often each worker reports its heap usage (default 1 s).
    pub fn stats_interval(mut self, interval: Duration) -> Self {
        self.stats_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Delay before starting a worker again after a failed start: `first`, doubling after
    /// each further failure up to `max` (default 50 ms to 5 s). A module that cannot load
    /// keeps failing; this keeps the host from spending itself on restarts.
    pub fn restart_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.restart_backoff = (first, max.max(first));
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

    /// An extra argument for `node`, before the script (e.g. `--enable-source-maps`).
    pub fn node_arg(mut self, arg: impl Into<String>) -> Self {
        self.node_args.push(arg.into());
        self
    }

    /// How long a worker may take to connect and report `ready` (default 10 s). Also how
    /// long a task waits for a worker when none is running (all are restarting).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Starts [`min_workers`](Self::min_workers) workers and waits until each has loaded the
    /// module; returns the executor and the workflow definitions the module defines.
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
        let config = Config {
            module,
            node: self.node,
            worker_js: self.runtime.join("src").join("worker.js"),
            node_args: self.node_args,
            max_old_space_mb: self.max_old_space_mb,
            max_frame: self.max_frame_bytes,
            startup_timeout: self.startup_timeout,
            socket_dir: socket_dir.path().to_path_buf(),
            min_workers: self.min_workers,
            max_workers: self.max_workers.max(self.min_workers),
            max_in_flight: self.max_in_flight,
            recycle_after_tasks: self.recycle_after_tasks,
            max_heap_bytes: self.max_heap_mb.map(|mb| mb * 1024 * 1024),
            idle_timeout: self.idle_timeout,
            cancel_grace: self.cancel_grace,
            kill_grace: self.kill_grace,
            stats_interval: self.stats_interval,
            restart_backoff: self.restart_backoff,
        };
        let (pool, workflows) = Pool::start(Arc::new(config), socket_dir).await?;
        let executor = NodeExecutor::new(pool, &workflows);
        Ok((executor, workflows))
    }
}

//! A worker's operating-system process: `node` in a process group of its own, the signals
//! that stop it, and its stdout and stderr carried into `tracing`.
//!
//! No `node` process may outlive the host. Three mechanisms cover the three ways a host goes:
//! the monitor task kills the group when the pool lets a worker go (or drops it), the
//! [`GroupGuard`] kills it when the Tokio runtime is torn down under the monitor, and the
//! worker's own watchdog thread (`js/src/worker.js`) kills it when the host dies without
//! running any code at all (`kill -9`).

use std::process::Stdio;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};

use crate::builder::Config;
use crate::error::NodeExecutorError;

/// What the pool can ask of a worker's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// SIGTERM to the group, then SIGKILL if it is still there after the grace period.
    Terminate(Duration),
    /// SIGKILL to the group at once.
    Kill,
}

/// The process group of one worker: `node` is its leader, so its id is node's pid, and every
/// process a handler starts belongs to it unless it moves itself out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcessGroup(Option<Pid>);

impl ProcessGroup {
    fn new(pid: u32) -> Self {
        // Never 0 or 1: `kill(-1)` would signal every process we may signal.
        Self(i32::try_from(pid).ok().filter(|&p| p > 1).and_then(Pid::from_raw))
    }

    /// Sends `signal` to every process of the group; a group already gone is not an error.
    fn signal(self, signal: Signal) {
        if let Some(pid) = self.0
            && let Err(e) = kill_process_group(pid, signal)
            && e != rustix::io::Errno::SRCH
        {
            tracing::warn!(pgid = pid.as_raw_nonzero().get(), "cannot signal a worker: {e}");
        }
    }
}

/// Kills the group when dropped: if the runtime drops the monitor task before the process
/// was reaped, or a start-up fails after `node` was spawned (a module may start processes
/// at import), the processes still go.
pub(crate) struct GroupGuard(Option<ProcessGroup>);

impl GroupGuard {
    /// Guards the group led by `pid`.
    pub(crate) fn new(pid: u32) -> Self {
        Self(Some(ProcessGroup::new(pid)))
    }

    /// Lets the group live: its monitor owns it from now on.
    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            group.signal(Signal::KILL);
        }
    }
}

/// Starts `node <worker.js>` for `socket`, in a new process group, with its output forwarded
/// to `tracing`.
pub(crate) fn spawn(
    config: &Config,
    number: u64,
    socket: &std::path::Path,
) -> Result<Child, NodeExecutorError> {
    let mut command = Command::new(&config.node);
    if let Some(mb) = config.max_old_space_mb {
        command.arg(format!("--max-old-space-size={mb}"));
    }
    let mut child = command
        .args(&config.node_args)
        .arg(&config.worker_js)
        .env("CRONFLOW_MODULE", &config.module)
        .env("CRONFLOW_SOCKET", socket)
        .env("CRONFLOW_MAX_FRAME", config.max_frame.to_string())
        .env("CRONFLOW_STATS_INTERVAL_MS", config.stats_interval.as_millis().to_string())
        // It leads its own process group (below): on losing its host it kills the group.
        .env("CRONFLOW_OWN_GROUP", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0)
        .spawn()
        .map_err(|source| NodeExecutorError::Runtime {
            runtime: config.node.clone(),
            module: config.module.clone(),
            source,
        })?;
    let pid = child.id().unwrap_or(0);
    if let Some(stdout) = child.stdout.take() {
        forward_output(stdout, number, pid, false);
    }
    if let Some(stderr) = child.stderr.take() {
        forward_output(stderr, number, pid, true);
    }
    Ok(child)
}

/// Owns the process until it exited: applies [`Stop`] requests, kills the group when the
/// worker is dropped (its sender closes), reports the exit on `exited` and returns how the
/// process ended.
pub(crate) async fn monitor(
    mut child: Child,
    mut stops: mpsc::UnboundedReceiver<Stop>,
    exited: watch::Sender<bool>,
) -> String {
    let pid = child.id().unwrap_or(0);
    let group = ProcessGroup::new(pid);
    let _guard = GroupGuard::new(pid);
    let mut terminating: Option<tokio::time::Instant> = None;
    let status = loop {
        let kill_at = terminating;
        tokio::select! {
            status = child.wait() => break status,
            stop = stops.recv() => match stop {
                Some(Stop::Terminate(grace)) => {
                    if terminating.is_none() {
                        group.signal(Signal::TERM);
                        terminating = Some(tokio::time::Instant::now() + grace);
                    }
                }
                Some(Stop::Kill) | None => {
                    group.signal(Signal::KILL);
                    break child.wait().await;
                }
            },
            () = async { tokio::time::sleep_until(kill_at.unwrap_or_else(tokio::time::Instant::now)).await },
                if kill_at.is_some() =>
            {
                tracing::warn!(pid, "the worker ignored SIGTERM: killing it");
                group.signal(Signal::KILL);
                break child.wait().await;
            }
        }
    };
    // The leader is gone; whatever a handler started in its group goes with it.
    group.signal(Signal::KILL);
    let _ = exited.send(true);
    format!("worker process {pid} {}", describe_status(status))
}

/// A human reading of how a process ended.
pub(crate) fn describe_status(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(status) => format!("exited ({status})"),
        Err(e) => format!("could not be waited for ({e})"),
    }
}

/// Forwards a worker's stdout (info) or stderr (warn) to `tracing`, line by line.
fn forward_output<R: AsyncRead + Unpin + Send + 'static>(
    stream: R,
    number: u64,
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
                tracing::warn!(worker = number, pid, stream = "stderr", "{line}");
            } else {
                tracing::info!(worker = number, pid, stream = "stdout", "{line}");
            }
        }
    });
}

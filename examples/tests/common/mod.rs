//! What the tests driving `durable_host` processes share: the process guard, the history
//! checks of its 5-step workflow, and small helpers. Each test binary uses part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use cronflow_core::{RecordedEvent, RunEvent, RunId, RunRecord, RunStatus};

/// The steps of `durable_host`'s workflow, in order.
pub(crate) const STEPS: [&str; 5] = ["s1", "s2", "s3", "s4", "s5"];

/// A running example process (`durable_host` unless said otherwise); dropping it kills (also
/// when stopped) and reaps the process, so a failing test leaves no orphan behind.
pub(crate) struct Host {
    name: &'static str,
    child: Child,
    stdout: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Host {
    /// Starts the host with `store` (`["--db", path]` or `["--postgres", url]`) and `args`.
    pub(crate) fn start(name: &'static str, store: &[&str], args: &[&str]) -> Host {
        let args: Vec<&str> = store.iter().chain(args).copied().collect();
        Host::spawn(env!("CARGO_BIN_EXE_durable_host"), name, &args)
    }

    /// Starts the example binary `exe` with `args`.
    pub(crate) fn spawn(exe: &str, name: &'static str, args: &[&str]) -> Host {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {exe}: {e}"));
        let out = child.stdout.take().expect("piped stdout");
        let (tx, stdout) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let err = child.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let log = Arc::clone(&stderr);
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        Host { name, child, stdout, stderr }
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The next stdout line, or a panic explaining what was awaited once `deadline` passes or
    /// the host exits.
    pub(crate) fn next_line(&mut self, deadline: Instant, awaiting: &str) -> String {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.stdout.recv_timeout(left) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                panic!("timed out awaiting {awaiting} of {}; stderr:\n{}", self.name, self.stderr())
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.wait_exit(Duration::from_secs(5));
                panic!(
                    "{} closed stdout ({status}) while awaiting {awaiting}; stderr:\n{}",
                    self.name,
                    self.stderr()
                )
            }
        }
    }

    /// The value of the next line, which must start with `prefix`.
    pub(crate) fn expect_line(&mut self, prefix: &str, deadline: Instant) -> String {
        let line = self.next_line(deadline, &format!("`{prefix}`"));
        let value = line.strip_prefix(prefix);
        let value =
            value.unwrap_or_else(|| panic!("{}: expected `{prefix}`, got {line:?}", self.name));
        value.trim().to_owned()
    }

    /// Reads the `instance` line and `n` `accepted` lines: the engine started and accepted
    /// `n` runs.
    pub(crate) fn accepted(&mut self, n: usize, deadline: Instant) -> Vec<RunId> {
        self.expect_line("instance ", deadline);
        (0..n).map(|_| self.expect_line("accepted ", deadline).parse().expect("a run id")).collect()
    }

    /// Reads `completed-by-me` and `all done`, waits for a successful exit and returns how
    /// many steps this host ran.
    pub(crate) fn finish(&mut self, deadline: Instant) -> u64 {
        let n = self.expect_line("completed-by-me ", deadline).parse().expect("a count");
        let done = self.next_line(deadline, "`all done`");
        assert_eq!(done, "all done", "{}: unexpected output", self.name);
        let status = self.wait_exit(deadline.saturating_duration_since(Instant::now()));
        assert!(status.success(), "{} exited with {status}; stderr:\n{}", self.name, self.stderr());
        n
    }

    /// Waits for the host to exit on its own; panics after `timeout`.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                panic!("{} did not exit within {timeout:?}; stderr:\n{}", self.name, self.stderr());
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`) with the `kill` command.
    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", self.name);
    }

    /// SIGKILL, then reap.
    pub(crate) fn kill(mut self) {
        self.child.kill().expect("kill durable_host");
        self.child.wait().expect("reap durable_host");
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A random duration in `[lo, hi)` milliseconds (std's hasher keys are random per process).
pub(crate) fn jitter(lo: u64, hi: u64) -> Duration {
    Duration::from_millis(lo + RandomState::new().hash_one(0u8) % (hi - lo))
}

/// What the store holds about a set of runs.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) running: usize,
    /// Running runs with some but not all steps completed.
    pub(crate) partial: usize,
    pub(crate) completed: usize,
    /// Step completions recorded, over all runs.
    pub(crate) steps_done: usize,
}

/// Checks one run's history and returns how many of its steps have completed.
pub(crate) fn check_history(run: &RunRecord, history: &[RecordedEvent]) -> usize {
    let id = run.id;
    for (i, event) in history.iter().enumerate() {
        assert_eq!(event.seq as usize, i, "run {id}: history seq has a gap: {history:#?}");
    }
    assert!(
        matches!(history.first().map(|e| &e.event), Some(RunEvent::RunStarted)),
        "run {id}: history does not start with run_started: {history:#?}"
    );
    let starts = history.iter().filter(|e| e.event == RunEvent::RunStarted).count();
    assert_eq!(starts, 1, "run {id}: run_started recorded {starts} times");
    let terminal: Vec<usize> =
        (0..history.len()).filter(|&i| history[i].event.terminal_status().is_some()).collect();
    match run.status {
        RunStatus::Running => assert!(terminal.is_empty(), "run {id}: running, yet ended"),
        status => {
            assert_eq!(terminal, [history.len() - 1], "run {id}: not one terminal event, last");
            assert_eq!(history[terminal[0]].event.terminal_status(), Some(status));
        }
    }
    // The workflow is linear: the k-th step completion must be step k, each exactly once.
    let mut done = HashMap::new();
    for event in history {
        if let RunEvent::TaskSucceeded { task, output, .. } = &event.event {
            if let Some(seq) = done.insert(task.as_str().to_string(), event.seq) {
                panic!(
                    "run {id}: step {task} completion recorded twice (seq {seq} and {})",
                    event.seq
                );
            }
            let expected = STEPS.get(done.len() - 1).copied();
            assert_eq!(Some(task.as_str()), expected, "run {id}: steps out of order");
            assert_eq!(
                output.to_value()["step"],
                task.as_str(),
                "run {id}: {task} has another's output"
            );
        }
    }
    done.len()
}

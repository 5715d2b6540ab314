//! Connection loss: a PostgreSQL server restarted under a running engine. The engine
//! reconnects, retries what was in flight, and loses nothing it accepted.
//!
//! The server is a private one, started for this test on a free port in a temporary directory
//! (the shared test database is not touched): it needs PostgreSQL's `initdb` and `pg_ctl` in
//! `/usr/lib/postgresql/15/bin` (or `CRONFLOW_TEST_PG_BIN`), and `runuser` when the test runs
//! as root (PostgreSQL refuses to run as root, so it runs as the `postgres` user). Without
//! them the test says it is skipped.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use chrono::Utc;
use cronflow_core::{
    Engine, EngineError, EngineHandle, MockExecutor, RunEvent, RunId, RunReport, RunStatus,
    Workflow,
};
use cronflow_store::PostgresStore;
use serde_json::json;
use tempfile::TempDir;

const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";
const STEPS: [&str; 3] = ["reserve", "charge", "ship"];
const STEP_TIME: Duration = Duration::from_millis(100);

/// A PostgreSQL server of this test's own; stopped (immediately) and deleted when dropped,
/// even when the test panics.
struct PrivateServer {
    bin: PathBuf,
    /// Run the binaries as the `postgres` user (when this process is root).
    as_postgres: bool,
    dir: TempDir,
    port: u16,
}

impl PrivateServer {
    /// Initialises and starts a server, or `None` (after saying why) when the binaries or
    /// `runuser` are missing.
    fn start() -> Option<Self> {
        let bin = std::env::var_os("CRONFLOW_TEST_PG_BIN")
            .map_or_else(|| PathBuf::from(DEFAULT_BIN), PathBuf::from);
        let as_postgres = is_root();
        let runuser = Path::new("/usr/sbin/runuser").exists() || which("runuser");
        if !bin.join("initdb").exists() || !bin.join("pg_ctl").exists() {
            skip(&format!("no initdb/pg_ctl in {}", bin.display()));
            return None;
        }
        if as_postgres && !runuser {
            skip("running as root without runuser");
            return None;
        }
        let dir = tempfile::Builder::new().prefix("cf-pg-").tempdir().unwrap();
        let port = free_port();
        let server = Self { bin, as_postgres, dir, port };
        if as_postgres {
            let mut chown = Command::new("chown");
            chown.arg("-R").arg("postgres:").arg(server.dir.path());
            check(chown, "chown");
        }
        let data = server.data();
        server.pg("initdb", &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"]);
        server.pg_ctl(&["start", "-w", "-t", "30", "-l", &server.log()]);
        Some(server)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn log(&self) -> String {
        self.dir.path().join("server.log").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl <args>` on this server, with its port, socket directory and address.
    fn pg_ctl(&self, args: &[&str]) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let data = self.data();
        let mut all = vec!["-D", data.as_str(), "-o", options.as_str()];
        all.extend_from_slice(args);
        self.pg("pg_ctl", &all);
    }

    /// Runs one of the PostgreSQL binaries (as `postgres` when needed); panics if it fails.
    fn pg(&self, program: &str, args: &[&str]) {
        check(self.command(program, args), program);
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        command.args(args).current_dir(self.dir.path());
        command
    }

    /// Restarts the server: a fast shutdown (every session is ended), then a start.
    fn restart(&self) {
        self.pg_ctl(&["restart", "-m", "fast", "-w", "-t", "30", "-l", &self.log()]);
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let data = self.data();
        let stopped =
            self.command("pg_ctl", &["-D", &data, "stop", "-m", "immediate", "-w"]).output();
        if !matches!(&stopped, Ok(out) if out.status.success()) {
            let _ = writeln!(std::io::stderr(), "warning: private server not stopped: {stopped:?}");
        }
        // The temporary directory is removed when `dir` is dropped, right after this.
    }
}

fn check(mut command: Command, what: &str) -> Output {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn which(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|out| out.status.success())
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn skip(why: &str) {
    // Straight to stderr, past the test harness's capture, so that the skip shows.
    let _ = writeln!(std::io::stderr(), "note: PostgreSQL restart test skipped: {why}");
}

/// Triggers one run; `None` if the engine did not accept it.
async fn trigger(handle: &EngineHandle, n: usize) -> Option<RunId> {
    match handle.trigger("order", json!({ "order": n })).await {
        Ok(id) => Some(id),
        Err(e) => {
            println!("run {n} not accepted: {e}");
            None
        }
    }
}

/// Waits for `run` and checks its history: completed, each step recorded once, seq contiguous.
/// Returns the report.
///
/// `wait` reads the store: while the server is down, and for the first statement on each
/// pooled connection it killed, the read fails; the application waits again, as it would.
async fn check_run(handle: &EngineHandle, run: RunId) -> RunReport {
    let mut failed_reads = 0;
    let report = loop {
        match handle.wait(run).await {
            Ok(report) => break report,
            Err(EngineError::Store(e)) if failed_reads < 50 => {
                failed_reads += 1;
                println!("waiting for {run}: {e}; waiting again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("waiting for {run}: {e}"),
        }
    };
    assert_eq!(report.run.status, RunStatus::Completed, "run {run}: {:?}", report.run);
    let seqs: Vec<u32> = report.history.iter().map(|e| e.seq).collect();
    let contiguous: Vec<u32> = (0..report.history.len() as u32).collect();
    assert_eq!(seqs, contiguous, "run {run}: seq contiguous from 0");
    let mut succeeded: HashMap<String, usize> = HashMap::new();
    for event in &report.history {
        if let RunEvent::TaskSucceeded { task, .. } = &event.event {
            *succeeded.entry(task.node_id().to_owned()).or_default() += 1;
        }
    }
    for step in STEPS {
        assert_eq!(succeeded.get(step), Some(&1), "run {run}: {step} recorded once: {succeeded:?}");
    }
    assert!(matches!(report.history.first().map(|e| &e.event), Some(RunEvent::RunStarted)));
    assert!(matches!(report.history.last().map(|e| &e.event), Some(RunEvent::RunCompleted { .. })));
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_loses_nothing_accepted() {
    let Some(server) = PrivateServer::start() else { return };
    let started = Instant::now();
    let store = PostgresStore::connect(&server.url()).await.unwrap();
    let mut mock = MockExecutor::new();
    for step in STEPS {
        mock = mock.returns(step, format!("{step} done")).delay(step, STEP_TIME);
    }
    let mut flow = Workflow::new("order");
    for step in STEPS {
        flow = flow.step(step);
    }
    let engine = Engine::builder()
        .store(store)
        .executor(mock)
        .workflow(flow.build().unwrap())
        .start()
        .await
        .unwrap();
    let handle = engine.handle();

    // 50 runs accepted before the restart.
    let mut accepted = Vec::new();
    for n in 0..50 {
        accepted.push(trigger(&handle, n).await.expect("accepted before the restart"));
    }
    // Waiters already waiting across the restart, as an application's would be; and every
    // connection of the pool open (and idle) when the server goes away.
    let waiters: Vec<_> = accepted
        .iter()
        .map(|run| {
            let (handle, run) = (handle.clone(), *run);
            tokio::spawn(async move { check_run(&handle, run).await.run.id })
        })
        .collect();
    let reads: Vec<_> = accepted
        .iter()
        .take(16)
        .map(|run| {
            let (handle, run) = (handle.clone(), *run);
            tokio::spawn(async move { handle.report(run).await.map(|_| ()) })
        })
        .collect();
    for read in reads {
        read.await.unwrap().unwrap();
    }
    // More triggered during it: those accepted must complete too.
    let during = {
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut accepted = Vec::new();
            for n in 50..70 {
                accepted.extend(trigger(&handle, n).await);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            accepted
        })
    };

    // Restart while steps are in flight.
    tokio::time::sleep(STEP_TIME + STEP_TIME / 2).await;
    let (restart_began, down_at) = (Instant::now(), Utc::now());
    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    let up_at = Utc::now();
    println!("server restarted in {:?}", restart_began.elapsed());

    let during = during.await.unwrap();
    println!("{} of 20 runs triggered during the restart accepted", during.len());
    accepted.extend(during);
    // And a few after it.
    for n in 70..75 {
        accepted.push(trigger(&handle, n).await.expect("accepted after the restart"));
    }

    let all = async {
        for waiter in waiters {
            waiter.await.unwrap();
        }
        let mut across = 0;
        for run in &accepted {
            let report = check_run(&handle, *run).await;
            if report.run.created_at < down_at && report.run.finished_at.is_some_and(|t| t > up_at)
            {
                across += 1;
            }
        }
        across
    };
    let across = tokio::time::timeout(Duration::from_secs(20), all)
        .await
        .expect("every run finished in time");
    println!(
        "{} runs completed in {:?}; {across} were in flight across the restart",
        accepted.len(),
        started.elapsed()
    );
    assert!(across > 0, "the restart happened while runs were in flight");
    engine.shutdown(Duration::from_secs(5)).await.unwrap();
    drop(server);
}

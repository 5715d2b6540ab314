//! No `node` process outlives its host, even when the host is killed with SIGKILL and runs no
//! code at all: this test runs itself again as a host process (which starts a pool, blocks
//! one worker's event loop and has a handler start a child process), kills that host with
//! `kill -9`, and checks that every worker and the handler's child are gone.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{fixture, node_available, task};
use cronflow_core::Executor;
use cronflow_executor_node::NodeExecutor;

const HOST: &str = "CRONFLOW_TEST_BE_THE_HOST";
const NAME: &str = "workers_and_their_children_die_with_a_host_killed_by_sigkill";

/// Whether `pid` is a running process (a zombie waiting to be reaped does not count).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        }
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_and_their_children_die_with_a_host_killed_by_sigkill() {
    if !node_available() {
        return;
    }
    if std::env::var_os(HOST).is_some() {
        return be_the_host().await;
    }
    let mut host = Command::new(std::env::current_exe().unwrap())
        .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(HOST, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the host");
    let stdout = host.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The harness prints `test <name> ... ` before it on the same line.
            if let Some((_, pids)) = line.split_once("PIDS ") {
                let _ = tx.send(pids.split(' ').map(|p| p.parse::<u32>().unwrap()).collect());
                return;
            }
        }
    });
    let pids: Vec<u32> = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(pids) => pids,
        Err(_) => {
            let _ = host.kill();
            panic!("the host never reported its workers");
        }
    };
    assert_eq!(pids.len(), 3, "two workers and one child process: {pids:?}");
    assert!(pids.iter().all(|&p| running(p)), "{pids:?}");

    host.kill().expect("kill -9 the host");
    host.wait().expect("reap the host");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while pids.iter().any(|&p| running(p)) {
        assert!(std::time::Instant::now() < deadline, "{pids:?} outlived their host");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The host: two workers, one blocked in a synchronous loop, one whose handler started
/// `sleep 600`; prints their pids, then waits to be killed.
async fn be_the_host() {
    let (exec, _) =
        common::spawn(NodeExecutor::builder().module(fixture("pool.mjs")).workers(2)).await;
    let out: serde_json::Value =
        exec.execute(task("tools", "child")).await.expect("child task").parse().unwrap();
    let blocker = exec.clone();
    tokio::spawn(async move { blocker.execute(task("spin", "spin")).await });
    while exec.in_flight() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut pids = exec.worker_pids();
    pids.push(out["sleep"].as_u64().unwrap() as u32);
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    println!("PIDS {}", pids.join(" "));
    tokio::time::sleep(Duration::from_secs(600)).await;
}

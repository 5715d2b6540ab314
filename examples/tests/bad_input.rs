//! Bad input to the `durable_host` example: a database file that is not a cronflow store is
//! refused with a message naming it and left byte for byte as it was; bad arguments are
//! refused with a usage message.

use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Runs `durable_host` with `args` and returns its output, killing it after 30 s.
fn run_host(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_durable_host"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn durable_host");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("reap durable_host");
            panic!("durable_host did not exit within 30 s: {output:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("collect the output")
}

/// Pseudo-random bytes (xorshift), deterministic so a failure can be replayed.
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

#[test]
fn corrupt_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("corrupt.db");
    let bytes = noise(8192);
    std::fs::write(&db, &bytes).unwrap();
    let db_arg = db.to_str().unwrap();

    let output = run_host(&["--db", db_arg, "--trigger", "3"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a corrupt store was accepted: {output:?}");
    assert!(stderr.contains(db_arg), "the error does not name the file: {stderr}");
    assert!(output.stdout.is_empty(), "runs were accepted on a corrupt store: {output:?}");
    assert_eq!(std::fs::read(&db).unwrap(), bytes, "the corrupt file was modified");
    let mut files: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    files.sort();
    assert_eq!(files, ["corrupt.db"], "files were created next to the corrupt one");
}

#[test]
fn bad_arguments_are_refused_with_usage() {
    for args in [&[][..], &["--db"], &["--db", "x.db", "--trigger", "many"], &["--frobnicate"]] {
        let output = run_host(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "args {args:?}: {output:?}");
        assert!(stderr.contains("usage: durable_host"), "args {args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "args {args:?}: {output:?}");
    }
}

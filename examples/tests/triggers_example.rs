//! The `triggers` example as a user runs it: a real process on a SQLite file, real HTTP on
//! 127.0.0.1. A webhook delivery answers 202 with its run id once durable and the run
//! happens; the same idempotency key again answers 200 with the same run; a body failing the
//! schema is a 400; the event and the schedule start their runs too.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Host;
use serde_json::Value;

/// One HTTP/1.1 request on a fresh connection; returns the status and the JSON body.
fn post(addr: &str, key: &str, body: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = format!(
        "POST /webhooks/orders HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Idempotency-Key: {key}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().expect("a status code");
    let json = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(json).unwrap_or(Value::Null))
}

#[test]
fn webhooks_events_and_schedules_start_runs_in_the_example() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("triggers.db");
    let args = ["--addr", "127.0.0.1:0", "--db", db.to_str().unwrap()];
    let mut host = Host::spawn(env!("CARGO_BIN_EXE_triggers"), "triggers", &args);
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = host.expect_line("listening on http://", deadline);

    let (status, first) = post(&addr, "order-42", r#"{"order": 42, "items": 3}"#);
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["created"], true);
    let (status, again) = post(&addr, "order-42", r#"{"order": 42, "items": 3}"#);
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        (again["run_id"].clone(), again["created"].clone()),
        (first["run_id"].clone(), false.into())
    );
    let (status, refused) = post(&addr, "order-43", r#"{"order": "forty-three"}"#);
    assert_eq!(status, 400, "{refused}");

    // The order's run, the event's run and a scheduled run all happen (in any order).
    let mut seen = (false, false, false);
    while seen != (true, true, true) {
        let line = host.next_line(deadline, "the three kinds of runs");
        if line.starts_with("order 42 accepted") {
            assert!(line.contains(first["run_id"].as_str().unwrap()), "{line}");
            assert!(!seen.0, "the order ran twice");
            seen.0 = true;
        }
        seen.1 |= line.starts_with("greeter started by event \"host.started\"");
        seen.2 |= line.starts_with("heartbeat for slot");
    }
    host.kill();
}

//! How `NodeExecutor` fails, against real `node` and through the engine: non-Error throws,
//! workers dying (`process.exit`, an unhandled rejection, out of memory), outputs JSON cannot
//! hold, a 10 MB payload, a CommonJS module and module load errors. Skipped with a note when
//! `node` is not on `PATH`. Fixtures: `tests/fixtures/failures.mjs` and friends.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    LIMIT, alive, failures, fixture, js_fixture, node_available, node_version, run, run_within,
    spawn, task,
};
use cronflow_core::{Executor, Json, RunReport, RunStatus, TaskError};
use cronflow_executor_node::{
    NodeExecutor, NodeExecutorBuilder, NodeExecutorError, WORKER_CRASHED,
};
use serde_json::{Value, json};

/// `maxAttempts` of every workflow of `failures.mjs`.
const MAX_ATTEMPTS: usize = 2;

fn failures_module() -> NodeExecutorBuilder {
    NodeExecutor::builder().module(fixture("failures.mjs"))
}

/// Checks that the run failed because `step` failed for good, and returns its errors.
fn failed_for_good(report: &RunReport, step: &str, attempts: usize) -> Vec<TaskError> {
    assert_eq!(report.status(), RunStatus::Failed, "{report:#?}");
    assert_eq!(report.attempts(step), attempts, "{report:#?}");
    let errors = failures(report, step);
    assert_eq!(errors.len(), attempts, "{errors:#?}");
    let failure = report.run.failure.as_ref().expect("a failed run has a failure");
    assert_eq!(failure.task.as_ref().map(|t| t.as_str()), Some(step), "{failure:?}");
    assert_eq!(failure.error.as_ref(), errors.last(), "{failure:?}");
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thrown_non_error_value_fails_as_error_describing_it_and_is_retried() {
    if !node_available() {
        return;
    }
    let (exec, defs) = spawn(failures_module()).await;
    let cases = [
        // `throw 'disk on fire'`: the string is the message.
        ("throws-string", "throw_string", "disk on fire"),
        // An async handler throwing `{ code: 42, reason: 'nope' }` (no `message`: not error-like).
        (
            "rejects-object",
            "reject_object",
            r#"a non-Error value was thrown: {"code":42,"reason":"nope"}"#,
        ),
    ];
    for (workflow, step, message) in cases {
        let report = run(&exec, defs.clone(), workflow, json!({})).await;
        for e in failed_for_good(&report, step, MAX_ATTEMPTS) {
            assert_eq!(e.name, "Error", "{e:?}");
            assert_eq!(e.message, message, "{e:?}");
            assert!(e.retryable, "{e:?}");
        }
    }
    exec.shutdown(Duration::from_secs(5)).await;
}

/// Runs `step` of `workflow`, whose attempt 1 kills its worker process, on a pool of one
/// worker: attempt 1 fails with the retryable `WORKER_CRASHED`, a fresh worker takes the slot
/// and attempt 2 completes the run there. Returns attempt 2's output.
async fn crashes_then_completes(
    builder: NodeExecutorBuilder,
    workflow: &str,
    step: &str,
    limit: Duration,
) -> Value {
    let (exec, defs) = spawn(builder.workers(1)).await;
    let before = exec.worker_pids();
    assert_eq!(before.len(), 1);
    let report = run_within(limit, &exec, defs, workflow, json!({})).await;
    assert_eq!(report.status(), RunStatus::Completed, "{report:#?}");
    assert_eq!(report.attempts(step), 2, "{report:#?}");
    let errors = failures(&report, step);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].name, WORKER_CRASHED, "{:?}", errors[0]);
    assert!(errors[0].retryable, "{:?}", errors[0]);

    let out: Value = report.task_output(step).expect("attempt 2 succeeded").parse().unwrap();
    assert_eq!(out["attempt"], 2, "{out}");
    let pid = u32::try_from(out["pid"].as_u64().expect("a pid")).unwrap();
    assert_ne!(pid, before[0], "attempt 2 ran in the worker that should have died");
    assert!(!alive(before[0]), "worker {} is still running", before[0]);
    assert_eq!(exec.worker_pids(), [pid]);
    exec.shutdown(Duration::from_secs(5)).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_calling_process_exit_crashes_its_worker_and_the_retry_completes() {
    if !node_available() {
        return;
    }
    crashes_then_completes(failures_module(), "exits", "exit", LIMIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhandled_rejection_crashes_its_worker_and_the_retry_completes() {
    if !node_available() {
        return;
    }
    // Attempt 1 leaves `Promise.reject(..)` unawaited and returns a promise that never
    // settles: only the process's death (Node's default for unhandled rejections) ends it.
    crashes_then_completes(failures_module(), "unhandled", "reject_unhandled", LIMIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_out_of_memory_crashes_and_the_retry_completes_in_a_fresh_heap() {
    if !node_available() {
        return;
    }
    let builder = failures_module().max_old_space_mb(32);
    let out = crashes_then_completes(builder, "hog", "allocate", Duration::from_secs(60)).await;
    // The replacement process starts with an empty hoard.
    assert_eq!(out["hoarded"], 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_json_cannot_hold_is_a_serialization_error_and_not_retried() {
    if !node_available() {
        return;
    }
    let (exec, defs) = spawn(failures_module()).await;
    // `{ total: 10n ** 30n }`, and an object whose `self` is itself.
    for (workflow, step, detail) in
        [("bigint", "big_number", "BigInt"), ("circular", "cycle", "circular")]
    {
        let report = run(&exec, defs.clone(), workflow, json!({})).await;
        // One attempt although the workflow allows two.
        let errors = failed_for_good(&report, step, 1);
        let e = &errors[0];
        assert_eq!(e.name, "SerializationError", "{e:?}");
        assert!(!e.retryable, "{e:?}");
        assert!(e.message.contains(&format!(r#"handler "{step}""#)), "{e:?}");
        assert!(e.message.contains("not JSON-serialisable"), "{e:?}");
        assert!(e.message.contains(detail), "{e:?}");
    }
    exec.shutdown(Duration::from_secs(5)).await;
}

/// About `bytes` bytes of UTF-8 text with what JSON must escape (quotes, backslashes, control
/// characters) and multi-byte characters (2, 3 and 4 bytes; the last one two UTF-16 units).
fn big_text(bytes: usize) -> String {
    const PATTERN: &str = "cronflow \"quoted\" back\\slash tab\t newline\n ünïcødé ✓ 😀 \u{1} ";
    let mut text = String::with_capacity(bytes + PATTERN.len());
    while text.len() < bytes {
        text.push_str(PATTERN);
    }
    text
}

/// Checks an `echo` output without printing megabytes when it is wrong.
fn assert_echoes(output: &Json, text: &str) {
    let out: Value = output.parse().expect("the output is JSON");
    assert_eq!(out["length"], text.encode_utf16().count(), "the length JavaScript saw");
    let echoed = out["text"].as_str().expect("the text is a string");
    assert_eq!(echoed.len(), text.len(), "the text's length in bytes");
    assert!(echoed == text, "the text differs from byte {:?}", {
        echoed.bytes().zip(text.bytes()).position(|(a, b)| a != b)
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mb_payload_round_trips_through_the_engine() {
    if !node_available() {
        return;
    }
    let (exec, defs) = spawn(failures_module()).await;
    let text = big_text(10_000_000);
    let report = run(&exec, defs, "echo-big", json!({ "text": text })).await;
    assert_eq!(report.status(), RunStatus::Completed, "{:?}", report.run.failure);
    assert_echoes(report.task_output("echo").expect("echo succeeded"), &text);
    assert_echoes(report.run.output.as_ref().expect("the run's output"), &text);
    exec.shutdown(Duration::from_secs(5)).await;
}

/// Echoes `text` through `execute` (no engine); returns how long the round trip took.
async fn echo(exec: &NodeExecutor, text: &str) -> Duration {
    let mut t = task("echo-big", "echo");
    t.context.payload = Json::from_value(&json!({ "text": text })).unwrap();
    let started = Instant::now();
    let output = tokio::time::timeout(LIMIT, exec.execute(t))
        .await
        .expect("execute timed out")
        .expect("echo succeeded");
    let elapsed = started.elapsed();
    assert_echoes(&output, text);
    elapsed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_mb_and_a_10_mb_payload_round_trip_through_execute() {
    if !node_available() {
        return;
    }
    let (exec, _) = spawn(failures_module()).await;
    echo(&exec, &big_text(10_000)).await; // warm-up
    let one = echo(&exec, &big_text(1_000_000)).await;
    let ten = echo(&exec, &big_text(10_000_000)).await;
    // Linear buffering on both sides makes the 10 MB round trip about 10 times the 1 MB one
    // (quadratic buffering would make it about 100 times). Machines are too noisy for a timed
    // assertion, so the timings are only printed.
    eprintln!(
        "execute round trips: 1 MB in {one:?}, 10 MB in {ten:?} ({:.1}x)",
        ten.as_secs_f64() / one.as_secs_f64()
    );
    exec.shutdown(Duration::from_secs(5)).await;
}

/// Whether this `node` can `require` an ES module (the SDK) without a flag.
fn requires_esm((major, minor): (u32, u32)) -> bool {
    match major {
        20 => minor >= 19,
        22 => minor >= 12,
        m => m >= 23,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commonjs_module_runs_end_to_end_through_the_engine() {
    let Some(version) = node_version() else { return };
    if !requires_esm(version) {
        eprintln!("skipping: a CommonJS module needs Node >= 20.19 to require the SDK");
        return;
    }
    let (exec, defs) =
        spawn(NodeExecutor::builder().module(fixture("commonjs-flows.cjs")).workers(2)).await;
    let ids: Vec<&str> = defs.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["cjs-words"]);
    assert!(exec.has_handler("split") && exec.has_handler("describe"));
    let report = run(&exec, defs, "cjs-words", json!({ "text": "hello from commonjs" })).await;
    assert_eq!(report.status(), RunStatus::Completed, "{report:#?}");
    let out: Value = report.run.output.clone().unwrap().parse().unwrap();
    // `__filename` exists only in a CommonJS module.
    assert_eq!(out, json!({ "words": 3, "first": "hello", "file": "commonjs-flows.cjs" }));
    exec.shutdown(Duration::from_secs(5)).await;
}

/// Spawning on `module` fails with `ModuleLoad` naming it and the JavaScript error.
async fn assert_load_error(module: &Path, name: &str, message: &str) -> NodeExecutorError {
    let result = tokio::time::timeout(LIMIT, NodeExecutor::builder().module(module).spawn())
        .await
        .expect("spawn timed out");
    let error = match result {
        Err(e) => e,
        Ok((_, defs)) => panic!("{} loaded: {defs:?}", module.display()),
    };
    let path = module.canonicalize().unwrap();
    let NodeExecutorError::ModuleLoad { module: m, name: n, message: msg, .. } = &error else {
        panic!("expected a ModuleLoad error, got {error:?}");
    };
    assert_eq!(m, &path);
    assert_eq!(n, name, "{error:?}");
    assert!(msg.contains(message), "{error:?}");
    let text = error.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains(&format!("{name}: ")) && text.contains(message), "{text}");
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_load_failures_are_spawn_errors_naming_the_module_and_the_error() {
    if !node_available() {
        return;
    }
    assert_load_error(&js_fixture("no-workflows.mjs"), "NoWorkflows", "defines no workflow").await;
    let thrown =
        assert_load_error(&js_fixture("throws-at-import.mjs"), "Error", "config file missing")
            .await;
    let NodeExecutorError::ModuleLoad { stack, .. } = &thrown else { unreachable!() };
    assert!(stack.as_deref().unwrap_or_default().contains("throws-at-import.mjs"), "{thrown:?}");
    // An import of a name the SDK does not export fails when the module is linked.
    let missing = "does not provide an export named 'defineWorkflow'";
    assert_load_error(&fixture("missing-export.mjs"), "SyntaxError", missing).await;
}

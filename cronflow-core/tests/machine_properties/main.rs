//! Property tests of the sans-IO run state machine ([`RunMachine`]) through the public API.
//!
//! Random valid workflows of every node kind (steps and actions with retry policies and
//! `on_error` handlers, `if`, `parallel`, `race`, `for_each`, `batch`, `while`, `sleep`,
//! `pause`, `wait_for_event`, `subflow`, `cancel`, nested up to three levels, with hooks and
//! whole-run timeouts) are driven by a simulated world on a virtual clock. A script drawn by
//! proptest decides at each step whether to answer an in-flight task with a success or a
//! failure, feed a stale or duplicate result, let time pass (firing due timers), cancel the
//! run, resume a pause, publish an event (matching or not), end a child run, send a signal
//! that must be refused, or crash (replay the history and resume). After every step the live
//! machine is compared with a reference model of the tree, with a machine replayed from the
//! history so far, and with what `resume` would dispatch after a crash at that instant.
//!
//! `PROPTEST_CASES` scales every property's case count (the defaults below when unset).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use cronflow_core::{
    Branch, BranchesNode, Command, ConditionalBranch, FailureKind, IfNode, Json, Node,
    RecordedEvent, RetryPolicy, RunDefinition, RunEvent, RunId, RunMachine, RunStatus,
    TIMEOUT_ERROR, TaskError, TaskKey, TaskKind, TaskNode, WorkflowDef, WorkflowOptions,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::json;

use crate::sim::Sim;
use crate::strategies::case;

mod build;
mod model;
mod shapes;
mod sim;
mod strategies;

/// Error names the simulated executor fails with (`retry_on` picks among them).
const ERROR_NAMES: [&str; 3] = ["Net", "Bad", TIMEOUT_ERROR];

fn t0() -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_700_000_000_000).unwrap()
}

/// `default` cases, or `PROPTEST_CASES` scaled by `default / 256` when it is set.
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse::<u64>().ok())
        .map_or(default, |n| (n * u64::from(default) / 256).max(1) as u32);
    ProptestConfig {
        cases,
        // Regressions are written up as the deterministic tests below instead.
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    }
}

fn run_case(case: &strategies::Case) -> Result<(), TestCaseError> {
    case.def.def.validate().map_err(|e| TestCaseError::fail(format!("invalid WDO: {e}")))?;
    let mut sim = Sim::start(case)?;
    sim.run()
}

proptest! {
    #![proptest_config(config(384))]

    /// Random workflows of every node kind under random results, failures, stale answers,
    /// timers, cancels, signals and crashes.
    #[test]
    fn random_runs_keep_every_invariant(case in case(true, true)) {
        run_case(&case)?;
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// Deeper trees of steps, actions, `if` and `parallel` only.
    #[test]
    fn random_runs_of_the_first_kinds_keep_every_invariant(case in case(true, false)) {
        run_case(&case)?;
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// Without injected failures and cancels no task fails and no child fails.
    #[test]
    fn fault_free_runs_end_as_their_tree_says(case in case(false, true)) {
        run_case(&case)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic cases
// ---------------------------------------------------------------------------------------------

fn at(n: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::milliseconds(n)
}

fn task(id: &str) -> TaskNode {
    TaskNode { id: id.into(), handler: id.into(), timeout: None, retry: None, on_error: None }
}

fn definition(nodes: Vec<Node>, options: WorkflowOptions) -> Arc<RunDefinition> {
    let def = WorkflowDef {
        schema: 1,
        id: "wf".into(),
        version: None,
        name: None,
        description: None,
        triggers: vec![],
        options,
        hooks: Default::default(),
        nodes,
    };
    def.validate().unwrap();
    RunDefinition::new(def, 1)
}

fn dispatched(commands: &[Command]) -> Vec<(String, u32)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Dispatch(t) => Some((t.key.to_string(), t.attempt)),
            _ => None,
        })
        .collect()
}

fn aborted(commands: &[Command]) -> Vec<(String, u32)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Abort { key, attempt } => Some((key.to_string(), *attempt)),
            _ => None,
        })
        .collect()
}

fn events(commands: &[Command]) -> Vec<RunEvent> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Record(e) => Some(e.event.clone()),
            _ => None,
        })
        .collect()
}

fn records(commands: &[Command]) -> Vec<RecordedEvent> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Record(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn key(k: &str) -> TaskKey {
    TaskKey::new(k)
}

#[test]
fn failing_if_condition_fails_the_run_naming_the_condition() {
    // The condition takes the workflow's default retry policy: two attempts.
    let options = WorkflowOptions {
        retry: Some(RetryPolicy::fixed(2, Duration::from_millis(10))),
        ..WorkflowOptions::default()
    };
    let d = definition(
        vec![Node::If(IfNode {
            id: "route".into(),
            branches: vec![
                ConditionalBranch {
                    condition: "is_big".into(),
                    nodes: vec![Node::Step(task("big"))],
                },
                ConditionalBranch {
                    condition: "is_odd".into(),
                    nodes: vec![Node::Step(task("odd"))],
                },
            ],
            else_nodes: Some(vec![Node::Step(task("other"))]),
        })],
        options,
    );
    let (mut m, c) = RunMachine::start(d, RunId::new(), Json::null(), at(0));
    assert_eq!(dispatched(&c), [("route#0".into(), 1)]);
    let Some(Command::Dispatch(cond)) = c.iter().find(|c| matches!(c, Command::Dispatch(_))) else {
        unreachable!()
    };
    assert_eq!(
        (cond.kind, &*cond.handler, &*cond.node_id),
        (TaskKind::Condition, "is_big", "route")
    );
    let c = m.handle_task_result(at(1), &key("route#0"), 1, Ok(json!(false).into()));
    assert_eq!(dispatched(&c), [("route#1".into(), 1)]);
    let c = m.handle_task_result(at(2), &key("route#1"), 1, Err(TaskError::new("Net", "down")));
    assert!(dispatched(&c).is_empty());
    assert_eq!(m.poll_timeout(), Some(at(12)));
    assert_eq!(dispatched(&m.handle_timeout(at(12))), [("route#1".into(), 2)]);
    let c = m.handle_task_result(at(13), &key("route#1"), 2, Err(TaskError::new("Net", "down")));
    let recorded = events(&c);
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    let RunEvent::RunFailed { failure } = &recorded[1] else { panic!("{recorded:?}") };
    assert_eq!(failure.kind, FailureKind::TaskFailed);
    assert_eq!(failure.task, Some(key("route#1")));
    assert_eq!(failure.error, Some(TaskError::new("Net", "down")));
    assert!(failure.message.contains("condition 1 of `route`"), "{}", failure.message);
    assert!(failure.message.contains("2 attempts"), "{}", failure.message);
    assert_eq!(m.status(), RunStatus::Failed);
    // Neither a branch nor the else ran.
    assert!(m.snapshot().tasks.keys().all(|k| k.node_id() == "route"));
}

#[test]
fn failing_parallel_branch_aborts_the_other_branches() {
    let d = definition(
        vec![Node::Parallel(BranchesNode {
            id: "fan".into(),
            branches: vec![
                Branch { nodes: vec![Node::Step(task("a1")), Node::Step(task("a2"))] },
                Branch { nodes: vec![Node::Step(task("b"))] },
                Branch { nodes: vec![Node::Action(task("c"))] },
            ],
        })],
        WorkflowOptions::default(),
    );
    let (mut m, c) = RunMachine::start(d, RunId::new(), Json::null(), at(0));
    assert_eq!(dispatched(&c), [("a1".into(), 1), ("b".into(), 1), ("c".into(), 1)]);
    let c = m.handle_task_result(at(1), &key("a1"), 1, Ok(json!(1).into()));
    assert_eq!(dispatched(&c), [("a2".into(), 1)]);
    let c = m.handle_task_result(at(2), &key("b"), 1, Err(TaskError::msg("boom")));
    let mut aborts = aborted(&c);
    aborts.sort();
    assert_eq!(aborts, [("a2".into(), 1), ("c".into(), 1)]);
    let recorded = events(&c);
    assert!(matches!(&recorded[0], RunEvent::TaskFailed { retry_at: None, .. }), "{recorded:?}");
    let RunEvent::RunFailed { failure } = &recorded[1] else { panic!("{recorded:?}") };
    assert_eq!(failure.task, Some(key("b")));
    assert!(failure.message.contains("step `b`"), "{}", failure.message);
    assert_eq!(m.status(), RunStatus::Failed);
    assert_eq!(m.in_flight().count(), 0);
    // The aborted attempts' late answers are fenced.
    assert!(m.handle_task_result(at(3), &key("a2"), 1, Ok(json!(2).into())).is_empty());
    assert!(m.handle_task_result(at(3), &key("c"), 1, Ok(json!(3).into())).is_empty());
}

#[test]
fn in_flight_action_keeps_the_run_open() {
    let d = definition(
        vec![Node::Step(task("a")), Node::Action(task("notify")), Node::Step(task("b"))],
        WorkflowOptions::default(),
    );
    let (mut m, _) = RunMachine::start(d, RunId::new(), Json::null(), at(0));
    let c = m.handle_task_result(at(1), &key("a"), 1, Ok(json!("A").into()));
    assert_eq!(dispatched(&c), [("notify".into(), 1), ("b".into(), 1)]);
    // The action received the step's output as `last`, and so does the step after it.
    for command in &c {
        if let Command::Dispatch(t) = command {
            assert_eq!(t.context.last.as_str(), "\"A\"");
        }
    }
    let c = m.handle_task_result(at(2), &key("b"), 1, Ok(json!("B").into()));
    assert_eq!(events(&c).len(), 1, "the run waits for the action: {c:?}");
    assert_eq!(m.status(), RunStatus::Running);
    let c = m.handle_task_result(at(3), &key("notify"), 1, Ok(json!("sent").into()));
    let recorded = events(&c);
    assert_eq!(recorded.last(), Some(&RunEvent::RunCompleted { output: json!("B").into() }));
}

/// An action that fails with retries left must be retried; the run stays open until it
/// settles. (An action's node is behind the top-level cursor once the walk has passed it.)
#[test]
fn failed_action_is_retried_before_the_run_completes() {
    let mut notify = task("notify");
    notify.retry = Some(RetryPolicy::fixed(2, Duration::from_millis(10)));
    let d = definition(
        vec![Node::Action(notify), Node::Step(task("next"))],
        WorkflowOptions::default(),
    );
    let (mut m, c) = RunMachine::start(d, RunId::new(), Json::null(), at(0));
    assert_eq!(dispatched(&c), [("notify".into(), 1), ("next".into(), 1)]);
    let c = m.handle_task_result(at(1), &key("notify"), 1, Err(TaskError::msg("smtp")));
    assert!(matches!(&events(&c)[..], [RunEvent::TaskFailed { retry_at: Some(_), .. }]));
    let c = m.handle_task_result(at(2), &key("next"), 1, Ok(json!(7).into()));
    assert_eq!(events(&c).len(), 1, "the run waits for the action's retry: {c:?}");
    assert_eq!(m.poll_timeout(), Some(at(11)));
    let c = m.handle_timeout(at(11));
    assert_eq!(dispatched(&c), [("notify".into(), 2)], "the action's retry is not dispatched");
    let c = m.handle_task_result(at(12), &key("notify"), 2, Ok(json!("sent").into()));
    assert_eq!(events(&c).last(), Some(&RunEvent::RunCompleted { output: json!(7).into() }));
}

/// Once a retry has been dispatched, the live machine and one replayed from the same history
/// must report the same recorded state.
#[test]
fn replay_matches_live_machine_while_a_retry_is_in_flight() {
    let mut flaky = task("flaky");
    flaky.retry = Some(RetryPolicy::fixed(3, Duration::from_millis(10)));
    let d = definition(vec![Node::Step(flaky)], WorkflowOptions::default());
    let id = RunId::new();
    let (mut m, mut all) = RunMachine::start(Arc::clone(&d), id, Json::null(), at(0));
    all.extend(m.handle_task_result(at(1), &key("flaky"), 1, Err(TaskError::msg("x"))));
    let c = m.handle_timeout(at(11));
    assert_eq!(dispatched(&c), [("flaky".into(), 2)]);
    all.extend(c);
    let replayed = RunMachine::replay(d, id, Json::null(), &records(&all)).unwrap();
    assert_eq!(replayed.snapshot(), m.snapshot());
}

#[test]
fn results_after_the_end_and_for_other_attempts_are_ignored() {
    let mut s = task("s");
    s.retry = Some(RetryPolicy::fixed(3, Duration::ZERO));
    let d = definition(vec![Node::Step(s)], WorkflowOptions::default());
    let (mut m, _) = RunMachine::start(d, RunId::new(), Json::null(), at(0));
    // A zero delay retries within the same call.
    let c = m.handle_task_result(at(1), &key("s"), 1, Err(TaskError::msg("x")));
    assert_eq!(dispatched(&c), [("s".into(), 2)]);
    for attempt in [1, 3, 0] {
        assert!(m.handle_task_result(at(2), &key("s"), attempt, Ok(json!(1).into())).is_empty());
    }
    assert!(m.handle_task_result(at(2), &key("nope"), 1, Ok(json!(1).into())).is_empty());
    let c = m.handle_task_result(at(3), &key("s"), 2, Ok(json!(2).into()));
    assert_eq!(events(&c).last(), Some(&RunEvent::RunCompleted { output: json!(2).into() }));
    assert!(m.handle_task_result(at(4), &key("s"), 2, Ok(json!(3).into())).is_empty());
    assert!(m.cancel(at(5), None).is_empty());
}

use std::time::Duration;

use chrono::TimeZone;
use serde_json::json;

use super::*;
use crate::retry::RetryPolicy;
use crate::wdo::{
    Branch, BranchesNode, ConditionalBranch, IfNode, Node, TaskNode, WorkflowOptions,
};

fn t(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_700_000_000_000 + ms).unwrap()
}

fn task(id: &str) -> TaskNode {
    TaskNode { id: id.into(), handler: id.into(), timeout: None, retry: None, on_error: None }
}

fn def(nodes: Vec<Node>, options: WorkflowOptions) -> Arc<RunDefinition> {
    RunDefinition::new(
        WorkflowDef {
            schema: 1,
            id: "wf".into(),
            version: None,
            name: None,
            description: None,
            triggers: vec![],
            options,
            hooks: Default::default(),
            nodes,
        },
        1,
    )
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

fn recorded(commands: &[Command]) -> Vec<&'static str> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Record(e) => Some(e.event.kind()),
            _ => None,
        })
        .collect()
}

fn ok(v: serde_json::Value) -> Result<Json, TaskError> {
    Ok(Json::from(v))
}

fn history(all: &[Command]) -> Vec<RecordedEvent> {
    all.iter()
        .filter_map(|c| match c {
            Command::Record(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn linear_steps_run_in_order_and_pass_outputs() {
    let d = def(vec![Node::Step(task("a")), Node::Step(task("b"))], WorkflowOptions::default());
    let (mut m, c) = RunMachine::start(d, RunId::new(), Json::from(json!({"n": 1})), t(0));
    assert_eq!(recorded(&c), ["run_started"]);
    assert_eq!(dispatched(&c), [("a".into(), 1)]);
    let c = m.handle_task_result(t(1), &TaskKey::new("a"), 1, ok(json!(10)));
    assert_eq!(recorded(&c), ["task_succeeded"]);
    let Some(Command::Dispatch(b)) = c.iter().find(|c| matches!(c, Command::Dispatch(_))) else {
        panic!("b not dispatched: {c:?}")
    };
    assert_eq!(b.context.last.as_str(), "10");
    assert_eq!(b.context.steps["a"].as_str(), "10");
    assert_eq!(b.idempotency_key, format!("{}/b", m.run_id()));
    let c = m.handle_task_result(t(2), &TaskKey::new("b"), 1, ok(json!("done")));
    assert_eq!(recorded(&c), ["task_succeeded", "run_completed"]);
    assert_eq!(m.status(), RunStatus::Completed);
}

#[test]
fn retries_follow_the_policy_and_late_results_are_fenced() {
    let mut step = task("flaky");
    step.retry = Some(RetryPolicy::fixed(3, Duration::from_millis(100)));
    let d = def(vec![Node::Step(step)], WorkflowOptions::default());
    let (mut m, _) = RunMachine::start(d, RunId::new(), Json::null(), t(0));
    let key = TaskKey::new("flaky");
    let c = m.handle_task_result(t(5), &key, 1, Err(TaskError::msg("boom")));
    assert_eq!(recorded(&c), ["task_failed"]);
    assert!(dispatched(&c).is_empty());
    assert_eq!(m.poll_timeout(), Some(t(105)));
    // A duplicate answer for attempt 1 is ignored.
    assert!(m.handle_task_result(t(6), &key, 1, ok(json!(1))).is_empty());
    assert!(dispatched(&m.handle_timeout(t(50))).is_empty());
    let c = m.handle_timeout(t(105));
    assert_eq!(dispatched(&c), [("flaky".into(), 2)]);
    let c = m.handle_task_result(t(110), &key, 2, Err(TaskError::msg("boom")));
    assert_eq!(recorded(&c), ["task_failed"]);
    let c = m.handle_timeout(t(210));
    assert_eq!(dispatched(&c), [("flaky".into(), 3)]);
    let c = m.handle_task_result(t(215), &key, 3, Err(TaskError::msg("boom")));
    assert_eq!(recorded(&c), ["task_failed", "run_failed"]);
    assert_eq!(m.status(), RunStatus::Failed);
}

#[test]
fn non_retryable_and_filtered_errors_fail_at_once() {
    let mut step = task("s");
    step.retry = Some(RetryPolicy::fixed(5, Duration::ZERO).retry_on(["Network"]));
    let d = def(vec![Node::Step(step)], WorkflowOptions::default());
    let (mut m, _) = RunMachine::start(d.clone(), RunId::new(), Json::null(), t(0));
    let c = m.handle_task_result(t(1), &TaskKey::new("s"), 1, Err(TaskError::new("Other", "x")));
    assert_eq!(recorded(&c), ["task_failed", "run_failed"]);
    let (mut m, _) = RunMachine::start(d, RunId::new(), Json::null(), t(0));
    let err = TaskError::new("Network", "x").non_retryable();
    let c = m.handle_task_result(t(1), &TaskKey::new("s"), 1, Err(err));
    assert_eq!(recorded(&c), ["task_failed", "run_failed"]);
}

#[test]
fn if_picks_the_first_truthy_branch_and_parallel_joins_outputs() {
    let nodes = vec![
        Node::If(IfNode {
            id: "route".into(),
            branches: vec![
                ConditionalBranch { condition: "no".into(), nodes: vec![Node::Step(task("x"))] },
                ConditionalBranch { condition: "yes".into(), nodes: vec![Node::Step(task("y"))] },
            ],
            else_nodes: Some(vec![Node::Step(task("z"))]),
        }),
        Node::Parallel(BranchesNode {
            id: "fan".into(),
            branches: vec![
                Branch { nodes: vec![Node::Step(task("p1"))] },
                Branch { nodes: vec![Node::Step(task("p2"))] },
            ],
        }),
    ];
    let (mut m, c) =
        RunMachine::start(def(nodes, WorkflowOptions::default()), RunId::new(), Json::null(), t(0));
    assert_eq!(dispatched(&c), [("route#0".into(), 1)]);
    let c = m.handle_task_result(t(1), &TaskKey::new("route#0"), 1, ok(json!(false)));
    assert_eq!(dispatched(&c), [("route#1".into(), 1)]);
    let c = m.handle_task_result(t(2), &TaskKey::new("route#1"), 1, ok(json!(true)));
    assert_eq!(dispatched(&c), [("y".into(), 1)]);
    let c = m.handle_task_result(t(3), &TaskKey::new("y"), 1, ok(json!("Y")));
    assert_eq!(dispatched(&c), [("p1".into(), 1), ("p2".into(), 1)]);
    let c = m.handle_task_result(t(4), &TaskKey::new("p2"), 1, ok(json!(2)));
    assert!(recorded(&c) == ["task_succeeded"]);
    let c = m.handle_task_result(t(5), &TaskKey::new("p1"), 1, ok(json!(1)));
    assert_eq!(recorded(&c), ["task_succeeded", "run_completed"]);
    let Some(Command::Record(RecordedEvent { event: RunEvent::RunCompleted { output }, .. })) =
        c.last()
    else {
        panic!()
    };
    assert_eq!(output.as_str(), "[1,2]");
}

#[test]
fn actions_do_not_block_and_failures_are_not_fatal() {
    let nodes = vec![Node::Action(task("notify")), Node::Step(task("next"))];
    let (mut m, c) =
        RunMachine::start(def(nodes, WorkflowOptions::default()), RunId::new(), Json::null(), t(0));
    assert_eq!(dispatched(&c), [("notify".into(), 1), ("next".into(), 1)]);
    let c = m.handle_task_result(t(1), &TaskKey::new("next"), 1, ok(json!(1)));
    assert_eq!(recorded(&c), ["task_succeeded"], "waits for the action to settle");
    let c = m.handle_task_result(t(2), &TaskKey::new("notify"), 1, Err(TaskError::msg("smtp")));
    assert_eq!(recorded(&c), ["task_failed", "run_completed"]);
    assert_eq!(m.status(), RunStatus::Completed);
}

#[test]
fn run_timeout_fails_and_aborts_in_flight() {
    let options = WorkflowOptions { timeout: Some(Duration::from_secs(1)), ..Default::default() };
    let (mut m, _) = RunMachine::start(
        def(vec![Node::Step(task("slow"))], options),
        RunId::new(),
        Json::null(),
        t(0),
    );
    assert_eq!(m.poll_timeout(), Some(t(1000)));
    let c = m.handle_timeout(t(1000));
    assert!(matches!(&c[0], Command::Abort { attempt: 1, .. }));
    assert_eq!(recorded(&c), ["run_failed"]);
    assert!(m.handle_task_result(t(1001), &TaskKey::new("slow"), 1, ok(json!(1))).is_empty());
}

#[test]
fn cancel_aborts_and_ends_the_run() {
    let (mut m, _) = RunMachine::start(
        def(vec![Node::Step(task("a"))], WorkflowOptions::default()),
        RunId::new(),
        Json::null(),
        t(0),
    );
    let c = m.cancel(t(1), Some("user".into()));
    assert!(matches!(&c[0], Command::Abort { .. }));
    assert_eq!(recorded(&c), ["run_cancelled"]);
    assert!(m.cancel(t(2), None).is_empty());
}

#[test]
fn replay_rebuilds_state_and_resume_redispatches_in_flight_work() {
    let mut b = task("b");
    b.retry = Some(RetryPolicy::fixed(3, Duration::from_millis(10)));
    let d = def(vec![Node::Step(task("a")), Node::Step(b)], WorkflowOptions::default());
    let id = RunId::new();
    let (mut m, mut all) = RunMachine::start(d.clone(), id, Json::null(), t(0));
    all.extend(m.handle_task_result(t(1), &TaskKey::new("a"), 1, ok(json!(1))));
    all.extend(m.handle_task_result(t(2), &TaskKey::new("b"), 1, Err(TaskError::msg("x"))));
    let events = history(&all);
    let mut replayed = RunMachine::replay(d.clone(), id, Json::null(), &events).unwrap();
    assert_eq!(replayed.snapshot(), m.snapshot());
    // The retry of b is due at t(12); resuming later dispatches attempt 2 at once.
    let c = replayed.resume(t(100));
    assert_eq!(dispatched(&c), [("b".into(), 2)]);
    // Resuming right after `a` succeeded re-dispatches `b` attempt 1 (it was in flight).
    let mut early = RunMachine::replay(d, id, Json::null(), &events[..2]).unwrap();
    assert_eq!(dispatched(&early.resume(t(100))), [("b".into(), 1)]);
}

#[test]
fn replay_rejects_broken_histories() {
    let d = def(vec![Node::Step(task("a"))], WorkflowOptions::default());
    let id = RunId::new();
    assert!(RunMachine::replay(d.clone(), id, Json::null(), &[]).is_err());
    let bad = RecordedEvent { seq: 1, at: t(0), event: RunEvent::RunStarted };
    let err = RunMachine::replay(d, id, Json::null(), &[bad]).unwrap_err();
    assert!(err.message.contains("sequence"), "{err}");
}

//! Generated workflows: proptest strategies for workflow trees with retry policies, for the
//! script of the simulated world, and for whole test cases.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cronflow_core::{
    Branch, BranchesNode, ConditionalBranch, IfNode, Json, Node, RetryPolicy, RunDefinition, RunId,
    TaskKey, TaskKind, TaskNode, WorkflowDef, WorkflowOptions,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

use crate::{ERROR_NAMES, t0};

/// A workflow tree before ids are assigned.
#[derive(Debug, Clone)]
enum Shape {
    Step(Option<RetryPolicy>),
    Action(Option<RetryPolicy>),
    If(Vec<Vec<Shape>>, Option<Vec<Shape>>),
    Parallel(Vec<Vec<Shape>>),
}

fn count(shapes: &[Shape]) -> usize {
    shapes
        .iter()
        .map(|s| match s {
            Shape::Step(_) | Shape::Action(_) => 1,
            Shape::If(branches, else_nodes) => {
                1 + branches.iter().map(|b| count(b)).sum::<usize>()
                    + else_nodes.as_deref().map_or(0, count)
            }
            Shape::Parallel(branches) => 1 + branches.iter().map(|b| count(b)).sum::<usize>(),
        })
        .sum()
}

fn retry_policy() -> impl Strategy<Value = RetryPolicy> {
    (
        prop_oneof![1 => Just(1u32), 2 => Just(2), 2 => Just(3)],
        0u8..3,
        0u64..=50,
        prop::option::weighted(0.2, prop::sample::select(ERROR_NAMES.to_vec())),
        prop::bool::weighted(0.15),
        prop::option::weighted(0.15, 0u64..=30),
    )
        .prop_map(|(max_attempts, backoff, delay, retry_on, jitter, max_delay)| {
            let delay = Duration::from_millis(delay);
            let mut policy = match backoff {
                0 => RetryPolicy::fixed(max_attempts, delay),
                1 => RetryPolicy::linear(max_attempts, delay),
                _ => RetryPolicy::exponential(max_attempts, delay),
            };
            if let Some(name) = retry_on {
                policy = policy.retry_on([name]);
            }
            if jitter {
                policy = policy.with_jitter();
            }
            if let Some(max) = max_delay {
                policy = policy.max_delay(Duration::from_millis(max));
            }
            policy
        })
}

fn shape() -> impl Strategy<Value = Shape> {
    let retry = || prop::option::weighted(0.7, retry_policy());
    let leaf = prop_oneof![
        3 => retry().prop_map(Shape::Step),
        1 => retry().prop_map(Shape::Action),
    ];
    // Depth 2 of recursion: a composite inside a composite holding leaves, three levels.
    leaf.prop_recursive(2, 12, 3, |inner| {
        let seq = prop::collection::vec(inner, 1..=2);
        prop_oneof![
            (prop::collection::vec(seq.clone(), 1..=3), prop::option::weighted(0.5, seq.clone()))
                .prop_map(|(branches, else_nodes)| Shape::If(branches, else_nodes)),
            prop::collection::vec(seq, 1..=3).prop_map(Shape::Parallel),
        ]
    })
}

/// What the test knows about each task key of a definition.
#[derive(Debug, Clone)]
pub(crate) struct TaskMeta {
    pub(crate) kind: TaskKind,
    pub(crate) handler: String,
    pub(crate) node_id: String,
    /// The effective retry policy: the node's own, else the workflow default.
    pub(crate) policy: Option<RetryPolicy>,
}

impl TaskMeta {
    pub(crate) fn max_attempts(&self) -> u32 {
        self.policy.as_ref().map_or(1, |p| p.max_attempts)
    }
}

struct DefBuilder {
    next: usize,
    default_retry: Option<RetryPolicy>,
    tasks: BTreeMap<String, TaskMeta>,
}

impl DefBuilder {
    fn seq(&mut self, shapes: &[Shape]) -> Vec<Node> {
        shapes.iter().map(|s| self.node(s)).collect()
    }

    fn task(&mut self, retry: &Option<RetryPolicy>, kind: TaskKind) -> TaskNode {
        let id = self.id();
        let handler = format!("do_{id}");
        let policy = retry.clone().or_else(|| self.default_retry.clone());
        let meta = TaskMeta { kind, handler: handler.clone(), node_id: id.clone(), policy };
        self.tasks.insert(id.clone(), meta);
        TaskNode { id, handler, timeout: None, retry: retry.clone(), on_error: None }
    }

    fn id(&mut self) -> String {
        let id = format!("n{}", self.next);
        self.next += 1;
        id
    }

    fn node(&mut self, shape: &Shape) -> Node {
        match shape {
            Shape::Step(retry) => Node::Step(self.task(retry, TaskKind::Step)),
            Shape::Action(retry) => Node::Action(self.task(retry, TaskKind::Action)),
            Shape::If(branches, else_nodes) => {
                let id = self.id();
                let branches = branches
                    .iter()
                    .enumerate()
                    .map(|(i, nodes)| {
                        let condition = format!("cond_{id}_{i}");
                        let meta = TaskMeta {
                            kind: TaskKind::Condition,
                            handler: condition.clone(),
                            node_id: id.clone(),
                            policy: self.default_retry.clone(),
                        };
                        self.tasks.insert(TaskKey::condition(&id, i).to_string(), meta);
                        ConditionalBranch { condition, nodes: self.seq(nodes) }
                    })
                    .collect();
                let else_nodes = else_nodes.as_ref().map(|nodes| self.seq(nodes));
                Node::If(IfNode { id, branches, else_nodes })
            }
            Shape::Parallel(branches) => {
                let id = self.id();
                let branches = branches.iter().map(|nodes| Branch { nodes: self.seq(nodes) });
                Node::Parallel(BranchesNode { id, branches: branches.collect() })
            }
        }
    }
}

/// One input the simulated world feeds the machine.
#[derive(Debug, Clone)]
pub(crate) enum Choice {
    /// Answer in-flight task `pick % len` with a success, `delay` ms later.
    Succeed { pick: usize, value: u8, delay: u8 },
    /// Answer in-flight task `pick % len` with a failure, `delay` ms later.
    Fail { pick: usize, name: usize, non_retryable: bool, delay: u8 },
    /// Feed a result for an attempt that is not in flight.
    Stale { pick: usize },
    /// Let `ms` pass, then fire the timers that are due.
    Tick { ms: u16 },
    /// Cancel the run.
    Cancel,
}

/// One step of the script; `fail` weighs failures against 60 for successes.
fn choice(fail: u32) -> impl Strategy<Value = Choice> {
    prop_oneof![
        60 => (any::<usize>(), any::<u8>(), 0u8..=20)
            .prop_map(|(pick, value, delay)| Choice::Succeed { pick, value, delay }),
        fail => (any::<usize>(), 0..ERROR_NAMES.len(), prop::bool::weighted(0.1), 0u8..=20)
            .prop_map(|(pick, name, non_retryable, delay)| {
                Choice::Fail { pick, name, non_retryable, delay }
            }),
        8 => any::<usize>().prop_map(|pick| Choice::Stale { pick }),
        8 => (0u16..=120).prop_map(|ms| Choice::Tick { ms }),
        1 => Just(Choice::Cancel),
    ]
}

/// A generated test case: a definition, a run and the script of the simulated world.
#[derive(Clone)]
pub(crate) struct Case {
    pub(crate) def: Arc<RunDefinition>,
    pub(crate) tasks: BTreeMap<String, TaskMeta>,
    pub(crate) run_id: RunId,
    pub(crate) payload: Json,
    pub(crate) script: Vec<Choice>,
    /// When false, failures become successes and cancels become ticks.
    pub(crate) faults: bool,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The definition as WDO JSON: compact and pasteable into a regression test.
        let wdo = serde_json::to_string(&self.def.def).unwrap_or_default();
        f.debug_struct("Case")
            .field("wdo", &format_args!("{wdo}"))
            .field("run_id", &self.run_id)
            .field("payload", &self.payload)
            .field("faults", &self.faults)
            .field("script", &self.script)
            .finish()
    }
}

impl Case {
    pub(crate) fn deadline(&self) -> Option<DateTime<Utc>> {
        let timeout = self.def.def.options.timeout?;
        Some(t0() + chrono::Duration::from_std(timeout).unwrap())
    }

    pub(crate) fn meta(&self, key: &TaskKey) -> Result<&TaskMeta, TestCaseError> {
        self.tasks
            .get(key.as_str())
            .ok_or_else(|| TestCaseError::fail(format!("unknown task key {key:?}")))
    }
}

pub(crate) fn case(faults: bool) -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(shape(), 1..=4).prop_filter("at most 12 nodes", |s| count(s) <= 12),
        prop::option::weighted(0.5, retry_policy()),
        prop::option::weighted(0.3, 40u64..=600),
        any::<u128>(),
        prop_oneof![Just(Value::Null), (0..100i64).prop_map(|n| json!({ "n": n }))],
        // A mostly healthy world, or a flaky one that fails about half of the answers.
        prop_oneof![
            prop::collection::vec(choice(10), 0..160),
            prop::collection::vec(choice(60), 0..160),
        ],
    )
        .prop_map(move |(shapes, default_retry, timeout, run, payload, script)| {
            let mut builder = DefBuilder {
                next: 0,
                default_retry: default_retry.clone(),
                tasks: BTreeMap::new(),
            };
            let nodes = builder.seq(&shapes);
            let def = WorkflowDef {
                schema: 1,
                id: "prop".into(),
                version: Some("v1".into()),
                name: None,
                description: None,
                triggers: vec![],
                options: WorkflowOptions {
                    timeout: timeout.map(Duration::from_millis),
                    retry: default_retry,
                    ..WorkflowOptions::default()
                },
                hooks: Default::default(),
                nodes,
            };
            Case {
                def: RunDefinition::new(def, 1),
                tasks: builder.tasks,
                run_id: RunId::from_uuid(uuid::Uuid::from_u128(run)),
                payload: Json::from(payload),
                script,
                faults,
            }
        })
}

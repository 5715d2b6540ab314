//! Property tests of the sans-IO run state machine ([`RunMachine`]) through the public API.
//!
//! Random valid workflows (steps, actions, `if` and `parallel`, nested up to three levels, with
//! random retry policies and whole-run timeouts) are driven by a simulated executor on a
//! virtual clock. A script drawn by proptest decides at each step whether to answer an
//! in-flight task with a success or a failure, feed a stale or duplicate result, let time pass
//! (firing due timers) or cancel the run. After every step the live machine is compared with a
//! reference model of the tree, with a machine replayed from the history so far, and with what
//! `resume` would dispatch after a crash at that instant.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use cronflow_core::{
    Branch, BranchesNode, Command, ConditionalBranch, FailureKind, IfNode, Json, Node,
    RecordedEvent, RetryPolicy, RunDefinition, RunEvent, RunFailure, RunId, RunMachine, RunStatus,
    TIMEOUT_ERROR, Task, TaskError, TaskKey, TaskKind, TaskNode, TaskSnapshot, WorkflowDef,
    WorkflowOptions,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

/// Error names the simulated executor fails with (`retry_on` picks among them).
const ERROR_NAMES: [&str; 3] = ["Net", "Bad", TIMEOUT_ERROR];

/// No generated run may need more steps than this (finite retries end every run long before).
const MAX_STEPS: usize = 1_000;

fn t0() -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_700_000_000_000).unwrap()
}

fn ms(n: u64) -> chrono::Duration {
    chrono::Duration::milliseconds(n as i64)
}

// ---------------------------------------------------------------------------------------------
// Generated workflows
// ---------------------------------------------------------------------------------------------

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
struct TaskMeta {
    kind: TaskKind,
    handler: String,
    node_id: String,
    /// The effective retry policy: the node's own, else the workflow default.
    policy: Option<RetryPolicy>,
}

impl TaskMeta {
    fn max_attempts(&self) -> u32 {
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
        TaskNode { id, handler, timeout: None, retry: retry.clone() }
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
enum Choice {
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
struct Case {
    def: Arc<RunDefinition>,
    tasks: BTreeMap<String, TaskMeta>,
    run_id: RunId,
    payload: Json,
    script: Vec<Choice>,
    /// When false, failures become successes and cancels become ticks.
    faults: bool,
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
    fn deadline(&self) -> Option<DateTime<Utc>> {
        let timeout = self.def.def.options.timeout?;
        Some(t0() + chrono::Duration::from_std(timeout).unwrap())
    }

    fn meta(&self, key: &TaskKey) -> Result<&TaskMeta, TestCaseError> {
        self.tasks
            .get(key.as_str())
            .ok_or_else(|| TestCaseError::fail(format!("unknown task key {key:?}")))
    }
}

fn case(faults: bool) -> impl Strategy<Value = Case> {
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

// ---------------------------------------------------------------------------------------------
// Reference model: what the tree should do, from the recorded outcomes alone
// ---------------------------------------------------------------------------------------------

fn truthy(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => false,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

enum Flow {
    Done(Value),
    Pending,
    /// The task whose final failure fails the run.
    Failed(String),
}

/// Walks the tree over the final outcomes recorded so far; collects every task that is
/// reachable and not settled (with the `last` value it receives).
struct Model<'a> {
    finals: &'a BTreeMap<String, Result<Value, TaskError>>,
    open: BTreeMap<String, Value>,
}

impl Model<'_> {
    fn seq(&mut self, nodes: &[Node], last: &Value) -> Flow {
        let mut last = last.clone();
        for node in nodes {
            match self.node(node, &last) {
                Flow::Done(out) => last = out,
                other => return other,
            }
        }
        Flow::Done(last)
    }

    fn node(&mut self, node: &Node, last: &Value) -> Flow {
        match node {
            Node::Step(task) => match self.finals.get(&task.id) {
                Some(Ok(out)) => Flow::Done(out.clone()),
                Some(Err(_)) => Flow::Failed(task.id.clone()),
                None => {
                    self.open.insert(task.id.clone(), last.clone());
                    Flow::Pending
                }
            },
            Node::Action(task) => {
                if !self.finals.contains_key(&task.id) {
                    self.open.insert(task.id.clone(), last.clone());
                }
                Flow::Done(last.clone())
            }
            Node::If(node) => {
                for (i, branch) in node.branches.iter().enumerate() {
                    let key = TaskKey::condition(&node.id, i).to_string();
                    match self.finals.get(&key) {
                        Some(Ok(value)) if truthy(value) => return self.seq(&branch.nodes, last),
                        Some(Ok(_)) => {}
                        Some(Err(_)) => return Flow::Failed(key),
                        None => {
                            self.open.insert(key, last.clone());
                            return Flow::Pending;
                        }
                    }
                }
                match &node.else_nodes {
                    Some(nodes) => self.seq(nodes, last),
                    None => Flow::Done(last.clone()),
                }
            }
            Node::Parallel(node) => {
                let mut outputs = Vec::new();
                let mut pending = false;
                for branch in &node.branches {
                    match self.seq(&branch.nodes, last) {
                        Flow::Done(out) => outputs.push(out),
                        Flow::Pending => pending = true,
                        failed @ Flow::Failed(_) => return failed,
                    }
                }
                if pending { Flow::Pending } else { Flow::Done(Value::Array(outputs)) }
            }
            other => panic!("the generator makes no {} nodes", other.kind()),
        }
    }
}

/// What the history says about each task key.
#[derive(Default)]
struct Outcomes {
    /// Final outcomes: a success, or a failure without retry.
    finals: BTreeMap<String, Result<Value, TaskError>>,
    /// Tasks whose last attempt failed with a retry due at this time.
    waiting: BTreeMap<String, DateTime<Utc>>,
    /// Outputs of succeeded steps and actions (what `TaskContext::steps` must hold).
    steps: BTreeMap<String, String>,
}

impl Outcomes {
    fn of(history: &[RecordedEvent]) -> Self {
        let mut this = Self::default();
        for recorded in history {
            match &recorded.event {
                RunEvent::TaskSucceeded { task, output, .. } => {
                    this.waiting.remove(task.as_str());
                    this.finals.insert(task.to_string(), Ok(output.to_value()));
                    if !task.as_str().contains('#') {
                        this.steps.insert(task.to_string(), output.as_str().to_string());
                    }
                }
                RunEvent::TaskFailed { task, error, retry_at, .. } => match retry_at {
                    Some(at) => {
                        this.waiting.insert(task.to_string(), *at);
                    }
                    None => {
                        this.waiting.remove(task.as_str());
                        this.finals.insert(task.to_string(), Err(error.clone()));
                    }
                },
                _ => {}
            }
        }
        this
    }
}

// ---------------------------------------------------------------------------------------------
// The simulated driver
// ---------------------------------------------------------------------------------------------

struct Sim<'a> {
    case: &'a Case,
    machine: RunMachine,
    now: DateTime<Utc>,
    history: Vec<RecordedEvent>,
    /// Dispatched and neither answered nor aborted: key -> attempt.
    in_flight: BTreeMap<TaskKey, u32>,
    /// When each attempt was dispatched.
    dispatched_at: BTreeMap<(TaskKey, u32), DateTime<Utc>>,
    aborted: Vec<(TaskKey, u32)>,
    cancelled: bool,
    steps: usize,
}

/// The outcome of one driver step, for the checks that follow it.
#[derive(Default)]
struct Turn {
    dispatched: Vec<Task>,
    /// `handle_timeout` was called at a time when timers were due.
    timers_fired: bool,
}

impl<'a> Sim<'a> {
    fn start(case: &'a Case) -> Result<Self, TestCaseError> {
        let now = t0();
        let (machine, commands) =
            RunMachine::start(Arc::clone(&case.def), case.run_id, case.payload.clone(), now);
        let mut sim = Sim {
            case,
            machine,
            now,
            history: Vec::new(),
            in_flight: BTreeMap::new(),
            dispatched_at: BTreeMap::new(),
            aborted: Vec::new(),
            cancelled: false,
            steps: 0,
        };
        let turn = sim.apply(commands)?;
        prop_assert!(
            matches!(sim.history.first().map(|e| &e.event), Some(RunEvent::RunStarted)),
            "start must record RunStarted first: {:?}",
            sim.history
        );
        sim.check(&turn)?;
        Ok(sim)
    }

    /// Carries out one call's commands, checking each against the driver's view.
    fn apply(&mut self, commands: Vec<Command>) -> Result<Turn, TestCaseError> {
        let mut turn = Turn::default();
        for command in commands {
            match command {
                Command::Record(recorded) => {
                    prop_assert_eq!(recorded.seq as usize, self.history.len(), "seq gap");
                    prop_assert_eq!(recorded.at, self.now, "events are recorded at `now`");
                    prop_assert!(
                        !self.history.iter().any(|e| e.event.terminal_status().is_some()),
                        "event {:?} recorded after the run ended",
                        recorded
                    );
                    self.history.push(recorded);
                }
                Command::Dispatch(task) => {
                    let key = task.key.clone();
                    prop_assert!(
                        !self.in_flight.contains_key(&key),
                        "{key:?} dispatched while attempt {:?} is in flight",
                        self.in_flight.get(&key)
                    );
                    let first = self.dispatched_at.insert((key.clone(), task.attempt), self.now);
                    prop_assert!(
                        first.is_none(),
                        "{key:?} attempt {} dispatched twice",
                        task.attempt
                    );
                    self.check_task(&task)?;
                    self.in_flight.insert(key, task.attempt);
                    turn.dispatched.push(*task);
                }
                Command::Abort { key, attempt } => {
                    prop_assert_eq!(
                        self.in_flight.remove(&key),
                        Some(attempt),
                        "abort of {:?} attempt {} that is not in flight",
                        key,
                        attempt
                    );
                    self.aborted.push((key, attempt));
                }
            }
        }
        Ok(turn)
    }

    /// The static fields of a dispatched task.
    fn check_task(&self, task: &Task) -> Result<(), TestCaseError> {
        let meta = self.case.meta(&task.key)?;
        prop_assert_eq!(task.kind, meta.kind, "kind of {:?}", task.key);
        prop_assert_eq!(&*task.handler, meta.handler.as_str(), "handler of {:?}", task.key);
        prop_assert_eq!(&*task.node_id, meta.node_id.as_str(), "node id of {:?}", task.key);
        prop_assert_eq!(task.key.node_id(), meta.node_id.as_str());
        prop_assert_eq!(task.run_id, self.case.run_id);
        prop_assert_eq!(&*task.workflow_id, "prop");
        prop_assert_eq!(task.workflow_version.as_deref(), Some("v1"));
        prop_assert_eq!(task.revision, 1);
        prop_assert_eq!(&task.idempotency_key, &format!("{}/{}", self.case.run_id, task.key));
        prop_assert!(task.attempt >= 1 && task.attempt <= meta.max_attempts());
        prop_assert_eq!(task.timeout, None);
        prop_assert_eq!(task.deadline, None);
        prop_assert_eq!(&task.context.payload, &self.case.payload);
        Ok(())
    }

    fn run(&mut self) -> Result<(), TestCaseError> {
        let mut script = self.case.script.iter().cloned();
        while !self.machine.status().is_terminal() {
            self.steps += 1;
            prop_assert!(self.steps <= MAX_STEPS, "the run did not end in {MAX_STEPS} steps");
            let turn = if self.in_flight.is_empty() {
                self.fire_timers()?
            } else {
                let default = Choice::Succeed { pick: 0, value: 0, delay: 0 };
                let choice = match script.next().unwrap_or(default) {
                    Choice::Fail { pick, delay, .. } if !self.case.faults => {
                        Choice::Succeed { pick, value: 1, delay }
                    }
                    Choice::Cancel if !self.case.faults => Choice::Tick { ms: 1 },
                    other => other,
                };
                self.step(choice)?
            };
            self.check(&turn)?;
        }
        self.finish()
    }

    /// Nothing is in flight: the run can only go on when its next timer fires.
    fn fire_timers(&mut self) -> Result<Turn, TestCaseError> {
        let Some(at) = self.machine.poll_timeout() else {
            return Err(TestCaseError::fail(format!(
                "stuck: the run is {:?} with nothing in flight and no timer; history {:#?}",
                self.machine.status(),
                self.history
            )));
        };
        self.now = self.now.max(at);
        let commands = self.machine.handle_timeout(self.now);
        prop_assert!(
            !commands.is_empty(),
            "stuck: poll_timeout() = {at} but handle_timeout({}) does nothing; history {:#?}",
            self.now,
            self.history
        );
        let mut turn = self.apply(commands)?;
        turn.timers_fired = true;
        Ok(turn)
    }

    fn pick(&self, pick: usize) -> (TaskKey, u32) {
        let (key, attempt) = self.in_flight.iter().nth(pick % self.in_flight.len()).unwrap();
        (key.clone(), *attempt)
    }

    fn step(&mut self, choice: Choice) -> Result<Turn, TestCaseError> {
        match choice {
            Choice::Succeed { pick, value, delay } => {
                let (key, attempt) = self.pick(pick);
                let output = Json::from(success_value(self.case.meta(&key)?.kind, value));
                self.answer(key, attempt, Ok(output), delay)
            }
            Choice::Fail { pick, name, non_retryable, delay } => {
                let (key, attempt) = self.pick(pick);
                let mut error = TaskError::new(ERROR_NAMES[name], format!("injected into {key}"));
                if non_retryable {
                    error = error.non_retryable();
                }
                self.answer(key, attempt, Err(error), delay)
            }
            Choice::Stale { pick } => {
                self.stale(pick)?;
                Ok(Turn::default())
            }
            Choice::Tick { ms: n } => {
                self.now += ms(n.into());
                let due = self.machine.poll_timeout().is_some_and(|at| at <= self.now);
                let commands = self.machine.handle_timeout(self.now);
                if due {
                    prop_assert!(!commands.is_empty(), "a due timer did nothing at {}", self.now);
                } else {
                    prop_assert!(
                        commands.is_empty(),
                        "handle_timeout before poll_timeout() acted: {:?}",
                        commands
                    );
                }
                let mut turn = self.apply(commands)?;
                turn.timers_fired = due;
                Ok(turn)
            }
            Choice::Cancel => {
                self.cancelled = true;
                let in_flight = self.in_flight.clone();
                let commands = self.machine.cancel(self.now, Some("prop".into()));
                let turn = self.apply(commands)?;
                prop_assert!(self.in_flight.is_empty(), "cancel left {:?} running", self.in_flight);
                let aborted: BTreeMap<_, _> =
                    self.aborted.iter().rev().take(in_flight.len()).cloned().collect();
                prop_assert_eq!(aborted, in_flight, "cancel must abort every attempt in flight");
                let last = &self.history.last().unwrap().event;
                prop_assert_eq!(last, &RunEvent::RunCancelled { reason: Some("prop".into()) });
                Ok(turn)
            }
        }
    }

    fn answer(
        &mut self,
        key: TaskKey,
        attempt: u32,
        result: Result<Json, TaskError>,
        delay: u8,
    ) -> Result<Turn, TestCaseError> {
        self.now += ms(delay.into());
        self.in_flight.remove(&key);
        let before = self.history.len();
        let commands = self.machine.handle_task_result(self.now, &key, attempt, result.clone());
        let turn = self.apply(commands)?;
        // The answer itself is recorded first, with the dispatch time of its attempt.
        let started = self.dispatched_at[&(key.clone(), attempt)];
        let event = self.history.get(before).map(|e| &e.event);
        if self.case.deadline().is_some_and(|d| d <= self.now) {
            // An answer after the deadline does not count: the run times out instead.
            let timed_out = matches!(event, Some(RunEvent::RunFailed { failure })
                if failure.kind == FailureKind::RunTimedOut);
            prop_assert!(timed_out, "late answer of {:?} recorded {:?}", key, event);
            return Ok(turn);
        }
        match (&result, event) {
            (
                Ok(output),
                Some(RunEvent::TaskSucceeded { task, attempt: a, started_at, output: o }),
            ) => {
                prop_assert!(*task == key && *a == attempt && *started_at == started);
                prop_assert_eq!(o, output);
            }
            (
                Err(error),
                Some(RunEvent::TaskFailed { task, attempt: a, started_at, error: e, .. }),
            ) => {
                prop_assert!(*task == key && *a == attempt && *started_at == started);
                prop_assert_eq!(e, error);
            }
            (_, event) => {
                return Err(TestCaseError::fail(format!(
                    "answer {result:?} of {key:?} attempt {attempt} recorded {event:?}"
                )));
            }
        }
        Ok(turn)
    }

    /// Results for attempts that are not in flight must change nothing.
    fn stale(&mut self, pick: usize) -> Result<(), TestCaseError> {
        let mut candidates: Vec<(TaskKey, u32)> = vec![(TaskKey::new("ghost"), 1)];
        for (key, attempt) in &self.in_flight {
            candidates.push((key.clone(), attempt + 1));
            if *attempt > 1 {
                candidates.push((key.clone(), attempt - 1));
            }
        }
        candidates.extend(self.aborted.iter().cloned());
        for recorded in &self.history {
            if let (Some(task), Some(attempt)) = (recorded.event.task(), recorded.event.attempt()) {
                // Duplicates of answered attempts, and the not yet dispatched next attempt.
                candidates.push((task.clone(), attempt));
                if !self.in_flight.contains_key(task) {
                    candidates.push((task.clone(), attempt + 1));
                }
            }
        }
        let (key, attempt) = candidates[pick % candidates.len()].clone();
        let result =
            if pick.is_multiple_of(3) { Err(TaskError::msg("late")) } else { Ok(Json::null()) };
        let before = self.machine.snapshot();
        let in_flight = self.in_flight.clone();
        let commands = self.machine.handle_task_result(self.now, &key, attempt, result);
        prop_assert!(
            commands.is_empty(),
            "a result for {:?} attempt {} (not in flight) produced {:?}",
            key,
            attempt,
            commands
        );
        prop_assert_eq!(self.machine.snapshot(), before);
        prop_assert_eq!(self.machine_in_flight(), in_flight);
        Ok(())
    }

    fn machine_in_flight(&self) -> BTreeMap<TaskKey, u32> {
        self.machine.in_flight().map(|(k, a)| (k.clone(), a)).collect()
    }

    /// Checks after every step.
    fn check(&self, turn: &Turn) -> Result<(), TestCaseError> {
        let status = self.machine.status();
        prop_assert_eq!(self.machine_in_flight(), self.in_flight.clone(), "in-flight sets differ");
        if status.is_terminal() {
            prop_assert!(self.in_flight.is_empty());
            prop_assert_eq!(self.machine.poll_timeout(), None);
        }
        self.check_snapshot()?;
        self.check_replay()?;
        self.check_model(turn)?;
        if !status.is_terminal() {
            self.check_resume()?;
        }
        Ok(())
    }

    /// The snapshot says what the history says: events, status, failures and outcomes.
    fn check_snapshot(&self) -> Result<(), TestCaseError> {
        let snapshot = self.machine.snapshot();
        prop_assert_eq!(snapshot.recorded as usize, self.history.len());
        prop_assert_eq!(snapshot.status, self.machine.status());
        let mut expected: BTreeMap<TaskKey, TaskSnapshot> = BTreeMap::new();
        for recorded in &self.history {
            let blank = || TaskSnapshot { failures: 0, retry_at: None, outcome: None };
            match &recorded.event {
                RunEvent::TaskSucceeded { task, output, .. } => {
                    let entry = expected.entry(task.clone()).or_insert_with(blank);
                    entry.retry_at = None;
                    entry.outcome = Some(Ok(output.clone()));
                }
                RunEvent::TaskFailed { task, error, retry_at, .. } => {
                    let entry = expected.entry(task.clone()).or_insert_with(blank);
                    entry.failures += 1;
                    entry.retry_at = *retry_at;
                    if retry_at.is_none() {
                        entry.outcome = Some(Err(error.clone()));
                    }
                }
                _ => {}
            }
        }
        let actual = snapshot.tasks;
        prop_assert_eq!(actual, expected, "snapshot (left) against the history (right)");
        Ok(())
    }

    /// Replaying the history so far rebuilds the live machine's recorded state.
    fn check_replay(&self) -> Result<(), TestCaseError> {
        let replayed = RunMachine::replay(
            Arc::clone(&self.case.def),
            self.case.run_id,
            self.case.payload.clone(),
            &self.history,
        )
        .map_err(|e| TestCaseError::fail(format!("replay failed: {e}")))?;
        prop_assert_eq!(
            replayed.snapshot(),
            self.machine.snapshot(),
            "replayed snapshot (left) differs from the live one (right) after {:#?}",
            self.history
        );
        prop_assert_eq!(replayed.status(), self.machine.status());
        Ok(())
    }

    /// A crash now, then replay + resume: every attempt in flight is dispatched again.
    fn check_resume(&self) -> Result<(), TestCaseError> {
        let mut replayed = RunMachine::replay(
            Arc::clone(&self.case.def),
            self.case.run_id,
            self.case.payload.clone(),
            &self.history,
        )
        .map_err(|e| TestCaseError::fail(format!("replay failed: {e}")))?;
        let commands = replayed.resume(self.now);
        if self.case.deadline().is_some_and(|d| d <= self.now) {
            // The run is overdue: resuming ends it as timed out.
            prop_assert_eq!(commands.len(), 1, "{:?}", commands);
            let Command::Record(RecordedEvent {
                seq, event: RunEvent::RunFailed { failure }, ..
            }) = &commands[0]
            else {
                return Err(TestCaseError::fail(format!("overdue resume gave {commands:?}")));
            };
            prop_assert_eq!(*seq as usize, self.history.len());
            prop_assert_eq!(failure.kind, FailureKind::RunTimedOut);
            return Ok(());
        }
        let outcomes = Outcomes::of(&self.history);
        let mut model = Model { finals: &outcomes.finals, open: BTreeMap::new() };
        model.seq(&self.case.def.def.nodes, &Value::Null);
        let snapshot = self.machine.snapshot();
        let mut dispatched = BTreeMap::new();
        for command in commands {
            let Command::Dispatch(task) = command else {
                return Err(TestCaseError::fail(format!(
                    "resume of a running run gave {command:?}; history {:#?}",
                    self.history
                )));
            };
            prop_assert!(dispatched.insert(task.key.clone(), task.attempt).is_none());
            self.check_task(&task)?;
            self.check_context(&task, &model.open, &outcomes)?;
            if self.in_flight.get(&task.key) != Some(&task.attempt) {
                // Not in flight live: it must be a retry that is due.
                let state = snapshot.tasks.get(&task.key);
                prop_assert!(
                    matches!(state, Some(TaskSnapshot { failures, retry_at: Some(at), outcome: None })
                        if failures + 1 == task.attempt && *at <= self.now),
                    "resume dispatched {:?} attempt {} which is neither in flight ({:?}) nor a \
                     due retry ({:?})",
                    task.key,
                    task.attempt,
                    self.in_flight.get(&task.key),
                    state
                );
            }
        }
        for (key, attempt) in &self.in_flight {
            prop_assert_eq!(
                dispatched.get(key),
                Some(attempt),
                "resume after a crash did not re-dispatch in-flight {:?}; history {:#?}",
                key,
                self.history
            );
        }
        prop_assert_eq!(
            replayed.in_flight().map(|(k, a)| (k.clone(), a)).collect::<BTreeMap<_, _>>(),
            dispatched
        );
        Ok(())
    }

    fn check_context(
        &self,
        task: &Task,
        open: &BTreeMap<String, Value>,
        outcomes: &Outcomes,
    ) -> Result<(), TestCaseError> {
        let Some(last) = open.get(task.key.as_str()) else {
            return Err(TestCaseError::fail(format!(
                "{:?} dispatched but the model has no open task of that key (open: {:?}); \
                 history {:#?}",
                task.key,
                open.keys().collect::<Vec<_>>(),
                self.history
            )));
        };
        prop_assert_eq!(&task.context.last.to_value(), last, "`last` of {:?}", task.key);
        let steps: BTreeMap<String, String> =
            task.context.steps.iter().map(|(k, v)| (k.clone(), v.as_str().to_string())).collect();
        prop_assert_eq!(&steps, &outcomes.steps, "`steps` of {:?}", task.key);
        Ok(())
    }

    /// The live machine agrees with the reference model of the tree.
    fn check_model(&self, turn: &Turn) -> Result<(), TestCaseError> {
        let outcomes = Outcomes::of(&self.history);
        let mut model = Model { finals: &outcomes.finals, open: BTreeMap::new() };
        let flow = model.seq(&self.case.def.def.nodes, &Value::Null);
        let open = model.open;
        let terminal =
            self.history.last().map(|e| &e.event).filter(|e| e.terminal_status().is_some());
        match (self.machine.status(), terminal) {
            (RunStatus::Running, None) => {
                match &flow {
                    Flow::Failed(key) => {
                        return Err(TestCaseError::fail(format!(
                            "{key} failed for good but the run is still running; history {:#?}",
                            self.history
                        )));
                    }
                    Flow::Done(out) if open.is_empty() => {
                        return Err(TestCaseError::fail(format!(
                            "the tree is done ({out}) but the run did not complete; history {:#?}",
                            self.history
                        )));
                    }
                    _ => {}
                }
                for key in self.in_flight.keys() {
                    prop_assert!(
                        open.contains_key(key.as_str()),
                        "{:?} in flight but not open",
                        key
                    );
                }
                for key in open.keys() {
                    let in_flight = self.in_flight.contains_key(key.as_str());
                    let retry_at = outcomes.waiting.get(key);
                    prop_assert!(
                        in_flight || retry_at.is_some(),
                        "open task {key} is neither in flight nor waiting for a retry; history {:#?}",
                        self.history
                    );
                    if turn.timers_fired && !in_flight {
                        let at = retry_at.unwrap();
                        prop_assert!(
                            *at > self.now,
                            "the retry of {key} was due at {at} but handle_timeout({}) did not \
                             dispatch it (poll_timeout() = {:?}); history {:#?}",
                            self.now,
                            self.machine.poll_timeout(),
                            self.history
                        );
                    }
                }
                for task in &turn.dispatched {
                    if self.in_flight.get(&task.key) == Some(&task.attempt) {
                        self.check_context(task, &open, &outcomes)?;
                    }
                }
            }
            (RunStatus::Completed, Some(RunEvent::RunCompleted { output })) => {
                let Flow::Done(expected) = flow else {
                    return Err(TestCaseError::fail(format!(
                        "completed though the tree is not done; history {:#?}",
                        self.history
                    )));
                };
                prop_assert!(open.is_empty(), "completed with {:?} open", open.keys());
                prop_assert_eq!(output.to_value(), expected, "run output");
            }
            (RunStatus::Failed, Some(RunEvent::RunFailed { failure })) => {
                self.check_failure(failure, &flow, &outcomes)?;
            }
            (RunStatus::Cancelled, Some(RunEvent::RunCancelled { .. })) => {
                prop_assert!(self.cancelled, "cancelled without a cancel");
            }
            (status, event) => {
                return Err(TestCaseError::fail(format!(
                    "status {status:?} with last event {event:?}"
                )));
            }
        }
        Ok(())
    }

    fn check_failure(
        &self,
        failure: &RunFailure,
        flow: &Flow,
        outcomes: &Outcomes,
    ) -> Result<(), TestCaseError> {
        match failure.kind {
            FailureKind::RunTimedOut => {
                let deadline = self.case.deadline();
                prop_assert!(
                    deadline.is_some_and(|d| d <= self.now),
                    "timed out at {} before the deadline {:?}",
                    self.now,
                    deadline
                );
                prop_assert_eq!(&failure.task, &None);
            }
            FailureKind::TaskFailed => {
                let Flow::Failed(key) = flow else {
                    return Err(TestCaseError::fail(format!(
                        "run failed ({failure:?}) but no task failed for good; history {:#?}",
                        self.history
                    )));
                };
                prop_assert_eq!(failure.task.as_ref().map(TaskKey::as_str), Some(key.as_str()));
                let error = outcomes.finals[key].clone().unwrap_err();
                prop_assert_eq!(failure.error.as_ref(), Some(&error));
                let meta = &self.case.tasks[key];
                let what = match key.split_once('#') {
                    Some((node, i)) => format!("condition {i} of `{node}`"),
                    None => format!("step `{}`", meta.node_id),
                };
                prop_assert!(failure.message.contains(&what), "{:?} names {}", failure, what);
            }
        }
        Ok(())
    }

    /// Checks once the run has ended.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        check_history(self.case, &self.history)?;
        let status = self.machine.status();
        if !self.case.faults {
            // No failure and no cancel: the run completes, unless the clock outran its timeout.
            let timed_out = matches!(
                &self.history.last().unwrap().event,
                RunEvent::RunFailed { failure } if failure.kind == FailureKind::RunTimedOut
            );
            prop_assert!(
                status == RunStatus::Completed || timed_out,
                "fault-free run ended {:?}: {:?}",
                status,
                self.history.last()
            );
        }
        // A finished run ignores every input.
        let snapshot = self.machine.snapshot();
        let later = self.now + chrono::Duration::days(1);
        let mut attempts: Vec<(TaskKey, u32)> = self.aborted.clone();
        attempts.extend(self.dispatched_at.keys().cloned());
        for (key, attempt) in attempts {
            let commands = self.machine.handle_task_result(later, &key, attempt, Ok(Json::null()));
            prop_assert!(commands.is_empty(), "finished run took a result: {:?}", commands);
        }
        prop_assert!(self.machine.handle_timeout(later).is_empty());
        prop_assert!(self.machine.cancel(later, None).is_empty());
        prop_assert_eq!(self.machine.poll_timeout(), None);
        prop_assert_eq!(self.machine.snapshot(), snapshot);
        let mut replayed = RunMachine::replay(
            Arc::clone(&self.case.def),
            self.case.run_id,
            self.case.payload.clone(),
            &self.history,
        )
        .map_err(|e| TestCaseError::fail(format!("replay failed: {e}")))?;
        prop_assert_eq!(replayed.snapshot(), self.machine.snapshot());
        let resumed = replayed.resume(later);
        prop_assert!(resumed.is_empty(), "resuming a finished run gave {:?}", resumed);
        Ok(())
    }
}

fn success_value(kind: TaskKind, value: u8) -> Value {
    match kind {
        TaskKind::Condition => match value % 5 {
            0 => json!(true),
            1 => json!(false),
            2 => json!(0),
            3 => json!(1),
            _ => Value::Null,
        },
        _ => match value % 3 {
            0 => json!(value),
            1 => json!(format!("s{value}")),
            _ => json!({ "v": value, "ok": true }),
        },
    }
}

/// The whole history: framing, and per task the attempt sequence and its retry decisions.
fn check_history(case: &Case, history: &[RecordedEvent]) -> Result<(), TestCaseError> {
    prop_assert!(matches!(history.first().map(|e| &e.event), Some(RunEvent::RunStarted)));
    prop_assert_eq!(history.iter().filter(|e| e.event == RunEvent::RunStarted).count(), 1);
    let terminals = history.iter().filter(|e| e.event.terminal_status().is_some()).count();
    prop_assert_eq!(terminals, 1, "exactly one terminal event");
    prop_assert!(history.last().unwrap().event.terminal_status().is_some(), "terminal is last");
    for (i, recorded) in history.iter().enumerate() {
        prop_assert_eq!(recorded.seq as usize, i);
        if i > 0 {
            prop_assert!(recorded.at >= history[i - 1].at, "time went backwards");
        }
    }
    let mut per_task: BTreeMap<&TaskKey, Vec<&RecordedEvent>> = BTreeMap::new();
    for recorded in history {
        if let Some(task) = recorded.event.task() {
            per_task.entry(task).or_default().push(recorded);
        }
    }
    for (key, events) in per_task {
        let meta = case.meta(key)?;
        let successes =
            events.iter().filter(|e| matches!(e.event, RunEvent::TaskSucceeded { .. })).count();
        prop_assert!(successes <= 1, "{:?} succeeded {} times", key, successes);
        for (i, recorded) in events.iter().enumerate() {
            let attempt = recorded.event.attempt().unwrap();
            prop_assert_eq!(attempt as usize, i + 1, "attempts of {:?} out of order", key);
            prop_assert!(
                attempt <= meta.max_attempts(),
                "{:?} attempt {} exceeds max_attempts {}",
                key,
                attempt,
                meta.max_attempts()
            );
            let is_last = i + 1 == events.len();
            match &recorded.event {
                RunEvent::TaskSucceeded { .. } => {
                    prop_assert!(is_last, "{:?}: an event follows its success", key);
                }
                RunEvent::TaskFailed { error, retry_at, .. } => {
                    check_retry(key, meta, recorded.at, attempt, error, *retry_at)?;
                    if retry_at.is_none() {
                        prop_assert!(is_last, "{:?}: an event follows its final failure", key);
                    }
                }
                _ => unreachable!(),
            }
        }
    }
    Ok(())
}

/// A failure is retried exactly when the policy allows it, after the policy's delay.
fn check_retry(
    key: &TaskKey,
    meta: &TaskMeta,
    at: DateTime<Utc>,
    attempt: u32,
    error: &TaskError,
    retry_at: Option<DateTime<Utc>>,
) -> Result<(), TestCaseError> {
    let policy = meta
        .policy
        .as_ref()
        .filter(|p| error.retryable && attempt < p.max_attempts && p.retries_error(&error.name));
    let Some(policy) = policy else {
        prop_assert_eq!(
            retry_at,
            None,
            "{:?} attempt {} ({}) must not be retried",
            key,
            attempt,
            error
        );
        return Ok(());
    };
    let Some(retry_at) = retry_at else {
        return Err(TestCaseError::fail(format!(
            "{key:?} attempt {attempt} ({error}) must be retried under {policy:?}"
        )));
    };
    let plain = RetryPolicy { jitter: false, ..policy.clone() };
    let full = chrono::Duration::from_std(plain.delay_before(attempt + 1, 0).unwrap()).unwrap();
    let delay = retry_at - at;
    let micro = chrono::Duration::microseconds(1);
    if policy.jitter {
        prop_assert!(
            delay >= full / 2 - micro * 2 && delay <= full,
            "{:?}: jittered delay {} outside [{}/2, {}]",
            key,
            delay,
            full,
            full
        );
    } else {
        prop_assert!(
            delay <= full && delay > full - micro,
            "{:?}: retry delay {} instead of {} under {:?}",
            key,
            delay,
            full,
            policy
        );
    }
    Ok(())
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Regressions are written up as the deterministic tests below instead.
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Random workflows under random results, failures, stale answers, timers and cancels.
    #[test]
    fn random_runs_keep_every_invariant(case in case(true)) {
        case.def.def.validate().map_err(|e| TestCaseError::fail(format!("invalid WDO: {e}")))?;
        let mut sim = Sim::start(&case)?;
        sim.run()?;
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// Without injected failures and cancels every run completes (or hits its run timeout).
    #[test]
    fn fault_free_runs_complete(case in case(false)) {
        case.def.def.validate().map_err(|e| TestCaseError::fail(format!("invalid WDO: {e}")))?;
        let mut sim = Sim::start(&case)?;
        sim.run()?;
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic cases
// ---------------------------------------------------------------------------------------------

fn at(n: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::milliseconds(n)
}

fn task(id: &str) -> TaskNode {
    TaskNode { id: id.into(), handler: id.into(), timeout: None, retry: None }
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

//! The Rust builder: [`Workflow`], and the [`Sequence`] of nodes it shares with every branch
//! and loop body, so that the node methods exist once for both.

use std::time::Duration;

use crate::error::WdoError;
use crate::retry::RetryPolicy;
use crate::wdo::{
    BatchNode, Branch, BranchesNode, CancelNode, ConcurrencyDef, ConditionalBranch, DebounceDef,
    ForEachNode, Hooks, IfNode, Node, OnTimeout, PauseNode, RateLimitDef, SCHEMA_VERSION,
    SleepNode, SubflowNode, TaskNode, TriggerDef, WaitForEventNode, WhileNode, WorkflowDef,
    WorkflowOptions,
};

/// Builds a [`WorkflowDef`] fluently: workflow settings, then nodes in the order they run.
///
/// `Workflow` is a [`Sequence`] whose head is the workflow being defined, so every node method
/// of [`Sequence`] (`step`, `if_`, `parallel`, ...) is available on it directly, and branches
/// and loop bodies are built with the same methods. [`build`](Sequence::build) checks the
/// result with [`WorkflowDef::validate`].
///
/// ```
/// use std::time::Duration;
/// use cronflow_core::{RetryPolicy, TriggerDef, Workflow};
///
/// let ms = Duration::from_millis;
/// let def = Workflow::new("order-fulfilment")
///     .version("1.0")
///     .trigger(TriggerDef::webhook("/hooks/orders"))
///     .timeout(Duration::from_secs(60))
///     .retry(RetryPolicy::exponential(3, ms(100)))
///     .step("fetch-order")
///     .step_with("charge", |s| {
///         s.handler("charge-card").retry(RetryPolicy::fixed(2, ms(10))).timeout(ms(5000))
///     })
///     .action("notify")
///     .if_("route", |b| {
///         b.when("is-big-order", |seq| seq.step("manual-review"))
///             .when("is-international", |seq| seq.step("customs"))
///             .otherwise(|seq| seq.step("auto-approve"))
///     })
///     .parallel("fan-out", |p| p.branch(|seq| seq.step("email")).branch(|seq| seq.step("sms")))
///     .build()?;
/// assert_eq!(def.nodes.len(), 5);
/// assert_eq!(def.nodes[0].id(), "fetch-order");
/// # Ok::<(), cronflow_core::WdoError>(())
/// ```
pub type Workflow = Sequence<WorkflowDef>;

/// Nodes that run one after another, with a `Head` they belong to: the workflow being defined
/// (see [`Workflow`]) or nothing (`()`) for a branch or loop body handed to a closure.
///
/// Functions generic over `Head` can add the same nodes at any level:
///
/// ```
/// use cronflow_core::{Sequence, Workflow};
///
/// fn payment<H>(seq: Sequence<H>, tag: &str) -> Sequence<H> {
///     seq.step(format!("reserve-{tag}")).step(format!("capture-{tag}"))
/// }
/// let def = payment(Workflow::new("checkout"), "card")
///     .race("pay-fast", |r| r.branch(|seq| payment(seq, "wallet")))
///     .build()?;
/// assert_eq!(def.nodes.len(), 3);
/// # Ok::<(), cronflow_core::WdoError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct Sequence<Head = ()> {
    head: Head,
    nodes: Vec<Node>,
}

/// Runs a closure on an empty nested sequence and returns its nodes.
fn body(f: impl FnOnce(Sequence) -> Sequence) -> Vec<Node> {
    f(Sequence { head: (), nodes: Vec::new() }).nodes
}

impl Sequence<WorkflowDef> {
    /// Starts a workflow with this id and no nodes.
    pub fn new(id: impl Into<String>) -> Self {
        let head = WorkflowDef {
            schema: SCHEMA_VERSION,
            id: id.into(),
            version: None,
            name: None,
            description: None,
            triggers: Vec::new(),
            options: WorkflowOptions::default(),
            hooks: Hooks::default(),
            nodes: Vec::new(),
        };
        Sequence { head, nodes: Vec::new() }
    }

    /// Sets the author's version label.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.head.version = Some(version.into());
        self
    }

    /// Sets the human-readable name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.head.name = Some(name.into());
        self
    }

    /// Sets the human-readable description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.head.description = Some(description.into());
        self
    }

    /// Adds a trigger (see the constructors on [`TriggerDef`]).
    pub fn trigger(mut self, trigger: TriggerDef) -> Self {
        self.head.triggers.push(trigger);
        self
    }

    /// Sets the whole-run timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.head.options.timeout = Some(timeout);
        self
    }

    /// Sets the default timeout of each task (a task's own timeout wins).
    pub fn step_timeout(mut self, timeout: Duration) -> Self {
        self.head.options.step_timeout = Some(timeout);
        self
    }

    /// Sets the default retry policy of each task (a task's own policy wins).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.head.options.retry = Some(retry);
        self
    }

    /// Sets the concurrency limit.
    pub fn concurrency(mut self, concurrency: ConcurrencyDef) -> Self {
        self.head.options.concurrency = Some(concurrency);
        self
    }

    /// Sets the debounce: a burst of triggers (per key value) starts one run.
    pub fn debounce(mut self, debounce: DebounceDef) -> Self {
        self.head.options.debounce = Some(debounce);
        self
    }

    /// Names the handler run when a run's tree completes, before the end is recorded.
    pub fn on_success(mut self, handler: impl Into<String>) -> Self {
        self.head.hooks.on_success = Some(handler.into());
        self
    }

    /// Names the handler run when a run's tree fails, before the end is recorded.
    pub fn on_failure(mut self, handler: impl Into<String>) -> Self {
        self.head.hooks.on_failure = Some(handler.into());
        self
    }

    /// Sets the rate limit.
    pub fn rate_limit(mut self, rate_limit: RateLimitDef) -> Self {
        self.head.options.rate_limit = Some(rate_limit);
        self
    }

    /// Finishes the definition and checks it with [`WorkflowDef::validate`].
    pub fn build(self) -> Result<WorkflowDef, WdoError> {
        let mut def = self.head;
        def.nodes = self.nodes;
        def.validate()?;
        Ok(def)
    }
}

impl<Head> Sequence<Head> {
    /// Appends any node, for settings the shorthand methods do not cover.
    pub fn node(mut self, node: Node) -> Self {
        self.nodes.push(node);
        self
    }

    /// Appends a step whose handler has the same name as its id.
    pub fn step(self, id: impl Into<String>) -> Self {
        self.step_with(id, |t| t)
    }

    /// Appends a step configured by `f` (handler name, timeout, retry).
    pub fn step_with(
        self,
        id: impl Into<String>,
        f: impl FnOnce(TaskBuilder) -> TaskBuilder,
    ) -> Self {
        self.node(Node::Step(TaskBuilder::new(id).apply(f)))
    }

    /// Appends a fire-and-forget action whose handler has the same name as its id.
    pub fn action(self, id: impl Into<String>) -> Self {
        self.action_with(id, |t| t)
    }

    /// Appends a fire-and-forget action configured by `f`.
    pub fn action_with(
        self,
        id: impl Into<String>,
        f: impl FnOnce(TaskBuilder) -> TaskBuilder,
    ) -> Self {
        self.node(Node::Action(TaskBuilder::new(id).apply(f)))
    }

    /// Appends an `if` whose branches (and `else`) are added by `f`.
    pub fn if_(self, id: impl Into<String>, f: impl FnOnce(IfBuilder) -> IfBuilder) -> Self {
        let built = f(IfBuilder { branches: Vec::new(), else_nodes: None });
        self.node(Node::If(IfNode {
            id: id.into(),
            branches: built.branches,
            else_nodes: built.else_nodes,
        }))
    }

    /// Appends a `parallel` whose branches, added by `f`, all run at once.
    pub fn parallel(
        self,
        id: impl Into<String>,
        f: impl FnOnce(BranchesBuilder) -> BranchesBuilder,
    ) -> Self {
        let branches = f(BranchesBuilder { branches: Vec::new() }).branches;
        self.node(Node::Parallel(BranchesNode { id: id.into(), branches }))
    }

    /// Appends a `race` whose branches, added by `f`, start at once; the first to finish wins.
    pub fn race(
        self,
        id: impl Into<String>,
        f: impl FnOnce(BranchesBuilder) -> BranchesBuilder,
    ) -> Self {
        let branches = f(BranchesBuilder { branches: Vec::new() }).branches;
        self.node(Node::Race(BranchesNode { id: id.into(), branches }))
    }

    /// Appends a `for_each` running `f`'s body once per item returned by the `items` handler.
    pub fn for_each(
        self,
        id: impl Into<String>,
        items: impl Into<String>,
        f: impl FnOnce(Sequence) -> Sequence,
    ) -> Self {
        self.node(Node::ForEach(ForEachNode {
            id: id.into(),
            items: items.into(),
            nodes: body(f),
            concurrency: None,
        }))
    }

    /// Appends a `for_each` like [`Sequence::for_each`] with up to `concurrency` items
    /// processed at once (one at a time when `None`).
    pub fn for_each_with(
        self,
        id: impl Into<String>,
        items: impl Into<String>,
        concurrency: Option<u32>,
        f: impl FnOnce(Sequence) -> Sequence,
    ) -> Self {
        self.node(Node::ForEach(ForEachNode {
            id: id.into(),
            items: items.into(),
            nodes: body(f),
            concurrency,
        }))
    }

    /// Appends a `batch` running `f`'s body once per chunk of `size` items.
    pub fn batch(
        self,
        id: impl Into<String>,
        items: impl Into<String>,
        size: u32,
        f: impl FnOnce(Sequence) -> Sequence,
    ) -> Self {
        self.node(Node::Batch(BatchNode {
            id: id.into(),
            items: items.into(),
            size,
            nodes: body(f),
        }))
    }

    /// Appends a `while` running `f`'s body while the `condition` handler returns a truthy value.
    pub fn while_(
        self,
        id: impl Into<String>,
        condition: impl Into<String>,
        max_iterations: u32,
        f: impl FnOnce(Sequence) -> Sequence,
    ) -> Self {
        self.node(Node::While(WhileNode {
            id: id.into(),
            condition: condition.into(),
            nodes: body(f),
            max_iterations,
        }))
    }

    /// Appends a `sleep` of `duration`.
    pub fn sleep(self, id: impl Into<String>, duration: Duration) -> Self {
        self.node(Node::Sleep(SleepNode { id: id.into(), duration: Some(duration), until: None }))
    }

    /// Appends a `pause` that waits, without timeout, for a resume.
    pub fn pause(self, id: impl Into<String>) -> Self {
        self.node(Node::Pause(PauseNode {
            id: id.into(),
            timeout: None,
            on_timeout: OnTimeout::Fail,
            on_pause: None,
        }))
    }

    /// Appends a `sleep` until `until` (an RFC 3339 time, such as `2030-01-01T09:00:00Z`).
    pub fn sleep_until(self, id: impl Into<String>, until: impl Into<String>) -> Self {
        self.node(Node::Sleep(SleepNode {
            id: id.into(),
            duration: None,
            until: Some(until.into()),
        }))
    }

    /// Appends a `pause` configured by `f`: a timeout and its outcome, an `on_pause` handler.
    pub fn pause_with(
        self,
        id: impl Into<String>,
        f: impl FnOnce(WaitBuilder) -> WaitBuilder,
    ) -> Self {
        let wait = f(WaitBuilder::default());
        self.node(Node::Pause(PauseNode {
            id: id.into(),
            timeout: wait.timeout,
            on_timeout: wait.on_timeout,
            on_pause: wait.on_pause,
        }))
    }

    /// Appends a `wait_for_event` for `event` configured by `f`: fields to match, a timeout
    /// and its outcome.
    pub fn wait_for_event_with(
        self,
        id: impl Into<String>,
        event: impl Into<String>,
        f: impl FnOnce(WaitBuilder) -> WaitBuilder,
    ) -> Self {
        let wait = f(WaitBuilder::default());
        self.node(Node::WaitForEvent(WaitForEventNode {
            id: id.into(),
            event: event.into(),
            match_fields: wait.match_fields,
            timeout: wait.timeout,
            on_timeout: wait.on_timeout,
        }))
    }

    /// Appends a `subflow` running `workflow` with the payload returned by `handler`.
    pub fn subflow_with_payload(
        self,
        id: impl Into<String>,
        workflow: impl Into<String>,
        handler: impl Into<String>,
    ) -> Self {
        self.node(Node::Subflow(SubflowNode {
            id: id.into(),
            workflow: workflow.into(),
            payload: Some(handler.into()),
        }))
    }

    /// Appends a `wait_for_event` that waits, without timeout, for the named event.
    pub fn wait_for_event(self, id: impl Into<String>, event: impl Into<String>) -> Self {
        self.node(Node::WaitForEvent(WaitForEventNode {
            id: id.into(),
            event: event.into(),
            match_fields: None,
            timeout: None,
            on_timeout: OnTimeout::Fail,
        }))
    }

    /// Appends a `subflow` that runs the workflow `workflow` with this run's payload.
    pub fn subflow(self, id: impl Into<String>, workflow: impl Into<String>) -> Self {
        self.node(Node::Subflow(SubflowNode {
            id: id.into(),
            workflow: workflow.into(),
            payload: None,
        }))
    }

    /// Appends a `cancel` that ends the run as cancelled with this reason.
    pub fn cancel(self, id: impl Into<String>, reason: impl Into<String>) -> Self {
        self.node(Node::Cancel(CancelNode { id: id.into(), reason: Some(reason.into()) }))
    }
}

/// Configures a `pause` ([`Sequence::pause_with`]) or a `wait_for_event`
/// ([`Sequence::wait_for_event_with`]).
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use]
pub struct WaitBuilder {
    timeout: Option<Duration>,
    on_timeout: OnTimeout,
    on_pause: Option<String>,
    match_fields: Option<serde_json::Map<String, serde_json::Value>>,
}

impl WaitBuilder {
    /// Ends the wait after `timeout`; the run fails then, unless [`WaitBuilder::or_continue`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// On timeout the run goes on, with `null` as the node's output.
    pub fn or_continue(mut self) -> Self {
        self.on_timeout = OnTimeout::Continue;
        self
    }

    /// For a pause: the handler called with the resume token.
    pub fn on_pause(mut self, handler: impl Into<String>) -> Self {
        self.on_pause = Some(handler.into());
        self
    }

    /// For an event wait: the payload must have field `name` (or JSON pointer, if it
    /// starts with `/`) equal to `value`.
    pub fn matching(mut self, name: impl Into<String>, value: serde_json::Value) -> Self {
        self.match_fields.get_or_insert_with(Default::default).insert(name.into(), value);
        self
    }
}

/// Configures a `step` or `action` in [`Sequence::step_with`] and [`Sequence::action_with`].
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct TaskBuilder {
    node: TaskNode,
}

impl TaskBuilder {
    fn new(id: impl Into<String>) -> Self {
        let id = id.into();
        TaskBuilder {
            node: TaskNode { handler: id.clone(), id, timeout: None, retry: None, on_error: None },
        }
    }

    fn apply(self, f: impl FnOnce(TaskBuilder) -> TaskBuilder) -> TaskNode {
        f(self).node
    }

    /// Names the handler to run (the node id by default).
    pub fn handler(mut self, handler: impl Into<String>) -> Self {
        self.node.handler = handler.into();
        self
    }

    /// Sets this task's timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.node.timeout = Some(timeout);
        self
    }

    /// Sets this task's retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.node.retry = Some(retry);
        self
    }

    /// Names a handler called with the error once the attempts are exhausted; its output
    /// stands in for the node's output.
    pub fn on_error(mut self, handler: impl Into<String>) -> Self {
        self.node.on_error = Some(handler.into());
        self
    }
}

/// Adds the branches of an `if` in [`Sequence::if_`].
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct IfBuilder {
    branches: Vec<ConditionalBranch>,
    else_nodes: Option<Vec<Node>>,
}

impl IfBuilder {
    /// Adds a branch run when the `condition` handler returns a truthy value (tried in order).
    pub fn when(
        mut self,
        condition: impl Into<String>,
        f: impl FnOnce(Sequence) -> Sequence,
    ) -> Self {
        self.branches.push(ConditionalBranch { condition: condition.into(), nodes: body(f) });
        self
    }

    /// Sets the nodes run when no condition holds.
    pub fn otherwise(mut self, f: impl FnOnce(Sequence) -> Sequence) -> Self {
        self.else_nodes = Some(body(f));
        self
    }
}

/// Adds the branches of a `parallel` or `race` in [`Sequence::parallel`] and [`Sequence::race`].
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct BranchesBuilder {
    branches: Vec<Branch>,
}

impl BranchesBuilder {
    /// Adds a branch made of the nodes `f` appends.
    pub fn branch(mut self, f: impl FnOnce(Sequence) -> Sequence) -> Self {
        self.branches.push(Branch { nodes: body(f) });
        self
    }
}

/// Shorthand constructors for the common triggers.
impl TriggerDef {
    /// A cron schedule in UTC (crontab(5) syntax, such as `"0 9 * * 1-5"`).
    pub fn schedule(cron: impl Into<String>) -> Self {
        TriggerDef::Schedule { cron: cron.into(), timezone: None }
    }

    /// A run every `every`.
    pub fn interval(every: Duration) -> Self {
        TriggerDef::Interval { every: Some(every) }
    }

    /// A `POST` webhook on this route path (starting with `/`).
    pub fn webhook(path: impl Into<String>) -> Self {
        TriggerDef::Webhook { path: path.into(), method: None, settings: serde_json::Map::new() }
    }

    /// A run per published event of this name.
    pub fn event(name: impl Into<String>) -> Self {
        TriggerDef::Event { name: name.into() }
    }

    /// A run per new item returned by the `handler`, polled every `every`.
    pub fn poll(handler: impl Into<String>, every: Duration) -> Self {
        TriggerDef::Poll { handler: handler.into(), every: Some(every), key: None }
    }
}

#[cfg(test)]
mod tests;

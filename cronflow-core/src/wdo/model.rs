//! The serde types of a workflow definition object (WDO), schema 1.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::opt_duration;
use crate::retry::RetryPolicy;

/// The WDO schema version this crate reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

fn schema_version() -> u32 {
    SCHEMA_VERSION
}

/// A workflow definition: identity, triggers, options and the tree of nodes to execute.
///
/// Build one in Rust with [`Workflow`](crate::Workflow), or read one from JSON with
/// [`WorkflowDef::from_json`], which reports every problem with its JSON path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowDef {
    /// Always [`SCHEMA_VERSION`].
    #[serde(default = "schema_version")]
    pub schema: u32,
    /// Unique name of the workflow, used to trigger it.
    pub id: String,
    /// Free-form version label chosen by the author (the store also numbers revisions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What starts runs of this workflow besides the Rust API.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<TriggerDef>,
    /// Run-wide options.
    #[serde(default, skip_serializing_if = "WorkflowOptions::is_default")]
    pub options: WorkflowOptions,
    /// Handlers run when a run succeeds or fails, before its end is recorded.
    #[serde(default, skip_serializing_if = "Hooks::is_empty")]
    pub hooks: Hooks,
    /// The nodes, executed in order.
    pub nodes: Vec<Node>,
}

/// Run-wide options of a workflow.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowOptions {
    /// Whole-run timeout: a run still going after this long fails as timed out.
    #[serde(default, with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Default timeout of each task (a node's own `timeout` wins).
    #[serde(default, with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub step_timeout: Option<Duration>,
    /// Default retry policy of each task (a node's own `retry` wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Concurrency limit (enforced by a later version of the engine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ConcurrencyDef>,
    /// At most `limit` run starts per period: runs over the limit wait, none is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitDef>,
    /// Folds a burst of triggers into one run with the last payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce: Option<DebounceDef>,
}

/// Workflow hooks: handlers run once the tree has finished, before the run's end is recorded.
///
/// A hook's failure is recorded in the history but does not change the run's outcome.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Called with the run's output (`last`) when the tree completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<String>,
    /// Called with the failure (`error`) when the tree failed (not on cancel or run timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<String>,
}

impl Hooks {
    fn is_empty(&self) -> bool {
        self.on_success.is_none() && self.on_failure.is_none()
    }
}

/// Debounce: triggers with the same key value arriving within `window` of each other start
/// one run, `window` after the last of them, with the last payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebounceDef {
    /// The quiet time that ends a burst.
    #[serde(with = "opt_duration")]
    pub window: Option<Duration>,
    /// JSON pointer into the payload whose value partitions the bursts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl WorkflowOptions {
    fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// At most `limit` runs at once, optionally per value of `key` (a JSON pointer into the payload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyDef {
    /// Runs allowed at once.
    pub limit: u32,
    /// JSON pointer into the payload whose value partitions the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// At most `limit` run starts per `period`, optionally per value of `key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitDef {
    /// Starts allowed per period.
    pub limit: u32,
    /// The period.
    #[serde(with = "opt_duration")]
    pub period: Option<Duration>,
    /// JSON pointer into the payload whose value partitions the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A declared trigger. The engine stores these with the definition; `cronflow-triggers`
/// makes them fire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// No `deny_unknown_fields` here: serde cannot combine it with the flattened webhook
// settings; `WorkflowDef::from_json` still rejects unknown fields of the other kinds.
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TriggerDef {
    /// Only the API starts runs.
    Manual,
    /// A cron schedule.
    Schedule {
        /// Cron expression (crontab(5) syntax).
        cron: String,
        /// IANA time zone, UTC when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timezone: Option<String>,
    },
    /// A fixed interval.
    Interval {
        /// How often.
        #[serde(with = "opt_duration")]
        every: Option<Duration>,
    },
    /// An HTTP webhook.
    Webhook {
        /// Route path, such as `/webhooks/orders`.
        path: String,
        /// HTTP method (default POST).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        method: Option<String>,
        /// Further webhook settings (secret, headers, schema...), read by `cronflow-triggers`.
        #[serde(default, flatten)]
        settings: serde_json::Map<String, serde_json::Value>,
    },
    /// A named event published through the engine.
    Event {
        /// Event name.
        name: String,
    },
    /// A polling handler.
    Poll {
        /// Handler that returns new items.
        handler: String,
        /// How often.
        #[serde(with = "opt_duration")]
        every: Option<Duration>,
        /// JSON pointer to each item's dedupe key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
}

/// One node of the tree. Every node has an `id` unique within its workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Node {
    /// Runs a handler and records its output, which later steps can read by this node's id.
    Step(TaskNode),
    /// Runs a handler without waiting for it: the run goes on at once; a failure is recorded,
    /// not fatal. The run finishes only after its actions have settled.
    Action(TaskNode),
    /// The first branch whose condition handler returns a truthy value runs, else `else`.
    If(IfNode),
    /// All branches run at once; the output is the array of each branch's last output.
    Parallel(BranchesNode),
    /// All branches start; the first to finish wins and the others are cancelled.
    Race(BranchesNode),
    /// The body runs once per item returned by the `items` handler.
    ForEach(ForEachNode),
    /// The body runs once per chunk of `size` items.
    Batch(BatchNode),
    /// The body runs while the condition handler returns a truthy value.
    While(WhileNode),
    /// Waits for a duration or until a time.
    Sleep(SleepNode),
    /// Waits for a human to resume the run with a token.
    Pause(PauseNode),
    /// Waits for a published event.
    WaitForEvent(WaitForEventNode),
    /// Runs another workflow and waits for its output.
    Subflow(SubflowNode),
    /// Ends the run as cancelled.
    Cancel(CancelNode),
}

/// A `step` or `action`: one handler call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskNode {
    /// Node id, unique in the workflow.
    pub id: String,
    /// Handler name resolved by the executor (defaults to the id when built in Rust).
    pub handler: String,
    /// Per-task timeout.
    #[serde(default, with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Retry policy for this task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Handler called with the error once the attempts are exhausted; its output stands in
    /// for this node's output (if it fails too, the node fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<String>,
}

/// An `if` node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IfNode {
    /// Node id.
    pub id: String,
    /// Conditions tried in order.
    pub branches: Vec<ConditionalBranch>,
    /// Nodes run when no condition holds.
    #[serde(default, rename = "else", skip_serializing_if = "Option::is_none")]
    pub else_nodes: Option<Vec<Node>>,
}

/// One `if`/`else if` arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionalBranch {
    /// Handler whose truthy output selects this branch.
    pub condition: String,
    /// Nodes of the branch.
    pub nodes: Vec<Node>,
}

/// `parallel` and `race`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchesNode {
    /// Node id.
    pub id: String,
    /// The branches.
    pub branches: Vec<Branch>,
}

/// A branch of a `parallel` or `race`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Branch {
    /// Nodes of the branch.
    pub nodes: Vec<Node>,
}

/// `for_each`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForEachNode {
    /// Node id.
    pub id: String,
    /// Handler returning the items (a JSON array).
    pub items: String,
    /// Body run per item.
    pub nodes: Vec<Node>,
    /// Items processed at once (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
}

/// `batch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchNode {
    /// Node id.
    pub id: String,
    /// Handler returning the items (a JSON array).
    pub items: String,
    /// Chunk size.
    pub size: u32,
    /// Body run per chunk.
    pub nodes: Vec<Node>,
}

/// `while`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhileNode {
    /// Node id.
    pub id: String,
    /// Condition handler checked before each iteration.
    pub condition: String,
    /// Body.
    pub nodes: Vec<Node>,
    /// Iterations allowed before the node fails.
    pub max_iterations: u32,
}

/// `sleep`: exactly one of `duration` and `until`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepNode {
    /// Node id.
    pub id: String,
    /// How long.
    #[serde(default, with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
    /// Until when (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// What happens when a wait times out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// The run fails.
    #[default]
    Fail,
    /// The run continues; the node's output is `null`.
    Continue,
}

/// `pause`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseNode {
    /// Node id.
    pub id: String,
    /// How long to wait for a resume.
    #[serde(default, with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Outcome on timeout.
    #[serde(default)]
    pub on_timeout: OnTimeout,
    /// Handler called with the resume token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_pause: Option<String>,
}

/// `wait_for_event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitForEventNode {
    /// Node id.
    pub id: String,
    /// Event name.
    pub event: String,
    /// Fields the event payload must contain with these values.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_fields: Option<serde_json::Map<String, serde_json::Value>>,
    /// How long to wait.
    #[serde(default, with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Outcome on timeout.
    #[serde(default)]
    pub on_timeout: OnTimeout,
}

/// `subflow`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubflowNode {
    /// Node id.
    pub id: String,
    /// Id of the workflow to start.
    pub workflow: String,
    /// Handler computing the child's payload (the parent's payload when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
}

/// `cancel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelNode {
    /// Node id.
    pub id: String,
    /// Recorded reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl TriggerDef {
    /// Every trigger `type` of schema 1.
    pub const KINDS: [&'static str; 6] =
        ["manual", "schedule", "interval", "webhook", "event", "poll"];
}

impl Node {
    /// Every node `type` of schema 1, in the order the documentation lists them
    /// (what [`Node::kind`] returns).
    pub const KINDS: [&'static str; 13] = [
        "step",
        "action",
        "if",
        "parallel",
        "race",
        "for_each",
        "batch",
        "while",
        "sleep",
        "pause",
        "wait_for_event",
        "subflow",
        "cancel",
    ];

    /// The node's id.
    pub fn id(&self) -> &str {
        match self {
            Node::Step(n) | Node::Action(n) => &n.id,
            Node::If(n) => &n.id,
            Node::Parallel(n) | Node::Race(n) => &n.id,
            Node::ForEach(n) => &n.id,
            Node::Batch(n) => &n.id,
            Node::While(n) => &n.id,
            Node::Sleep(n) => &n.id,
            Node::Pause(n) => &n.id,
            Node::WaitForEvent(n) => &n.id,
            Node::Subflow(n) => &n.id,
            Node::Cancel(n) => &n.id,
        }
    }

    /// The node's kind as written in the WDO `type` field.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Step(_) => "step",
            Node::Action(_) => "action",
            Node::If(_) => "if",
            Node::Parallel(_) => "parallel",
            Node::Race(_) => "race",
            Node::ForEach(_) => "for_each",
            Node::Batch(_) => "batch",
            Node::While(_) => "while",
            Node::Sleep(_) => "sleep",
            Node::Pause(_) => "pause",
            Node::WaitForEvent(_) => "wait_for_event",
            Node::Subflow(_) => "subflow",
            Node::Cancel(_) => "cancel",
        }
    }

    /// The node's child sequences with their JSON path suffixes, in document order.
    pub fn children(&self) -> Vec<(String, &[Node])> {
        match self {
            Node::If(n) => {
                let mut out: Vec<(String, &[Node])> = n
                    .branches
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (format!(".branches[{i}].nodes"), b.nodes.as_slice()))
                    .collect();
                if let Some(e) = &n.else_nodes {
                    out.push((".else".to_string(), e.as_slice()));
                }
                out
            }
            Node::Parallel(n) | Node::Race(n) => n
                .branches
                .iter()
                .enumerate()
                .map(|(i, b)| (format!(".branches[{i}].nodes"), b.nodes.as_slice()))
                .collect(),
            Node::ForEach(n) => vec![(".nodes".into(), n.nodes.as_slice())],
            Node::Batch(n) => vec![(".nodes".into(), n.nodes.as_slice())],
            Node::While(n) => vec![(".nodes".into(), n.nodes.as_slice())],
            _ => Vec::new(),
        }
    }
}

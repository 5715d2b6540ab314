//! What the history says: final task outcomes, pending retries, waits and race winners.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use cronflow_core::{RecordedEvent, RunEvent, TaskError, Wait, WaitOutcome};
use serde_json::Value;

/// One wait as the history tells it.
#[derive(Debug, Clone)]
pub(crate) struct WaitRec {
    pub(crate) on: Wait,
    /// Hashes of every token issued for a pause.
    pub(crate) tokens: Vec<String>,
    pub(crate) outcome: Option<WaitOutcome>,
}

#[derive(Default)]
pub(crate) struct Outcomes {
    /// Final outcomes: a success, or a failure without retry.
    pub(crate) finals: BTreeMap<String, Result<Value, TaskError>>,
    /// Tasks whose last attempt failed with a retry due at this time.
    pub(crate) waiting: BTreeMap<String, DateTime<Utc>>,
    /// Outputs of succeeded tasks outside loops and without a tag (what every task's
    /// `TaskContext::steps` holds).
    pub(crate) steps: BTreeMap<String, Value>,
    pub(crate) waits: BTreeMap<String, WaitRec>,
    /// Decided races: the winning branch.
    pub(crate) races: BTreeMap<String, u32>,
    /// `on_pause` handlers that failed for good while their pause was open: the pause node
    /// has failed, whatever ends the pause later.
    pub(crate) failed_while_open: BTreeSet<String>,
}

impl Outcomes {
    pub(crate) fn of(history: &[RecordedEvent]) -> Self {
        let mut this = Self::default();
        for recorded in history {
            match &recorded.event {
                RunEvent::TaskSucceeded { task, output, .. } => {
                    this.waiting.remove(task.as_str());
                    this.finals.insert(task.to_string(), Ok(output.to_value()));
                    if !task.as_str().contains(['#', '@']) {
                        this.steps.insert(task.to_string(), output.to_value());
                    }
                }
                RunEvent::TaskFailed { task, error, retry_at, .. } => match retry_at {
                    Some(at) => {
                        this.waiting.insert(task.to_string(), *at);
                    }
                    None => {
                        this.waiting.remove(task.as_str());
                        this.finals.insert(task.to_string(), Err(error.clone()));
                        let pause = task.as_str().replacen("#on_pause", "", 1);
                        let open = this.waits.get(&pause).is_some_and(|w| w.outcome.is_none());
                        if task.as_str().contains("#on_pause") && open {
                            this.failed_while_open.insert(task.to_string());
                        }
                    }
                },
                RunEvent::WaitStarted { wait, on } => {
                    let tokens = match on {
                        Wait::Pause { token_hash, .. } => vec![token_hash.clone()],
                        _ => Vec::new(),
                    };
                    let rec = WaitRec { on: on.clone(), tokens, outcome: None };
                    this.waits.insert(wait.to_string(), rec);
                }
                RunEvent::TokenIssued { wait, token_hash } => {
                    if let Some(rec) = this.waits.get_mut(wait.as_str()) {
                        rec.tokens.push(token_hash.clone());
                    }
                }
                RunEvent::WaitEnded { wait, outcome } => {
                    if let Some(rec) = this.waits.get_mut(wait.as_str()) {
                        rec.outcome = Some(outcome.clone());
                    }
                }
                RunEvent::BranchWon { node, branch } => {
                    this.races.insert(node.to_string(), *branch);
                }
                _ => {}
            }
        }
        this
    }

    /// The open waits, by key.
    pub(crate) fn open_waits(&self) -> impl Iterator<Item = (&String, &WaitRec)> {
        self.waits.iter().filter(|(_, w)| w.outcome.is_none())
    }
}

/// Whether an event payload has every `match` field with an equal value (top-level fields;
/// the generator uses no JSON pointers).
pub(crate) fn matches(payload: &Value, fields: Option<&serde_json::Map<String, Value>>) -> bool {
    fields.is_none_or(|fields| fields.iter().all(|(k, v)| payload.get(k) == Some(v)))
}

//! `sleep`, `pause`, `wait_for_event` and `subflow` in the reference model.

use cronflow_core::{
    FailureKind, OnTimeout, PauseNode, SleepNode, SubflowNode, WaitForEventNode, WaitOutcome,
};
use serde_json::Value;

use super::{Fail, Flow, Model, Scope, Why};

/// Where a wait stands in the history.
enum Stage {
    NotStarted,
    Open,
    Ended(WaitOutcome),
}

impl Model<'_> {
    fn stage(&mut self, key: &str) -> Stage {
        match self.o.waits.get(key) {
            None => {
                self.missing_waits.push(key.to_string());
                Stage::NotStarted
            }
            Some(rec) => match &rec.outcome {
                None => {
                    self.open_waits.insert(key.to_string());
                    Stage::Open
                }
                Some(outcome) => Stage::Ended(outcome.clone()),
            },
        }
    }

    /// An outcome a reachable wait of this kind cannot have.
    fn impossible(&mut self, key: &str, outcome: &WaitOutcome) -> Flow {
        self.violations.push(format!("reachable wait {key} ended {outcome:?}"));
        Flow::Pending
    }

    /// `sleep`: passes the previous output on once its time has come.
    pub(super) fn sleep(&mut self, node: &SleepNode, last: &Value, scope: &Scope) -> Flow {
        let key = scope.key(&node.id);
        match self.stage(&key) {
            Stage::Ended(WaitOutcome::Elapsed) => Flow::Done(last.clone()),
            Stage::Ended(other) => self.impossible(&key, &other),
            _ => Flow::Pending,
        }
    }

    /// The output of a pause or an event wait that ended.
    fn waited(&mut self, key: &str, id: &str, on_timeout: OnTimeout, outcome: WaitOutcome) -> Flow {
        match (outcome, on_timeout) {
            (WaitOutcome::Resumed { payload }, _) => Flow::Done(payload.to_value()),
            (WaitOutcome::TimedOut, OnTimeout::Continue) => Flow::Done(Value::Null),
            (WaitOutcome::TimedOut, OnTimeout::Fail) => {
                Flow::Failed(Fail::Node { kind: FailureKind::WaitTimedOut, id: id.into() })
            }
            (other, _) => self.impossible(key, &other),
        }
    }

    /// `pause`: open until resumed (the payload is its output) or timed out; its `on_pause`
    /// handler runs while it is open, and its failure then fails the node for good.
    pub(super) fn pause(&mut self, node: &PauseNode, scope: &Scope) -> Flow {
        let key = scope.key(&node.id);
        let handler = scope.tagged(&node.id, "on_pause");
        if self.o.failed_while_open.contains(&handler) {
            // Its failure stands, whatever ended the pause after it.
            let what = format!("the on_pause handler of `{}`", node.id);
            return self.handler(handler, what, &Value::Null, scope);
        }
        match self.stage(&key) {
            Stage::Ended(outcome) => self.waited(&key, &node.id, node.on_timeout, outcome),
            Stage::NotStarted => Flow::Pending,
            Stage::Open => match &node.on_pause {
                Some(_) => {
                    let handler = scope.tagged(&node.id, "on_pause");
                    let what = format!("the on_pause handler of `{}`", node.id);
                    match self.handler(handler, what, &Value::Null, scope) {
                        failed @ Flow::Failed(_) => failed,
                        _ => Flow::Pending,
                    }
                }
                None => Flow::Pending,
            },
        }
    }

    pub(super) fn wait_for_event(&mut self, node: &WaitForEventNode, scope: &Scope) -> Flow {
        let key = scope.key(&node.id);
        match self.stage(&key) {
            Stage::Ended(outcome) => self.waited(&key, &node.id, node.on_timeout, outcome),
            _ => Flow::Pending,
        }
    }

    /// `subflow`: its payload handler (if any), then the child run, whose end decides.
    pub(super) fn subflow(&mut self, node: &SubflowNode, last: &Value, scope: &Scope) -> Flow {
        let key = scope.key(&node.id);
        if !self.o.waits.contains_key(&key) && node.payload.is_some() {
            let handler = scope.tagged(&node.id, "payload");
            let what = format!("the payload handler of `{}`", node.id);
            match self.handler(handler, what, last, scope) {
                Flow::Done(_) => {}
                other => return other,
            }
        }
        match self.stage(&key) {
            Stage::Ended(WaitOutcome::ChildCompleted { output }) => Flow::Done(output.to_value()),
            Stage::Ended(WaitOutcome::ChildFailed { .. }) => {
                Flow::Failed(Fail::Node { kind: FailureKind::ChildFailed, id: node.id.clone() })
            }
            Stage::Ended(WaitOutcome::ChildCancelled { .. }) => {
                Flow::Cancelled(Why::Child(node.id.clone()))
            }
            Stage::Ended(other) => self.impossible(&key, &other),
            _ => Flow::Pending,
        }
    }
}

//! `for_each`, `batch` and `while`: a body walked once per iteration, each iteration in its
//! own [`Scope`] (task keys `node@i`), with the finished prefix kept in a derived cache.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use super::eval::{Call, Flow, Scope, TaskFlow, join_outputs, node_failure, task_failure};
use super::{Command, RunMachine};
use crate::event::FailureKind;
use crate::json::Json;
use crate::task::TaskKind;
use crate::wdo::{BatchNode, ForEachNode, Node, WhileNode};

impl RunMachine {
    pub(super) fn eval_for_each(
        &mut self,
        node: &ForEachNode,
        last: &Json,
        scope: &mut Scope,
        now: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) -> Flow {
        let items = match self.eval_items(&node.id, &node.items, None, last, scope, now, out) {
            Ok(items) => items,
            Err(flow) => return flow,
        };
        let concurrency = node.concurrency.unwrap_or(1).max(1) as usize;
        self.eval_iterations(&node.id, &node.nodes, &items, concurrency, last, scope, now, out)
    }

    pub(super) fn eval_batch(
        &mut self,
        node: &BatchNode,
        last: &Json,
        scope: &mut Scope,
        now: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) -> Flow {
        let size = node.size.max(1) as usize;
        let chunks = match self.eval_items(&node.id, &node.items, Some(size), last, scope, now, out)
        {
            Ok(chunks) => chunks,
            Err(flow) => return flow,
        };
        self.eval_iterations(&node.id, &node.nodes, &chunks, 1, last, scope, now, out)
    }

    /// The items of a loop (as chunks of `chunk` items for a `batch`), once its items
    /// handler has returned them.
    #[allow(clippy::too_many_arguments)]
    fn eval_items(
        &mut self,
        id: &str,
        handler: &str,
        chunk: Option<usize>,
        last: &Json,
        scope: &Scope,
        now: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) -> Result<Arc<[Json]>, Flow> {
        let key = scope.tagged(id, "items");
        let output = match self.eval_task(
            &key,
            Call::new(id, handler, TaskKind::Items),
            last,
            scope,
            now,
            out,
        ) {
            TaskFlow::Done(output) => output,
            TaskFlow::Pending => return Err(Flow::Pending),
            TaskFlow::Failed(error, attempts) => {
                let what = format!("the items handler of `{id}`");
                return Err(Flow::Failed(task_failure(what, &key, error, attempts)));
            }
        };
        if let Some(items) = self.items.get(&key) {
            return Ok(Arc::clone(items));
        }
        let items: Vec<Json> = match serde_json::from_str::<Vec<&RawValue>>(output.as_str()) {
            Ok(raw) => raw.into_iter().filter_map(|v| Json::from_raw_str(v.get()).ok()).collect(),
            Err(_) => {
                let shown: String = output.as_str().chars().take(80).collect();
                let message =
                    format!("`{id}`: the items handler must return a JSON array, got {shown}");
                return Err(Flow::Failed(node_failure(FailureKind::NodeFailed, message)));
            }
        };
        let items: Arc<[Json]> = match chunk {
            Some(size) => items.chunks(size).map(join_outputs).collect(),
            None => items.into(),
        };
        self.items.insert(key, Arc::clone(&items));
        Ok(items)
    }

    /// Walks the body once per item, at most `concurrency` unfinished iterations at once
    /// (always the first unfinished ones, so the choice is the same in replay); the output
    /// is the array of each iteration's last output, in item order.
    #[allow(clippy::too_many_arguments)]
    fn eval_iterations(
        &mut self,
        id: &str,
        body: &[Node],
        items: &[Json],
        concurrency: usize,
        last: &Json,
        scope: &Scope,
        now: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) -> Flow {
        let loop_key = scope.key(id).into_owned();
        let mut progress = self.loops.remove(&loop_key).unwrap_or_default();
        let mut tail = Vec::new();
        let mut prefix = true;
        let mut unfinished = 0;
        let mut result = None;
        for (i, item) in items.iter().enumerate().skip(progress.done) {
            if unfinished >= concurrency {
                break;
            }
            let mut inner = scope.iteration(i, Some(item.clone()));
            let (flow, unsettled) = self.eval_iteration(body, last, &mut inner, now, out);
            match flow {
                Flow::Done(output) if prefix && !unsettled => {
                    progress.done = i + 1;
                    progress.outputs.push(output);
                }
                Flow::Done(output) => {
                    prefix = false;
                    tail.push(output);
                }
                Flow::Pending => {
                    prefix = false;
                    unfinished += 1;
                }
                other => {
                    result = Some(other);
                    break;
                }
            }
        }
        let flow = match result {
            Some(flow) => flow,
            None if progress.outputs.len() + tail.len() < items.len() => Flow::Pending,
            None => {
                let mut outputs = progress.outputs.clone();
                outputs.append(&mut tail);
                Flow::Done(join_outputs(&outputs))
            }
        };
        self.loops.insert(loop_key, progress);
        flow
    }

    /// Walks one iteration's body; also says whether it passed an unsettled action.
    fn eval_iteration(
        &mut self,
        body: &[Node],
        last: &Json,
        inner: &mut Scope,
        now: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) -> (Flow, bool) {
        let outer = std::mem::replace(&mut self.unsettled, false);
        let flow = self.eval_seq(body, last, inner, now, out);
        let unsettled = self.unsettled;
        self.unsettled = outer || unsettled;
        (flow, unsettled)
    }

    /// `while`: before iteration `i` its condition (`node#while@i`) runs with the previous
    /// iteration's output; a falsy answer ends the loop with that output. A truthy answer
    /// when `max_iterations` have run fails the node.
    pub(super) fn eval_while(
        &mut self,
        node: &WhileNode,
        last: &Json,
        scope: &Scope,
        now: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) -> Flow {
        let loop_key = scope.key(&node.id).into_owned();
        let mut progress = self.loops.remove(&loop_key).unwrap_or_default();
        let mut i = progress.done;
        let mut prev = progress.last.clone().unwrap_or_else(|| last.clone());
        let mut prefix = true;
        let flow = loop {
            let mut inner = scope.iteration(i, None);
            let key = format!("{}#while{}", node.id, inner.suffix);
            let call = Call::new(&node.id, &node.condition, TaskKind::Condition);
            match self.eval_task(&key, call, &prev, &inner, now, out) {
                TaskFlow::Pending => break Flow::Pending,
                TaskFlow::Failed(error, attempts) => {
                    let what = format!("the condition of `{}`", node.id);
                    break Flow::Failed(task_failure(what, &key, error, attempts));
                }
                TaskFlow::Done(value) if !value.is_truthy() => break Flow::Done(prev),
                TaskFlow::Done(_) if i >= node.max_iterations as usize => {
                    let message = format!(
                        "`{}`: the condition still holds after max_iterations ({}) iterations",
                        node.id, node.max_iterations
                    );
                    break Flow::Failed(node_failure(FailureKind::NodeFailed, message));
                }
                TaskFlow::Done(_) => {}
            }
            let (flow, unsettled) = self.eval_iteration(&node.nodes, &prev, &mut inner, now, out);
            match flow {
                Flow::Done(output) => {
                    prev = output;
                    i += 1;
                    if prefix && !unsettled {
                        progress.done = i;
                        progress.last = Some(prev.clone());
                    } else {
                        prefix = false;
                    }
                }
                other => break other,
            }
        };
        self.loops.insert(loop_key, progress);
        flow
    }
}

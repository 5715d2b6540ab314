//! What trigger sources (`cronflow-triggers`) need from a running engine, beyond starting
//! runs: the registered workflows and their triggers, schedule cursors, events, and calling
//! a polling handler. They go through the handle like everything else, so no trigger source
//! touches the store or the state machine.

use crate::engine::driver::Input;
use crate::engine::handle::{EngineHandle, TriggerOptions};
use crate::engine::waits::Published;
use crate::error::EngineError;
use crate::json::Json;
use crate::task::{Task, TaskContext, TaskKind};
use crate::wdo::{TriggerDef, WorkflowDef};

impl EngineHandle {
    /// The cursor of schedule `id` in the store: the next slot it fires (see
    /// [`Store::schedule_cursor`](crate::Store::schedule_cursor)). For trigger sources.
    pub async fn schedule_cursor(
        &self,
        id: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, EngineError> {
        Ok(self.shared.store.schedule_cursor(id).await?)
    }

    /// Moves the cursor of schedule `id` from `from` to `to`; `false` if another instance
    /// moved it first (see [`Store::advance_schedule`](crate::Store::advance_schedule)). For trigger sources.
    pub async fn advance_schedule(
        &self,
        id: &str,
        from: Option<chrono::DateTime<chrono::Utc>>,
        to: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, EngineError> {
        Ok(self.shared.store.advance_schedule(id, from, to).await?)
    }

    /// The latest registered definition of every workflow, by id. Trigger sources read
    /// their triggers from them.
    pub fn workflows(&self) -> Vec<WorkflowDef> {
        let defs = self.shared.definitions.read().unwrap_or_else(|e| e.into_inner());
        defs.values().map(|d| d.def.clone()).collect()
    }

    /// Publishes event `name`: starts a run of every registered workflow with an event
    /// trigger of that name, with `payload`, and ends every `wait_for_event` waiting for it
    /// whose `match` fields the payload has (the payload becomes the node's output). Returns
    /// once all of that is durable: the runs started ([`Published::started`], one
    /// [`Triggered`](crate::Triggered) per workflow, in workflow id order) and how many waits it ended.
    ///
    /// **Delivery rule.** A wait receives an event only if its start was recorded before the
    /// engine took the publish: an event published before a run reached its
    /// `wait_for_event` is not kept for it. Each matching wait receives it once.
    ///
    /// With a `key`, publishing is idempotent per workflow: the run of each workflow is
    /// keyed `event:<name>:<key>:<workflow id>`, so publishing the same event again (a
    /// retried delivery) starts nothing new. Each run's trigger context is
    /// `{"type": "event", "name": ...}`.
    pub async fn publish_event(
        &self,
        name: &str,
        payload: Json,
        key: Option<&str>,
    ) -> Result<Published, EngineError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let delivery = Input::Publish { name: name.to_owned(), payload: payload.clone(), reply };
        self.send(delivery)?;
        let listeners: Vec<String> = self
            .workflows()
            .into_iter()
            .filter(|def| {
                def.triggers.iter().any(|t| matches!(t, TriggerDef::Event { name: n } if n == name))
            })
            .map(|def| def.id)
            .collect();
        let context = Json::from_value(&serde_json::json!({ "type": "event", "name": name }))?;
        // One trigger per workflow, all in flight at once: the engine commits them together.
        let mut calls = tokio::task::JoinSet::new();
        for (i, workflow) in listeners.into_iter().enumerate() {
            let mut options = TriggerOptions::new().context(context.clone());
            if let Some(key) = key {
                options = options.key(format!("event:{name}:{key}:{workflow}"));
            }
            let (handle, payload) = (self.clone(), payload.clone());
            calls.spawn(async move { (i, handle.trigger_with(&workflow, payload, options).await) });
        }
        let mut started = calls.join_all().await;
        started.sort_by_key(|(i, _)| *i);
        let started = started.into_iter().map(|(_, r)| r).collect::<Result<Vec<_>, _>>()?;
        let resumed = answer.await.map_err(|_| EngineError::ShuttingDown)?;
        Ok(Published { started, resumed })
    }

    /// Calls handler `handler` of workflow `workflow_id` once through the engine's executor,
    /// outside any run ([`TaskKind::Poll`]), and returns its output. Nothing is recorded:
    /// this is how a polling trigger asks for new items. The handler has its workflow's
    /// state ([`TaskContext::state`](crate::TaskContext::state)), e.g. to keep a cursor. `idempotency_key` is passed to the
    /// handler as the task's idempotency key.
    pub async fn run_handler(
        &self,
        workflow_id: &str,
        handler: &str,
        payload: Json,
        idempotency_key: String,
    ) -> Result<Json, EngineError> {
        // No run records it: no revision, and the caller's idempotency key.
        let task = Task {
            revision: 0,
            kind: TaskKind::Poll,
            idempotency_key,
            context: TaskContext {
                payload,
                state: Some(self.state(workflow_id)),
                ..TaskContext::default()
            },
            ..Task::new(workflow_id, handler)
        };
        self.shared.executor.execute(task).await.map_err(EngineError::Handler)
    }

    /// Forgets the trigger keys starting with `prefix` taken more than `older_than` ago;
    /// returns how many. Keys are kept forever otherwise, which is what makes a trigger
    /// exactly-once, so prune only what can no longer be delivered again:
    ///
    /// - `schedule:` and `interval:` keys (one per slot fired): safe after a day; a cursor
    ///   never moves back to a slot it passed.
    /// - `webhook:`, `manual:` and `event:` keys: after the idempotency window you promise
    ///   senders (a retry arriving later starts a new run).
    /// - `poll:` keys: only if the polled source no longer returns those items, else they
    ///   start runs again.
    ///
    /// ```
    /// # async fn demo(handle: cronflow_core::EngineHandle) -> Result<(), cronflow_core::EngineError> {
    /// use std::time::Duration;
    /// // Idempotency keys of webhook deliveries are honoured for 7 days.
    /// let pruned = handle.prune_trigger_keys("webhook:", Duration::from_secs(7 * 86_400)).await?;
    /// # let _ = pruned; Ok(()) }
    /// ```
    pub async fn prune_trigger_keys(
        &self,
        prefix: &str,
        older_than: std::time::Duration,
    ) -> Result<u64, EngineError> {
        let age = chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
        let before = chrono::Utc::now()
            .checked_sub_signed(age)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        Ok(self.shared.store.prune_trigger_keys(prefix, before).await?)
    }

    /// The registered definition of workflow `id` (its latest revision), if any.
    pub fn workflow(&self, id: &str) -> Option<WorkflowDef> {
        let defs = self.shared.definitions.read().unwrap_or_else(|e| e.into_inner());
        defs.get(id).map(|d| d.def.clone())
    }
}

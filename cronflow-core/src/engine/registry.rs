//! Registered workflow definitions, by id (latest) and by stored revision (for replay).

use std::collections::HashMap;
use std::sync::Arc;

use crate::engine::config::Validator;
use crate::error::EngineError;
use crate::executor::Executor;
use crate::machine::RunDefinition;
use crate::store::Store;
use crate::wdo::{HandlerRef, WorkflowDef};

/// Checks that the engine can run `def` with `executor`: every handler the definition names
/// (nodes, hooks, polling triggers) is known to the executor for this workflow
/// (`has_workflow_handler`, so a router asks the executor the workflow is routed to).
/// Assumes `def` is valid.
pub(crate) fn check_runnable(
    def: &WorkflowDef,
    executor: &dyn Executor,
) -> Result<(), EngineError> {
    for HandlerRef { path, handler } in def.handlers() {
        if !executor.has_workflow_handler(&def.id, handler) {
            return Err(EngineError::MissingHandler {
                workflow: def.id.clone(),
                handler: handler.into(),
                path,
            });
        }
    }
    Ok(())
}

/// Validates, checks and stores `def`; returns it ready to run.
pub(crate) async fn prepare(
    def: WorkflowDef,
    store: &dyn Store,
    executor: &dyn Executor,
    validators: &[Validator],
) -> Result<Arc<RunDefinition>, EngineError> {
    def.validate()?;
    check_runnable(&def, executor)?;
    for check in validators {
        check(&def).map_err(|reason| EngineError::Rejected { workflow: def.id.clone(), reason })?;
    }
    let revision = store.save_workflow(&def).await?;
    Ok(RunDefinition::new(def, revision))
}

/// The definitions an engine knows.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    latest: HashMap<String, Arc<RunDefinition>>,
    revisions: HashMap<(String, u32), Arc<RunDefinition>>,
}

impl Registry {
    pub(crate) fn insert(&mut self, def: Arc<RunDefinition>) {
        let id = def.def.id.clone();
        self.revisions.insert((id.clone(), def.revision), Arc::clone(&def));
        self.latest.insert(id, def);
    }

    pub(crate) fn latest(&self, id: &str) -> Option<&Arc<RunDefinition>> {
        self.latest.get(id)
    }

    /// Revision `revision` of `id`, loading it from the store if this engine has not seen it.
    pub(crate) async fn revision(
        &mut self,
        id: &str,
        revision: u32,
        store: &dyn Store,
    ) -> Result<Option<Arc<RunDefinition>>, EngineError> {
        let key = (id.to_string(), revision);
        if let Some(def) = self.revisions.get(&key) {
            return Ok(Some(Arc::clone(def)));
        }
        let Some(def) = store.load_workflow(id, revision).await? else { return Ok(None) };
        let def = RunDefinition::new(def, revision);
        self.revisions.insert(key, Arc::clone(&def));
        Ok(Some(def))
    }
}

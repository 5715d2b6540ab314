//! Registered workflow definitions, by id (latest) and by stored revision (for replay).

use std::collections::HashMap;
use std::sync::Arc;

use crate::engine::config::Validator;
use crate::error::EngineError;
use crate::executor::Executor;
use crate::machine::RunDefinition;
use crate::store::Store;
use crate::wdo::{Node, TriggerDef, WorkflowDef};

/// The node kinds this engine executes; the rest of the model is accepted by validation
/// but refused at registration until the engine runs it.
const SUPPORTED: &[&str] = &["step", "action", "if", "parallel"];

/// Checks that the engine can run `def` with `executor`: every node kind supported and every
/// handler (of its nodes and of its polling triggers) known to the executor for this workflow (`has_workflow_handler`, so a router asks
/// the executor the workflow is routed to). Assumes `def` is valid.
pub(crate) fn check_runnable(
    def: &WorkflowDef,
    executor: &dyn Executor,
) -> Result<(), EngineError> {
    fn walk(
        workflow: &str,
        nodes: &[Node],
        path: &str,
        executor: &dyn Executor,
    ) -> Result<(), EngineError> {
        for (i, node) in nodes.iter().enumerate() {
            let here = format!("{path}[{i}]");
            if !SUPPORTED.contains(&node.kind()) {
                return Err(EngineError::Unsupported { kind: node.kind().into(), path: here });
            }
            let handlers: Vec<(String, &str)> = match node {
                Node::Step(t) | Node::Action(t) => vec![(format!("{here}.handler"), &t.handler)],
                Node::If(n) => n
                    .branches
                    .iter()
                    .enumerate()
                    .map(|(b, br)| {
                        (format!("{here}.branches[{b}].condition"), br.condition.as_str())
                    })
                    .collect(),
                _ => Vec::new(),
            };
            for (path, handler) in handlers {
                if !executor.has_workflow_handler(workflow, handler) {
                    return Err(EngineError::MissingHandler {
                        workflow: workflow.into(),
                        handler: handler.into(),
                        path,
                    });
                }
            }
            for (suffix, children) in node.children() {
                walk(workflow, children, &format!("{here}{suffix}"), executor)?;
            }
        }
        Ok(())
    }
    // A polling trigger's handler is called through the same executor.
    for (i, trigger) in def.triggers.iter().enumerate() {
        if let TriggerDef::Poll { handler, .. } = trigger
            && !executor.has_workflow_handler(&def.id, handler)
        {
            return Err(EngineError::MissingHandler {
                workflow: def.id.clone(),
                handler: handler.clone(),
                path: format!("$.triggers[{i}].handler"),
            });
        }
    }
    walk(&def.id, &def.nodes, "$.nodes", executor)
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

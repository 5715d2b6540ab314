//! The [`Engine`]: the tokio driver around the run state machine.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::info;

mod clock;
mod commit;
mod config;
mod control;
mod dispatch;
mod driver;
mod flow;
mod handle;
mod input;
mod lease;
mod park;
mod registry;
mod sources;
mod waits;

pub use clock::{Clock, SystemClock, TokioClock};
pub use config::{EngineBuilder, NoExecutor, NoStore};
pub use handle::{EngineHandle, MAX_TRIGGER_KEY_BYTES, TriggerOptions, Triggered};
pub use waits::{PausedRun, Published};

use crate::error::EngineError;
use crate::executor::Executor;
use crate::id::InstanceId;
use crate::state::StateHandle;
use crate::store::Store;
use dispatch::Dispatcher;
use driver::{Driver, Input};
use handle::Shared;
use lease::Leases;
use registry::Registry;

/// A running workflow engine.
///
/// Start one with [`Engine::builder`]; talk to it through [`Engine::handle`]; stop it with
/// [`Engine::shutdown`]. Dropping an engine without shutting it down stops it at once: tasks in
/// flight are abandoned and re-run on the next start (the store keeps everything accepted).
pub struct Engine {
    handle: EngineHandle,
    driver: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    /// A builder; give it a store, an executor and workflows, then `start()` it.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::new()
    }

    /// A cheap, cloneable handle to trigger, wait for, cancel and inspect runs.
    pub fn handle(&self) -> EngineHandle {
        self.handle.clone()
    }

    /// Stops the engine gracefully: no new runs are accepted and no new tasks dispatched;
    /// tasks in flight get up to `grace` to finish (their results are recorded), then are
    /// abandoned. Unfinished runs stay in the store and are resumed on the next start.
    pub async fn shutdown(mut self, grace: Duration) -> Result<(), EngineError> {
        let deadline = tokio::time::Instant::now() + grace;
        let _ = self.handle.shared.tx.send(Input::Shutdown { deadline });
        if let Some(driver) = self.driver.take() {
            let _ = driver.await;
        }
        Ok(())
    }

    pub(crate) async fn start<S: Store, E: Executor>(
        builder: EngineBuilder<S, E>,
    ) -> Result<Engine, EngineError> {
        let store: Arc<dyn Store> = Arc::new(builder.store);
        let executor: Arc<dyn Executor> = Arc::new(builder.executor);
        let mut registry = Registry::default();
        let mut definitions = std::collections::BTreeMap::new();
        for def in builder.workflows {
            let def =
                registry::prepare(def, &*store, &*executor, &builder.config.validators).await?;
            definitions.insert(def.def.id.clone(), Arc::clone(&def));
            registry.insert(def);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let dispatcher = Dispatcher::new(
            Arc::clone(&executor),
            tx.clone(),
            Arc::clone(&builder.clock),
            builder.config.task_concurrency,
        );
        let config = builder.config.clone();
        let instance = InstanceId::new();
        let leases = store.shared().then(|| Leases::new(instance, config.lease));
        let clock = Arc::clone(&builder.clock);
        let mut driver = Driver::new(
            rx,
            Arc::clone(&store),
            builder.clock,
            config.clone(),
            registry,
            dispatcher,
            leases,
        );
        let resumed = driver.recover().await?;
        if resumed > 0 {
            info!(resumed, %instance, "resuming unfinished runs");
        }
        if store.shared() {
            let room = driver.room();
            let background =
                lease::spawn_background(Arc::clone(&store), tx.clone(), instance, &config, room);
            driver.background = Some(background);
        }
        let parked = driver.parked_gauge();
        let driver = tokio::spawn(driver.run());
        let max_pending = builder.config.max_pending_triggers;
        let global_state = StateHandle::global_with_limit(
            Arc::clone(&store),
            Arc::clone(&clock),
            builder.config.max_payload_bytes,
        );
        let shared = Arc::new(Shared {
            global_state,
            clock,
            tx,
            store,
            executor,
            config: builder.config,
            definitions: std::sync::RwLock::new(definitions),
            pending_triggers: Arc::new(tokio::sync::Semaphore::new(max_pending)),
            parked,
        });
        Ok(Engine { handle: EngineHandle { shared }, driver: Some(driver) })
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.driver.is_some() {
            let deadline = tokio::time::Instant::now();
            let _ = self.handle.shared.tx.send(Input::Shutdown { deadline });
        }
    }
}

//! Making a turn durable: the commit with its retries, and what to do when a commit's outcome
//! is unknown (the database may have applied it before the connection broke).

use std::time::Duration;

use tokio::time::Instant;
use tracing::{error, warn};

use crate::engine::driver::{Driver, WatchEnd};
use crate::error::{EngineError, StoreError};
use crate::id::RunId;
use crate::store::{CommitBatch, CommitOutcome, Store};

/// How long commits keep being retried while the store is unreachable before the engine
/// stops (and leaves the rest to the next start).
const STORE_OUTAGE_LIMIT: Duration = Duration::from_secs(60);

impl Driver {
    /// Commits this turn's batch, retrying: a store that is unreachable gets a minute, any
    /// other failure five tries. `None`: the store keeps failing; the accepted triggers have
    /// been answered with the error and the engine must stop.
    pub(crate) async fn commit_turn(&mut self) -> Option<CommitOutcome> {
        let mut delay = Duration::from_millis(10);
        let mut attempt = 1;
        let failing_since = Instant::now();
        // Set once an attempt failed in a way that may hide a success: the database can
        // commit and then lose the connection before it answers.
        let mut maybe_applied = false;
        self.fence_batch();
        loop {
            let e = match self.store.commit(&self.batch).await {
                Ok(outcome) => return Some(outcome),
                Err(e) => e,
            };
            if let StoreError::LeaseLost { runs } = &e {
                // Another instance has these runs now: forget them, commit the rest.
                warn!(runs = runs.len(), "leases lost at commit; another instance continues");
                let known = runs.iter().any(|id| self.runs.contains_key(id));
                self.drop_runs(&runs.clone(), WatchEnd::Moved);
                if known {
                    self.fence_batch();
                    continue;
                }
            }
            if maybe_applied && matches!(e, StoreError::Conflict(_)) {
                // A retry refused as a duplicate: did the earlier attempt go through?
                match applied(&*self.store, &self.batch).await {
                    Ok(Some(outcome)) => {
                        warn!("a commit whose answer was lost had been applied; going on");
                        return Some(outcome);
                    }
                    Ok(None) => {}
                    Err(probe) => warn!(error = %probe, "cannot tell whether a commit applied"),
                }
            }
            // A database that is restarting or unreachable gets a minute to come back;
            // any other failure (a conflict, corrupt data) is retried only briefly.
            let transient = matches!(e, StoreError::Database(_) | StoreError::Open { .. });
            maybe_applied |= transient;
            let give_up =
                if transient { failing_since.elapsed() > STORE_OUTAGE_LIMIT } else { attempt >= 5 };
            if give_up {
                error!(error = %e, "store commit failed; stopping the engine");
                for (_, _, reply) in self.accepted.drain(..) {
                    let _ =
                        reply.send(Err(EngineError::Store(StoreError::Database(e.to_string()))));
                }
                return None;
            }
            warn!(error = %e, attempt, "store commit failed; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
            attempt += 1;
        }
    }
}

/// Whether `batch` is already in the store, judged by a witness: the last of its events that
/// belongs to a run created without a trigger key or to an existing run (a keyed new run may
/// have been left out as a duplicate), else its last finished or new run. When it is, the
/// outcome: every keyed new run not in the store was left out as a duplicate, its key's
/// holder unknown (`existing` is the run itself; the driver answers those triggers with an
/// error asking to trigger again, which then names the holder).
async fn applied(
    store: &dyn Store,
    batch: &CommitBatch,
) -> Result<Option<CommitOutcome>, StoreError> {
    let keyed: Vec<RunId> = batch.trigger_keys().map(|(_, run)| run).collect();
    let witness = batch.events.iter().rev().find(|(run, _)| !keyed.contains(run));
    let present = if let Some((run, event)) = witness {
        let history = store.run_events(*run).await?;
        history.iter().any(|e| e.seq == event.seq && e.event.kind() == event.event.kind())
    } else if let Some(finished) = batch.finished.iter().rev().find(|f| !keyed.contains(&f.id)) {
        store.run(finished.id).await?.is_some_and(|r| r.status == finished.status)
    } else if let Some(run) = batch.new_runs.iter().rev().find(|r| r.key.is_none()) {
        store.run(run.id).await?.is_some()
    } else {
        // Only keyed new runs: the first present one says the batch applied.
        let mut any = false;
        for run in &keyed {
            any |= store.run(*run).await?.is_some();
        }
        any
    };
    if !present {
        return Ok(None);
    }
    let mut outcome = CommitOutcome::default();
    for run in keyed {
        if store.run(run).await?.is_none() {
            outcome.duplicates.push(crate::store::DuplicateRun { run, existing: run });
        }
    }
    Ok(Some(outcome))
}

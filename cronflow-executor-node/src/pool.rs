//! The pool: which workers take tasks, when workers are added, retired, replaced or stopped.
//!
//! Workers are either *accepting* (they get new tasks) or *draining* (retired or stuck: they
//! finish what they have and go). Every rule that moves a worker between the two lives here:
//!
//! - a task goes to the least-loaded accepting worker below the in-flight limit that has no
//!   abandoned task outstanding; when there is none and the pool is below its maximum, a
//!   worker is added;
//! - fewer than the minimum accepting (or starting) workers starts one, after a backoff when
//!   starts keep failing;
//! - a worker is retired after its N-th task, over its heap ceiling, or idle above the
//!   minimum: it is sent `shutdown` and finishes its tasks;
//! - a worker whose abandoned task is still running after the cancel grace is stuck: it is
//!   stopped (SIGTERM, then SIGKILL) once its other tasks are done.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use cronflow_core::WorkflowDef;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::builder::Config;
use crate::error::NodeExecutorError;
use crate::executor::PoolStats;
use crate::process::Stop;
use crate::startup;
use crate::worker::{Acknowledged, Pending, Worker, WorkerEvents, lock};

/// The longest a stuck worker's other tasks may take before it is stopped anyway.
const STUCK_DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Why no worker took a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Every worker is at its limit (or suspected stuck); a slot will free.
    Full,
    /// No worker is accepting: all are starting or restarting.
    NoWorker,
}

struct PoolState {
    accepting: Vec<Arc<Worker>>,
    draining: Vec<Arc<Worker>>,
    starting: usize,
    consecutive_failures: u32,
    /// No start before this instant (backoff after failed starts).
    next_start: Instant,
    next_number: u64,
    rotate: usize,
}

#[derive(Default)]
struct Counters {
    started: AtomicU64,
    failed_starts: AtomicU64,
    retired: AtomicU64,
    stuck: AtomicU64,
}

/// Shared by every clone of the executor and (weakly) by the workers' tasks.
pub(crate) struct Pool {
    pub(crate) config: Arc<Config>,
    state: Mutex<PoolState>,
    /// Woken when a slot frees (one waiter) or the set of workers changes (all waiters).
    pub(crate) capacity: Notify,
    shutting_down: AtomicBool,
    next_task_id: AtomicU64,
    counters: Counters,
    _socket_dir: tempfile::TempDir,
}

fn remove(list: &mut Vec<Arc<Worker>>, worker: &Arc<Worker>) -> bool {
    let before = list.len();
    list.retain(|w| !Arc::ptr_eq(w, worker));
    list.len() != before
}

impl Pool {
    /// Starts the minimum number of workers; returns the pool and the module's workflows.
    pub(crate) async fn start(
        config: Arc<Config>,
        socket_dir: tempfile::TempDir,
    ) -> Result<(Arc<Pool>, Vec<WorkflowDef>), NodeExecutorError> {
        let min = config.min_workers;
        let pool = Arc::new(Pool {
            config: config.clone(),
            state: Mutex::new(PoolState {
                accepting: Vec::new(),
                draining: Vec::new(),
                starting: 0,
                consecutive_failures: 0,
                next_start: Instant::now(),
                next_number: min as u64 + 1,
                rotate: 0,
            }),
            capacity: Notify::new(),
            shutting_down: AtomicBool::new(false),
            next_task_id: AtomicU64::new(1),
            counters: Counters::default(),
            _socket_dir: socket_dir,
        });
        let mut starting = JoinSet::new();
        for number in 1..=min as u64 {
            let config = config.clone();
            let events = pool.events();
            starting.spawn(async move { startup::start(&config, number, events).await });
        }
        let mut workflows = None;
        while let Some(joined) = starting.join_next().await {
            // On error the pool, the JoinSet and the workers started so far are dropped:
            // their processes are killed.
            let started = joined.map_err(|e| NodeExecutorError::Io {
                context: "a worker start-up task failed".into(),
                source: std::io::Error::other(e.to_string()),
            })??;
            lock(&pool.state).accepting.push(started.worker);
            pool.counters.started.fetch_add(1, Ordering::Relaxed);
            workflows.get_or_insert(started.workflows);
        }
        lock(&pool.state).accepting.sort_by_key(|w| w.number);
        if config.max_workers > config.min_workers {
            tokio::spawn(retire_idle_workers(Arc::downgrade(&pool)));
        }
        Ok((pool, workflows.unwrap_or_default()))
    }

    fn events(self: &Arc<Self>) -> Weak<dyn WorkerEvents> {
        let weak: Weak<Pool> = Arc::downgrade(self);
        weak
    }

    pub(crate) fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// A request id unique within the pool (hence within each worker).
    pub(crate) fn next_task_id(&self) -> u64 {
        self.next_task_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Gives task `id` (its `line` already built) to a worker and sends it; gives everything
    /// back with the reason when no worker can take it now.
    pub(crate) fn try_acquire(
        self: &Arc<Self>,
        id: u64,
        pending: Pending,
        line: String,
    ) -> Result<Arc<Worker>, (Pending, String, Refusal)> {
        let mut st = lock(&self.state);
        let n = st.accepting.len();
        if n == 0 {
            self.ensure_min(&mut st);
            return Err((pending, line, Refusal::NoWorker));
        }
        st.rotate = st.rotate.wrapping_add(1);
        let limit = self.config.max_in_flight;
        let mut best: Option<(usize, usize)> = None;
        for i in 0..n {
            let index = (st.rotate + i) % n;
            if let Some(load) = st.accepting[index].eligible_load(limit)
                && best.is_none_or(|(_, least)| load < least)
            {
                best = Some((index, load));
                if load == 0 {
                    break;
                }
            }
        }
        let Some((index, _)) = best else {
            if n + st.starting < self.config.max_workers {
                self.start_worker(&mut st);
            }
            return Err((pending, line, Refusal::Full));
        };
        let worker = st.accepting[index].clone();
        let dispatched = match worker.register(id, pending) {
            Ok(dispatched) => dispatched,
            // It exited a moment ago; its exit event will wake the waiters.
            Err(pending) => return Err((pending, line, Refusal::Full)),
        };
        // A failed send means the connection is going: the reader fails the task shortly.
        worker.send(line);
        if self.config.recycle_after_tasks.is_some_and(|max| dispatched >= max) {
            self.retire(&mut st, &worker, "it ran its quota of tasks");
        }
        Ok(worker)
    }

    /// Stops giving tasks to `worker` and asks it to finish them and exit.
    fn retire(self: &Arc<Self>, st: &mut PoolState, worker: &Arc<Worker>, why: &str) {
        if !remove(&mut st.accepting, worker) {
            return;
        }
        tracing::info!(worker = worker.number, pid = worker.pid, "retiring the worker: {why}");
        worker.send_shutdown();
        st.draining.push(worker.clone());
        self.counters.retired.fetch_add(1, Ordering::Relaxed);
        self.ensure_min(st);
    }

    /// After the cancel grace, checks whether abandoned task `id` is still running on
    /// `worker`; if so the worker is stuck (see [`Pool::condemn`]).
    pub(crate) fn watch_abandoned(self: &Arc<Self>, worker: Arc<Worker>, id: u64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let pool = Arc::downgrade(self);
        let grace = self.config.cancel_grace;
        runtime.spawn(async move {
            tokio::time::sleep(grace).await;
            if let Some(pool) = pool.upgrade()
                && let Some(acknowledged) = worker.abandoned(id)
            {
                pool.condemn(worker, acknowledged);
            }
        });
    }

    /// Takes a stuck worker out of rotation (a replacement starts) and stops its process
    /// group: SIGTERM, and SIGKILL after the kill grace. If its event loop still turns (it
    /// acknowledged the `cancel`), its other tasks may finish first (up to 30 s); if not,
    /// they cannot run anyway: it is stopped at once and they fail as `WorkerCrashed`.
    fn condemn(self: &Arc<Self>, worker: Arc<Worker>, acknowledged: Acknowledged) {
        if !worker.mark_stuck() {
            return;
        }
        {
            let mut st = lock(&self.state);
            if remove(&mut st.accepting, &worker) {
                st.draining.push(worker.clone());
            }
            self.ensure_min(&mut st);
        }
        self.counters.stuck.fetch_add(1, Ordering::Relaxed);
        let blocked = acknowledged == Acknowledged(false);
        tracing::warn!(
            worker = worker.number,
            pid = worker.pid,
            grace = ?self.config.cancel_grace,
            blocked,
            "a handler kept running after its task was cancelled or timed out: replacing \
             the worker"
        );
        let kill_grace = self.config.kill_grace;
        tokio::spawn(async move {
            let limit = Instant::now() + STUCK_DRAIN_LIMIT;
            while !blocked && worker.awaited() > 0 && Instant::now() < limit && !worker.has_exited()
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            worker.stop(Stop::Terminate(kill_grace));
        });
    }

    /// Starts workers until the minimum is accepting or starting.
    fn ensure_min(self: &Arc<Self>, st: &mut PoolState) {
        while !self.shutting_down() && st.accepting.len() + st.starting < self.config.min_workers {
            self.start_worker(st);
        }
    }

    /// Starts one worker in the background, not before the backoff allows.
    fn start_worker(self: &Arc<Self>, st: &mut PoolState) {
        st.starting += 1;
        let number = st.next_number;
        st.next_number += 1;
        let not_before = st.next_start;
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep_until(not_before).await;
            let Some(pool) = weak.upgrade() else { return };
            let result = if pool.shutting_down() {
                None
            } else {
                Some(startup::start(&pool.config, number, pool.events()).await)
            };
            let mut st = lock(&pool.state);
            st.starting -= 1;
            match result {
                None => {}
                Some(Ok(started)) if pool.shutting_down() => started.worker.stop(Stop::Kill),
                Some(Ok(started)) => {
                    st.consecutive_failures = 0;
                    st.accepting.push(started.worker);
                    pool.counters.started.fetch_add(1, Ordering::Relaxed);
                    drop(st);
                    pool.capacity.notify_waiters();
                }
                Some(Err(e)) => {
                    st.consecutive_failures += 1;
                    let (first, max) = pool.config.restart_backoff;
                    let exponent = st.consecutive_failures.saturating_sub(1).min(20);
                    let delay = first.saturating_mul(1 << exponent).min(max);
                    st.next_start = Instant::now() + delay;
                    pool.counters.failed_starts.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        worker = number,
                        failures = st.consecutive_failures,
                        retry_in = ?delay,
                        "cannot start a worker: {e}"
                    );
                    pool.ensure_min(&mut st);
                }
            }
        });
    }

    /// Process ids of the accepting workers.
    pub(crate) fn pids(&self) -> Vec<u32> {
        lock(&self.state).accepting.iter().filter(|w| !w.has_exited()).map(|w| w.pid).collect()
    }

    pub(crate) fn stats(&self) -> PoolStats {
        let st = lock(&self.state);
        let all = st.accepting.iter().chain(&st.draining);
        PoolStats {
            workers: st.accepting.len(),
            starting: st.starting,
            draining: st.draining.len(),
            in_flight: all.map(|w| w.awaited()).sum(),
            started: self.counters.started.load(Ordering::Relaxed),
            failed_starts: self.counters.failed_starts.load(Ordering::Relaxed),
            retired: self.counters.retired.load(Ordering::Relaxed),
            stuck: self.counters.stuck.load(Ordering::Relaxed),
        }
    }

    /// Asks every worker to finish and exit, waits up to `grace`, then kills the rest.
    pub(crate) async fn shutdown(&self, grace: Duration) {
        self.shutting_down.store(true, Ordering::Release);
        self.capacity.notify_waiters();
        let workers: Vec<Arc<Worker>> = {
            let st = lock(&self.state);
            st.accepting.iter().chain(&st.draining).cloned().collect()
        };
        for w in &workers {
            w.send_shutdown();
        }
        let all_exited = || async {
            for w in &workers {
                w.wait_exit().await;
            }
        };
        if tokio::time::timeout(grace, all_exited()).await.is_err() {
            for w in &workers {
                w.stop(Stop::Kill);
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), all_exited()).await;
        }
        let mut st = lock(&self.state);
        st.accepting.retain(|w| !w.has_exited());
        st.draining.retain(|w| !w.has_exited());
    }
}

impl WorkerEvents for Pool {
    fn slot_freed(self: Arc<Self>, _worker: &Arc<Worker>) {
        self.capacity.notify_one();
    }

    fn heap_reported(self: Arc<Self>, worker: &Arc<Worker>, heap_used: u64) {
        if self.config.max_heap_bytes.is_some_and(|max| heap_used > max) {
            let mut st = lock(&self.state);
            let why = format!("its heap in use ({} MiB) is over the ceiling", heap_used >> 20);
            self.retire(&mut st, worker, &why);
        }
    }

    fn exited(self: Arc<Self>, worker: &Arc<Worker>) {
        let mut st = lock(&self.state);
        if remove(&mut st.accepting, worker) && !self.shutting_down() {
            tracing::warn!(worker = worker.number, pid = worker.pid, "the worker died");
        }
        remove(&mut st.draining, worker);
        self.ensure_min(&mut st);
        drop(st);
        self.capacity.notify_waiters();
    }
}

/// Retires workers above the minimum that stayed idle for the idle timeout.
async fn retire_idle_workers(pool: Weak<Pool>) {
    let period = match pool.upgrade() {
        Some(p) => {
            (p.config.idle_timeout / 2).clamp(Duration::from_millis(50), Duration::from_secs(5))
        }
        None => return,
    };
    loop {
        tokio::time::sleep(period).await;
        let Some(pool) = pool.upgrade() else { return };
        if pool.shutting_down() {
            return;
        }
        let mut st = lock(&pool.state);
        let now = std::time::Instant::now();
        let timeout = pool.config.idle_timeout;
        let idle: Vec<Arc<Worker>> = st
            .accepting
            .iter()
            .filter(|w| w.idle_since().is_some_and(|t| now.duration_since(t) >= timeout))
            .cloned()
            .collect();
        for worker in idle.iter().rev() {
            if st.accepting.len() <= pool.config.min_workers {
                break;
            }
            pool.retire(&mut st, worker, "idle above the minimum");
        }
    }
}

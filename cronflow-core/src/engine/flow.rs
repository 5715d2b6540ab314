//! Flow control: runs of a workflow with a `concurrency` limit, a `rate_limit` or a
//! `debounce` are recorded at once (the trigger returns when they are durable) but start
//! only when admitted.
//!
//! - *Concurrency*: at most `limit` admitted runs unfinished at once per value of the
//!   key (a JSON pointer into the payload); the rest wait first in, first out (by run id,
//!   which is time-ordered, so the order survives a restart).
//! - *Rate limit*: at most `limit` admissions per `period` per key value (governor, GCRA);
//!   a run over the limit waits for its turn, none is dropped.
//! - *Debounce*: a trigger while a run with the same key value is still waiting for its
//!   window folds into that run (`trigger_merged`: the run will use the newest payload) and
//!   pushes its start to `window` after this trigger.
//!
//! The waiting runs are durable (their `run_started` is recorded, their `run_admitted` not
//! yet), so after a restart they are queued again. Limits are counted per engine instance.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

use crate::engine::driver::Driver;
use crate::id::RunId;
use crate::json::Json;
use crate::machine::RunDefinition;
use crate::wdo::RateLimitDef;

/// A concurrency gate: one per workflow and concurrency key value.
type GateKey = (String, String);

#[derive(Default)]
struct Gate {
    waiting: VecDeque<RunId>,
    running: usize,
}

/// The driver's flow-control state.
#[derive(Default)]
pub(crate) struct FlowControl {
    gates: HashMap<GateKey, Gate>,
    /// Admitted, unfinished runs and the gate whose place they hold.
    holding: HashMap<RunId, GateKey>,
    /// Debounced runs still in their window, by workflow and debounce key value.
    debounced: HashMap<GateKey, (RunId, DateTime<Utc>)>,
    limiters: HashMap<String, Arc<DefaultKeyedRateLimiter<String>>>,
    waiting: usize,
    /// When admission should be tried again (a rate limit's next slot, a debounce window).
    wake: Option<Instant>,
    /// A place was freed or a run queued: try admission in this turn.
    dirty: bool,
}

impl FlowControl {
    /// When the driver should wake up for admission.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        if self.dirty { Some(Instant::now()) } else { self.wake }
    }
}

/// The text of the value at JSON pointer `pointer` in `payload` (`""` without a pointer or a
/// value): what partitions a limit.
fn key_value(payload: &Json, pointer: Option<&str>) -> String {
    let Some(pointer) = pointer else { return String::new() };
    payload.to_value().pointer(pointer).map(|v| v.to_string()).unwrap_or_default()
}

fn quota(limit: &RateLimitDef) -> Option<Quota> {
    let burst = NonZeroU32::new(limit.limit)?;
    let period = (limit.period? / limit.limit).max(Duration::from_nanos(1));
    Some(Quota::with_period(period)?.allow_burst(burst))
}

impl Driver {
    /// A trigger for a debounced workflow: if a run with the same key value is still in its
    /// window, folds the trigger into it and returns that run.
    pub(crate) fn flow_debounce(&mut self, def: &RunDefinition, payload: &Json) -> Option<RunId> {
        let debounce = def.def.options.debounce.as_ref()?;
        let key = (def.def.id.clone(), key_value(payload, debounce.key.as_deref()));
        let (run_id, _) = *self.flow.debounced.get(&key)?;
        let now = self.clock.now();
        let commands = self.runs.get_mut(&run_id)?.machine.merge_trigger(now, payload.clone())?;
        self.carry_out(run_id, commands);
        let window = debounce.window.unwrap_or_default();
        let release = now + chrono::Duration::from_std(window).unwrap_or_default();
        self.flow.debounced.insert(key, (run_id, release));
        self.flow_wake_at(release);
        Some(run_id)
    }

    /// A flow-controlled run that is not admitted yet (new, or replayed after a restart):
    /// starts its debounce window or queues it at its gate.
    pub(crate) fn flow_accept(&mut self, run_id: RunId) {
        let Some(run) = self.runs.get(&run_id) else { return };
        let def = Arc::clone(run.machine.definition());
        if let Some(debounce) = &def.def.options.debounce {
            let key =
                (def.def.id.clone(), key_value(run.machine.payload(), debounce.key.as_deref()));
            let window = debounce.window.unwrap_or_default();
            let release = self.clock.now() + chrono::Duration::from_std(window).unwrap_or_default();
            self.flow.debounced.insert(key, (run_id, release));
            self.flow_wake_at(release);
            return;
        }
        self.flow_enqueue(run_id);
    }

    fn flow_enqueue(&mut self, run_id: RunId) {
        let Some(gate) = self.gate_of(run_id) else { return };
        let queue = &mut self.flow.gates.entry(gate).or_default().waiting;
        let at = queue.partition_point(|r| *r < run_id);
        queue.insert(at, run_id);
        self.flow.waiting += 1;
        self.flow.dirty = true;
    }

    /// An admitted run replayed after a restart holds a place at its gate.
    pub(crate) fn flow_hold(&mut self, run_id: RunId) {
        if let Some(gate) = self.gate_of(run_id) {
            self.flow.gates.entry(gate.clone()).or_default().running += 1;
            self.flow.holding.insert(run_id, gate);
        }
    }

    /// A run ended or left this instance: frees its place.
    pub(crate) fn flow_finished(&mut self, run_id: RunId) {
        if let Some(gate) = self.flow.holding.remove(&run_id)
            && let Some(gate) = self.flow.gates.get_mut(&gate)
        {
            gate.running = gate.running.saturating_sub(1);
            self.flow.dirty = true;
        }
    }

    fn gate_of(&self, run_id: RunId) -> Option<GateKey> {
        let machine = &self.runs.get(&run_id)?.machine;
        let def = &machine.definition().def;
        let pointer = def.options.concurrency.as_ref().and_then(|c| c.key.as_deref());
        Some((def.id.clone(), key_value(machine.payload(), pointer)))
    }

    fn flow_wake_at(&mut self, at: DateTime<Utc>) {
        let wait = (at - self.clock.now()).to_std().unwrap_or(Duration::ZERO);
        let wake = Instant::now() + wait;
        self.flow.wake = Some(self.flow.wake.map_or(wake, |w| w.min(wake)));
    }

    /// Admits every waiting run that its limits let through now.
    pub(crate) fn flow_admit(&mut self) {
        self.flow.dirty = false;
        if self.flow.waiting == 0 && self.flow.debounced.is_empty() {
            self.flow.wake = None;
            return;
        }
        self.flow.wake = None;
        let now = self.clock.now();
        let released: Vec<GateKey> = self
            .flow
            .debounced
            .iter()
            .filter(|(_, (_, release))| *release <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in released {
            if let Some((run_id, _)) = self.flow.debounced.remove(&key) {
                self.flow_enqueue(run_id);
            }
        }
        if let Some(release) = self.flow.debounced.values().map(|(_, r)| *r).min() {
            self.flow_wake_at(release);
        }
        let gates: Vec<GateKey> = self
            .flow
            .gates
            .iter()
            .filter(|(_, g)| !g.waiting.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        for gate in gates {
            self.admit_gate(&gate);
        }
        self.flow.dirty = false;
    }

    fn admit_gate(&mut self, gate: &GateKey) {
        loop {
            let Some(g) = self.flow.gates.get(gate) else { return };
            let Some(&run_id) = g.waiting.front() else { return };
            let running = g.running;
            let Some(run) = self.runs.get(&run_id).filter(|r| !r.machine.status().is_terminal())
            else {
                // Cancelled while waiting, or gone to another instance.
                self.pop_waiting(gate);
                continue;
            };
            let def = Arc::clone(run.machine.definition());
            let options = &def.def.options;
            if options.concurrency.as_ref().is_some_and(|c| running >= c.limit as usize) {
                return;
            }
            if let Some(limit) = &options.rate_limit
                && let Some(quota) = quota(limit)
            {
                let limiter = Arc::clone(
                    self.flow
                        .limiters
                        .entry(def.def.id.clone())
                        .or_insert_with(|| Arc::new(RateLimiter::keyed(quota))),
                );
                let key = key_value(run.machine.payload(), limit.key.as_deref());
                if let Err(not_until) = limiter.check_key(&key) {
                    let wait = not_until.wait_time_from(DefaultClock::default().now());
                    let wake = Instant::now() + wait;
                    self.flow.wake = Some(self.flow.wake.map_or(wake, |w| w.min(wake)));
                    return;
                }
            }
            self.pop_waiting(gate);
            if let Some(g) = self.flow.gates.get_mut(gate) {
                g.running += 1;
            }
            self.flow.holding.insert(run_id, gate.clone());
            let now = self.clock.now();
            if let Some(run) = self.runs.get_mut(&run_id) {
                let commands = run.machine.admit(now);
                self.carry_out(run_id, commands);
            }
        }
    }

    fn pop_waiting(&mut self, gate: &GateKey) {
        if let Some(g) = self.flow.gates.get_mut(gate)
            && g.waiting.pop_front().is_some()
        {
            self.flow.waiting -= 1;
        }
    }
}

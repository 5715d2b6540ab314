//! Generated workflow trees before ids are assigned: every node kind, nested up to three
//! levels, with retry policies, `on_error` handlers and wait options.

use std::time::Duration;

use cronflow_core::RetryPolicy;
use proptest::prelude::*;

use crate::ERROR_NAMES;

/// Event names the generated `wait_for_event` nodes wait for (the driver also publishes
/// names nobody waits for).
pub(crate) const EVENT_NAMES: [&str; 2] = ["paid", "shipped"];

/// A `step` or `action`.
#[derive(Debug, Clone)]
pub(crate) struct TaskShape {
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) on_error: bool,
}

/// A pause or event wait's timeout (ms) and whether a timeout continues (else it fails).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeout {
    pub(crate) ms: Option<u16>,
    pub(crate) continues: bool,
}

/// A workflow tree before ids are assigned.
#[derive(Debug, Clone)]
pub(crate) enum Shape {
    Step(TaskShape),
    Action(TaskShape),
    If(Vec<Vec<Shape>>, Option<Vec<Shape>>),
    Parallel(Vec<Vec<Shape>>),
    Race(Vec<Vec<Shape>>),
    ForEach { concurrency: Option<u32>, body: Vec<Shape> },
    Batch { size: u32, body: Vec<Shape> },
    While { max_iterations: u32, body: Vec<Shape> },
    Sleep { ms: u16 },
    Pause { timeout: Timeout, on_pause: bool },
    WaitForEvent { event: usize, matching: Option<u8>, timeout: Timeout },
    Subflow { payload: bool },
    Cancel { reason: Option<u8> },
}

/// How many nodes a tree has, counting loop bodies once per item they may run for (at most
/// four), so that nested loops do not make runs too long.
pub(crate) fn weight(shapes: &[Shape]) -> usize {
    let branches = |b: &Vec<Vec<Shape>>| b.iter().map(|s| weight(s)).sum::<usize>();
    shapes
        .iter()
        .map(|s| match s {
            Shape::If(b, e) => 1 + branches(b) + e.as_deref().map_or(0, weight),
            Shape::Parallel(b) | Shape::Race(b) => 1 + branches(b),
            Shape::ForEach { body, .. } | Shape::Batch { body, .. } => 1 + 3 * weight(body),
            Shape::While { max_iterations, body } => 1 + *max_iterations as usize * weight(body),
            _ => 1,
        })
        .sum()
}

pub(crate) fn retry_policy() -> impl Strategy<Value = RetryPolicy> {
    (
        prop_oneof![1 => Just(1u32), 2 => Just(2), 2 => Just(3)],
        0u8..3,
        0u64..=50,
        prop::option::weighted(0.2, prop::sample::select(ERROR_NAMES.to_vec())),
        prop::bool::weighted(0.15),
        prop::option::weighted(0.15, 0u64..=30),
    )
        .prop_map(|(max_attempts, backoff, delay, retry_on, jitter, max_delay)| {
            let delay = Duration::from_millis(delay);
            let mut policy = match backoff {
                0 => RetryPolicy::fixed(max_attempts, delay),
                1 => RetryPolicy::linear(max_attempts, delay),
                _ => RetryPolicy::exponential(max_attempts, delay),
            };
            if let Some(name) = retry_on {
                policy = policy.retry_on([name]);
            }
            if jitter {
                policy = policy.with_jitter();
            }
            if let Some(max) = max_delay {
                policy = policy.max_delay(Duration::from_millis(max));
            }
            policy
        })
}

fn task_shape(all_kinds: bool) -> impl Strategy<Value = TaskShape> {
    let on_error = if all_kinds { 0.25 } else { 0.0 };
    (prop::option::weighted(0.7, retry_policy()), prop::bool::weighted(on_error))
        .prop_map(|(retry, on_error)| TaskShape { retry, on_error })
}

fn timeout() -> impl Strategy<Value = Timeout> {
    (prop::option::weighted(0.5, 20u16..=200), any::<bool>())
        .prop_map(|(ms, continues)| Timeout { ms, continues })
}

/// A tree node; `all_kinds: false` keeps to the first kinds (step, action, if, parallel).
pub(crate) fn shape(all_kinds: bool) -> BoxedStrategy<Shape> {
    let leaf = if all_kinds {
        prop_oneof![
            12 => task_shape(true).prop_map(Shape::Step),
            4 => task_shape(true).prop_map(Shape::Action),
            2 => (0u16..=100).prop_map(|ms| Shape::Sleep { ms }),
            2 => (timeout(), any::<bool>())
                .prop_map(|(timeout, on_pause)| Shape::Pause { timeout, on_pause }),
            2 => (0..EVENT_NAMES.len(), prop::option::of(0u8..3), timeout()).prop_map(
                |(event, matching, timeout)| Shape::WaitForEvent { event, matching, timeout }
            ),
            2 => any::<bool>().prop_map(|payload| Shape::Subflow { payload }),
            1 => prop::option::of(0u8..3).prop_map(|reason| Shape::Cancel { reason }),
        ]
        .boxed()
    } else {
        prop_oneof![
            3 => task_shape(false).prop_map(Shape::Step),
            1 => task_shape(false).prop_map(Shape::Action),
        ]
        .boxed()
    };
    // Depth 2 of recursion: a composite inside a composite holding leaves, three levels.
    leaf.prop_recursive(2, 12, 3, move |inner| {
        let seq = prop::collection::vec(inner, 1..=2);
        let branches = prop::collection::vec(seq.clone(), 1..=3);
        let old = prop_oneof![
            (branches.clone(), prop::option::weighted(0.5, seq.clone()))
                .prop_map(|(branches, else_nodes)| Shape::If(branches, else_nodes)),
            branches.clone().prop_map(Shape::Parallel),
        ];
        if !all_kinds {
            return old.boxed();
        }
        prop_oneof![
            2 => old,
            2 => prop::collection::vec(seq.clone(), 2..=3).prop_map(Shape::Race),
            1 => (prop::option::of(1u32..=3), seq.clone())
                .prop_map(|(concurrency, body)| Shape::ForEach { concurrency, body }),
            1 => (1u32..=3, seq.clone()).prop_map(|(size, body)| Shape::Batch { size, body }),
            1 => (1u32..=3, seq)
                .prop_map(|(max_iterations, body)| Shape::While { max_iterations, body }),
        ]
        .boxed()
    })
    .boxed()
}

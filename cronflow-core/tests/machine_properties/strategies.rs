//! Generated test cases: a definition (from `shapes` via `build`), a run and the script of
//! the simulated world.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cronflow_core::{
    Hooks, Json, RunDefinition, RunId, TaskKey, TaskKind, WorkflowDef, WorkflowOptions,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

use crate::build::{DefBuilder, TaskMeta};
use crate::shapes::{EVENT_NAMES, retry_policy, shape, weight};
use crate::{ERROR_NAMES, t0};

/// One input the simulated world feeds the machine.
#[derive(Debug, Clone)]
pub(crate) enum Choice {
    /// Answer in-flight task `pick % len` with a success, `delay` ms later.
    Succeed { pick: usize, value: u8, delay: u8 },
    /// Answer in-flight task `pick % len` with a failure, `delay` ms later.
    Fail { pick: usize, name: usize, non_retryable: bool, delay: u8 },
    /// Feed a result for an attempt that is not in flight.
    Stale { pick: usize },
    /// Let `ms` pass, then fire the timers that are due.
    Tick { ms: u16 },
    /// Cancel the run.
    Cancel,
    /// Resume open pause `pick % len` with a payload, `delay` ms later.
    Resume { pick: usize, value: u8, delay: u8 },
    /// Publish event `EVENT_NAMES[name]` (or an unknown name past them), with an `order`
    /// field or without one, `delay` ms later.
    Publish { name: usize, order: Option<u8>, value: u8, delay: u8 },
    /// End open child run `pick % len`: completed, failed or cancelled (`how % 4`), `delay`
    /// ms later.
    ChildEnd { pick: usize, how: u8, value: u8, delay: u8 },
    /// A signal that must change nothing: resuming a closed (or no) pause, ending a child
    /// that is not waited for.
    Refused { pick: usize },
    /// The process dies: replay the history and resume.
    Crash,
}

/// How long after the previous input a signal comes: mostly soon, sometimes much later
/// (past a run's deadline that no timer has handled yet).
fn signal_delay() -> impl Strategy<Value = u8> {
    prop_oneof![4 => 0u8..=20, 1 => 0u8..=250]
}

/// One step of the script; `fail` weighs failures against 60 for successes.
fn choice(fail: u32, signals: bool) -> impl Strategy<Value = Choice> {
    let s = u32::from(signals);
    prop_oneof![
        60 => (any::<usize>(), any::<u8>(), 0u8..=20)
            .prop_map(|(pick, value, delay)| Choice::Succeed { pick, value, delay }),
        fail => (any::<usize>(), 0..ERROR_NAMES.len(), prop::bool::weighted(0.1), 0u8..=20)
            .prop_map(|(pick, name, non_retryable, delay)| {
                Choice::Fail { pick, name, non_retryable, delay }
            }),
        8 => any::<usize>().prop_map(|pick| Choice::Stale { pick }),
        8 => (0u16..=120).prop_map(|ms| Choice::Tick { ms }),
        1 => Just(Choice::Cancel),
        6 * s => (any::<usize>(), any::<u8>(), signal_delay())
            .prop_map(|(pick, value, delay)| Choice::Resume { pick, value, delay }),
        8 * s => (0..=EVENT_NAMES.len(), prop::option::weighted(0.8, 0u8..4), any::<u8>(), signal_delay())
            .prop_map(|(name, order, value, delay)| Choice::Publish { name, order, value, delay }),
        6 * s => (any::<usize>(), any::<u8>(), any::<u8>(), signal_delay())
            .prop_map(|(pick, how, value, delay)| Choice::ChildEnd { pick, how, value, delay }),
        3 * s => any::<usize>().prop_map(|pick| Choice::Refused { pick }),
        2 * s => Just(Choice::Crash),
    ]
}

/// A generated test case: a definition, a run and the script of the simulated world.
#[derive(Clone)]
pub(crate) struct Case {
    pub(crate) def: Arc<RunDefinition>,
    pub(crate) tasks: BTreeMap<String, TaskMeta>,
    pub(crate) run_id: RunId,
    pub(crate) payload: Json,
    pub(crate) script: Vec<Choice>,
    /// When false, failures become successes, cancels become ticks, children complete and
    /// items handlers return arrays.
    pub(crate) faults: bool,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The definition as WDO JSON: compact and pasteable into a regression test.
        let wdo = serde_json::to_string(&self.def.def).unwrap_or_default();
        f.debug_struct("Case")
            .field("wdo", &format_args!("{wdo}"))
            .field("run_id", &self.run_id)
            .field("payload", &self.payload)
            .field("faults", &self.faults)
            .field("script", &self.script)
            .finish()
    }
}

impl Case {
    pub(crate) fn deadline(&self) -> Option<DateTime<Utc>> {
        let timeout = self.def.def.options.timeout?;
        Some(t0() + chrono::Duration::from_std(timeout).unwrap())
    }

    /// What the test knows about `key` (looked up without its loop iteration).
    pub(crate) fn meta(&self, key: &TaskKey) -> Result<&TaskMeta, TestCaseError> {
        let base = key.as_str().split('@').next().unwrap_or_default();
        self.tasks.get(base).ok_or_else(|| TestCaseError::fail(format!("unknown task key {key:?}")))
    }
}

/// `all_kinds: false` generates only steps, actions, `if` and `parallel` (the first kinds),
/// which makes deeper trees of them.
pub(crate) fn case(faults: bool, all_kinds: bool) -> impl Strategy<Value = Case> {
    let signals = all_kinds;
    (
        prop::collection::vec(shape(all_kinds), 1..=4)
            .prop_filter("not too big", |s| weight(s) <= 14),
        prop::option::weighted(0.5, retry_policy()),
        prop::option::weighted(0.3, 40u64..=600),
        any::<u128>(),
        prop_oneof![Just(Value::Null), (0..100i64).prop_map(|n| json!({ "n": n }))],
        (prop::bool::weighted(if all_kinds { 0.3 } else { 0.0 }), prop::bool::weighted(0.3)),
        // A mostly healthy world, or a flaky one that fails about half of the answers.
        prop_oneof![
            prop::collection::vec(choice(10, signals), 0..160),
            prop::collection::vec(choice(60, signals), 0..160),
        ],
    )
        .prop_map(move |(shapes, default_retry, timeout, run, payload, hooks, script)| {
            let mut builder = DefBuilder::new(default_retry.clone());
            let nodes = builder.seq(&shapes);
            let on_success = hooks
                .0
                .then(|| builder.tagged("on_success#hook".into(), "on_success", TaskKind::Hook));
            let on_failure = (hooks.1 && all_kinds)
                .then(|| builder.tagged("on_failure#hook".into(), "on_failure", TaskKind::Hook));
            let def = WorkflowDef {
                schema: 1,
                id: "prop".into(),
                version: Some("v1".into()),
                name: None,
                description: None,
                triggers: vec![],
                options: WorkflowOptions {
                    timeout: timeout.map(Duration::from_millis),
                    retry: default_retry,
                    ..WorkflowOptions::default()
                },
                hooks: Hooks { on_success, on_failure },
                nodes,
            };
            Case {
                def: RunDefinition::new(def, 1),
                tasks: builder.tasks,
                run_id: RunId::from_uuid(uuid::Uuid::from_u128(run)),
                payload: Json::from(payload),
                script,
                faults,
            }
        })
}

//! `sleep` and `sleep_until`: durable timers; the run goes on with the previous output.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use cronflow_core::{InProcessExecutor, RunEvent, TaskError, Wait, Workflow};
use serde_json::json;

use crate::harness::*;

/// When `b` ran, and what it was given as the previous output.
pub(crate) type Ran = Arc<Mutex<Vec<(DateTime<Utc>, serde_json::Value)>>>;

/// `a` returns `"A"`; `b` notes when it ran and returns the previous output.
pub(crate) fn executor(ran: &Ran) -> InProcessExecutor {
    let ran = Arc::clone(ran);
    InProcessExecutor::new().handler("a", |_| async { Ok::<_, TaskError>("A") }).handler(
        "b",
        move |task| {
            ran.lock().unwrap().push((Utc::now(), task.context.last.to_value()));
            async move { Ok::<_, TaskError>(task.context.last.clone()) }
        },
    )
}

/// The time the sleep `key` waits for, from its `wait_started` event.
pub(crate) fn sleep_until(report: &cronflow_core::RunReport, key: &str) -> DateTime<Utc> {
    waits(report)
        .into_iter()
        .find_map(|(k, on)| match on {
            Wait::Sleep { until } if k == key => Some(until),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no sleep `{key}`: {report:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleep_holds_the_run_for_its_duration() {
    on_every_database(|db| async move {
        let ran = Ran::default();
        let flow = Workflow::new("nap").step("a").sleep("nap", ms(150)).step("b").build().unwrap();
        let engine = db.start(executor(&ran), &[flow]).await;
        let handle = engine.handle();
        let run = handle.trigger("nap", json!(null)).await.unwrap();
        let report = completed(&handle, run).await;
        assert_eq!(output(&report), json!("A"), "{}: the sleep passes the output on", db.name());
        let a_done = report
            .history
            .iter()
            .find_map(|e| match &e.event {
                RunEvent::TaskSucceeded { task, .. } if task.as_str() == "a" => Some(e.at),
                _ => None,
            })
            .unwrap();
        let until = sleep_until(&report, "nap");
        let waited = (until - a_done).num_milliseconds();
        assert!((150..=160).contains(&waited), "the timer is 150 ms after `a`: {waited} ms");
        let (b_ran, b_last) = ran.lock().unwrap()[0].clone();
        assert!(b_ran >= until, "b ran at {b_ran}, before the sleep's end {until}");
        assert_eq!(b_last, json!("A"));
        stop(engine).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleep_until_waits_for_an_absolute_time_and_skips_a_past_one() {
    on_every_database(|db| async move {
        let ran = Ran::default();
        let past = Workflow::new("past").step("a").sleep_until("wake", "2020-01-01T00:00:00+02:00");
        let engine = db.start(executor(&ran), &[past.step("b").build().unwrap()]).await;
        let handle = engine.handle();
        // Registered once the engine runs, so that starting it does not eat the 200 ms.
        let at = Utc::now() + chrono::Duration::milliseconds(200);
        let rfc3339 = at.to_rfc3339_opts(SecondsFormat::Micros, true);
        let at = DateTime::parse_from_rfc3339(&rfc3339).unwrap().with_timezone(&Utc);
        let later = Workflow::new("later").step("a").sleep_until("wake", rfc3339).step("b");
        handle.register(later.build().unwrap()).await.unwrap();

        let run = handle.trigger("later", json!(null)).await.unwrap();
        let report = completed(&handle, run).await;
        assert_eq!(sleep_until(&report, "wake"), at, "{}", db.name());
        assert!(ran.lock().unwrap()[0].0 >= at, "b ran after the time");

        let run = handle.trigger("past", json!(null)).await.unwrap();
        let report = completed(&handle, run).await;
        assert!(waits(&report).is_empty(), "a time already past is no wait: {report:#?}");
        assert_eq!(output(&report), json!("A"));
        stop(engine).await;
    })
    .await;
}

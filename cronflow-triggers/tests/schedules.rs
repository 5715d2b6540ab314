//! Schedules, intervals and polls against a simulated clock (no waiting for real minutes),
//! on a real SQLite file and on PostgreSQL: each slot fires once, daylight-saving changes,
//! a restart at slot time, misfire policies, three instances on one database, polling.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use common::{PgSchema, on_every_backend};
use cronflow_core::{
    Engine, EngineHandle, InProcessExecutor, MemoryStore, RunQuery, TaskError, TriggerDef,
    Workflow, WorkflowDef,
};
use cronflow_store::PostgresStore;
use cronflow_triggers::{MisfirePolicy, RunningTriggers, SimulatedClock, TriggerClock, Triggers};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(60);

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

fn noop() -> InProcessExecutor {
    InProcessExecutor::new().handler("tick", |_| async { Ok::<_, TaskError>(Value::Null) })
}

fn scheduled(id: &str, trigger: TriggerDef) -> WorkflowDef {
    Workflow::new(id).trigger(trigger).step("tick").build().unwrap()
}

fn cron_in(cron: &str, tz: &str) -> TriggerDef {
    TriggerDef::Schedule { cron: cron.into(), timezone: Some(tz.into()) }
}

/// The slots of the runs of `workflow`, oldest first, from their trigger context.
async fn fired(handle: &EngineHandle, workflow: &str) -> Vec<String> {
    let query =
        RunQuery { workflow_id: Some(workflow.into()), limit: Some(10_000), ..RunQuery::default() };
    let mut slots = Vec::new();
    for run in handle.list_runs(&query).await.unwrap() {
        let context: Value = run.context.expect("a trigger context").parse().unwrap();
        assert_eq!(context["type"], "schedule");
        slots.push(context["slot"].as_str().unwrap().to_string());
    }
    slots.sort();
    slots
}

/// Waits until every schedule's cursor is past the clock: the slots due are fired.
async fn settled(handle: &EngineHandle, clock: &SimulatedClock, ids: &[String]) {
    let waited = tokio::time::timeout(LIMIT, async {
        loop {
            let mut all = true;
            for id in ids {
                let cursor = handle.schedule_cursor(id).await.unwrap();
                all &= cursor.is_some_and(|c| c > clock.now());
            }
            if all {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the schedules did not catch up with the clock");
}

async fn start(
    handle: &EngineHandle,
    clock: &SimulatedClock,
    policy: MisfirePolicy,
) -> RunningTriggers {
    Triggers::new(handle.clone()).clock(clock.clone()).misfire(policy).start().unwrap()
}

fn ids(handle: &EngineHandle) -> Vec<String> {
    let triggers = Triggers::new(handle.clone());
    let (schedules, polls) = triggers.sources().unwrap();
    schedules.into_iter().map(|s| s.id).chain(polls.into_iter().map(|p| p.id)).collect()
}

#[tokio::test]
async fn each_slot_fires_once_and_daylight_saving_changes_are_honoured() {
    on_every_backend(|backend| async move {
        let flows = [
            scheduled("quarter", TriggerDef::schedule("*/15 * * * *")),
            scheduled("paris", cron_in("30 2 * * *", "Europe/Paris")),
        ];
        let engine = backend.start(noop(), |b| b.workflows(flows.clone())).await;
        let handle = engine.handle();
        let clock = SimulatedClock::new(utc(2026, 3, 28, 8, 50, 0));
        let running = start(&handle, &clock, MisfirePolicy::FireOnce).await;
        let ids = ids(&handle);
        settled(&handle, &clock, &ids).await;
        // Quarter by quarter across the spring-forward night of 2026-03-29, and past it.
        while clock.now() < utc(2026, 3, 30, 12, 0, 0) {
            clock.advance(Duration::from_secs(15 * 60));
            settled(&handle, &clock, &ids).await;
        }
        // 02:30 does not exist on 2026-03-29 in Paris: it fires at the transition, 03:00 CEST.
        assert_eq!(fired(&handle, "paris").await, ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]);
        let quarters = fired(&handle, "quarter").await;
        assert_eq!(quarters.len(), 4 * 51 + 1, "{}", backend.name());
        assert_eq!(quarters.first().map(String::as_str), Some("2026-03-28T09:00:00Z"));
        assert_eq!(quarters.last().map(String::as_str), Some("2026-03-30T12:00:00Z"));
        running.shutdown().await;
        engine.shutdown(Duration::from_secs(5)).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_restart_exactly_at_slot_time_does_not_fire_the_slot_twice() {
    on_every_backend(|backend| async move {
        let flow = scheduled("nightly", TriggerDef::schedule("0 0 * * *"));
        let slot = utc(2026, 11, 27, 0, 0, 0);
        let clock = SimulatedClock::new(utc(2026, 11, 26, 23, 59, 0));
        let engine = backend.start(noop(), |b| b.workflow(flow.clone())).await;
        let handle = engine.handle();
        let running = start(&handle, &clock, MisfirePolicy::FireOnce).await;
        let ids = ids(&handle);
        settled(&handle, &clock, &ids).await;
        clock.set(slot);
        settled(&handle, &clock, &ids).await;
        assert_eq!(fired(&handle, "nightly").await, ["2026-11-27T00:00:00Z"]);
        running.shutdown().await;
        // The crash came after the slot's run was durable but before the cursor moved:
        // put the cursor back, and restart the engine at the same instant.
        let next = handle.schedule_cursor(&ids[0]).await.unwrap();
        assert!(handle.advance_schedule(&ids[0], next, slot).await.unwrap());
        engine.shutdown(Duration::from_secs(5)).await.unwrap();

        let engine = backend.start(noop(), |b| b.workflow(flow.clone())).await;
        let handle = engine.handle();
        let running = start(&handle, &clock, MisfirePolicy::FireOnce).await;
        settled(&handle, &clock, &ids).await;
        assert_eq!(fired(&handle, "nightly").await, ["2026-11-27T00:00:00Z"], "{}", backend.name());
        running.shutdown().await;
        engine.shutdown(Duration::from_secs(5)).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn slots_missed_while_the_engine_was_down_follow_the_misfire_policy() {
    let cases = [
        (MisfirePolicy::Skip, vec!["09:10"]),
        (MisfirePolicy::FireOnce, vec!["09:01", "09:10"]),
        (MisfirePolicy::FireEach { max: 3 }, vec!["09:01", "09:02", "09:03", "09:10"]),
    ];
    for (policy, expected) in cases {
        let engine = Engine::builder()
            .store(MemoryStore::new())
            .executor(noop())
            .workflow(scheduled("minutely", TriggerDef::schedule("* * * * *")))
            .start()
            .await
            .unwrap();
        let handle = engine.handle();
        let clock = SimulatedClock::new(utc(2026, 11, 26, 9, 0, 30));
        let ids = ids(&handle);
        let first = start(&handle, &clock, policy).await;
        settled(&handle, &clock, &ids).await;
        first.shutdown().await;
        assert_eq!(
            handle.schedule_cursor(&ids[0]).await.unwrap(),
            Some(utc(2026, 11, 26, 9, 1, 0))
        );
        // Down from 9:00:30 to 9:10:30: 9:01 to 9:09 are missed; 9:10 is within the grace.
        clock.set(utc(2026, 11, 26, 9, 10, 30));
        let running = start(&handle, &clock, policy).await;
        settled(&handle, &clock, &ids).await;
        let slots: Vec<String> = fired(&handle, "minutely").await;
        let times: Vec<&str> = slots.iter().map(|s| &s[11..16]).collect();
        assert_eq!(times, expected, "{policy:?}");
        if policy == MisfirePolicy::FireOnce {
            let runs = handle.list_runs(&RunQuery::default()).await.unwrap();
            let missed: Vec<u64> = runs
                .iter()
                .map(|r| r.context.as_ref().unwrap().to_value()["missed"].as_u64().unwrap())
                .collect();
            assert!(missed.contains(&9) && missed.contains(&0), "{missed:?}");
        }
        running.shutdown().await;
        engine.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}

#[tokio::test]
async fn three_instances_on_one_postgres_database_fire_1000_slots_each_exactly_once() {
    let Some(url) = cronflow_store::testing::test_database_url() else { return };
    let schema = PgSchema::create(&url).await.unwrap();
    let flow = scheduled("tick", TriggerDef::interval(Duration::from_secs(1)));
    let start_at = utc(2026, 11, 26, 0, 0, 0) + chrono::Duration::milliseconds(500);
    let clock = SimulatedClock::new(start_at);
    let mut engines = Vec::new();
    let mut running = Vec::new();
    for _ in 0..3 {
        let store = PostgresStore::connect(&schema.url()).await.unwrap();
        let engine = Engine::builder()
            .store(store)
            .executor(noop())
            .workflow(flow.clone())
            .start()
            .await
            .unwrap();
        // Every missed slot fires: the clock runs far ahead of the database here.
        let policy = MisfirePolicy::FireEach { max: 100_000 };
        running.push(
            Triggers::new(engine.handle())
                .clock(clock.clone())
                .misfire(policy)
                .misfire_grace(Duration::from_secs(3600))
                .start()
                .unwrap(),
        );
        engines.push(engine);
    }
    let handle = engines[0].handle();
    let ids = ids(&handle);
    settled(&handle, &clock, &ids).await;
    for _ in 0..1000 {
        clock.advance(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    settled(&handle, &clock, &ids).await;
    let slots = fired(&handle, "tick").await;
    assert_eq!(slots.len(), 1000);
    let distinct: std::collections::BTreeSet<&String> = slots.iter().collect();
    assert_eq!(distinct.len(), 1000, "a slot fired twice");
    assert_eq!(slots.first().map(String::as_str), Some("2026-11-26T00:00:01Z"));
    assert_eq!(slots.last().map(String::as_str), Some("2026-11-26T00:16:40Z"));
    for r in running {
        r.shutdown().await;
    }
    for engine in engines {
        engine.shutdown(Duration::from_secs(10)).await.unwrap();
    }
}

#[tokio::test]
async fn each_new_polled_item_starts_one_run() {
    on_every_backend(|backend| async move {
        let answers = Arc::new(Mutex::new(vec![
            json!([{ "id": 1, "n": "a" }, { "id": 2, "n": "b" }]),
            json!([{ "id": 2, "n": "b" }, { "id": 3, "n": "c" }]),
            json!([]),
        ]));
        let executor = noop().handler("items", move |_| {
            let answers = Arc::clone(&answers);
            async move {
                let mut answers = answers.lock().unwrap();
                Ok::<_, TaskError>(if answers.is_empty() { json!([]) } else { answers.remove(0) })
            }
        });
        let trigger = TriggerDef::Poll {
            handler: "items".into(),
            every: Some(Duration::from_secs(60)),
            key: Some("/id".into()),
        };
        let flow = scheduled("feed", trigger);
        let engine = backend.start(executor, |b| b.workflow(flow.clone())).await;
        let handle = engine.handle();
        let clock = SimulatedClock::new(utc(2026, 11, 26, 9, 0, 30));
        let running = start(&handle, &clock, MisfirePolicy::FireOnce).await;
        let ids = ids(&handle);
        for _ in 0..4 {
            settled(&handle, &clock, &ids).await;
            clock.advance(Duration::from_secs(60));
        }
        settled(&handle, &clock, &ids).await;
        let query = RunQuery { workflow_id: Some("feed".into()), ..RunQuery::default() };
        let mut payloads: Vec<Value> = Vec::new();
        for run in handle.list_runs(&query).await.unwrap() {
            payloads.push(run.payload.to_value());
            let context = run.context.unwrap().to_value();
            assert_eq!(
                (context["type"].as_str(), context["handler"].as_str()),
                (Some("poll"), Some("items"))
            );
        }
        payloads.sort_by_key(|p| p["id"].as_u64());
        assert_eq!(
            payloads,
            [json!({"id": 1, "n": "a"}), json!({"id": 2, "n": "b"}), json!({"id": 3, "n": "c"})],
            "{}",
            backend.name()
        );
        running.shutdown().await;
        engine.shutdown(Duration::from_secs(5)).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn an_invalid_cron_expression_is_refused_naming_the_workflow_and_the_field() {
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .executor(noop())
        .workflow(scheduled("bad", TriggerDef::schedule("61 * * * *")))
        .start()
        .await
        .unwrap();
    let err = Triggers::new(engine.handle()).start().unwrap_err();
    assert_eq!(
        err.to_string(),
        "workflow `bad`: trigger #0: invalid cron expression `61 * * * *`: minute field `61`: \
         value 61 out of range 0-59"
    );
    engine.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn with_the_check_installed_a_bad_trigger_is_refused_at_registration() {
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .executor(noop())
        .validator(cronflow_triggers::check_workflow)
        .start()
        .await
        .unwrap();
    let handle = engine.handle();
    let bad = cron_in("0 9 * * MON-FRY", "Europe/Paris");
    let err = handle.register(scheduled("weekdays", bad)).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "workflow `weekdays` is rejected: trigger #0: invalid cron expression \
         `0 9 * * MON-FRY`: day-of-week field `MON-FRY`: unknown name `FRY` (expected SUN-SAT)"
    );
    let zone = cron_in("0 9 * * *", "Europe/Pariss");
    let err = handle.register(scheduled("zoned", zone)).await.unwrap_err();
    assert!(err.to_string().contains("Europe/Pariss"), "{err}");
    assert!(handle.workflows().is_empty());
    engine.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_workflow_registered_later_is_scheduled_on_refresh() {
    let engine = Engine::builder()
        .store(MemoryStore::new())
        .executor(noop())
        .workflow(scheduled("early", TriggerDef::schedule("0 * * * *")))
        .start()
        .await
        .unwrap();
    let handle = engine.handle();
    let clock = SimulatedClock::new(utc(2026, 11, 26, 8, 30, 0));
    let mut running = start(&handle, &clock, MisfirePolicy::FireOnce).await;
    assert_eq!(running.sources(), ["schedule:early:0 * * * *@UTC"]);
    handle.register(scheduled("late", TriggerDef::schedule("30 * * * *"))).await.unwrap();
    running.refresh().unwrap();
    let ids = running.sources();
    assert_eq!(ids.len(), 2);
    settled(&handle, &clock, &ids).await;
    clock.set(utc(2026, 11, 26, 9, 45, 0));
    settled(&handle, &clock, &ids).await;
    assert_eq!(fired(&handle, "early").await, ["2026-11-26T09:00:00Z"]);
    assert_eq!(fired(&handle, "late").await, ["2026-11-26T09:30:00Z"]);
    // A new revision with another cadence replaces the old schedule.
    handle.register(scheduled("late", TriggerDef::schedule("50 * * * *"))).await.unwrap();
    running.refresh().unwrap();
    assert_eq!(running.sources(), ["schedule:early:0 * * * *@UTC", "schedule:late:50 * * * *@UTC"]);
    running.shutdown().await;
    engine.shutdown(Duration::from_secs(5)).await.unwrap();
}

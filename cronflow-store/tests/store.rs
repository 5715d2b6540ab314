//! The `Store` contract, each test run on every backend: a SQLite file, SQLite in memory and
//! PostgreSQL (when `CRONFLOW_TEST_DATABASE_URL` is set).

mod common;

use common::{
    completed, def, event, events, json, new_run, on_every_backend, on_every_database, start, t,
};
use cronflow_core::{
    CommitBatch, FailureKind, FinishedRun, NewRun, RecordedEvent, RunEvent, RunFailure, RunQuery,
    RunRecord, RunStatus, Store, StoreError, TaskError, TaskKey,
};

#[tokio::test]
async fn workflow_revisions() {
    on_every_backend(|store| async move {
        let v1 = def("orders", &["a", "b"]);
        assert_eq!(store.save_workflow(&v1).await.unwrap(), 1);
        assert_eq!(store.save_workflow(&v1).await.unwrap(), 1, "same definition, same revision");
        let v2 = def("orders", &["a", "b", "c"]);
        assert_eq!(store.save_workflow(&v2).await.unwrap(), 2);
        assert_eq!(store.save_workflow(&v2).await.unwrap(), 2);
        assert_eq!(store.save_workflow(&v1).await.unwrap(), 3, "going back is a new revision");
        assert_eq!(store.save_workflow(&def("other", &["x"])).await.unwrap(), 1);

        assert_eq!(store.load_workflow("orders", 1).await.unwrap(), Some(v1.clone()));
        assert_eq!(store.load_workflow("orders", 2).await.unwrap(), Some(v2));
        assert_eq!(store.load_workflow("orders", 3).await.unwrap(), Some(v1));
        assert_eq!(store.load_workflow("orders", 4).await.unwrap(), None);
        assert_eq!(store.load_workflow("nope", 1).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn commit_then_read_back_exactly() {
    on_every_backend(|store| async move {
        let context = json(r#"{"type": "webhook", "headers": {"x-a": "1"}, "raw_body": "{ }"}"#);
        let run = NewRun { context: Some(context), ..new_run("orders", 5) };
        let mut batch = start(&run, 3);
        let error = TaskError {
            name: "TypeError".into(),
            message: "x is undefined".into(),
            stack: Some("at line 1".into()),
            code: None,
            retryable: true,
        };
        batch.events.push((
            run.id,
            RecordedEvent {
                seq: 3,
                at: t(3_500),
                event: RunEvent::TaskFailed {
                    task: TaskKey::new("check#0"),
                    attempt: 2,
                    started_at: t(3_100),
                    error,
                    retry_at: Some(t(9_000)),
                },
            },
        ));
        store.commit(&batch).await.unwrap();

        let expected: Vec<RecordedEvent> = batch.events.iter().map(|(_, e)| e.clone()).collect();
        let read = store.run_events(run.id).await.unwrap();
        assert_eq!(read, expected);
        // Raw JSON text comes back byte for byte.
        match &read[1].event {
            RunEvent::TaskSucceeded { output, .. } => {
                assert_eq!(output.as_str(), r#"{"n": 1, "text": "out 1"}"#)
            }
            other => panic!("unexpected {other:?}"),
        }
        let record = store.run(run.id).await.unwrap().unwrap();
        assert_eq!(
            record,
            RunRecord {
                id: run.id,
                workflow_id: "orders".into(),
                revision: 1,
                status: RunStatus::Running,
                payload: run.payload.clone(),
                output: None,
                failure: None,
                created_at: t(5),
                finished_at: None,
                context: run.context.clone(),
            }
        );
        assert_eq!(record.payload.as_str(), r#"{"order": 42, "items": [1, 2.50]}"#);
        assert_eq!(
            record.context.unwrap().as_str(),
            r#"{"type": "webhook", "headers": {"x-a": "1"}, "raw_body": "{ }"}"#
        );

        // Append the end and finish the run in a later batch.
        let done = RecordedEvent {
            seq: 4,
            at: t(10_000),
            event: RunEvent::RunCompleted { output: json(r#"[ "done" ]"#) },
        };
        let finish = CommitBatch {
            new_runs: vec![],
            events: vec![(run.id, done.clone())],
            finished: vec![completed(run.id, r#"[ "done" ]"#, 10_000)],
            ..CommitBatch::default()
        };
        store.commit(&finish).await.unwrap();
        let record = store.run(run.id).await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Completed);
        assert_eq!(record.output.unwrap().as_str(), r#"[ "done" ]"#);
        assert_eq!(record.finished_at, Some(t(10_000)));
        assert_eq!(store.run_events(run.id).await.unwrap().last(), Some(&done));

        assert_eq!(store.run(cronflow_core::RunId::new()).await.unwrap(), None);
        assert!(store.run_events(cronflow_core::RunId::new()).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_run_can_start_and_fail_in_one_batch() {
    on_every_backend(|store| async move {
        let run = new_run("orders", 1);
        let failure = RunFailure {
            kind: FailureKind::RunTimedOut,
            message: "the run timed out".into(),
            task: None,
            error: None,
        };
        let mut batch = start(&run, 1);
        batch.events.push((
            run.id,
            RecordedEvent {
                seq: 1,
                at: t(2),
                event: RunEvent::RunFailed { failure: failure.clone() },
            },
        ));
        batch.finished.push(FinishedRun {
            id: run.id,
            status: RunStatus::Failed,
            output: None,
            failure: Some(failure.clone()),
            finished_at: t(2),
        });
        store.commit(&batch).await.unwrap();
        let record = store.run(run.id).await.unwrap().unwrap();
        assert_eq!(record.status, RunStatus::Failed);
        assert_eq!(record.failure, Some(failure));
        assert_eq!(record.output, None);
        assert_eq!(store.run_events(run.id).await.unwrap().len(), 2);
        assert!(store.active_runs().await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn duplicate_seq_fails_the_whole_batch() {
    on_every_backend(|store| async move {
        let first = new_run("orders", 1);
        store.commit(&start(&first, 3)).await.unwrap();

        let second = new_run("orders", 2);
        let mut batch = start(&second, 2);
        batch.events.push((first.id, event(3)));
        batch.events.push((first.id, event(2))); // already stored
        batch.finished.push(completed(first.id, "1", 50));
        let err = store.commit(&batch).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

        assert_eq!(store.run(second.id).await.unwrap(), None, "new run rolled back");
        assert!(store.run_events(second.id).await.unwrap().is_empty());
        assert_eq!(store.run_events(first.id).await.unwrap().len(), 3, "seq 3 rolled back");
        assert_eq!(store.run(first.id).await.unwrap().unwrap().status, RunStatus::Running);

        // A duplicate within one batch, and a duplicate run id, conflict too.
        let third = new_run("orders", 3);
        let mut batch = start(&third, 2);
        batch.events.push((third.id, event(1)));
        assert!(matches!(store.commit(&batch).await, Err(StoreError::Conflict(_))));
        assert_eq!(store.run(third.id).await.unwrap(), None);
        assert!(matches!(store.commit(&start(&first, 0)).await, Err(StoreError::Conflict(_))));

        // The store is still usable afterwards.
        store.commit(&start(&second, 2)).await.unwrap();
        assert_eq!(store.run_events(second.id).await.unwrap().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn empty_batch_is_a_no_op() {
    on_every_backend(|store| async move {
        store.commit(&CommitBatch::default()).await.unwrap();
        assert!(store.list_runs(&RunQuery::default()).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn active_runs_are_running_runs_with_ordered_histories() {
    on_every_backend(|store| async move {
        let a = new_run("orders", 1);
        let b = new_run("orders", 2);
        let c = new_run("billing", 3);
        // Interleave the runs' events in the batch.
        let mut batch = CommitBatch {
            new_runs: vec![a.clone(), b.clone(), c.clone()],
            ..CommitBatch::default()
        };
        for seq in 0..3 {
            for run in [&a, &b, &c] {
                let mut e = event(seq);
                if seq == 0 {
                    e.at = run.created_at;
                }
                batch.events.push((run.id, e));
            }
        }
        store.commit(&batch).await.unwrap();
        let more = CommitBatch {
            new_runs: vec![],
            events: [events(c.id, 3, 4), events(a.id, 3, 1)].concat(),
            finished: vec![completed(b.id, "null", 99)],
            ..CommitBatch::default()
        };
        store.commit(&more).await.unwrap();

        let active = store.active_runs().await.unwrap();
        let ids: Vec<_> = active.iter().map(|r| r.run.id).collect();
        assert_eq!(ids, vec![a.id, c.id]);
        let expected = |run: &cronflow_core::NewRun, n: u32| {
            let mut events = (0..n).map(event).collect::<Vec<_>>();
            events[0].at = run.created_at;
            events
        };
        assert_eq!(active[0].events, expected(&a, 4));
        assert_eq!(active[1].events, expected(&c, 7));
        assert_eq!(active[0].run, store.run(a.id).await.unwrap().unwrap());
        assert!(active.iter().all(|r| r.run.status == RunStatus::Running));
    })
    .await;
}

#[tokio::test]
async fn list_runs_filters_newest_first() {
    on_every_backend(|store| async move {
        let mut batch = CommitBatch::default();
        for i in 0..120 {
            batch.new_runs.push(new_run(if i % 4 == 0 { "billing" } else { "orders" }, i));
        }
        for run in batch.new_runs.iter().filter(|r| r.created_at > t(100)) {
            batch.finished.push(completed(run.id, "true", 500));
        }
        let runs = batch.new_runs.clone();
        store.commit(&batch).await.unwrap();

        let all = store.list_runs(&RunQuery::default()).await.unwrap();
        assert_eq!(all.len(), 100, "default limit");
        assert_eq!(all[0].id, runs[119].id, "newest first");
        assert!(all.windows(2).all(|w| w[0].created_at > w[1].created_at));

        let billing = RunQuery { workflow_id: Some("billing".into()), ..RunQuery::default() };
        let found = store.list_runs(&billing).await.unwrap();
        assert_eq!(found.len(), 30);
        assert!(found.iter().all(|r| r.workflow_id == "billing"));

        let done = RunQuery { status: Some(RunStatus::Completed), ..RunQuery::default() };
        assert_eq!(store.list_runs(&done).await.unwrap().len(), 19);

        let both = RunQuery {
            workflow_id: Some("orders".into()),
            status: Some(RunStatus::Running),
            limit: Some(5),
        };
        let found = store.list_runs(&both).await.unwrap();
        assert_eq!(found.len(), 5);
        assert!(found.iter().all(|r| r.workflow_id == "orders" && r.status == RunStatus::Running));
        assert_eq!(found[0].created_at, t(99));

        let none = RunQuery { status: Some(RunStatus::Cancelled), ..RunQuery::default() };
        assert!(store.list_runs(&none).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn raw_json_round_trips_byte_for_byte() {
    let texts = [
        r#"{"b": 1, "a": [1.0, 2.50, 1e3, -0, 123456789012345678901234567890]}"#,
        "\"caf\u{e9} \\u00e9 \\u0000 \u{1f600} \\ud83d\\ude00\"",
        "{\n\t\"nested\": {\"x\": null, \"x\": true}\n}",
        "[]",
    ];
    on_every_backend(|store| async move {
        for text in texts {
            let mut run = new_run("orders", 1);
            run.payload = json(text);
            let mut batch = start(&run, 1);
            batch.events.push((
                run.id,
                RecordedEvent {
                    seq: 1,
                    at: t(2),
                    event: RunEvent::RunCompleted { output: json(text) },
                },
            ));
            batch.finished.push(completed(run.id, text, 2));
            store.commit(&batch).await.unwrap();
            let report = store.run_report(run.id).await.unwrap().unwrap();
            assert_eq!(report.run.payload.as_str(), text);
            assert_eq!(report.run.output.unwrap().as_str(), text);
            match &report.history[1].event {
                RunEvent::RunCompleted { output } => assert_eq!(output.as_str(), text),
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_large_batch_spans_several_statements() {
    on_every_backend(|store| async move {
        // 300 runs: two full chunks of rows and a remainder, for every kind of statement.
        let runs: Vec<_> = (0..300).map(|i| new_run("orders", i)).collect();
        let batch = CommitBatch {
            new_runs: runs.clone(),
            events: runs.iter().flat_map(|r| start(r, 3).events).collect(),
            finished: runs.iter().skip(10).map(|r| completed(r.id, "[1]", 1_000)).collect(),
            ..CommitBatch::default()
        };
        store.commit(&batch).await.unwrap();
        let active = store.active_runs().await.unwrap();
        assert_eq!(active.len(), 10);
        assert!(active.iter().all(|r| r.events.len() == 3));
        let done = RunQuery {
            status: Some(RunStatus::Completed),
            limit: Some(1_000),
            ..Default::default()
        };
        assert_eq!(store.list_runs(&done).await.unwrap().len(), 290);
        assert_eq!(store.run_events(runs[299].id).await.unwrap().len(), 3);
    })
    .await;
}

#[tokio::test]
async fn concurrent_saves_of_one_workflow_agree_on_the_revision() {
    on_every_database(|db| async move {
        let stores = [db.open().await, db.open().await];
        for (steps, revision) in [(&["a"][..], 1), (&["a", "b"][..], 2)] {
            let tasks: Vec<_> = (0..8)
                .map(|i| {
                    let store = stores[i % 2].clone();
                    let def = def("orders", steps);
                    tokio::spawn(async move { store.save_workflow(&def).await })
                })
                .collect();
            for task in tasks {
                assert_eq!(task.await.unwrap().unwrap(), revision, "on {}", db.name());
            }
        }
        assert_eq!(stores[0].load_workflow("orders", 3).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn two_stores_on_one_database_share_it() {
    on_every_database(|db| async move {
        let (first, second) = (db.open().await, db.open().await);
        let run = new_run("orders", 1);
        first.commit(&start(&run, 3)).await.unwrap();
        assert_eq!(second.run_events(run.id).await.unwrap().len(), 3);
        assert_eq!(second.active_runs().await.unwrap().len(), 1);
        // The same run accepted twice, or an event recorded twice, conflicts across stores.
        let again = second.commit(&start(&run, 1)).await.unwrap_err();
        assert!(matches!(again, StoreError::Conflict(_)), "{again:?}");
        let twice = CommitBatch { events: events(run.id, 2, 2), ..CommitBatch::default() };
        assert!(matches!(second.commit(&twice).await, Err(StoreError::Conflict(_))));
        assert_eq!(first.run_events(run.id).await.unwrap().len(), 3);
    })
    .await;
}

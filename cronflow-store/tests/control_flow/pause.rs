//! `pause`: the `on_pause` handler gets a resume token (`ctx.token`); `resume(token)` goes
//! on with a payload, once; `resume_wait` does without the token; `paused_runs` lists open
//! pauses; a timeout fails the run or goes on with `null`.

use std::sync::{Arc, Mutex};

use cronflow_core::{
    EngineError, FailureKind, InProcessExecutor, RunId, RunStatus, TaskError, TaskKind, Wait,
    Workflow, token_hash,
};
use serde_json::json;

use crate::harness::*;

/// Every token an `ask` handler received, with its run, in order.
#[derive(Clone, Default)]
pub(crate) struct Tokens(Arc<Mutex<Vec<(RunId, String)>>>);

impl Tokens {
    /// Adds the `on_pause` handler `ask`, which notes its token; then, if `hang`, it never
    /// returns (as if the process died before it finished).
    pub(crate) fn ask(&self, executor: InProcessExecutor, hang: bool) -> InProcessExecutor {
        let tokens = self.clone();
        executor.handler("ask", move |task| {
            assert_eq!(task.kind, TaskKind::OnPause);
            let token = task.context.token.as_deref().expect("ctx.token").to_owned();
            tokens.0.lock().unwrap().push((task.run_id, token));
            async move {
                if hang {
                    tokio::time::sleep(LIMIT * 2).await;
                }
                Ok::<_, TaskError>(())
            }
        })
    }

    /// The tokens run `run` received so far.
    pub(crate) fn of(&self, run: RunId) -> Vec<String> {
        let tokens = self.0.lock().unwrap();
        tokens.iter().filter(|(r, _)| *r == run).map(|(_, t)| t.clone()).collect()
    }

    /// Waits until run `run` has received `n` tokens; returns them.
    pub(crate) async fn wait(&self, run: RunId, n: usize) -> Vec<String> {
        eventually("the on_pause handler runs", || self.of(run).len() >= n).await;
        self.of(run)
    }
}

/// `ship` returns `{"shipped": <previous output>}`.
pub(crate) fn ship(executor: InProcessExecutor) -> InProcessExecutor {
    executor.handler("ship", |task| async move {
        Ok::<_, TaskError>(json!({"shipped": task.context.last.to_value()}))
    })
}

fn unknown(result: Result<RunId, EngineError>) -> bool {
    matches!(result, Err(EngineError::UnknownResumeToken))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_from_on_pause_resumes_the_run_once() {
    on_every_database(|db| async move {
        let tokens = Tokens::default();
        let flow = Workflow::new("expense")
            .pause_with("approve", |p| p.on_pause("ask").timeout(ms(60_000)))
            .step("ship")
            .build()
            .unwrap();
        let engine = db.start(ship(tokens.ask(InProcessExecutor::new(), false)), &[flow]).await;
        let handle = engine.handle();
        let run = handle.trigger("expense", json!({"amount": 120})).await.unwrap();
        let token = tokens.wait(run, 1).await.remove(0);
        assert_eq!(token.len(), 64);

        let paused = handle.paused_runs().await.unwrap();
        assert_eq!(paused.len(), 1, "{}: {paused:?}", db.name());
        assert_eq!((paused[0].run_id, paused[0].workflow_id.as_str()), (run, "expense"));
        assert_eq!(paused[0].node.as_str(), "approve");
        assert!(paused[0].timeout_at.is_some());
        // The store keeps the token's hash, never the token.
        let report = handle.report(run).await.unwrap();
        let stored = serde_json::to_string(&report.history).unwrap();
        assert!(!stored.contains(&token), "the token is not stored");
        assert!(matches!(&waits(&report)[0].1, Wait::Pause { token_hash: h, .. } if *h == token_hash(&token)));

        assert!(unknown(handle.resume("0123abcd", json!(1)).await), "a made-up token");
        let resumed = handle.resume(&token, json!({"approved": true})).await;
        assert_eq!(resumed.unwrap(), run, "{}", db.name());
        assert!(unknown(handle.resume(&token, json!({"approved": false})).await), "used up");
        let report = completed(&handle, run).await;
        assert_eq!(output(&report), json!({"shipped": {"approved": true}}));
        assert!(unknown(handle.resume(&token, json!(null)).await), "its run has ended");
        assert!(handle.paused_runs().await.unwrap().is_empty());
        stop(engine).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_wait_resumes_a_pause_without_its_token() {
    on_every_database(|db| async move {
        let flow = Workflow::new("hold").pause("hold").step("ship").build().unwrap();
        let engine = db.start(ship(InProcessExecutor::new()), &[flow]).await;
        let handle = engine.handle();
        let run = handle.trigger("hold", json!(null)).await.unwrap();
        let paused = handle.paused_runs().await.unwrap();
        assert_eq!(paused.len(), 1, "{}: {paused:?}", db.name());
        assert_eq!((paused[0].run_id, paused[0].node.as_str()), (run, "hold"));
        assert_eq!(paused[0].timeout_at, None);

        let wrong = handle.resume_wait(run, "elsewhere", json!(null)).await;
        assert!(matches!(wrong, Err(EngineError::NoOpenPause { .. })), "{wrong:?}");
        assert_eq!(handle.resume_wait(run, "hold", json!("go")).await.unwrap(), run);
        let again = handle.resume_wait(run, "hold", json!("again")).await;
        assert!(matches!(again, Err(EngineError::NoOpenPause { .. })), "{again:?}");
        let report = completed(&handle, run).await;
        assert_eq!(output(&report), json!({"shipped": "go"}), "{}", db.name());
        stop(engine).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_timeout_fails_the_run_or_goes_on_with_null() {
    on_every_database(|db| async move {
        let tokens = Tokens::default();
        let strict = Workflow::new("strict")
            .pause_with("approve", |p| p.on_pause("ask").timeout(ms(100)))
            .step("ship");
        let lenient = Workflow::new("lenient")
            .pause_with("approve", |p| p.timeout(ms(100)).or_continue())
            .step("ship");
        let flows = [strict.build().unwrap(), lenient.build().unwrap()];
        let engine = db.start(ship(tokens.ask(InProcessExecutor::new(), false)), &flows).await;
        let handle = engine.handle();

        let run = handle.trigger("strict", json!(null)).await.unwrap();
        let token = tokens.wait(run, 1).await.remove(0);
        let report = ended(&handle, run, RunStatus::Failed).await;
        let failure = report.run.failure.clone().unwrap();
        assert_eq!(failure.kind, FailureKind::WaitTimedOut, "{}: {failure:?}", db.name());
        assert!(unknown(handle.resume(&token, json!(null)).await), "a timed-out pause");
        assert_eq!(report.attempts("ship"), 0);

        let run = handle.trigger("lenient", json!(null)).await.unwrap();
        let report = completed(&handle, run).await;
        assert_eq!(output(&report), json!({"shipped": null}), "{}", db.name());
        assert!(handle.paused_runs().await.unwrap().is_empty());
        stop(engine).await;
    })
    .await;
}

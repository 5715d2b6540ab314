use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn everything() -> Workflow {
    Workflow::new("order-fulfilment")
        .version("1.0")
        .name("Order fulfilment")
        .description("Takes an order from payment to shipping.")
        .trigger(TriggerDef::Manual)
        .trigger(TriggerDef::schedule("0 9 * * 1-5"))
        .trigger(TriggerDef::interval(Duration::from_secs(300)))
        .trigger(TriggerDef::webhook("/hooks/orders"))
        .trigger(TriggerDef::event("order.created"))
        .trigger(TriggerDef::poll("list-orders", Duration::from_secs(30)))
        .timeout(Duration::from_secs(60))
        .step_timeout(Duration::from_secs(5))
        .retry(RetryPolicy::exponential(3, ms(100)).with_jitter())
        .concurrency(ConcurrencyDef { limit: 2, key: Some("/customer".into()) })
        .rate_limit(RateLimitDef { limit: 10, period: Some(Duration::from_secs(1)), key: None })
        .step("fetch-order")
        .step_with("charge", |s| {
            s.handler("charge-card").retry(RetryPolicy::fixed(2, ms(10))).timeout(ms(1500))
        })
        .action("notify")
        .action_with("audit", |s| s.handler("write-audit-log"))
        .if_("route", |b| {
            b.when("is-big-order", |seq| seq.step("manual-review"))
                .when("is-international", |seq| seq.step("customs").pause("customs-hold"))
                .otherwise(|seq| seq.step("auto-approve"))
        })
        .parallel("fan-out", |p| p.branch(|seq| seq.step("email")).branch(|seq| seq.step("sms")))
        .race("quote", |r| {
            r.branch(|seq| seq.step("quote-a")).branch(|seq| seq.sleep("give-up", ms(2000)))
        })
        .for_each("each-line", "order-lines", |seq| seq.step("pick"))
        .batch("chunks", "order-lines", 50, |seq| seq.step("upload"))
        .while_("until-shipped", "not-shipped", 10, |seq| seq.sleep("nap", ms(60_000)))
        .wait_for_event("paid", "payment.settled")
        .subflow("ship", "shipping")
        .cancel("stop", "nothing left to do")
}

#[test]
fn builder_output_round_trips_through_json() {
    let def = everything().build().unwrap();
    assert_eq!(def.schema, SCHEMA_VERSION);
    assert_eq!(def.nodes.len(), 13);
    assert_eq!(def.triggers.len(), 6);
    let text = serde_json::to_string_pretty(&def).unwrap();
    assert_eq!(WorkflowDef::from_json(&text).unwrap(), def);
    let value = serde_json::to_value(&def).unwrap();
    assert_eq!(WorkflowDef::from_value(value).unwrap(), def);
}

#[test]
fn steps_default_their_handler_to_their_id() {
    let def = everything().build().unwrap();
    let task = |i: usize| match &def.nodes[i] {
        Node::Step(t) | Node::Action(t) => t.clone(),
        other => panic!("expected a task, got {other:?}"),
    };
    assert_eq!(task(0).handler, "fetch-order");
    assert_eq!(task(1).handler, "charge-card");
    assert_eq!(task(1).timeout, Some(ms(1500)));
    assert_eq!(task(1).retry, Some(RetryPolicy::fixed(2, ms(10))));
    assert_eq!((def.nodes[2].kind(), task(2).handler.as_str()), ("action", "notify"));
    assert_eq!(task(3).handler, "write-audit-log");
    match &def.nodes[4] {
        Node::If(n) => {
            assert_eq!(n.branches[1].condition, "is-international");
            assert_eq!(n.branches[1].nodes.len(), 2);
            assert_eq!(n.else_nodes.as_ref().map(Vec::len), Some(1));
        }
        other => panic!("expected an if, got {other:?}"),
    }
    assert_eq!(def.nodes[5].children().len(), 2);
}

#[test]
fn build_reports_duplicate_ids_with_both_paths() {
    let err = Workflow::new("w")
        .step("charge")
        .parallel("fan-out", |p| p.branch(|seq| seq.step("email")).branch(|seq| seq.step("charge")))
        .build()
        .unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    assert_eq!(err.problems[0].path, "$.nodes[1].branches[1].nodes[0].id");
    assert!(err.problems[0].message.contains("`charge`"), "{err}");
    assert!(err.problems[0].message.contains("$.nodes[0].id"), "{err}");
}

#[test]
fn build_reports_every_problem() {
    let err = Workflow::new("bad id")
        .if_("route", |b| b.otherwise(|seq| seq))
        .parallel("fan-out", |p| p)
        .batch("chunks", "", 0, |seq| seq.step("x"))
        .build()
        .unwrap_err();
    let paths: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "$.id",
            "$.nodes[0].branches",
            "$.nodes[0].else",
            "$.nodes[1].branches",
            "$.nodes[2].items",
            "$.nodes[2].size"
        ],
        "{err}"
    );
    let empty = Workflow::new("w").build().unwrap_err();
    assert_eq!(empty.problems[0].path, "$.nodes");
}

#[test]
fn fragments_generic_over_the_head_work_at_every_level() {
    fn audited<H>(seq: Sequence<H>, what: &str) -> Sequence<H> {
        seq.step(what).action(format!("audit-{what}"))
    }
    let def = audited(Workflow::new("w"), "top")
        .for_each("each", "items", |seq| audited(seq, "inner"))
        .build()
        .unwrap();
    assert_eq!(def.nodes.len(), 3);
    assert_eq!(def.nodes[2].children()[0].1[1].id(), "audit-inner");
}

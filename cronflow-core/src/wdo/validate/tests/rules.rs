//! The semantic rules of [`WorkflowDef::validate`]: ids, definitions built in code, nesting.

use std::time::Duration;

use serde_json::json;

use super::{err_of, paths, problems};
use crate::retry::RetryPolicy;
use crate::wdo::{
    BranchesNode, ConcurrencyDef, IfNode, Node, RateLimitDef, SleepNode, TaskNode, TriggerDef,
    WorkflowDef, WorkflowOptions,
};

#[test]
fn node_ids_are_checked_and_unique_across_the_tree() {
    let err = err_of(json!({"id": "bad/id", "nodes": [
        {"id": "a", "type": "step", "handler": "a"},
        {"id": "", "type": "step", "handler": "b"},
        {"id": "c#1", "type": "step", "handler": "c"},
        {"id": "loop", "type": "for_each", "items": "xs", "nodes": [
            {"id": "a", "type": "step", "handler": "a"},
            {"id": "loop", "type": "cancel"}
        ]},
        {"id": "a", "type": "pause"},
        {"id": 5, "type": "pause"}
    ]}));
    assert_eq!(
        problems(&err),
        [
            (
                "$.id",
                "workflow id `bad/id` may contain only letters, digits, `_`, `.`, `:` and \
                 `-` (found `/`)"
            ),
            ("$.nodes[1].id", "node id must not be empty"),
            (
                "$.nodes[2].id",
                "node id `c#1` may contain only letters, digits, `_`, `.`, `:` and `-` \
                 (found `#`)"
            ),
            ("$.nodes[3].nodes[0].id", "duplicate node id `a`: already used at $.nodes[0].id"),
            ("$.nodes[3].nodes[1].id", "duplicate node id `loop`: already used at $.nodes[3].id"),
            ("$.nodes[4].id", "duplicate node id `a`: already used at $.nodes[0].id"),
            ("$.nodes[5].id", "expected a string, found the number 5"),
        ],
        "{err}"
    );
}

fn step(id: &str) -> Node {
    Node::Step(TaskNode {
        id: id.into(),
        handler: id.into(),
        timeout: None,
        retry: None,
        on_error: None,
    })
}

fn workflow(nodes: Vec<Node>) -> WorkflowDef {
    WorkflowDef {
        schema: 1,
        id: "w".into(),
        version: None,
        name: None,
        description: None,
        triggers: Vec::new(),
        options: WorkflowOptions::default(),
        hooks: Default::default(),
        nodes,
    }
}

#[test]
fn validate_checks_definitions_built_in_code() {
    let mut def = workflow(vec![
        Node::Step(TaskNode {
            id: "a".into(),
            handler: "".into(),
            timeout: None,
            retry: Some(RetryPolicy {
                multiplier: Some(-1.0),
                ..RetryPolicy::fixed(0, Duration::ZERO)
            }),
            on_error: None,
        }),
        Node::If(IfNode { id: "b".into(), branches: Vec::new(), else_nodes: Some(Vec::new()) }),
        Node::Race(BranchesNode { id: "c".into(), branches: Vec::new() }),
        Node::Sleep(SleepNode {
            id: "d".into(),
            duration: None,
            until: Some("2030-01-31T09:00:00Z".into()),
        }),
        Node::Sleep(SleepNode { id: "e".into(), duration: None, until: Some("2030-01-31".into()) }),
    ]);
    def.schema = 3;
    def.id = String::new();
    def.triggers = vec![
        TriggerDef::schedule(""),
        TriggerDef::Interval { every: None },
        TriggerDef::poll("", Duration::ZERO),
        TriggerDef::Webhook {
            path: "/ok".into(),
            method: None,
            settings: [("type".to_string(), json!("x"))].into_iter().collect(),
        },
    ];
    def.options.concurrency = Some(ConcurrencyDef { limit: 0, key: None });
    def.options.rate_limit = Some(RateLimitDef { limit: 0, period: None, key: None });
    let err = def.validate().unwrap_err();
    assert_eq!(
        paths(&err),
        [
            "$.schema",
            "$.id",
            "$.triggers[0].cron",
            "$.triggers[1].every",
            "$.triggers[2].handler",
            "$.triggers[2].every",
            "$.triggers[3].type",
            "$.options.concurrency.limit",
            "$.options.rate_limit.limit",
            "$.options.rate_limit.period",
            "$.nodes[0].handler",
            "$.nodes[0].retry.max_attempts",
            "$.nodes[0].retry.multiplier",
            "$.nodes[1].branches",
            "$.nodes[1].else",
            "$.nodes[2].branches",
            "$.nodes[4].until",
        ],
        "{err}"
    );
    assert!(workflow(Vec::new()).validate().unwrap_err().problems[0].path == "$.nodes");
    assert!(workflow(vec![step("a")]).validate().is_ok());
}

#[test]
fn nesting_is_bounded() {
    let mut nodes = vec![step("leaf")];
    for depth in 0..100 {
        nodes = vec![Node::Parallel(BranchesNode {
            id: format!("p{depth}"),
            branches: vec![crate::wdo::Branch { nodes }],
        })];
    }
    let err = workflow(nodes).validate().unwrap_err();
    assert_eq!(err.problems.len(), 1);
    assert!(err.problems[0].message.contains("nested more than 64 levels"));
    // JSON text that deep is refused by the parser already.
    let mut text = r#"{"id": "leaf", "type": "step", "handler": "h"}"#.to_string();
    for depth in 0..100 {
        text = format!(
            r#"{{"id": "p{depth}", "type": "parallel", "branches": [{{"nodes": [{text}]}}]}}"#
        );
    }
    let err = WorkflowDef::from_json(&format!(r#"{{"id": "w", "nodes": [{text}]}}"#)).unwrap_err();
    assert_eq!(paths(&err), ["$"]);
}

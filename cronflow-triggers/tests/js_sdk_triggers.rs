//! The JavaScript SDK's trigger builders produce what this crate runs: every trigger and every
//! webhook setting the SDK emits (camelCase turned snake_case) is read and accepted here.
//! Skipped with a note when `node` is not on `PATH`.

use std::path::Path;
use std::time::Duration;

use cronflow_core::{TriggerDef, WorkflowDef};
use cronflow_triggers::{WebhookConfig, check_workflow};

fn emitted() -> Option<WorkflowDef> {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/js_triggers.mjs");
    let out = match std::process::Command::new("node").arg(&fixture).output() {
        Ok(out) => out,
        Err(_) => {
            eprintln!("skipping: `node` is not on PATH");
            return None;
        }
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    Some(WorkflowDef::from_json(text.trim()).expect("the SDK's WDO is valid"))
}

#[test]
fn every_sdk_trigger_is_accepted_with_its_settings() {
    let Some(def) = emitted() else { return };
    check_workflow(&def).expect("every trigger passes the registration check");
    let kinds: Vec<&str> = def
        .triggers
        .iter()
        .map(|t| match t {
            TriggerDef::Schedule { .. } => "schedule",
            TriggerDef::Interval { every } => {
                assert_eq!(*every, Some(Duration::from_secs(300)));
                "interval"
            }
            TriggerDef::Webhook { .. } => "webhook",
            TriggerDef::Event { .. } => "event",
            TriggerDef::Poll { handler, key, .. } => {
                assert_eq!((handler.as_str(), key.as_deref()), ("new-orders", Some("/id")));
                "poll"
            }
            TriggerDef::Manual => "manual",
        })
        .collect();
    assert_eq!(kinds, ["schedule", "interval", "webhook", "event", "poll"]);

    let hooks = WebhookConfig::from_workflow(&def).expect("the webhook settings are known");
    assert_eq!(hooks.len(), 1);
    let text = format!("{:?}", hooks[0]);
    for expected in ["/hooks/orders", "PUT", "x-sig", "x-tenant", "4096", "x-idem"] {
        assert!(text.to_lowercase().contains(&expected.to_lowercase()), "{expected}: {text}");
    }
    assert!(!text.contains("s3cret"), "the secret is not shown: {text}");
}

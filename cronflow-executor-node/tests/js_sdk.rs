//! The JavaScript SDK in `js/`: its `node --test` unit tests pass, and every WDO it emits is
//! read by [`WorkflowDef::from_json`] and serialises back to the same JSON (so the SDK writes
//! exactly the Rust model), naming exactly the handlers the SDK registered. Skipped with a note
//! when `node` is not on `PATH`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};

use cronflow_core::WorkflowDef;
use serde_json::Value;

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// Runs `node` with `args` in `js/`, or `None` when node is not installed.
fn node(args: &[&str]) -> Option<Output> {
    match Command::new("node").args(args).current_dir(js_dir()).output() {
        Ok(output) => Some(output),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("skipping: `node` is not on PATH ({e})");
            None
        }
        Err(e) => panic!("cannot run node: {e}"),
    }
}

fn describe(output: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn node_unit_tests_pass() {
    let Some(output) = node(&["--test", "test/"]) else { return };
    assert!(output.status.success(), "`node --test test/` failed\n{}", describe(&output));
}

#[test]
fn emitted_wdos_are_read_by_the_rust_model() {
    let Some(output) = node(&["scripts/emit-wdos.mjs"]) else { return };
    assert!(output.status.success(), "emit-wdos.mjs failed\n{}", describe(&output));
    let emitted: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("emit-wdos.mjs printed invalid JSON: {e}\n{}", describe(&output))
    });
    assert!(emitted.len() >= 4, "expected the catalog's workflows, got {}", emitted.len());

    let mut kinds = Vec::new();
    let mut triggers = Vec::new();
    let (mut on_error, mut hooks, mut debounce) = (false, false, false);
    for entry in &emitted {
        let wdo = &entry["wdo"];
        let text = serde_json::to_string(wdo).expect("serialise");
        let def = WorkflowDef::from_json(&text)
            .unwrap_or_else(|e| panic!("the Rust model rejects the SDK's WDO: {e}\n{text}"));
        let back = serde_json::to_value(&def).expect("serialise WorkflowDef");
        assert_eq!(
            canonical(back),
            canonical(wdo.clone()),
            "the WDO of `{}` does not round-trip through the Rust model",
            def.id
        );
        // Every handler the definition names is one the SDK registered, and the reverse.
        let named: BTreeSet<&str> = def.handlers().into_iter().map(|h| h.handler).collect();
        let registered: BTreeSet<&str> = entry["handlers"]
            .as_array()
            .expect("handlers")
            .iter()
            .map(|h| h.as_str().expect("handler name"))
            .collect();
        assert_eq!(named, registered, "handlers of `{}`", def.id);
        on_error |= def.handlers().iter().any(|h| h.path.ends_with(".on_error"));
        hooks |= def.hooks.on_success.is_some() && def.hooks.on_failure.is_some();
        debounce |= def.options.debounce.is_some();
        collect_kinds(&def.nodes, &mut kinds);
        triggers.extend(def.triggers.iter().map(|t| {
            serde_json::to_value(t).expect("trigger")["type"].as_str().expect("type").to_string()
        }));
    }
    for kind in cronflow_core::Node::KINDS {
        assert!(kinds.contains(&kind), "the catalog has no `{kind}` node");
    }
    for kind in cronflow_core::TriggerDef::KINDS {
        assert!(triggers.iter().any(|k| k == kind), "the catalog has no `{kind}` trigger");
    }
    assert!(on_error && hooks && debounce, "the catalog lacks on_error, hooks or debounce");
}

/// The value with object keys sorted and every number as an `f64`: JavaScript writes `3` where
/// serde writes the `f64` `3.0` (a retry `multiplier`), and key order carries no meaning.
fn canonical(value: Value) -> Value {
    match value {
        Value::Number(n) => {
            n.as_f64().and_then(serde_json::Number::from_f64).map_or(Value::Null, Value::Number)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, canonical(v))).collect())
        }
        other => other,
    }
}

fn collect_kinds(nodes: &[cronflow_core::Node], out: &mut Vec<&'static str>) {
    for node in nodes {
        out.push(node.kind());
        for (_, children) in node.children() {
            collect_kinds(children, out);
        }
    }
}

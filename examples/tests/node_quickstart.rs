//! The `node_quickstart` example runs to completion (skipped without `node`).

use std::process::Command;

#[test]
fn node_quickstart_completes_its_javascript_workflow() {
    if Command::new("node").arg("--version").output().is_err() {
        println!("skipped: node is not on PATH");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("node-quickstart.db");
    let out = Command::new(env!("CARGO_BIN_EXE_node_quickstart")).arg(&db).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    assert!(stdout.contains("status: Completed"), "{stdout}");
    assert!(stdout.contains("reserve-stock failed (attempt 1): WarehouseBusy"), "{stdout}");
    assert!(stdout.contains("customs-declaration succeeded"), "{stdout}");
    assert!(stdout.contains(r#"output: ["email to customer ada","sms sent"]"#), "{stdout}");
}

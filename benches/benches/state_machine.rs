//! The run state machine alone, no I/O: a 10-step linear run driven from start to completion
//! with instant results. Prints transitions (recorded events) per second.
//!
//! Run with: `cargo bench -p cronflow-benches --bench state_machine`

use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use cronflow_benches::linear_workflow;
use cronflow_core::{Command, Json, RunDefinition, RunId, RunMachine};

/// Runs one workflow to completion; returns the number of recorded events.
fn drive(def: &std::sync::Arc<RunDefinition>, output: &Json) -> usize {
    let now = Utc::now();
    let (mut machine, mut commands) =
        RunMachine::start(def.clone(), RunId::new(), Json::null(), now);
    let mut recorded = 0;
    loop {
        let mut next = None;
        for command in commands.drain(..) {
            match command {
                Command::Record(_) => recorded += 1,
                Command::Dispatch(task) => next = Some((task.key.clone(), task.attempt)),
                _ => {}
            }
        }
        let Some((key, attempt)) = next else { return recorded };
        commands = machine.handle_task_result(now, &key, attempt, Ok(output.clone()));
    }
}

fn state_machine(c: &mut Criterion) {
    let def = RunDefinition::new(linear_workflow("linear"), 1);
    let output = Json::from_raw_str(r#"{"ok":true}"#).expect("json");
    c.bench_function("state_machine_10_step_run", |b| b.iter(|| drive(&def, &output)));

    let runs = 20_000;
    let started = Instant::now();
    let transitions: usize = (0..runs).map(|_| drive(&def, &output)).sum();
    let took: Duration = started.elapsed();
    println!(
        "state machine: {:.0} transitions/s, {:.0} runs/s ({runs} runs of 10 steps, {transitions} \
         recorded events, one core, no I/O)",
        transitions as f64 / took.as_secs_f64(),
        runs as f64 / took.as_secs_f64(),
    );
}

criterion_group!(benches, state_machine);
criterion_main!(benches);

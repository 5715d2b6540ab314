//! Cron schedules alone, no I/O: `CronSchedule::next_after` for a few typical expressions,
//! each evaluated from instants spread over a year. Prints evaluations per second.
//!
//! Run with: `cargo bench -p cronflow-benches --bench cron`

use std::hint::black_box;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use cronflow_triggers::CronSchedule;

/// (label, expression, time zone).
const CASES: [(&str, &str, &str); 4] = [
    ("every_5_minutes", "*/5 * * * *", "UTC"),
    ("weekdays_9am_paris", "0 9 * * 1-5", "Europe/Paris"),
    ("leap_day", "0 0 29 2 *", "UTC"),
    ("every_5_minutes_paris", "*/5 * * * *", "Europe/Paris"),
];

/// 1,000 instants over 2026, at uneven seconds so they rarely fall on a slot.
fn instants() -> Vec<DateTime<Utc>> {
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    (0..1_000).map(|i| start + TimeDelta::seconds(i * 31_536 + 7)).collect()
}

fn cron(c: &mut Criterion) {
    let from = instants();
    for (label, expr, zone) in CASES {
        let schedule = CronSchedule::parse_in(expr, zone).expect("valid expression");
        let mut i = 0;
        c.bench_function(&format!("cron_next_after_{label}"), |b| {
            b.iter(|| {
                i = (i + 1) % from.len();
                black_box(schedule.next_after(black_box(from[i])))
            })
        });
    }
    c.bench_function("cron_parse_weekdays_9am_paris", |b| {
        b.iter(|| CronSchedule::parse_in(black_box("0 9 * * 1-5"), "Europe/Paris"))
    });

    let rounds = 500;
    for (_, expr, zone) in CASES {
        let schedule = CronSchedule::parse_in(expr, zone).expect("valid expression");
        let started = Instant::now();
        let mut found = 0usize;
        for _ in 0..rounds {
            for t in &from {
                found += usize::from(black_box(schedule.next_after(*t)).is_some());
            }
        }
        let took = started.elapsed();
        let evaluations = rounds * from.len();
        assert_eq!(found, evaluations);
        println!(
            "cron: {:>12.0} evaluations/s  `{expr}` in {zone} ({evaluations} next_after calls \
             from instants spread over 2026, one core)",
            evaluations as f64 / took.as_secs_f64(),
        );
    }
}

criterion_group!(benches, cron);
criterion_main!(benches);

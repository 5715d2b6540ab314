//! What a schedule fires when its cursor is due: pure, so every case (on time, missed slots
//! under each policy, long outages) is tested without a clock or a store.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Cadence, MisfirePolicy};

/// The most slots looked at one by one; past it the rest of an outage is skipped in one jump
/// (a per-second schedule down for a day would otherwise walk 86,400 slots).
const SCAN_LIMIT: u64 = 10_000;

/// One run to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fire {
    /// The slot: its trigger key and its scheduled time.
    pub(crate) slot: DateTime<Utc>,
    /// How many missed slots this run stands for (0 for a slot on time or fired on its own).
    pub(crate) stands_for: u64,
}

/// The runs to start and where the cursor goes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// In slot order.
    pub(crate) fire: Vec<Fire>,
    /// The first slot after `now`; `None` once the schedule has no more slots.
    pub(crate) next: Option<DateTime<Utc>>,
}

/// The plan for a schedule whose cursor is `cursor`, at `now`. Slots at most `grace` old are
/// on time and fire; older ones are missed and follow `policy`.
pub(crate) fn plan(
    cadence: &Cadence,
    cursor: DateTime<Utc>,
    now: DateTime<Utc>,
    policy: MisfirePolicy,
    grace: Duration,
) -> Plan {
    if cursor > now {
        return Plan { fire: Vec::new(), next: Some(cursor) };
    }
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let late_limit = now.checked_sub_signed(grace).unwrap_or(DateTime::<Utc>::MIN_UTC);
    let keep = match policy {
        MisfirePolicy::Skip => 0,
        MisfirePolicy::FireOnce => 1,
        MisfirePolicy::FireEach { max } => u64::from(max),
    };
    let mut missed = Vec::new();
    let mut missed_count = 0u64;
    let mut on_time = Vec::new();
    let mut slot = Some(cursor);
    while let Some(s) = slot.filter(|s| *s <= now) {
        if s < late_limit {
            missed_count += 1;
            if (missed.len() as u64) < keep {
                missed.push(s);
            }
            if missed_count >= SCAN_LIMIT {
                // Skip what is left of the outage: the first slot on time comes next.
                slot = late_limit
                    .checked_sub_signed(chrono::Duration::microseconds(1))
                    .and_then(|t| cadence.next_after(t));
                continue;
            }
        } else {
            on_time.push(s);
        }
        slot = cadence.next_after(s);
    }
    let mut fire = Vec::with_capacity(missed.len() + on_time.len());
    match policy {
        MisfirePolicy::Skip => {}
        MisfirePolicy::FireOnce => {
            fire.extend(missed.first().map(|&slot| Fire { slot, stands_for: missed_count }));
        }
        MisfirePolicy::FireEach { .. } => {
            fire.extend(missed.into_iter().map(|slot| Fire { slot, stands_for: 0 }));
        }
    }
    fire.extend(on_time.into_iter().map(|slot| Fire { slot, stands_for: 0 }));
    Plan { fire, next: cadence.next_after(now) }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::CronSchedule;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, h, m, s).unwrap()
    }

    fn minutely() -> Cadence {
        Cadence::Cron(CronSchedule::parse("* * * * *").unwrap())
    }

    const GRACE: Duration = Duration::from_secs(60);

    fn slots(plan: &Plan) -> Vec<(DateTime<Utc>, u64)> {
        plan.fire.iter().map(|f| (f.slot, f.stands_for)).collect()
    }

    #[test]
    fn a_cursor_in_the_future_fires_nothing() {
        let p = plan(&minutely(), at(9, 1, 0), at(9, 0, 30), MisfirePolicy::FireOnce, GRACE);
        assert_eq!(p, Plan { fire: vec![], next: Some(at(9, 1, 0)) });
    }

    #[test]
    fn a_slot_on_time_fires_and_the_cursor_moves_past_now() {
        for policy in [MisfirePolicy::Skip, MisfirePolicy::FireOnce] {
            let p = plan(&minutely(), at(9, 1, 0), at(9, 1, 0), policy, GRACE);
            assert_eq!(slots(&p), [(at(9, 1, 0), 0)]);
            assert_eq!(p.next, Some(at(9, 2, 0)));
            // Late, but within the grace: still on time.
            let p = plan(&minutely(), at(9, 1, 0), at(9, 1, 45), policy, GRACE);
            assert_eq!(slots(&p), [(at(9, 1, 0), 0)]);
        }
    }

    #[test]
    fn missed_slots_follow_the_policy() {
        // Down from 9:01 to 9:10:30: 9:01..9:09 are missed (9:10 is within the grace).
        let (cursor, now) = (at(9, 1, 0), at(9, 10, 30));
        let skip = plan(&minutely(), cursor, now, MisfirePolicy::Skip, GRACE);
        assert_eq!(slots(&skip), [(at(9, 10, 0), 0)]);
        let once = plan(&minutely(), cursor, now, MisfirePolicy::FireOnce, GRACE);
        assert_eq!(slots(&once), [(at(9, 1, 0), 9), (at(9, 10, 0), 0)]);
        let each = plan(&minutely(), cursor, now, MisfirePolicy::FireEach { max: 3 }, GRACE);
        assert_eq!(
            slots(&each),
            [(at(9, 1, 0), 0), (at(9, 2, 0), 0), (at(9, 3, 0), 0), (at(9, 10, 0), 0)]
        );
        for p in [skip, once, each] {
            assert_eq!(p.next, Some(at(9, 11, 0)));
        }
    }

    #[test]
    fn a_long_outage_of_a_fast_schedule_is_skipped_in_one_jump() {
        let every_second = Cadence::Every(Duration::from_secs(1));
        let cursor = at(0, 0, 0);
        let now = at(23, 0, 0); // 82,800 slots later
        let p = plan(&every_second, cursor, now, MisfirePolicy::FireOnce, Duration::from_secs(2));
        assert_eq!(p.fire[0], Fire { slot: cursor, stands_for: SCAN_LIMIT });
        let on_time: Vec<_> = p.fire[1..].iter().map(|f| f.slot).collect();
        assert_eq!(on_time, [at(22, 59, 58), at(22, 59, 59), at(23, 0, 0)]);
        assert_eq!(p.next, Some(at(23, 0, 1)));
    }

    #[test]
    fn intervals_fire_at_whole_multiples_since_the_epoch() {
        let five = Cadence::Every(Duration::from_secs(300));
        assert_eq!(five.next_after(at(9, 2, 17)), Some(at(9, 5, 0)));
        assert_eq!(five.next_after(at(9, 5, 0)), Some(at(9, 10, 0)));
        assert_eq!(Cadence::Every(Duration::ZERO).next_after(at(9, 0, 0)), None);
    }

    #[test]
    fn a_schedule_without_more_slots_ends() {
        let never = Cadence::Cron(CronSchedule::parse("0 0 30 2 *").unwrap());
        let p = plan(&never, at(9, 0, 0), at(9, 0, 0), MisfirePolicy::FireOnce, GRACE);
        assert_eq!(p.next, None);
    }

    #[test]
    fn a_slot_in_a_skipped_dst_hour_fires_once_at_the_transition() {
        // 2026-03-29 in Paris jumps from 02:00 to 03:00: the 02:30 slot fires at 03:00 CEST.
        let cron = Cadence::Cron(CronSchedule::parse_in("30 2 * * *", "Europe/Paris").unwrap());
        let before = Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 0).unwrap();
        let slot = cron.next_after(before).unwrap();
        assert_eq!(slot, Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap());
        let p = plan(&cron, slot, slot, MisfirePolicy::FireOnce, GRACE);
        assert_eq!(slots(&p), [(slot, 0)]);
        assert_eq!(p.next, Some(Utc.with_ymd_and_hms(2026, 3, 30, 0, 30, 0).unwrap()));
    }
}

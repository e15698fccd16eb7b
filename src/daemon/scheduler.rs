//! When each job runs next: cron schedules, catch-up of runs missed while the daemon was down,
//! and protection against clocks that jump back. Pure logic, tested with fixed times.

use crate::config::{Schedule, Zone};
use chrono::{DateTime, Duration, Utc};

/// How far back a missed run is still caught up (a box off for a month runs each job once at
/// start, not thirty times — and never more than once).
pub const CATCH_UP_HORIZON_DAYS: i64 = 400;

/// The schedule state of one job.
#[derive(Debug, Clone)]
pub struct JobClock {
    /// The job's schedule.
    pub schedule: Schedule,
    /// The latest slot this daemon has started (or the catalog's last run when starting).
    pub last_slot: Option<DateTime<Utc>>,
    /// The next time the job is due.
    pub due: Option<DateTime<Utc>>,
    /// Whether the next due time is a catch-up of a missed slot.
    pub catch_up: bool,
}

impl JobClock {
    /// The clock for a job whose last run (from the catalog) started at `last_run`.
    /// A slot that passed after `last_run` was missed: it is due `delay` after `now`, once.
    /// A job that never ran waits for its first slot (as systemd's `Persistent=` timers do).
    pub fn new(
        schedule: Schedule,
        zone: Zone,
        last_run: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        delay: Duration,
    ) -> JobClock {
        let missed = last_run.and_then(|last| {
            let slot =
                schedule.last_at_or_before(now, zone, Duration::days(CATCH_UP_HORIZON_DAYS))?;
            (slot > last).then_some(slot)
        });
        match missed {
            Some(slot) => JobClock {
                schedule,
                last_slot: Some(slot),
                due: Some(now + delay),
                catch_up: true,
            },
            None => {
                // A last run after `now` means the clock went back since: do not repeat the
                // slot it took. Bounded, so a clock that was far ahead does not stop backups.
                let floor = match last_run {
                    Some(last) if last > now && last - now <= Duration::days(1) => last,
                    _ => now,
                };
                let due = schedule.next_after(floor, zone);
                JobClock {
                    schedule,
                    last_slot: last_run,
                    due,
                    catch_up: false,
                }
            }
        }
    }

    /// Called when the job is started for its due time: the next due time is the first slot
    /// after both `now` and the slot just taken, so a clock that jumped back never repeats a slot.
    pub fn advance(&mut self, now: DateTime<Utc>, zone: Zone) {
        let taken = if self.catch_up {
            self.last_slot
        } else {
            self.due
        };
        let floor = match taken {
            Some(t) if t > now => t,
            _ => now,
        };
        self.last_slot = taken.max(self.last_slot);
        self.due = self.schedule.next_after(floor, zone);
        self.catch_up = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const UTC: Zone = Zone::Named(chrono_tz::UTC);

    fn t(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap()
    }

    fn daily() -> Schedule {
        Schedule::parse("30 2 * * *").unwrap()
    }

    #[test]
    fn never_ran_waits_for_first_slot() {
        let c = JobClock::new(daily(), UTC, None, t(23, 10, 0), Duration::seconds(5));
        assert_eq!((c.due, c.catch_up), (Some(t(24, 2, 30)), false));
    }

    #[test]
    fn missed_slot_runs_once_soon() {
        // Last ran on the 21st; the slots of the 22nd and 23rd were missed: one catch-up.
        let now = t(23, 10, 0);
        let mut c = JobClock::new(daily(), UTC, Some(t(21, 2, 30)), now, Duration::seconds(5));
        assert_eq!(
            (c.due, c.catch_up),
            (Some(now + Duration::seconds(5)), true)
        );
        c.advance(now + Duration::seconds(5), UTC);
        assert_eq!((c.due, c.catch_up), (Some(t(24, 2, 30)), false));
    }

    #[test]
    fn up_to_date_job_is_not_caught_up() {
        let c = JobClock::new(
            daily(),
            UTC,
            Some(t(23, 2, 30)),
            t(23, 10, 0),
            Duration::seconds(5),
        );
        assert_eq!((c.due, c.catch_up), (Some(t(24, 2, 30)), false));
    }

    #[test]
    fn clock_jumping_back_does_not_repeat_a_slot() {
        let hourly = Schedule::parse("0 * * * *").unwrap();
        let mut c = JobClock::new(hourly, UTC, None, t(23, 9, 30), Duration::zero());
        assert_eq!(c.due, Some(t(23, 10, 0)));
        c.advance(t(23, 10, 0), UTC);
        assert_eq!(c.due, Some(t(23, 11, 0)));
        // Now the clock jumps back to 09:05 when the 11:00 slot is taken: 10:00 must not rerun.
        c.advance(t(23, 9, 5), UTC);
        assert_eq!(c.due, Some(t(23, 12, 0)));
    }

    #[test]
    fn clock_back_across_a_restart_does_not_repeat_the_last_slot() {
        // Ran at 02:30; the daemon restarts after the clock went back to 01:35.
        let last = t(23, 2, 30) + Duration::milliseconds(400);
        let c = JobClock::new(daily(), UTC, Some(last), t(23, 1, 35), Duration::seconds(5));
        assert_eq!((c.due, c.catch_up), (Some(t(24, 2, 30)), false));
        // A last run more than a day "ahead" is a wrong clock, not a slot taken: ignored.
        let c = JobClock::new(
            daily(),
            UTC,
            Some(t(27, 2, 30)),
            t(23, 1, 35),
            Duration::zero(),
        );
        assert_eq!(c.due, Some(t(23, 2, 30)));
    }
}

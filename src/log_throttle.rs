//! Rate limiting for the log of a failure that repeats every round (a full `state_dir`, a
//! catalog that cannot be written): the first occurrence is logged, then at most one line per
//! [`Repeated::every`] saying how many were not logged, and one line when it recovers. The
//! journal stays readable and the operator still learns that, how often and for how long.

use std::time::{Duration, Instant};

/// The default spacing of repeated reports.
pub const EVERY: Duration = Duration::from_secs(600);

/// What [`Repeated::failed`] decides for one failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Log it: the first failure of a streak.
    First,
    /// Log it with the number of failures not logged since the last report.
    Again {
        /// Failures since the last logged one.
        skipped: u64,
    },
    /// Do not log it.
    Quiet,
}

/// The state of one kind of repeated failure.
#[derive(Debug, Clone)]
pub struct Repeated {
    /// Minimum time between two logged failures of one streak.
    pub every: Duration,
    /// Start of the current streak and its number of failures.
    streak: Option<(Instant, u64)>,
    last_logged: Option<Instant>,
    skipped: u64,
}

impl Repeated {
    /// A tracker reporting at most once per `every`.
    pub fn new(every: Duration) -> Repeated {
        Repeated {
            every,
            streak: None,
            last_logged: None,
            skipped: 0,
        }
    }

    /// Records a failure at `now` and says whether to log it.
    pub fn failed(&mut self, now: Instant) -> Report {
        self.streak.get_or_insert((now, 0)).1 += 1;
        match self.last_logged {
            None => {
                self.last_logged = Some(now);
                Report::First
            }
            Some(t) if now.duration_since(t) >= self.every => {
                self.last_logged = Some(now);
                let skipped = std::mem::take(&mut self.skipped);
                Report::Again { skipped }
            }
            Some(_) => {
                self.skipped += 1;
                Report::Quiet
            }
        }
    }

    /// Records a success at `now`; when a streak ends, how many failures it had and how long
    /// it lasted (log that once).
    pub fn succeeded(&mut self, now: Instant) -> Option<(u64, Duration)> {
        let (since, n) = self.streak.take()?;
        self.last_logged = None;
        self.skipped = 0;
        Some((n, now.duration_since(since)))
    }
}

impl Default for Repeated {
    fn default() -> Self {
        Repeated::new(EVERY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_then_every_ten_minutes_with_a_count_then_recovery() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut r = Repeated::default();
        assert_eq!(r.succeeded(s(0)), None, "nothing to recover from");
        assert_eq!(r.failed(s(0)), Report::First);
        for i in 1..20 {
            assert_eq!(r.failed(s(i * 30)), Report::Quiet, "round {i}");
        }
        assert_eq!(r.failed(s(600)), Report::Again { skipped: 19 });
        assert_eq!(r.failed(s(630)), Report::Quiet);
        assert_eq!(r.succeeded(s(700)), Some((22, Duration::from_secs(700))));
        assert_eq!(r.succeeded(s(701)), None);
        assert_eq!(
            r.failed(s(800)),
            Report::First,
            "a new streak is logged at once"
        );
    }
}

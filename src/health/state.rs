//! The state of one check: OK / WARN / CRIT / UNKNOWN, entered only after the condition held for
//! `for`, left with hysteresis (see [`Limits::level`]), and flapping detection that reports a
//! check going up and down once instead of on every change. Pure: time is passed in.

use chrono::{DateTime, Duration, Utc};
use std::collections::VecDeque;

/// A check's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// Fine.
    Ok,
    /// Worth a look.
    Warn,
    /// Act now.
    Crit,
    /// The check itself failed (timed out, could not run).
    Unknown,
}

impl Level {
    /// The word stored in the catalog and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warn => "WARN",
            Level::Crit => "CRIT",
            Level::Unknown => "UNKNOWN",
        }
    }

    /// The inverse of [`Level::as_str`]; anything else is UNKNOWN.
    pub fn parse(s: &str) -> Level {
        match s {
            "OK" => Level::Ok,
            "WARN" => Level::Warn,
            "CRIT" => Level::Crit,
            _ => Level::Unknown,
        }
    }

    /// How bad: OK 0, WARN and UNKNOWN 1, CRIT 2 (also the `status` exit code).
    pub fn severity(self) -> u8 {
        match self {
            Level::Ok => 0,
            Level::Warn | Level::Unknown => 1,
            Level::Crit => 2,
        }
    }
}

/// Warn/crit thresholds on a number, with hysteresis on the way back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// WARN at or beyond this.
    pub warn: Option<f64>,
    /// CRIT at or beyond this.
    pub crit: Option<f64>,
    /// True when higher is worse (CPU %); false when lower is worse (days to expiry).
    pub high_is_bad: bool,
    /// To leave a bad state the value must get this fraction of the threshold past it
    /// (0.05: a CPU at WARN from 80 % recovers below 76 %).
    pub hysteresis: f64,
}

impl Limits {
    /// Higher is worse.
    pub fn above(warn: f64, crit: f64) -> Limits {
        Limits {
            warn: Some(warn),
            crit: Some(crit),
            high_is_bad: true,
            hysteresis: 0.05,
        }
    }

    /// Lower is worse.
    pub fn below(warn: f64, crit: f64) -> Limits {
        Limits {
            high_is_bad: false,
            ..Limits::above(warn, crit)
        }
    }

    /// The level of `value` for a check now in `current`, and the threshold that decided it
    /// (the warn threshold when OK).
    pub fn level(&self, value: f64, current: Level) -> (Level, Option<f64>) {
        let beyond = |t: f64, held: bool| {
            let margin = if held { t.abs() * self.hysteresis } else { 0.0 };
            if self.high_is_bad {
                value >= t || (held && value > t - margin)
            } else {
                value <= t || (held && value < t + margin)
            }
        };
        if let Some(c) = self.crit {
            if beyond(c, current == Level::Crit) {
                return (Level::Crit, Some(c));
            }
        }
        if let Some(w) = self.warn {
            let held = matches!(current, Level::Warn | Level::Crit);
            if beyond(w, held) {
                return (Level::Warn, Some(w));
            }
        }
        (Level::Ok, self.warn.or(self.crit))
    }
}

/// One result of a check, already judged.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The level this sample alone deserves.
    pub level: Level,
    /// The measured value, if numeric.
    pub value: Option<f64>,
    /// The threshold it was compared with.
    pub threshold: Option<f64>,
    /// What an operator needs to know.
    pub detail: String,
}

/// How a check's state moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// A bad condition must hold this long before the state changes (`for`).
    pub hold: Duration,
    /// Window for flapping detection.
    pub flap_window: Duration,
    /// This many changes within the window start flapping…
    pub flap_start: usize,
    /// … and at most this many end it.
    pub flap_stop: usize,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            hold: Duration::zero(),
            flap_window: Duration::minutes(30),
            flap_start: 6,
            flap_stop: 2,
        }
    }
}

/// What a state change is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The state changed.
    Change,
    /// The check started flapping (changes are not reported until it stops).
    FlapStart,
    /// It stopped flapping; `to` is the state it settled in.
    FlapStop,
}

/// A state change worth recording (and mailing).
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// What happened.
    pub kind: EventKind,
    /// State before.
    pub from: Level,
    /// State after.
    pub to: Level,
    /// When it was decided.
    pub at: DateTime<Utc>,
    /// Since when the condition held.
    pub since: DateTime<Utc>,
    /// The value that decided it.
    pub value: Option<f64>,
    /// The threshold it crossed.
    pub threshold: Option<f64>,
    /// Detail for the operator.
    pub detail: String,
}

/// The state machine of one check.
#[derive(Debug, Clone)]
pub struct Tracker {
    /// Current state.
    pub state: Level,
    /// In it since.
    pub since: DateTime<Utc>,
    /// Whether it is flapping.
    pub flapping: bool,
    /// Start of a streak of observations that differ from `state` and need `hold`.
    pending: Option<DateTime<Utc>>,
    /// Times of recent changes (bounded by the flap window).
    changes: VecDeque<DateTime<Utc>>,
}

impl Tracker {
    /// A check in `state` since `since` (from the catalog, or OK now for a new check).
    pub fn new(state: Level, since: DateTime<Utc>) -> Tracker {
        Tracker {
            state,
            since,
            flapping: false,
            pending: None,
            changes: VecDeque::with_capacity(16),
        }
    }

    fn needs_hold(&self, target: Level) -> bool {
        let bad = |l: Level| matches!(l, Level::Warn | Level::Crit);
        match target {
            Level::Ok => false,
            Level::Unknown => true,
            _ if bad(self.state) => target.severity() > self.state.severity(),
            _ => true,
        }
    }

    /// Feeds one observation; returns the event it causes, if any.
    pub fn observe(
        &mut self,
        obs: &Observation,
        now: DateTime<Utc>,
        policy: &Policy,
    ) -> Option<Transition> {
        while self
            .changes
            .front()
            .is_some_and(|t| *t <= now - policy.flap_window)
        {
            self.changes.pop_front();
        }
        let event = |kind, from, to, since| Transition {
            kind,
            from,
            to,
            at: now,
            since,
            value: obs.value,
            threshold: obs.threshold,
            detail: obs.detail.clone(),
        };
        if obs.level == self.state {
            self.pending = None;
            return self
                .maybe_stop_flapping(policy)
                .then(|| event(EventKind::FlapStop, self.state, self.state, self.since));
        }
        let since = if self.needs_hold(obs.level) {
            let start = *self.pending.get_or_insert(now);
            if now - start < policy.hold {
                return None;
            }
            start
        } else {
            now
        };
        let from = self.state;
        self.state = obs.level;
        self.since = since;
        self.pending = None;
        if self.changes.len() == self.changes.capacity() {
            self.changes.pop_front();
        }
        self.changes.push_back(now);
        if self.flapping {
            return None;
        }
        if self.changes.len() >= policy.flap_start {
            self.flapping = true;
            return Some(event(EventKind::FlapStart, from, obs.level, since));
        }
        Some(event(EventKind::Change, from, obs.level, since))
    }

    fn maybe_stop_flapping(&mut self, policy: &Policy) -> bool {
        if self.flapping && self.changes.len() <= policy.flap_stop {
            self.flapping = false;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use Level::*;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 20, 3, 0, 0).unwrap() + Duration::seconds(s)
    }

    fn obs(level: Level) -> Observation {
        Observation {
            level,
            value: None,
            threshold: None,
            detail: String::new(),
        }
    }

    /// Runs `(second, level)` samples through a tracker starting OK; returns the events as
    /// `(second, kind, from, to, since-second)`.
    fn run(hold: i64, samples: &[(i64, Level)]) -> Vec<(i64, EventKind, Level, Level, i64)> {
        let policy = Policy {
            hold: Duration::seconds(hold),
            ..Policy::default()
        };
        let mut tr = Tracker::new(Ok, t(0));
        samples
            .iter()
            .filter_map(|(s, l)| tr.observe(&obs(*l), t(*s), &policy))
            .map(|e| {
                let sec = |d: DateTime<Utc>| (d - t(0)).num_seconds();
                (sec(e.at), e.kind, e.from, e.to, sec(e.since))
            })
            .collect()
    }

    #[test]
    fn state_machine_table() {
        use EventKind::*;
        type Case<'a> = (
            &'a str,
            i64,
            &'a [(i64, Level)],
            &'a [(i64, EventKind, Level, Level, i64)],
        );
        let cases: &[Case] = &[
            (
                "no hold: immediate",
                0,
                &[(30, Crit), (60, Ok)],
                &[(30, Change, Ok, Crit, 30), (60, Change, Crit, Ok, 60)],
            ),
            (
                "for 5m: short spike ignored",
                300,
                &[(30, Crit), (60, Crit), (90, Ok), (120, Ok)],
                &[],
            ),
            (
                "for 5m: held, since = start",
                300,
                &[(30, Crit), (180, Crit), (330, Crit)],
                &[(330, Change, Ok, Crit, 30)],
            ),
            (
                "streak of mixed bad levels counts",
                300,
                &[(0, Warn), (200, Crit), (300, Warn)],
                &[(300, Change, Ok, Warn, 0)],
            ),
            (
                "recovery is immediate",
                60,
                &[(0, Crit), (60, Crit), (90, Ok)],
                &[(60, Change, Ok, Crit, 0), (90, Change, Crit, Ok, 90)],
            ),
            (
                "crit to warn is immediate, warn to crit holds",
                60,
                &[
                    (0, Crit),
                    (60, Crit),
                    (70, Warn),
                    (80, Crit),
                    (100, Crit),
                    (140, Crit),
                ],
                &[
                    (60, Change, Ok, Crit, 0),
                    (70, Change, Crit, Warn, 70),
                    (140, Change, Warn, Crit, 80),
                ],
            ),
            (
                "unknown on timeouts needs hold too",
                60,
                &[(0, Unknown), (30, Unknown), (60, Unknown), (90, Ok)],
                &[(60, Change, Ok, Unknown, 0), (90, Change, Unknown, Ok, 90)],
            ),
            (
                "unknown without hold",
                0,
                &[(0, Unknown)],
                &[(0, Change, Ok, Unknown, 0)],
            ),
        ];
        for (name, hold, samples, want) in cases {
            assert_eq!(&run(*hold, samples), want, "{name}");
        }
    }

    #[test]
    fn flapping_is_reported_once_and_its_end_too() {
        use EventKind::*;
        // Up and down every 30 s: five changes are reported, the sixth starts flapping, then
        // silence; after it settles and the window empties, one FlapStop with the final state.
        let mut samples = Vec::new();
        for i in 0..12 {
            samples.push((i * 30, if i % 2 == 0 { Crit } else { Ok }));
        }
        samples.push((40 * 60, Ok));
        samples.push((41 * 60, Ok));
        let ev = run(0, &samples);
        let kinds: Vec<EventKind> = ev.iter().map(|e| e.1).collect();
        assert_eq!(
            kinds,
            [Change, Change, Change, Change, Change, FlapStart, FlapStop]
        );
        assert_eq!(ev[6].0, 40 * 60);
        assert_eq!((ev[6].2, ev[6].3), (Ok, Ok));
    }

    #[test]
    fn limits_with_hysteresis() {
        let l = Limits::above(80.0, 90.0);
        let table = [
            // value, current state → level
            (50.0, Ok, Ok),
            (80.0, Ok, Warn),
            (79.0, Ok, Ok),
            (79.0, Warn, Warn), // inside the 5 % band: stays WARN
            (75.9, Warn, Ok),
            (95.0, Ok, Crit),
            (88.0, Crit, Crit), // 90 − 4.5
            (85.0, Crit, Warn),
            (70.0, Crit, Ok),
        ];
        for (v, cur, want) in table {
            assert_eq!(l.level(v, cur).0, want, "{v} from {cur:?}");
        }
        let days = Limits::below(14.0, 7.0);
        assert_eq!(days.level(30.0, Ok), (Ok, Some(14.0)));
        assert_eq!(days.level(10.0, Ok), (Warn, Some(14.0)));
        assert_eq!(days.level(3.0, Ok), (Crit, Some(7.0)));
        assert_eq!(days.level(7.2, Crit).0, Crit);
        assert_eq!(days.level(14.5, Warn).0, Warn);
        assert_eq!(days.level(15.0, Warn).0, Ok);
    }
}

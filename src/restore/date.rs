//! `--date` expressions: the moment a restore goes back to.
//!
//! Accepted (case-insensitive), in the agent's time zone:
//! `now`, `today`, `yesterday`, `N minutes|hours|days|weeks ago`, a weekday (`friday`, `fri`: the
//! most recent one, today included), `YYYY-MM-DD`, `YYYY-MM-DD HH:MM[:SS]` (also with `T`), and
//! RFC 3339 (`2026-11-20T14:00:00+01:00`). Day-sized expressions (`today`, `yesterday`,
//! `N days|weeks ago`, weekdays, a date alone) mean the *end* of that local calendar day, so
//! `--date yesterday` is the last backup taken yesterday whatever the time now; the others mean
//! that moment. Date arithmetic is chrono's (calendar days, DST-aware through chrono-tz).

use crate::config::Zone;
use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc, Weekday,
};

/// The help text listing every accepted form.
pub const FORMS: &str = "now, today, yesterday, \"N minutes ago\", \"N hours ago\", \"N days ago\", \"N weeks ago\", a weekday (friday = the most recent one), YYYY-MM-DD, \"YYYY-MM-DD HH:MM[:SS]\", or RFC 3339 (2026-11-20T14:00:00+01:00)";

/// A `--date` that is not understood, or in the future.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    /// Not one of the [`FORMS`].
    #[error("cannot understand the date `{expr}`; accepted: {FORMS}")]
    Unknown {
        /// What was given.
        expr: String,
    },
    /// Past the end of today.
    #[error("the date `{expr}` is in the future ({}); a restore goes back in time: use `now` for the newest snapshot, or a past date", at.format("%Y-%m-%d %H:%M UTC"))]
    Future {
        /// What was given.
        expr: String,
        /// What it means.
        at: DateTime<Utc>,
    },
}

/// A parsed `--date`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment {
    /// Restore the newest snapshot at or before this instant.
    pub at: DateTime<Utc>,
    /// Whether the expression named a whole day (and `at` is that day's last instant).
    pub whole_day: bool,
}

/// Parses `expr` relative to `now` in `zone`. The error lists the accepted forms.
pub fn parse(expr: &str, now: DateTime<Utc>, zone: Zone) -> Result<Moment, DateError> {
    let e = expr.trim().to_ascii_lowercase();
    let e = e.split_whitespace().collect::<Vec<_>>().join(" ");
    let today = local_date(now, zone);
    let day = |d: NaiveDate| {
        end_of_day(d, zone).map(|at| Moment {
            at,
            whole_day: true,
        })
    };
    let moment = |at: DateTime<Utc>| {
        Some(Moment {
            at,
            whole_day: false,
        })
    };
    let found = match e.as_str() {
        "now" => moment(now),
        "today" => day(today),
        "yesterday" => day(today - Duration::days(1)),
        _ => None,
    }
    .or_else(|| ago(&e, now, today, zone))
    .or_else(|| weekday(&e).and_then(|w| day(most_recent(today, w))))
    .or_else(|| NaiveDate::parse_from_str(&e, "%Y-%m-%d").ok().and_then(day))
    .or_else(|| local_datetime(&e, zone).and_then(moment))
    .or_else(|| {
        DateTime::parse_from_rfc3339(expr.trim())
            .ok()
            .and_then(|t| moment(t.with_timezone(&Utc)))
    });
    let found = found.ok_or_else(|| DateError::Unknown {
        expr: expr.to_string(),
    })?;
    // Later today is fine (`today` itself is the end of today); past that it is a typo.
    if end_of_day(today, zone).is_some_and(|end| found.at > end) {
        return Err(DateError::Future {
            expr: expr.to_string(),
            at: found.at,
        });
    }
    Ok(found)
}

fn ago(e: &str, now: DateTime<Utc>, today: NaiveDate, zone: Zone) -> Option<Moment> {
    let rest = e.strip_suffix(" ago")?;
    let (n, unit) = rest.split_once(' ')?;
    let n: i64 = n.parse().ok().filter(|n| (0..=100_000).contains(n))?;
    let unit = unit.trim_end_matches('s');
    match unit {
        "minute" | "min" => Some(Moment {
            at: now - Duration::minutes(n),
            whole_day: false,
        }),
        "hour" => Some(Moment {
            at: now - Duration::hours(n),
            whole_day: false,
        }),
        "day" => end_of_day(today - Duration::days(n), zone).map(|at| Moment {
            at,
            whole_day: true,
        }),
        "week" => end_of_day(today - Duration::weeks(n), zone).map(|at| Moment {
            at,
            whole_day: true,
        }),
        _ => None,
    }
}

fn weekday(e: &str) -> Option<Weekday> {
    let w = e.parse::<Weekday>().ok()?;
    // chrono accepts "mon" and "monday"; refuse odd prefixes like "mond".
    (e.len() == 3 || e.ends_with("day")).then_some(w)
}

fn most_recent(today: NaiveDate, w: Weekday) -> NaiveDate {
    let back = (today.weekday().num_days_from_monday() + 7 - w.num_days_from_monday()) % 7;
    today - Duration::days(back as i64)
}

fn local_date(t: DateTime<Utc>, zone: Zone) -> NaiveDate {
    match zone {
        Zone::Local => t.with_timezone(&chrono::Local).date_naive(),
        Zone::Named(tz) => t.with_timezone(&tz).date_naive(),
    }
}

/// The instant a local wall-clock time names (the later one when DST repeats an hour, the first
/// valid one after a DST gap).
fn from_local(naive: NaiveDateTime, zone: Zone) -> Option<DateTime<Utc>> {
    fn pick<Z: TimeZone>(tz: &Z, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
        for minutes in [0i64, 60, 120] {
            let t = naive + Duration::minutes(minutes);
            if let Some(dt) = tz.from_local_datetime(&t).latest() {
                return Some(dt.with_timezone(&Utc));
            }
        }
        None
    }
    match zone {
        Zone::Local => pick(&chrono::Local, naive),
        Zone::Named(tz) => pick(&tz, naive),
    }
}

/// The last instant (…:59.999) of local day `d`.
pub fn end_of_day(d: NaiveDate, zone: Zone) -> Option<DateTime<Utc>> {
    let next = d.succ_opt()?.and_time(NaiveTime::MIN);
    from_local(next, zone).map(|t| t - Duration::milliseconds(1))
}

fn local_datetime(e: &str, zone: Zone) -> Option<DateTime<Utc>> {
    [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dt%H:%M:%S",
        "%Y-%m-%dt%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(e, f).ok())
    .and_then(|n| from_local(n, zone))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bogota() -> Zone {
        Zone::parse("America/Bogota").unwrap()
    }

    /// Monday 2026-11-23 10:00 in Bogotá (UTC-5) = 15:00 UTC.
    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 15, 0, 0).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn every_form() {
        let cases = [
            ("now", "2026-11-23T15:00:00Z", false),
            ("today", "2026-11-24T04:59:59.999Z", true),
            ("yesterday", "2026-11-23T04:59:59.999Z", true),
            ("  Yesterday ", "2026-11-23T04:59:59.999Z", true),
            ("3 days ago", "2026-11-21T04:59:59.999Z", true),
            ("1 day ago", "2026-11-23T04:59:59.999Z", true),
            ("2 weeks ago", "2026-11-10T04:59:59.999Z", true),
            ("90 minutes ago", "2026-11-23T13:30:00Z", false),
            ("5 hours ago", "2026-11-23T10:00:00Z", false),
            ("friday", "2026-11-21T04:59:59.999Z", true),
            ("fri", "2026-11-21T04:59:59.999Z", true),
            ("monday", "2026-11-24T04:59:59.999Z", true), // today is Monday: today
            ("sunday", "2026-11-23T04:59:59.999Z", true),
            ("2026-11-20", "2026-11-21T04:59:59.999Z", true),
            ("2026-11-20 14:00", "2026-11-20T19:00:00Z", false),
            ("2026-11-20 14:00:30", "2026-11-20T19:00:30Z", false),
            ("2026-11-20T14:00", "2026-11-20T19:00:00Z", false),
            ("2026-11-20T14:00:00+01:00", "2026-11-20T13:00:00Z", false),
            ("2026-11-20T14:00:00Z", "2026-11-20T14:00:00Z", false),
        ];
        for (expr, want, whole_day) in cases {
            let m = parse(expr, now(), bogota()).unwrap_or_else(|e| panic!("{expr}: {e}"));
            assert_eq!((m.at, m.whole_day), (utc(want), whole_day), "{expr}");
        }
    }

    #[test]
    fn month_and_dst_edges() {
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        // 2026-03-01 00:30 in Berlin (UTC+1): yesterday is 28 February.
        let now = utc("2026-02-28T23:30:00Z");
        assert_eq!(
            parse("yesterday", now, berlin).unwrap().at,
            utc("2026-02-28T22:59:59.999Z")
        );
        // DST starts 2026-03-29 02:00 → 03:00 (UTC+2): that day is 23 hours long.
        let now = utc("2026-03-30T10:00:00Z");
        assert_eq!(
            parse("yesterday", now, berlin).unwrap().at,
            utc("2026-03-29T21:59:59.999Z")
        );
        assert_eq!(
            parse("2 days ago", now, berlin).unwrap().at,
            utc("2026-03-28T22:59:59.999Z")
        );
        // A wall time inside the DST gap moves to the first valid instant after it.
        assert_eq!(
            parse("2026-03-29 02:30", now, berlin).unwrap().at,
            utc("2026-03-29T01:30:00Z")
        );
        // DST ends 2026-10-25 03:00 → 02:00: 02:30 happens twice; the later one is taken.
        let now = utc("2026-11-01T00:00:00Z");
        assert_eq!(
            parse("2026-10-25 02:30", now, berlin).unwrap().at,
            utc("2026-10-25T01:30:00Z")
        );
        // Year boundary.
        let now = utc("2027-01-01T12:00:00Z");
        assert_eq!(
            parse("yesterday", now, Zone::Named(chrono_tz::UTC))
                .unwrap()
                .at,
            utc("2026-12-31T23:59:59.999Z")
        );
    }

    #[test]
    fn future_dates_are_refused_but_later_today_is_fine() {
        for bad in ["2099-01-01", "2099-01-01 10:00", "2099-01-01T00:00:00Z"] {
            let e = parse(bad, now(), bogota()).unwrap_err().to_string();
            assert!(
                e.contains("is in the future") && e.contains("use `now`"),
                "{bad}: {e}"
            );
        }
        let today = local_date(now(), bogota());
        for ok in ["today", &today.to_string(), &format!("{today} 23:59")] {
            assert!(parse(ok, now(), bogota()).is_ok(), "{ok}");
        }
    }

    #[test]
    fn nonsense_lists_the_forms() {
        for bad in [
            "",
            "tomorrow-ish",
            "3 fortnights ago",
            "2026-13-01",
            "mond",
            "-1 days ago",
            "2026-11-20 25:00",
        ] {
            let e = parse(bad, now(), bogota()).unwrap_err().to_string();
            assert!(e.contains("accepted: now, today, yesterday"), "{bad}: {e}");
        }
    }
}

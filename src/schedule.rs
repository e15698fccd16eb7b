//! Crontab schedules as admins write them (`30 2 * * *`, `@daily`), evaluated in a time zone.
//!
//! The `cron` crate wants a seconds field first and numbers weekdays 1–7 from *Sunday*, while
//! crontab numbers them 0–7 from Sunday (0 and 7 both Sunday, 1 = Monday). We parse the 5-field
//! line ourselves into the crate's form, writing weekdays as names so no number is misread, and
//! keep crontab's rule that when both day-of-month and day-of-week are restricted, a day matching
//! *either* one runs the job.

use chrono::{DateTime, TimeZone, Utc};
use std::str::FromStr;

/// The zone schedules and dates are evaluated in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// The system's local zone (`/etc/localtime`, `TZ`).
    Local,
    /// An IANA zone from `agent.timezone`.
    Named(chrono_tz::Tz),
}

impl Zone {
    /// Parses an IANA name ("America/Bogota", "UTC").
    pub fn parse(name: &str) -> Option<Zone> {
        chrono_tz::Tz::from_str(name).ok().map(Zone::Named)
    }

    /// Formats an instant as local time in this zone, e.g. `2026-11-23 02:30 -05`.
    pub fn format(&self, t: DateTime<Utc>, fmt: &str) -> String {
        match self {
            Zone::Local => t.with_timezone(&chrono::Local).format(fmt).to_string(),
            Zone::Named(tz) => t.with_timezone(tz).format(fmt).to_string(),
        }
    }
}

impl std::fmt::Display for Zone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Zone::Local => f.write_str("system local time"),
            Zone::Named(tz) => f.write_str(tz.name()),
        }
    }
}

/// A parsed schedule: the admin's text plus one or two `cron` schedules whose union it is.
#[derive(Debug, Clone)]
pub struct Schedule {
    text: String,
    parts: Vec<cron::Schedule>,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Schedule {
    /// Parses a 5-field crontab line or `@hourly|@daily|@weekly|@monthly|@yearly|@annually`.
    /// The error says what is wrong and has a hint.
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let t = text.trim();
        let five = match t {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            _ if t.starts_with('@') => return Err(ScheduleError::UnknownWord { text: t.into() }),
            _ => t,
        };
        let fields: Vec<&str> = five.split_whitespace().collect();
        match fields.len() {
            5 => {}
            n @ (6 | 7) => {
                return Err(ScheduleError::Seconds {
                    text: t.into(),
                    fields: n,
                })
            }
            n => {
                return Err(ScheduleError::FieldCount {
                    text: t.into(),
                    fields: n,
                })
            }
        }
        let dow = weekday_field(fields[4]).map_err(|BadWeekday(item)| ScheduleError::Weekday {
            text: t.into(),
            item,
        })?;
        let dom_any = fields[2] == "*" || fields[2] == "?";
        let dow_any = fields[4] == "*" || fields[4] == "?";
        let build = |dom: &str, dow: &str| -> Result<cron::Schedule, ScheduleError> {
            let expr = format!(
                "0 {} {} {} {} {}",
                fields[0], fields[1], dom, fields[3], dow
            );
            cron::Schedule::from_str(&expr).map_err(|e| ScheduleError::Invalid {
                text: t.into(),
                cause: e.to_string(),
            })
        };
        let parts = if !dom_any && !dow_any {
            vec![build(fields[2], "*")?, build("*", &dow)?]
        } else {
            vec![build(fields[2], &dow)?]
        };
        // A schedule that never fires (e.g. "0 0 31 2 *") is a mistake, not a choice.
        let s = Schedule {
            text: t.to_string(),
            parts,
        };
        if s.next_after(Utc::now(), Zone::Named(chrono_tz::UTC))
            .is_none()
        {
            return Err(ScheduleError::NeverFires { text: t.into() });
        }
        Ok(s)
    }

    /// The text as written in the config.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first firing strictly after `after`, evaluated in `zone`.
    pub fn next_after(&self, after: DateTime<Utc>, zone: Zone) -> Option<DateTime<Utc>> {
        match zone {
            Zone::Local => self.next_in(&after.with_timezone(&chrono::Local)),
            Zone::Named(tz) => self.next_in(&after.with_timezone(&tz)),
        }
    }

    fn next_in<Z: TimeZone>(&self, after: &DateTime<Z>) -> Option<DateTime<Utc>> {
        self.parts
            .iter()
            .filter_map(|p| p.after(after).next())
            .map(|t| t.with_timezone(&Utc))
            .min()
    }

    /// The last firing at or before `at` — used to find runs missed while the daemon was down.
    /// Looks back at most `horizon`.
    pub fn last_at_or_before(
        &self,
        at: DateTime<Utc>,
        zone: Zone,
        horizon: chrono::Duration,
    ) -> Option<DateTime<Utc>> {
        let mut t = self.next_after(at - horizon, zone)?;
        if t > at {
            return None;
        }
        while let Some(n) = self.next_after(t, zone) {
            if n > at {
                break;
            }
            t = n;
        }
        Some(t)
    }
}

/// Rewrites a crontab day-of-week field (0–7, Sunday = 0 or 7, names, lists, ranges, steps) as a
/// comma list of day names, which the `cron` crate reads unambiguously.
fn weekday_field(field: &str) -> Result<String, BadWeekday> {
    if field == "*" || field == "?" {
        return Ok("*".to_string());
    }
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, s.parse::<usize>().map_err(|_| bad_dow(item))?),
            None => (item, 1),
        };
        if step == 0 {
            return Err(bad_dow(item));
        }
        let (lo, hi) = match range {
            "*" => (0, 6),
            _ => match range.split_once('-') {
                Some((a, b)) => (day_number(a)?, day_number(b)?),
                None if step > 1 => (day_number(range)?, 6),
                None => (day_number(range)?, day_number(range)?),
            },
        };
        // 7 is Sunday too: "5-7" means Fri, Sat, Sun.
        if lo > hi {
            return Err(bad_dow(item));
        }
        for d in (lo..=hi).step_by(step) {
            days[d % 7] = true;
        }
    }
    let names: Vec<&str> = (0..7).filter(|d| days[*d]).map(|d| DAY_NAMES[d]).collect();
    Ok(names.join(","))
}

fn day_number(s: &str) -> Result<usize, BadWeekday> {
    if let Ok(n) = s.parse::<usize>() {
        return if n <= 7 { Ok(n) } else { Err(bad_dow(s)) };
    }
    let up = s.to_ascii_uppercase();
    DAY_NAMES
        .iter()
        .position(|d| up == *d || (up.len() > 3 && d.starts_with(&up[..3]) && is_full_day(&up)))
        .ok_or_else(|| bad_dow(s))
}

fn is_full_day(up: &str) -> bool {
    [
        "SUNDAY",
        "MONDAY",
        "TUESDAY",
        "WEDNESDAY",
        "THURSDAY",
        "FRIDAY",
        "SATURDAY",
    ]
    .contains(&up)
}

/// A day-of-week item that is not one (the [`ScheduleError::Weekday`] of a line).
struct BadWeekday(String);

fn bad_dow(item: &str) -> BadWeekday {
    BadWeekday(item.to_string())
}

/// A schedule that cannot be used: what is wrong ([`ScheduleError::message`]) and what to do
/// ([`ScheduleError::hint`]), shown as `message (hint: hint)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} (hint: {})", self.message(), self.hint())]
pub enum ScheduleError {
    /// `@something` that is not one of the words.
    UnknownWord {
        /// The schedule as written.
        text: String,
    },
    /// Six or seven fields: a seconds (or year) field.
    Seconds {
        /// The schedule as written.
        text: String,
        /// How many fields it has.
        fields: usize,
    },
    /// Not five fields.
    FieldCount {
        /// The schedule as written.
        text: String,
        /// How many fields it has.
        fields: usize,
    },
    /// A day-of-week item that is not a day, a range or a step.
    Weekday {
        /// The schedule as written.
        text: String,
        /// The item.
        item: String,
    },
    /// The `cron` crate refused the line.
    Invalid {
        /// The schedule as written.
        text: String,
        /// What `cron` said.
        cause: String,
    },
    /// A valid line with no date it fires on.
    NeverFires {
        /// The schedule as written.
        text: String,
    },
}

impl ScheduleError {
    /// What is wrong, naming the schedule.
    pub fn message(&self) -> String {
        match self {
            ScheduleError::UnknownWord { text } => format!("unknown schedule `{text}`"),
            ScheduleError::Seconds { text, fields } => format!(
                "`{text}` has {fields} fields; opsagent takes the 5-field crontab form `minute hour day-of-month month day-of-week`"
            ),
            ScheduleError::FieldCount { text, fields } => format!(
                "`{text}` has {fields} fields, a crontab line has 5: `minute hour day-of-month month day-of-week`"
            ),
            ScheduleError::Weekday { text, item } => {
                format!("`{text}`: day-of-week `{item}` is not valid")
            }
            ScheduleError::Invalid { text, cause } => {
                format!("`{text}` is not a valid crontab line: {cause}")
            }
            ScheduleError::NeverFires { text } => format!("`{text}` never fires"),
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            ScheduleError::UnknownWord { .. } => "use @hourly, @daily, @weekly, @monthly, @yearly or a crontab line like \"30 2 * * *\"",
            ScheduleError::Seconds { .. } => "drop the seconds field",
            ScheduleError::FieldCount { .. } => "\"30 2 * * *\" is every day at 02:30",
            ScheduleError::Weekday { .. } => {
                "0-7 with 0 and 7 = Sunday, or names like mon-fri"
            }
            ScheduleError::Invalid { .. } => "fields are `minute hour day-of-month month day-of-week`, e.g. \"30 2 * * *\"",
            ScheduleError::NeverFires { .. } => "check the day and month fields",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }
    const UTC: Zone = Zone::Named(chrono_tz::UTC);

    #[test]
    fn table_of_next_runs() {
        // 2026-11-23 is a Monday.
        let now = utc(2026, 11, 23, 10, 0);
        let cases = [
            ("30 2 * * *", utc(2026, 11, 24, 2, 30)),
            ("@hourly", utc(2026, 11, 23, 11, 0)),
            ("@daily", utc(2026, 11, 24, 0, 0)),
            ("@weekly", utc(2026, 11, 29, 0, 0)),
            ("@monthly", utc(2026, 12, 1, 0, 0)),
            ("0 9 * * 1", utc(2026, 11, 30, 9, 0)), // Monday, not Sunday
            ("0 9 * * 0", utc(2026, 11, 29, 9, 0)), // Sunday
            ("0 9 * * 7", utc(2026, 11, 29, 9, 0)), // Sunday too
            ("0 9 * * 5-7", utc(2026, 11, 27, 9, 0)), // Fri..Sun
            ("0 12 * * mon-fri", utc(2026, 11, 23, 12, 0)),
            ("*/15 * * * *", utc(2026, 11, 23, 10, 15)),
            ("0 0 1 * 3", utc(2026, 11, 25, 0, 0)), // day 1 OR Wednesday
        ];
        for (text, want) in cases {
            let s = Schedule::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(s.next_after(now, UTC), Some(want), "{text}");
        }
    }

    #[test]
    fn evaluated_in_the_zone() {
        let bogota = Zone::parse("America/Bogota").unwrap();
        let s = Schedule::parse("30 2 * * *").unwrap();
        // 02:30 in Bogotá (UTC-5) is 07:30 UTC.
        assert_eq!(
            s.next_after(utc(2026, 11, 23, 0, 0), bogota),
            Some(utc(2026, 11, 23, 7, 30))
        );
    }

    #[test]
    fn bad_schedules_explain() {
        for (text, needle) in [
            ("0 30 2 * * *", "drop the seconds field"),
            ("30 2 * *", "has 4 fields"),
            ("61 2 * * *", "not a valid crontab line"),
            ("0 0 * * 8", "day-of-week"),
            ("@sometimes", "unknown schedule"),
            ("0 0 31 2 *", "never fires"),
        ] {
            let e = Schedule::parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn last_firing_before() {
        let s = Schedule::parse("30 2 * * *").unwrap();
        let at = utc(2026, 11, 23, 10, 0);
        let day = chrono::Duration::days(2);
        assert_eq!(
            s.last_at_or_before(at, UTC, day),
            Some(utc(2026, 11, 23, 2, 30))
        );
        assert_eq!(
            s.last_at_or_before(at, UTC, chrono::Duration::hours(1)),
            None
        );
    }
}

//! Muting: silences (`opsagent silence add`, stored in the catalog) and maintenance windows
//! (`[[alerts.maintenance]]`: a cron schedule plus a duration). A muted alert is still
//! recorded and shown by `status`; it is only not mailed.

use crate::catalog::SilenceRow;
use crate::schedule::{Schedule, Zone};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Whether `pattern` covers the alert `key`: the exact key, a prefix ending in `*` (`disk:*`),
/// or `*` for everything.
pub fn matches(pattern: &str, key: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => key.starts_with(prefix),
        None => pattern == key,
    }
}

/// The silence covering `key` at `now`, if any.
pub fn silenced_by<'a>(
    silences: &'a [SilenceRow],
    key: &str,
    now: DateTime<Utc>,
) -> Option<&'a SilenceRow> {
    silences
        .iter()
        .find(|s| s.starts_at <= now && now < s.ends_at && matches(&s.pattern, key))
}

/// `[[alerts.maintenance]]`, resolved.
#[derive(Debug, Clone)]
pub struct Maintenance {
    /// When each window starts.
    pub schedule: Schedule,
    /// How long it lasts.
    pub duration: Duration,
    /// The alert keys or patterns it mutes (`["*"]`: all).
    pub checks: Vec<String>,
}

impl Maintenance {
    /// Whether a window is open at `now` and covers `key`.
    pub fn mutes(&self, key: &str, now: DateTime<Utc>, zone: Zone) -> bool {
        if !self.checks.iter().any(|p| matches(p, key)) {
            return false;
        }
        self.open_at(now, zone).is_some()
    }

    /// The end of the window open at `now`, if one is.
    pub fn open_at(&self, now: DateTime<Utc>, zone: Zone) -> Option<DateTime<Utc>> {
        let len = chrono::Duration::from_std(self.duration).ok()?;
        let start = self.schedule.last_at_or_before(now, zone, len)?;
        (now < start + len).then_some(start + len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn patterns() {
        for (p, k, want) in [
            ("disk:/", "disk:/", true),
            ("disk:/", "disk:/var", false),
            ("disk:*", "disk:/var", true),
            ("*", "backup-run:main", true),
            ("cpu", "cpu2", false),
        ] {
            assert_eq!(matches(p, k), want, "{p} {k}");
        }
    }

    #[test]
    fn maintenance_window() {
        let m = Maintenance {
            schedule: Schedule::parse("0 3 * * *").unwrap(),
            duration: Duration::from_secs(3600),
            checks: vec!["disk:*".into()],
        };
        let zone = Zone::Named(chrono_tz::UTC);
        let at = |h, mi| Utc.with_ymd_and_hms(2026, 11, 20, h, mi, 0).unwrap();
        assert!(m.mutes("disk:/", at(3, 30), zone));
        assert!(!m.mutes("cpu", at(3, 30), zone));
        assert!(!m.mutes("disk:/", at(4, 0), zone));
        assert!(!m.mutes("disk:/", at(2, 59), zone));
    }
}

//! Retention, restic-style: which snapshots a `keep` policy keeps and which it forgets.
//!
//! The planner is pure: it takes snapshot times (already in the operator's time zone) and a
//! policy and returns, for each snapshot, whether it is kept and why. Rules, as in restic's
//! `forget`: `last = N` keeps the N newest; `hourly = N` keeps the newest snapshot of each of the
//! N most recent hours that have one (likewise daily, weekly by ISO week, monthly, yearly). A
//! snapshot kept by any rule is kept. The newest snapshot is always kept, whatever the policy.

use serde::Serialize;

/// How many snapshots to keep, by bucket. `None` means the rule is off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KeepPolicy {
    /// The N newest snapshots.
    pub last: Option<u32>,
    /// One per hour, for the N most recent hours that have a snapshot.
    pub hourly: Option<u32>,
    /// One per day.
    pub daily: Option<u32>,
    /// One per ISO week.
    pub weekly: Option<u32>,
    /// One per month.
    pub monthly: Option<u32>,
    /// One per year.
    pub yearly: Option<u32>,
}

impl KeepPolicy {
    /// True when no rule is set (such a policy would keep only the newest snapshot).
    pub fn is_empty(&self) -> bool {
        self.rules().iter().all(|(_, n)| n.unwrap_or(0) == 0)
    }

    /// The rules in display order, e.g. for `check-config`.
    pub fn rules(&self) -> [(&'static str, Option<u32>); 6] {
        [
            ("last", self.last),
            ("hourly", self.hourly),
            ("daily", self.daily),
            ("weekly", self.weekly),
            ("monthly", self.monthly),
            ("yearly", self.yearly),
        ]
    }
}

impl std::fmt::Display for KeepPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .rules()
            .iter()
            .filter_map(|(k, n)| n.map(|n| format!("{k} {n}")))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// One snapshot's fate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision<T> {
    /// The caller's handle on the snapshot (id, key…).
    pub item: T,
    /// When it was taken.
    pub time: chrono::DateTime<chrono::Utc>,
    /// Kept?
    pub keep: bool,
    /// The rules that keep it (`last`, `daily`…); empty when it goes.
    pub reasons: Vec<&'static str>,
}

/// Plans retention for one series (one database of one job). `snapshots` may come in any
/// order; the result is newest first. Buckets (hour, day, ISO week…) are taken in `zone`.
pub fn plan<T: Clone>(
    snapshots: &[(chrono::DateTime<chrono::Utc>, T)],
    policy: &KeepPolicy,
    zone: crate::schedule::Zone,
) -> Vec<Decision<T>> {
    use chrono::{Datelike, Timelike};
    let mut sorted: Vec<&(chrono::DateTime<chrono::Utc>, T)> = snapshots.iter().collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.0));
    let local = |t: chrono::DateTime<chrono::Utc>| -> chrono::NaiveDateTime {
        match zone {
            crate::schedule::Zone::Local => t.with_timezone(&chrono::Local).naive_local(),
            crate::schedule::Zone::Named(tz) => t.with_timezone(&tz).naive_local(),
        }
    };
    type BucketFn = fn(chrono::NaiveDateTime) -> i64;
    let rules: [(&'static str, Option<u32>, BucketFn); 5] = [
        ("hourly", policy.hourly, |t| {
            t.date().num_days_from_ce() as i64 * 24 + t.hour() as i64
        }),
        ("daily", policy.daily, |t| {
            t.date().num_days_from_ce() as i64
        }),
        ("weekly", policy.weekly, |t| {
            let w = t.date().iso_week();
            w.year() as i64 * 100 + w.week() as i64
        }),
        ("monthly", policy.monthly, |t| {
            t.year() as i64 * 12 + t.month() as i64
        }),
        ("yearly", policy.yearly, |t| t.year() as i64),
    ];
    let mut counts = [0u32; 5];
    let mut last_bucket: [Option<i64>; 5] = [None; 5];
    let mut out = Vec::with_capacity(sorted.len());
    for (i, (time, item)) in sorted.iter().enumerate() {
        let mut reasons = Vec::new();
        if i == 0 {
            reasons.push("newest");
        }
        if policy.last.is_some_and(|n| (i as u32) < n) {
            reasons.push("last");
        }
        let t = local(*time);
        for (r, (name, limit, bucket)) in rules.iter().enumerate() {
            let Some(limit) = limit else { continue };
            let b = bucket(t);
            if last_bucket[r] != Some(b) {
                last_bucket[r] = Some(b);
                if counts[r] < *limit {
                    counts[r] += 1;
                    reasons.push(name);
                }
            }
        }
        out.push(Decision {
            item: item.clone(),
            time: *time,
            keep: !reasons.is_empty(),
            reasons,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Duration, TimeZone, Utc};

    const UTC: crate::schedule::Zone = crate::schedule::Zone::Named(chrono_tz::UTC);

    fn at(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap()
    }

    fn kept(policy: KeepPolicy, times: &[DateTime<Utc>]) -> Vec<DateTime<Utc>> {
        let snaps: Vec<_> = times.iter().map(|t| (*t, ())).collect();
        plan(&snaps, &policy, UTC)
            .into_iter()
            .filter(|d| d.keep)
            .map(|d| d.time)
            .collect()
    }

    #[test]
    fn last_n() {
        let times: Vec<_> = (1..=5).map(|d| at(d, 2)).collect();
        let p = KeepPolicy {
            last: Some(2),
            ..Default::default()
        };
        assert_eq!(kept(p, &times), vec![at(5, 2), at(4, 2)]);
    }

    #[test]
    fn daily_keeps_newest_of_each_day() {
        // Three snapshots a day for four days.
        let times: Vec<_> = (1..=4)
            .flat_map(|d| [at(d, 1), at(d, 9), at(d, 17)])
            .collect();
        let p = KeepPolicy {
            daily: Some(2),
            ..Default::default()
        };
        assert_eq!(kept(p, &times), vec![at(4, 17), at(3, 17)]);
    }

    #[test]
    fn rules_combine_and_newest_always_stays() {
        let times: Vec<_> = (1..=20).map(|d| at(d, 2)).collect();
        // 2026-11-20 is a Friday; ISO weeks: 16-20, 9-15, 2-8, 1.
        let p = KeepPolicy {
            last: Some(1),
            daily: Some(3),
            weekly: Some(3),
            ..Default::default()
        };
        let k = kept(p, &times);
        assert_eq!(
            k,
            vec![at(20, 2), at(19, 2), at(18, 2), at(15, 2), at(8, 2)]
        );
        // A policy that is only "yearly = 1" still keeps just the newest.
        let p = KeepPolicy {
            yearly: Some(1),
            ..Default::default()
        };
        assert_eq!(kept(p, &times), vec![at(20, 2)]);
    }

    #[test]
    fn monthly_and_hourly_buckets() {
        let times = vec![
            Utc.with_ymd_and_hms(2026, 9, 30, 23, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 10, 1, 0, 30, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 10, 31, 12, 0, 0).unwrap(),
            at(1, 0),
            at(1, 0) + Duration::minutes(30),
        ];
        let p = KeepPolicy {
            monthly: Some(3),
            ..Default::default()
        };
        assert_eq!(
            kept(p, &times),
            vec![at(1, 0) + Duration::minutes(30), times[2], times[0]]
        );
        let p = KeepPolicy {
            hourly: Some(2),
            ..Default::default()
        };
        assert_eq!(
            kept(p, &times),
            vec![at(1, 0) + Duration::minutes(30), times[2]]
        );
    }

    #[test]
    fn buckets_follow_the_zone() {
        // 04:00 UTC on the 2nd is still the 1st in Bogotá (UTC-5).
        let times = vec![at(1, 20), at(2, 4)];
        let p = KeepPolicy {
            daily: Some(5),
            ..Default::default()
        };
        let snaps: Vec<_> = times.iter().map(|t| (*t, ())).collect();
        let bogota = crate::schedule::Zone::parse("America/Bogota").unwrap();
        let n = plan(&snaps, &p, bogota).iter().filter(|d| d.keep).count();
        assert_eq!(n, 1);
        assert_eq!(kept(p, &times).len(), 2);
    }
}

//! Routing, pure (time is passed in): check events and finished runs update alert states
//! ([`apply_event`], [`apply_run`]); [`plan`] decides which alerts are mailed now.
//!
//! The rules, per alert:
//! - a new incident (firing, nothing or RESOLVED mailed before) waits `group_wait`; when any
//!   alert is due, every other new incident joins the same mail (alerts that fire together);
//! - after a mail about an alert, the next one about it waits `group_interval`, and a RESOLVED
//!   is sent only when the alert has stayed resolved that long: a check that goes up and down
//!   sends its first FIRING and, once the health watch calls it flapping, one FLAPPING notice;
//! - a firing alert mailed `repeat_interval` ago gets a reminder; an escalation (WARN → CRIT)
//!   is mailed at once (within `group_interval`);
//! - a muted alert (silence, maintenance) is mailed nothing; when the mute ends the difference
//!   between what was mailed and what is true now is mailed.

use super::{AlertConfig, MinSeverity};
use crate::catalog::{AlertRow, AnomalyRow, EventRow, FinishedRun};
use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;

/// What a mail says about one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// A new incident, an escalation, or the end of flapping in a bad state.
    Firing,
    /// Still firing after `repeat_interval`.
    Reminder,
    /// The check goes up and down; further changes are not mailed until it settles.
    Flapping,
    /// Fine again.
    Resolved,
}

impl NoticeKind {
    /// The word in subjects and bodies.
    pub fn word(self) -> &'static str {
        match self {
            NoticeKind::Firing | NoticeKind::Reminder => "FIRING",
            NoticeKind::Flapping => "FLAPPING",
            NoticeKind::Resolved => "RESOLVED",
        }
    }
}

/// How bad a level is: CRIT 2, WARN and UNKNOWN 1, anything else 0.
pub fn rank(level: &str) -> u8 {
    match level {
        "CRIT" => 2,
        "WARN" | "UNKNOWN" => 1,
        _ => 0,
    }
}

/// The alert key of a failed run of `kind` (`mysql`/`media` backups, `verify` drills).
pub fn run_key(kind: &str, job: &str) -> Option<String> {
    match kind {
        "mysql" | "media" => Some(format!("backup-run:{job}")),
        "verify" => Some(format!("drill:{job}")),
        // Retention after a backup failed (an append-only key, a storage error).
        "prune" => Some(format!("retention:{job}")),
        _ => None,
    }
}

fn fresh(key: &str, since: DateTime<Utc>, at: DateTime<Utc>) -> AlertRow {
    AlertRow {
        key: key.to_string(),
        firing: false,
        flapping: false,
        severity: "OK".into(),
        since,
        changed_at: at,
        value: None,
        threshold: None,
        detail: String::new(),
        notified: String::new(),
        notified_severity: String::new(),
        notified_at: None,
        thread: None,
    }
}

/// Applies one change to `a`: `level` is `OK`, `WARN`, `CRIT`, `UNKNOWN` or `FLAPPING`.
fn change(
    a: &mut AlertRow,
    level: &str,
    from: &str,
    at: DateTime<Utc>,
    since: DateTime<Utc>,
    min: MinSeverity,
) {
    let before = (a.firing, a.flapping, a.severity.clone());
    match level {
        "OK" => {
            a.firing = false;
            a.flapping = false;
        }
        "FLAPPING" => {
            a.flapping = true;
            a.firing = true;
            if rank(from) > 0 {
                a.severity = from.to_string();
            } else if rank(&a.severity) == 0 {
                a.severity = "WARN".into();
            }
        }
        level => {
            a.flapping = false;
            a.severity = level.to_string();
            a.firing = rank(level) >= min.rank();
        }
    }
    if (a.firing, a.flapping) != (before.0, before.1) {
        a.changed_at = at;
        a.since = since;
    } else if a.severity != before.2 {
        a.changed_at = at;
    }
}

/// Folds one check event into the alerts.
pub fn apply_event(alerts: &mut BTreeMap<String, AlertRow>, ev: &EventRow, min: MinSeverity) {
    if !alerts.contains_key(&ev.check) && ev.to_state == "OK" {
        return;
    }
    let a = alerts
        .entry(ev.check.clone())
        .or_insert_with(|| fresh(&ev.check, ev.since, ev.at));
    change(a, &ev.to_state, &ev.from_state, ev.at, ev.since, min);
    a.value = ev.value;
    a.threshold = ev.threshold;
    a.detail = ev.detail.clone();
}

/// Folds one finished backup or drill run into the alerts: a failure fires `backup-run:JOB` /
/// `drill:JOB` (CRIT; WARN when interrupted or partial: a media snapshot that skipped files),
/// failed retention `retention:JOB` (WARN); a success resolves it. (A failed copy alerts
/// through the freshness check `backup:JOB@STORAGE`, once older than the job's grace.)
pub fn apply_run(alerts: &mut BTreeMap<String, AlertRow>, run: &FinishedRun, min: MinSeverity) {
    let Some(key) = run_key(&run.kind, &run.job) else {
        return;
    };
    let level = match run.status.as_str() {
        // A copy behind is a warning: the default storage holds the snapshots.
        "failed" if run.kind == "prune" => "WARN",
        "failed" => "CRIT",
        "interrupted" | "partial" => "WARN",
        _ => "OK",
    };
    if level == "OK" && !alerts.contains_key(&key) {
        return;
    }
    let a = alerts
        .entry(key.clone())
        .or_insert_with(|| fresh(&key, run.ended_at, run.ended_at));
    change(a, level, "", run.ended_at, run.ended_at, min);
    let what = match run.kind.as_str() {
        "verify" => "restore drill",
        "prune" => "retention",
        _ => "backup",
    };
    a.detail = match (&run.error, level) {
        (_, "OK") => format!("the {what} of job {} succeeded", run.job),
        (Some(e), _) => format!("the {what} of job {} {}: {e}", run.job, run.status),
        (None, _) => format!("the {what} of job {} {}", run.job, run.status),
    };
    a.value = None;
    a.threshold = None;
}

/// The alert key of job `job`'s anomaly guard.
pub fn anomaly_key(job: &str) -> String {
    format!("anomaly:{job}")
}

/// Folds one anomaly change into the alerts: an open anomaly fires `anomaly:JOB` (WARN, what
/// shrank in the detail, joined to the other open ones of the job), an acknowledged one
/// resolves it.
pub fn apply_anomaly(alerts: &mut BTreeMap<String, AlertRow>, an: &AnomalyRow, min: MinSeverity) {
    let key = anomaly_key(&an.job);
    let (level, at) = match an.acked_at {
        Some(t) => ("OK", t),
        None => ("WARN", an.detected_at),
    };
    if level == "OK" && !alerts.contains_key(&key) {
        return;
    }
    let a = alerts
        .entry(key.clone())
        .or_insert_with(|| fresh(&key, at, at));
    let was_firing = a.firing;
    change(a, level, "", at, at, min);
    a.detail = match (level, was_firing) {
        ("OK", _) => format!(
            "the anomaly of job {} was acknowledged by {}; retention resumes",
            an.job,
            an.acked_by.as_deref().unwrap_or("an operator")
        ),
        (_, true) if !a.detail.contains(&an.detail) => format!("{}; {}", a.detail, an.detail),
        (_, true) => a.detail.clone(),
        _ => format!(
            "{} (retention of job {} is frozen: run `opsagent ack {}` once checked)",
            an.detail, an.job, an.job
        ),
    };
    a.value = None;
    a.threshold = None;
}

/// What `a` wants mailed: the kind, when it is due, and whether it may join an earlier mail.
fn want(a: &AlertRow, now: DateTime<Utc>, r: &Rules) -> Option<(NoticeKind, DateTime<Utc>, bool)> {
    let rate = a.notified_at.map(|t| t + r.group_interval);
    let gated = |t: DateTime<Utc>| rate.map_or(t, |x| t.max(x));
    let mailed = a.notified.as_str();
    if a.firing {
        let kind = if a.flapping {
            NoticeKind::Flapping
        } else {
            NoticeKind::Firing
        };
        return Some(match mailed {
            "" | "RESOLVED" => (
                kind,
                gated(a.changed_at + r.group_wait),
                rate.is_none_or(|x| x <= now),
            ),
            m if m == kind.word() => {
                if !a.flapping && rank(&a.severity) > rank(&a.notified_severity) {
                    (NoticeKind::Firing, gated(a.changed_at), false)
                } else {
                    let last = a.notified_at.unwrap_or(a.changed_at);
                    (NoticeKind::Reminder, last + r.repeat_interval, false)
                }
            }
            _ => (kind, gated(a.changed_at), false),
        });
    }
    matches!(mailed, "FIRING" | "FLAPPING").then(|| {
        (
            NoticeKind::Resolved,
            gated(a.changed_at + r.group_interval),
            false,
        )
    })
}

/// [`AlertConfig`]'s intervals as chrono durations.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// See [`AlertConfig::group_wait`].
    pub group_wait: Duration,
    /// See [`AlertConfig::group_interval`].
    pub group_interval: Duration,
    /// See [`AlertConfig::repeat_interval`].
    pub repeat_interval: Duration,
}

impl From<&AlertConfig> for Rules {
    fn from(c: &AlertConfig) -> Rules {
        let d = |x| Duration::from_std(x).unwrap_or(Duration::days(36_500));
        Rules {
            group_wait: d(c.group_wait),
            group_interval: d(c.group_interval),
            repeat_interval: d(c.repeat_interval),
        }
    }
}

/// The alerts (by index) to mail now, with what to say; empty when nothing is due.
pub fn plan(
    alerts: &[AlertRow],
    now: DateTime<Utc>,
    rules: &Rules,
    muted: impl Fn(&str) -> bool,
) -> Vec<(usize, NoticeKind)> {
    let wants: Vec<(usize, NoticeKind, DateTime<Utc>, bool)> = alerts
        .iter()
        .enumerate()
        .filter(|(_, a)| !muted(&a.key))
        .filter_map(|(i, a)| want(a, now, rules).map(|(k, t, j)| (i, k, t, j)))
        .collect();
    if !wants.iter().any(|w| w.2 <= now) {
        return Vec::new();
    }
    wants
        .into_iter()
        .filter(|w| w.2 <= now || w.3)
        .map(|w| (w.0, w.1))
        .collect()
}

/// Alerts with nothing left to say (resolved and mailed so, or never mailed): forgotten.
pub fn finished(a: &AlertRow) -> bool {
    !a.firing && matches!(a.notified.as_str(), "" | "RESOLVED")
}

/// Records that `kind` was mailed about `a` at `now` in the mail `message_id`.
pub fn record(a: &mut AlertRow, kind: NoticeKind, now: DateTime<Utc>, message_id: &str) {
    let new_incident = matches!(a.notified.as_str(), "" | "RESOLVED");
    a.notified = kind.word().to_string();
    a.notified_severity = a.severity.clone();
    a.notified_at = Some(now);
    if new_incident && kind != NoticeKind::Resolved {
        a.thread = Some(message_id.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use NoticeKind::*;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 20, 3, 0, 0).unwrap() + Duration::seconds(s)
    }

    fn ev(check: &str, from: &str, to: &str, at: i64) -> EventRow {
        EventRow {
            id: 0,
            check: check.into(),
            from_state: from.into(),
            to_state: to.into(),
            at: t(at),
            since: t(at),
            value: None,
            threshold: None,
            detail: String::new(),
            delivered: false,
        }
    }

    fn rules() -> Rules {
        Rules::from(&AlertConfig::default())
    }

    /// Feeds `(second, check, from, to)` events, planning every 10 s until `end`; returns the
    /// mails as `(second, [(check, kind)])`.
    fn simulate(
        events: &[(i64, &str, &str, &str)],
        end: i64,
    ) -> Vec<(i64, Vec<(String, NoticeKind)>)> {
        let mut map = BTreeMap::new();
        let mut mails = Vec::new();
        let mut next = 0;
        for s in (0..=end).step_by(10) {
            while next < events.len() && events[next].0 <= s {
                let (at, c, f, to) = events[next];
                apply_event(&mut map, &ev(c, f, to, at), MinSeverity::Warn);
                next += 1;
            }
            let rows: Vec<AlertRow> = map.values().cloned().collect();
            let p = plan(&rows, t(s), &rules(), |_| false);
            if !p.is_empty() {
                let mut mail = Vec::new();
                for (i, k) in p {
                    let a = map.get_mut(&rows[i].key).unwrap();
                    record(a, k, t(s), "<m@x>");
                    mail.push((a.key.clone(), k));
                }
                mails.push((s, mail));
            }
            map.retain(|_, a| !finished(a));
        }
        mails
    }

    fn one(c: &str, k: NoticeKind) -> Vec<(String, NoticeKind)> {
        vec![(c.to_string(), k)]
    }

    #[test]
    fn fire_remind_resolve() {
        let got = simulate(
            &[(0, "cpu", "OK", "CRIT"), (5 * 3600, "cpu", "CRIT", "OK")],
            6 * 3600,
        );
        assert_eq!(
            got,
            vec![
                (30, one("cpu", Firing)),
                (30 + 4 * 3600, one("cpu", Reminder)),
                (5 * 3600 + 300, one("cpu", Resolved)),
            ]
        );
    }

    #[test]
    fn together_in_one_mail_and_short_blips_not_at_all() {
        let got = simulate(
            &[
                (0, "a", "OK", "CRIT"),
                (10, "b", "OK", "WARN"),
                (20, "c", "OK", "CRIT"),
                (100, "blip", "OK", "CRIT"),
                (110, "blip", "CRIT", "OK"),
            ],
            600,
        );
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, 30);
        assert_eq!(got[0].1.len(), 3);
    }

    #[test]
    fn flapping_for_ten_minutes_sends_first_firing_and_one_flapping_notice() {
        // The health watch reports five changes, then FLAPPING, then nothing while it flaps.
        let mut evs = Vec::new();
        for i in 0..5 {
            let (f, to) = if i % 2 == 0 {
                ("OK", "CRIT")
            } else {
                ("CRIT", "OK")
            };
            evs.push((i * 40, "web", f, to));
        }
        evs.push((200, "web", "OK", "FLAPPING"));
        let got = simulate(&evs, 600);
        assert_eq!(
            got,
            vec![(30, one("web", Firing)), (330, one("web", Flapping))]
        );
        // Settling in OK resolves it (after group_interval).
        evs.push((2000, "web", "FLAPPING", "OK"));
        let got = simulate(&evs, 2400);
        assert_eq!(got.last().unwrap(), &(2300, one("web", Resolved)));
    }

    #[test]
    fn escalation_min_severity_and_runs() {
        let got = simulate(&[(0, "d", "OK", "WARN"), (400, "d", "WARN", "CRIT")], 800);
        assert_eq!(got, vec![(30, one("d", Firing)), (400, one("d", Firing))]);
        let mut map = BTreeMap::new();
        apply_event(&mut map, &ev("w", "OK", "WARN", 0), MinSeverity::Crit);
        assert!(!map["w"].firing);
        let run = FinishedRun {
            id: 1,
            job: "main".into(),
            kind: "mysql".into(),
            status: "failed".into(),
            error: Some("mariadb-dump: access denied".into()),
            ended_at: t(0),
        };
        apply_run(&mut map, &run, MinSeverity::Crit);
        let a = &map["backup-run:main"];
        assert!(a.firing && a.detail.contains("access denied"), "{a:?}");
        apply_run(
            &mut map,
            &FinishedRun {
                status: "success".into(),
                ..run
            },
            MinSeverity::Crit,
        );
        assert!(!map["backup-run:main"].firing);
        let partial = FinishedRun {
            id: 2,
            job: "uploads".into(),
            kind: "media".into(),
            status: "partial".into(),
            error: Some("1 warning(s); first: skipped `/srv/x`: Permission denied".into()),
            ended_at: t(10),
        };
        apply_run(&mut map, &partial, MinSeverity::Warn);
        let a = &map["backup-run:uploads"];
        assert!(
            a.firing && a.severity == "WARN" && a.detail.contains("partial"),
            "{a:?}"
        );
    }

    #[test]
    fn an_anomaly_fires_until_acknowledged() {
        let mut map = BTreeMap::new();
        let mut an = AnomalyRow {
            id: 1,
            job: "main".into(),
            item: "shop".into(),
            snapshot: "s".into(),
            detected_at: t(0),
            detail: "shop.orders: 1 000 → 200 rows since 2026-11-19 02:30".into(),
            acked_at: None,
            acked_by: None,
        };
        apply_anomaly(&mut map, &an, MinSeverity::Warn);
        let a = &map["anomaly:main"];
        assert!(a.firing && a.severity == "WARN", "{a:?}");
        assert!(
            a.detail.contains("1 000 → 200") && a.detail.contains("opsagent ack main"),
            "{a:?}"
        );
        an.acked_at = Some(t(60));
        an.acked_by = Some("root".into());
        apply_anomaly(&mut map, &an, MinSeverity::Warn);
        let a = &map["anomaly:main"];
        assert!(
            !a.firing && a.detail.contains("acknowledged by root"),
            "{a:?}"
        );
    }

    #[test]
    fn muted_alerts_wait() {
        let mut map = BTreeMap::new();
        apply_event(&mut map, &ev("x", "OK", "CRIT", 0), MinSeverity::Warn);
        let rows: Vec<AlertRow> = map.values().cloned().collect();
        assert!(plan(&rows, t(60), &rules(), |k| k == "x").is_empty());
        assert_eq!(plan(&rows, t(60), &rules(), |_| false), vec![(0, Firing)]);
    }
}

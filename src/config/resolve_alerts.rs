//! `[alerts]`: grouping, reminders, resolved mails, the lowest severity, maintenance windows.
//! (`[alerts.email]` is `resolve_email`.)

use super::defaults;
use super::raw::RawAlerts;
use super::resolve::{schedule, Ctx};
use super::span::KeyPath;
use crate::alert::silence::Maintenance;
use crate::alert::{AlertConfig, MinSeverity};

pub(super) fn alerts(cx: &mut Ctx, raw: Option<&RawAlerts>, p: &KeyPath) -> AlertConfig {
    let mut c = AlertConfig::default();
    let Some(a) = raw else {
        return c;
    };
    c.group_wait = a.group_wait.unwrap_or(c.group_wait);
    c.group_interval = a.group_interval.unwrap_or(c.group_interval);
    c.repeat_interval = a.repeat_interval.unwrap_or(c.repeat_interval);
    c.send_resolved = a.send_resolved.unwrap_or(defaults::SEND_RESOLVED);
    if c.repeat_interval < c.group_interval {
        cx.error(
            &p.key("repeat_interval"),
            "repeat_interval is shorter than group_interval",
            "reminders come at most once per group_interval; e.g. repeat_interval = \"4h\"",
        );
    }
    if c.repeat_interval.is_zero() {
        cx.error(
            &p.key("repeat_interval"),
            "repeat_interval is zero",
            "e.g. \"4h\"",
        );
    }
    match a
        .min_severity
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("warn") | Some("warning") => {}
        Some("crit") | Some("critical") => c.min_severity = MinSeverity::Crit,
        Some(other) => cx.error(
            &p.key("min_severity"),
            format!("unknown severity `{other}`"),
            "use \"warn\" (WARN, UNKNOWN and CRIT alert) or \"crit\" (only CRIT)",
        ),
    }
    for (i, m) in a.maintenance.iter().enumerate() {
        let mp = p.key("maintenance").index(i);
        let sched = schedule(cx, m.schedule.as_deref(), &mp.key("schedule"));
        let duration = match m.duration {
            None => {
                cx.missing(
                    &mp.key("duration"),
                    "duration = \"2h\": how long each window lasts",
                );
                None
            }
            Some(d) if d.is_zero() => {
                cx.error(
                    &mp.key("duration"),
                    "the window lasts no time",
                    "e.g. duration = \"2h\"",
                );
                None
            }
            Some(d) => Some(d),
        };
        let checks = m
            .checks
            .clone()
            .unwrap_or_else(|| vec![defaults::MAINTENANCE_CHECKS.into()]);
        if checks.is_empty() {
            cx.error(
                &mp.key("checks"),
                "the list is empty: this window mutes nothing",
                "name checks (\"disk:/\", \"backup-run:main\", prefixes like \"disk:*\") or leave it out for all",
            );
        }
        if let (Some(schedule), Some(duration)) = (sched, duration) {
            c.maintenance.push(Maintenance {
                schedule,
                duration: duration.min(defaults::MAINTENANCE_MAX),
                checks,
            });
        }
    }
    c
}

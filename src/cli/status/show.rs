//! What `status` prints: the text screen and the `--json` document.

use super::Report;
use crate::catalog::{OutboxRow, RunRecord};
use crate::config::Zone;
pub use crate::daemon::report::age;
use chrono::{DateTime, Utc};
use std::fmt::Write;

fn alerts_section(o: &mut String, r: &Report, zone: Zone) {
    if r.alerts.is_empty() && r.silences.is_empty() && r.outbox.is_empty() {
        let _ = writeln!(o, "no alerts firing, no silences, no mails waiting");
        return;
    }
    for a in &r.alerts {
        let state = match (a.row.firing, a.row.flapping) {
            (true, true) => "FLAPPING".to_string(),
            (true, false) => format!("FIRING {}", a.row.severity),
            _ => "RESOLVED (mail pending)".to_string(),
        };
        let mailed = match a.row.notified_at {
            Some(t) if !a.row.notified.is_empty() => {
                format!("mailed {}", zone.format(t, "%Y-%m-%d %H:%M"))
            }
            _ => "not mailed yet".to_string(),
        };
        let muted = a
            .muted
            .as_deref()
            .map(|m| format!("; {m}"))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "alert {:<22} {state} since {}, {mailed}{muted}",
            a.row.key,
            zone.format(a.row.since, "%Y-%m-%d %H:%M")
        );
    }
    for s in &r.silences {
        let _ = writeln!(
            o,
            "silence #{} {} until {} by {}: {}",
            s.id,
            s.pattern,
            zone.format(s.ends_at, "%Y-%m-%d %H:%M"),
            s.created_by,
            s.reason
        );
    }
    let (hooks, mails): (Vec<&OutboxRow>, Vec<&OutboxRow>) =
        r.outbox.iter().partition(|m| m.webhook().is_some());
    webhooks_section(o, &hooks, zone);
    let (refused, waiting): (Vec<&OutboxRow>, Vec<&OutboxRow>) =
        mails.into_iter().partition(|m| m.given_up());
    if let Some(first) = waiting.first() {
        let _ = writeln!(
            o,
            "mails waiting in the outbox: {}",
            queue_summary(waiting.len(), first, zone)
        );
    }
    for m in refused {
        let _ = writeln!(
            o,
            "mail REFUSED by the SMTP server, not retried until restart or a mail settings change: \"{}\" to {} (queued {}): {}",
            m.subject,
            m.rcpt_to.join(", "),
            zone.format(m.created_at, "%Y-%m-%d %H:%M"),
            m.last_error.as_deref().unwrap_or("-")
        );
    }
}

/// `n (oldest queued …, k attempts; last error: …)` for `n` rows waiting, `first` the oldest.
fn queue_summary(n: usize, first: &OutboxRow, zone: Zone) -> String {
    let why = first
        .last_error
        .as_deref()
        .map(|e| format!("; last error: {e}"))
        .unwrap_or_default();
    format!(
        "{n} (oldest queued {}, {} attempts{why})",
        zone.format(first.created_at, "%Y-%m-%d %H:%M"),
        first.attempts
    )
}

/// Webhook notifications waiting (per webhook) or refused.
fn webhooks_section(o: &mut String, rows: &[&OutboxRow], zone: Zone) {
    let mut names: Vec<&str> = rows.iter().filter_map(|m| m.webhook()).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let (refused, waiting): (Vec<&OutboxRow>, Vec<&OutboxRow>) = rows
            .iter()
            .filter(|m| m.webhook() == Some(name))
            .partition(|m| m.given_up());
        if let Some(first) = waiting.first() {
            let _ = writeln!(
                o,
                "webhook {name}: notifications waiting in the outbox: {}",
                queue_summary(waiting.len(), first, zone)
            );
        }
        for m in refused {
            let _ = writeln!(
                o,
                "webhook {name}: notification REFUSED, not retried until restart or a webhook settings change: \"{}\" (queued {}): {}",
                m.subject,
                zone.format(m.created_at, "%Y-%m-%d %H:%M"),
                m.last_error.as_deref().unwrap_or("-")
            );
        }
    }
}

fn value(v: Option<f64>) -> String {
    match v {
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.1}"),
        None => "-".into(),
    }
}

fn run_cell(r: Option<&RunRecord>, zone: Zone, now: DateTime<Utc>) -> String {
    match r {
        None => "never".into(),
        Some(r) => {
            let at = r.ended_at.unwrap_or(r.started_at);
            format!(
                "{} {} ({} ago)",
                zone.format(at, "%Y-%m-%d %H:%M"),
                r.status.as_str(),
                age(now - at)
            )
        }
    }
}

/// The text screen.
pub fn render(r: &Report, zone: Zone, now: DateTime<Utc>) -> String {
    let mut o = String::new();
    let count = |s: u8| r.checks.iter().filter(|c| c.severity() == s).count();
    let _ = writeln!(
        o,
        "{}: {} critical, {} warning, {} ok",
        r.host,
        count(2),
        count(1),
        count(0)
    );
    let _ = writeln!(o, "host: {}", r.host_summary());
    let _ = writeln!(o);
    if r.checks.is_empty() {
        let _ = writeln!(o, "no check results yet (is `opsagent run` running?)");
    } else {
        let _ = writeln!(
            o,
            "{:<28} {:<8} {:<18} {:>9}  DETAIL",
            "CHECK", "STATE", "SINCE", "VALUE"
        );
        for c in &r.checks {
            let first = c.row.detail.lines().next().unwrap_or("");
            let flap = if c.row.flapping { " (flapping)" } else { "" };
            let cause = (r.causes.get(&c.row.check))
                .map_or(String::new(), |root| format!(" (because {root} fails)"));
            let line = format!(
                "{:<28} {:<8} {:<18} {:>9}  {first}{flap}{cause}",
                c.row.check,
                c.shown(),
                zone.format(c.row.since, "%Y-%m-%d %H:%M"),
                value(c.row.value),
            );
            let _ = writeln!(o, "{}", line.trim_end());
        }
    }
    if !r.jobs.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{:<12} {:<38} {:<38} LAST DRILL",
            "JOB", "LAST BACKUP", "LAST GOOD BACKUP"
        );
        for j in &r.jobs {
            let _ = writeln!(
                o,
                "{:<12} {:<38} {:<38} {}",
                j.job,
                run_cell(j.last_backup.as_ref(), zone, now),
                run_cell(j.last_good.as_ref(), zone, now),
                run_cell(j.last_drill.as_ref(), zone, now)
            );
        }
    }
    frozen_section(&mut o, r, zone);
    binlog_section(&mut o, r, zone, now);
    let _ = writeln!(o);
    alerts_section(&mut o, r, zone);
    pings_section(&mut o, r, now);
    let _ = writeln!(o, "events not yet delivered: {}", r.pending_events);
    o
}

/// Jobs whose retention an anomaly froze: why, and the command that lifts it.
fn frozen_section(o: &mut String, r: &Report, zone: Zone) {
    for j in r.jobs.iter().filter(|j| !j.frozen.is_empty()) {
        for an in &j.frozen {
            let _ = writeln!(
                o,
                "{}: retention FROZEN since {} (snapshot {}): {}",
                j.job,
                zone.format(an.detected_at, "%Y-%m-%d %H:%M"),
                an.snapshot,
                an.detail
            );
        }
        let _ = writeln!(
            o,
            "{}: nothing is pruned until `opsagent ack {}` (once the shrink is checked: expected, or the data restored)",
            j.job, j.job
        );
    }
}

/// Per job archiving its binary log: the newest moment archived and how much is at risk, or
/// why archiving is stopped.
fn binlog_section(o: &mut String, r: &Report, zone: Zone, now: DateTime<Utc>) {
    for (job, b) in r
        .jobs
        .iter()
        .filter_map(|j| Some((&j.job, j.binlog.as_ref()?)))
    {
        let newest = match b.last_event_at {
            Some(t) => format!("newest event {}", zone.format(t, "%Y-%m-%d %H:%M:%S")),
            None => "no event archived yet".to_string(),
        };
        let _ = writeln!(
            o,
            "{job}: binary log archived up to {} (data at risk: {}), {newest}, {} at byte {}",
            zone.format(b.updated_at, "%Y-%m-%d %H:%M:%S"),
            age(now - b.updated_at),
            b.file,
            b.pos
        );
        if let Some(e) = &b.error {
            let _ = writeln!(
                o,
                "{job}: binary log archiving STOPPED ({}): {e}",
                zone.format(b.updated_at, "%Y-%m-%d %H:%M")
            );
        }
    }
}

/// The last heartbeat ping per target; failing ones say since when and why.
fn pings_section(o: &mut String, r: &Report, now: DateTime<Utc>) {
    for p in &r.pings {
        let last_ok = p
            .last_ok
            .map_or("never".to_string(), |t| format!("{} ago", age(now - t)));
        if p.ok {
            let _ = writeln!(
                o,
                "ping {}: ok ({}, {} ago)",
                p.target,
                p.kind,
                age(now - p.at)
            );
        } else {
            let why = p.error.as_deref().unwrap_or("no detail");
            let _ = writeln!(
                o,
                "ping {}: FAILING, {} attempt(s), last delivered {last_ok}: {why}",
                p.target, p.failures
            );
        }
    }
}

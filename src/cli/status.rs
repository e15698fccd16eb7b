//! `opsagent status [--json]`: one screen — the host summary, every check with its state and
//! since when, the last backup and restore drill of each job with their age, and the events not
//! yet delivered. Read from the catalog the daemon writes; a check not updated for three
//! intervals is shown as STALE (is the daemon running?) and counts as a warning.
//!
//! Exit codes (Nagios-style, for scripts): 0 everything OK, 1 a warning, UNKNOWN or STALE
//! check, 2 a critical check. A configuration error also exits 2, with its message on stderr.

use super::Cli;
use crate::catalog::{AlertRow, Catalog, CheckStateRow, OutboxRow, RunRecord, SilenceRow};
use crate::config::Zone;
use crate::health::state::Level;
use chrono::{DateTime, Utc};
use std::fmt::Write;
use std::time::Duration;

/// Flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// One check as shown.
#[derive(Debug, Clone)]
pub struct CheckLine {
    /// From the catalog.
    pub row: CheckStateRow,
    /// Not updated for too long.
    pub stale: bool,
}

impl CheckLine {
    /// The state shown (STALE overrides).
    pub fn shown(&self) -> &str {
        if self.stale {
            "STALE"
        } else {
            &self.row.state
        }
    }

    fn severity(&self) -> u8 {
        if self.stale {
            1
        } else {
            Level::parse(&self.row.state).severity()
        }
    }
}

/// A job's last runs.
#[derive(Debug, Clone)]
pub struct JobLine {
    /// Job name.
    pub job: String,
    /// Newest finished backup.
    pub last_backup: Option<RunRecord>,
    /// Newest successful backup.
    pub last_good: Option<RunRecord>,
    /// Newest finished restore drill.
    pub last_drill: Option<RunRecord>,
}

/// Everything `status` shows.
#[derive(Debug, Clone)]
pub struct Report {
    /// Host name.
    pub host: String,
    /// Checks, worst first.
    pub checks: Vec<CheckLine>,
    /// Backup jobs.
    pub jobs: Vec<JobLine>,
    /// Events alerting has not delivered yet.
    pub pending_events: usize,
    /// Alerts firing or not yet mailed as resolved.
    pub alerts: Vec<AlertLine>,
    /// Silences not yet over.
    pub silences: Vec<SilenceRow>,
    /// Mails waiting in the outbox.
    pub outbox: Vec<OutboxRow>,
}

/// One alert as shown.
#[derive(Debug, Clone)]
pub struct AlertLine {
    /// From the catalog.
    pub row: AlertRow,
    /// What mutes it (a silence, a maintenance window), if anything.
    pub muted: Option<String>,
}

impl Report {
    /// 0 all OK, 1 warnings, 2 critical.
    pub fn exit_code(&self) -> u8 {
        // A mail the server refused for good means alerts do not arrive: a warning.
        let mail = u8::from(self.outbox.iter().any(OutboxRow::given_up));
        self.checks
            .iter()
            .map(CheckLine::severity)
            .max()
            .unwrap_or(0)
            .max(mail)
    }

    /// Reads the catalog.
    pub fn gather(
        cat: &Catalog,
        host: &str,
        jobs: &[(&str, &str)],
        interval: Duration,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Report> {
        let stale_after = chrono::Duration::from_std(interval * 3 + Duration::from_secs(60))?;
        let mut checks: Vec<CheckLine> = cat
            .check_states()?
            .into_iter()
            .map(|row| CheckLine {
                stale: now - row.updated_at > stale_after,
                row,
            })
            .collect();
        checks.sort_by(|a, b| {
            b.severity()
                .cmp(&a.severity())
                .then_with(|| a.row.check.cmp(&b.row.check))
        });
        let mut lines = Vec::new();
        for &(j, kind) in jobs {
            lines.push(JobLine {
                job: j.to_string(),
                last_backup: cat.last_finished_run(j, kind, false)?,
                last_good: cat.last_finished_run(j, kind, true)?,
                last_drill: cat.last_finished_run(j, "verify", false)?,
            });
        }
        Ok(Report {
            host: host.to_string(),
            checks,
            jobs: lines,
            pending_events: cat.events(true, 10_000)?.len(),
            alerts: Vec::new(),
            silences: cat.silences(Some(now))?,
            outbox: cat.outbox(None)?,
        }
        .with_alerts(cat.alerts()?, None, now))
    }

    /// Adds the alerts, marking those a silence or (with `setup`) a maintenance window mutes.
    pub fn with_alerts(
        mut self,
        alerts: Vec<AlertRow>,
        setup: Option<&crate::alert::Setup>,
        now: DateTime<Utc>,
    ) -> Report {
        self.alerts = alerts
            .into_iter()
            .filter(|a| a.firing || a.notified == "FIRING" || a.notified == "FLAPPING")
            .map(|row| {
                let muted = match crate::alert::silence::silenced_by(&self.silences, &row.key, now)
                {
                    Some(s) => Some(format!(
                        "silenced (#{}, until {}: {})",
                        s.id,
                        s.ends_at.format("%Y-%m-%d %H:%M UTC"),
                        s.reason
                    )),
                    None => setup
                        .filter(|st| st.muted(&[], &row.key, now))
                        .map(|_| "muted by a maintenance window".to_string()),
                };
                AlertLine { row, muted }
            })
            .collect();
        self
    }
}

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
    let (refused, waiting): (Vec<&OutboxRow>, Vec<&OutboxRow>) =
        r.outbox.iter().partition(|m| m.given_up());
    if let Some(first) = waiting.first() {
        let why = first
            .last_error
            .as_deref()
            .map(|e| format!("; last error: {e}"))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "mails waiting in the outbox: {} (oldest queued {}, {} attempts{why})",
            waiting.len(),
            zone.format(first.created_at, "%Y-%m-%d %H:%M"),
            first.attempts
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

/// "3d 4h", "2h 5m", "40s".
pub fn age(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn value(v: Option<f64>) -> String {
    match v {
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.1}"),
        None => "-".into(),
    }
}

fn host_summary(r: &Report) -> String {
    let get = |name: &str| {
        r.checks
            .iter()
            .find(|c| c.row.check == name)
            .and_then(|c| c.row.value)
    };
    let mut parts = Vec::new();
    for (name, label, unit) in [
        ("cpu", "cpu", "%"),
        ("load", "load/core", ""),
        ("memory", "memory available", "%"),
        ("swap", "swap used", "%"),
    ] {
        if let Some(v) = get(name) {
            parts.push(format!("{label} {v:.1}{unit}"));
        }
    }
    for c in r.checks.iter().filter(|c| c.row.kind == "disk") {
        if let (Some(v), Some(m)) = (c.row.value, c.row.check.strip_prefix("disk:")) {
            parts.push(format!("disk {m} {v:.0}%"));
        }
    }
    if parts.is_empty() {
        "no host samples yet".into()
    } else {
        parts.join(", ")
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
    let _ = writeln!(o, "host: {}", host_summary(r));
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
            let line = format!(
                "{:<28} {:<8} {:<18} {:>9}  {first}{flap}",
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
    let _ = writeln!(o);
    alerts_section(&mut o, r, zone);
    let _ = writeln!(o, "events not yet delivered: {}", r.pending_events);
    o
}

fn run_json(r: Option<&RunRecord>, now: DateTime<Utc>) -> serde_json::Value {
    match r {
        None => serde_json::Value::Null,
        Some(r) => {
            let at = r.ended_at.unwrap_or(r.started_at);
            serde_json::json!({"at": at.to_rfc3339(), "status": r.status.as_str(), "age_seconds": (now - at).num_seconds(), "error": r.error})
        }
    }
}

/// The `--json` document.
pub fn to_json(r: &Report, now: DateTime<Utc>) -> serde_json::Value {
    let checks: Vec<_> = r
        .checks
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c.row.check, "kind": c.row.kind, "state": c.shown(),
                "since": c.row.since.to_rfc3339(), "updated_at": c.row.updated_at.to_rfc3339(),
                "value": c.row.value, "threshold": c.row.threshold, "detail": c.row.detail,
                "flapping": c.row.flapping,
            })
        })
        .collect();
    let jobs: Vec<_> = r
        .jobs
        .iter()
        .map(|j| serde_json::json!({"job": j.job, "last_backup": run_json(j.last_backup.as_ref(), now), "last_good_backup": run_json(j.last_good.as_ref(), now), "last_drill": run_json(j.last_drill.as_ref(), now)}))
        .collect();
    let status = ["OK", "WARN", "CRIT"][r.exit_code() as usize];
    let alerts: Vec<_> = r
        .alerts
        .iter()
        .map(|a| serde_json::json!({"key": a.row.key, "firing": a.row.firing, "flapping": a.row.flapping, "severity": a.row.severity, "since": a.row.since.to_rfc3339(), "notified": a.row.notified, "muted": a.muted}))
        .collect();
    let silences: Vec<_> = r
        .silences
        .iter()
        .map(|s| serde_json::json!({"id": s.id, "check": s.pattern, "until": s.ends_at.to_rfc3339(), "by": s.created_by, "reason": s.reason}))
        .collect();
    let outbox: Vec<_> = r
        .outbox
        .iter()
        .map(|m| serde_json::json!({"subject": m.subject, "message_id": m.message_id, "to": m.rcpt_to, "attempts": m.attempts, "refused": m.given_up(), "last_error": m.last_error}))
        .collect();
    serde_json::json!({"host": r.host, "status": status, "exit_code": r.exit_code(), "checks": checks, "jobs": jobs, "pending_events": r.pending_events, "alerts": alerts, "silences": silences, "outbox": outbox})
}

/// Prints the status and exits with its code.
pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let cfg = super::load_config(cli)?;
    let cat = Catalog::open(&cfg.catalog_path())?;
    let now = Utc::now();
    let jobs: Vec<(&str, &str)> = cfg
        .job_names()
        .into_iter()
        .map(|j| (j, cfg.job_kind(j).unwrap_or("mysql")))
        .collect();
    let setup = cfg.alert_setup();
    let r = Report::gather(&cat, &cfg.agent.hostname, &jobs, cfg.health.interval, now)?
        .with_alerts(cat.alerts()?, Some(&setup), now);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&r, now))?);
    } else {
        print!("{}", render(&r, cfg.agent.zone, now));
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    std::process::exit(i32::from(r.exit_code()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::RunStatus;
    use chrono::TimeZone;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 20, h, m, 0).unwrap()
    }

    fn check(
        name: &str,
        kind: &str,
        state: &str,
        since: DateTime<Utc>,
        v: Option<f64>,
        detail: &str,
    ) -> CheckLine {
        CheckLine {
            row: CheckStateRow {
                check: name.into(),
                kind: kind.into(),
                state: state.into(),
                since,
                updated_at: t(12, 0),
                value: v,
                threshold: None,
                detail: detail.into(),
                flapping: false,
            },
            stale: false,
        }
    }

    fn run(kind: &str, at: DateTime<Utc>, status: RunStatus) -> RunRecord {
        RunRecord {
            id: 1,
            job: "main".into(),
            kind: kind.into(),
            trigger: "schedule".into(),
            started_at: at,
            ended_at: Some(at),
            status,
            bytes: 0,
            error: None,
            pid: 1,
        }
    }

    pub(super) fn fixture() -> Report {
        let mut stale = check(
            "legacy-api",
            "tcp",
            "OK",
            t(1, 0),
            Some(0.4),
            "127.0.0.1:8080 answers in 0.4 ms",
        );
        stale.stale = true;
        Report {
            host: "web-01".into(),
            checks: vec![
                check(
                    "disk:/srv",
                    "disk",
                    "CRIT",
                    t(11, 30),
                    Some(93.4),
                    "biggest directories: /srv/www 40.1 GiB\nmore",
                ),
                stale,
                check("cpu", "cpu", "OK", t(3, 0), Some(12.25), ""),
                check("disk:/", "disk", "OK", t(3, 0), Some(41.0), ""),
                check("memory", "memory", "OK", t(3, 0), Some(63.0), ""),
                check(
                    "tls-shop",
                    "tls",
                    "OK",
                    t(3, 0),
                    Some(61.5),
                    "certificate of shop:443 expires 2027-01-20",
                ),
            ],
            jobs: vec![JobLine {
                job: "main".into(),
                last_backup: Some(run("mysql", t(2, 30), RunStatus::Success)),
                last_good: Some(run("mysql", t(2, 30), RunStatus::Success)),
                last_drill: None,
            }],
            pending_events: 2,
            alerts: Vec::new(),
            silences: Vec::new(),
            outbox: Vec::new(),
        }
    }

    #[test]
    fn text_snapshot() {
        let got = render(&fixture(), Zone::Named(chrono_tz::UTC), t(12, 0));
        let want = include_str!("../../tests/snapshots/status.txt");
        assert_eq!(got, want, "\n--- got ---\n{got}");
    }

    #[test]
    fn exit_codes() {
        let mut r = fixture();
        assert_eq!(r.exit_code(), 2);
        r.checks.remove(0);
        assert_eq!(r.exit_code(), 1, "stale counts as a warning");
        r.checks.remove(0);
        assert_eq!(r.exit_code(), 0);
        r.checks.clear();
        assert_eq!(r.exit_code(), 0);
        assert_eq!(to_json(&fixture(), t(12, 0))["status"], "CRIT");
        assert_eq!(age(chrono::Duration::seconds(93_784)), "1d 2h");
    }
}

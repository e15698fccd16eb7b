//! `opsagent status [--json]`: one screen — the host summary, every check with its state and
//! since when, the last backup and restore drill of each job with their age, and the events not
//! yet delivered. Read from the catalog the daemon writes; a check not updated for three
//! intervals is shown as STALE (is the daemon running?) and counts as a warning.
//!
//! Exit codes (Nagios-style, for scripts): 0 everything OK, 1 a warning, UNKNOWN or STALE
//! check, 2 a critical check. A configuration error also exits 2, with its message on stderr.

use super::Cli;
use crate::backup::copy::{copy_job_name, COPY_KIND};
use crate::catalog::{
    AlertRow, AnomalyRow, Catalog, CheckStateRow, OutboxRow, PingRow, RunRecord, SilenceRow,
};
use crate::error::Unhealthy;
use crate::health::state::Level;
use chrono::{DateTime, Utc};
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

    pub(crate) fn severity(&self) -> u8 {
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
    /// Open anomalies: the job's retention is frozen until `opsagent ack JOB`.
    pub frozen: Vec<AnomalyRow>,
    /// The binary log archive, for a MySQL job with `binlog = true`.
    pub binlog: Option<crate::catalog::BinlogProgress>,
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
    /// The last heartbeat ping per target.
    pub pings: Vec<PingRow>,
    /// Failing checks whose failure a failing check they depend on explains → that check.
    pub causes: std::collections::BTreeMap<String, String>,
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
        // A frozen retention waits for an operator: a warning.
        let frozen = u8::from(self.jobs.iter().any(|j| !j.frozen.is_empty()));
        self.checks
            .iter()
            .map(CheckLine::severity)
            .max()
            .unwrap_or(0)
            .max(mail)
            .max(frozen)
    }

    /// `Ok` when everything is OK, else how bad it is (the error `run` returns).
    pub fn outcome(&self) -> anyhow::Result<()> {
        match self.exit_code() {
            0 => Ok(()),
            1 => Err(Unhealthy::Warning.into()),
            _ => Err(Unhealthy::Critical.into()),
        }
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
                frozen: cat.open_anomalies(Some(j))?,
                binlog: cat.binlog_progress(j)?,
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
            pings: cat.pings()?,
            causes: Default::default(),
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

mod show;
pub use show::{age, render, to_json};

/// Prints the status; a warning or critical check is returned as [`Unhealthy`], which `main`
/// maps to exit code 1 or 2 (`cli::exit_code_for`) without printing more.
pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let cfg = super::load_config(cli)?;
    let cat = Catalog::open(&cfg.catalog_path())?;
    let now = Utc::now();
    let copies = copy_lines(&cfg);
    let jobs: Vec<(&str, &str)> = cfg
        .job_names()
        .into_iter()
        .map(|j| (j, cfg.job_kind(j).unwrap_or("mysql")))
        .chain(copies.iter().map(|c| (c.as_str(), COPY_KIND)))
        .collect();
    let setup = cfg.alert_setup();
    let mut r = Report::gather(&cat, &cfg.agent.hostname, &jobs, cfg.health.interval, now)?
        .with_alerts(cat.alerts()?, Some(&setup), now);
    let failing = (r.checks.iter().filter(|c| c.row.state != "OK"))
        .map(|c| c.row.check.as_str())
        .collect();
    r.causes = crate::alert::depend::roots(&failing, &cfg.alerts.depends);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&r, now))?);
    } else {
        print!("{}", render(&r, cfg.agent.zone, now));
    }
    r.outcome()
}

/// One line per job and copy storage it names (`JOB@STORAGE`): its last copy run, as a job's
/// line shows its last backup, so a copy storage that falls behind shows.
fn copy_lines(cfg: &crate::config::Config) -> Vec<String> {
    (cfg.copy_pairs().into_iter())
        .map(|(job, to)| copy_job_name(job, to))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::RunStatus;
    use crate::config::Zone;
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
                frozen: Vec::new(),
                binlog: None,
            }],
            pending_events: 2,
            alerts: Vec::new(),
            silences: Vec::new(),
            outbox: Vec::new(),
            pings: Vec::new(),
            causes: Default::default(),
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

//! What `status` shows and `status --json` prints, and the status page serves (`/api/status`,
//! `/`): read from the catalog the daemon writes. Built here, below `cli` and beside the web
//! server, so both show the same thing; `cli/status` only prints it.

use crate::backup::copy::{copy_job_name, COPY_KIND};
use crate::catalog::{
    AlertRow, AnomalyRow, Catalog, CatalogError, CheckStateRow, OutboxRow, PingRow, RunRecord,
    SilenceRow,
};
use crate::health::state::Level;
use chrono::{DateTime, Utc};
use std::time::Duration;

mod json;
pub use json::to_json;

/// "3d 4h", "2h 5m", "40s": the alert mails' way of saying how long ago.
pub use crate::alert::compose::age;

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

    /// Reads the catalog.
    pub fn gather(
        cat: &Catalog,
        host: &str,
        jobs: &[(&str, &str)],
        interval: Duration,
        now: DateTime<Utc>,
    ) -> Result<Report, CatalogError> {
        let stale_after = chrono::Duration::from_std(interval * 3 + Duration::from_secs(60))
            .unwrap_or(chrono::Duration::MAX);
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

impl Report {
    /// "cpu 12.3%, load/core 0.4, …, disk / 41%" (the host line of `status` and the page).
    pub fn host_summary(&self) -> String {
        let r = self;
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

    /// The report of configuration `cfg` over its catalog `cat` at `now`: every job and copy
    /// line, the alerts (muted by silences and maintenance windows), the failing checks'
    /// causes.
    pub fn build(
        cfg: &crate::config::Config,
        cat: &Catalog,
        now: DateTime<Utc>,
    ) -> Result<Report, CatalogError> {
        let copies = copy_lines(cfg);
        let jobs: Vec<(&str, &str)> = cfg
            .job_names()
            .into_iter()
            .map(|j| (j, cfg.job_kind(j).unwrap_or("mysql")))
            .chain(copies.iter().map(|c| (c.as_str(), COPY_KIND)))
            .collect();
        let setup = cfg.alert_setup();
        let mut r = Report::gather(cat, &cfg.agent.hostname, &jobs, cfg.health.interval, now)?
            .with_alerts(cat.alerts()?, Some(&setup), now);
        let failing = (r.checks.iter().filter(|c| c.row.state != "OK"))
            .map(|c| c.row.check.as_str())
            .collect();
        r.causes = crate::alert::depend::roots(&failing, &cfg.alerts.depends);
        Ok(r)
    }
}

/// One line per job and copy storage it names (`JOB@STORAGE`): its last copy run, as a job's
/// line shows its last backup, so a copy storage that falls behind shows.
fn copy_lines(cfg: &crate::config::Config) -> Vec<String> {
    (cfg.copy_pairs().into_iter())
        .map(|(job, to)| copy_job_name(job, to))
        .collect()
}

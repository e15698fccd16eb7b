//! `opsagent status [--json]`: one screen — the host summary, every check with its state and
//! since when, the last backup and restore drill of each job with their age, and the events not
//! yet delivered. Read from the catalog the daemon writes; a check not updated for three
//! intervals is shown as STALE (is the daemon running?) and counts as a warning.
//!
//! Exit codes (Nagios-style, for scripts): 0 everything OK, 1 a warning, UNKNOWN or STALE
//! check, 2 a critical check. A configuration error also exits 2, with its message on stderr.

use super::Cli;
use crate::catalog::Catalog;
use crate::error::Unhealthy;
use chrono::Utc;

/// Flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

pub use crate::daemon::report::{to_json, AlertLine, CheckLine, JobLine, Report};

/// `Ok` when everything is OK, else how bad it is (the error `run` returns).
pub fn outcome(r: &Report) -> anyhow::Result<()> {
    match r.exit_code() {
        0 => Ok(()),
        1 => Err(Unhealthy::Warning.into()),
        _ => Err(Unhealthy::Critical.into()),
    }
}

mod show;
pub use show::{age, render};

/// Prints the status; a warning or critical check is returned as [`Unhealthy`], which `main`
/// maps to exit code 1 or 2 (`cli::exit_code_for`) without printing more.
pub fn run(cli: &Cli, args: &Args) -> anyhow::Result<()> {
    let cfg = super::load_config(cli)?;
    let cat = Catalog::open(&cfg.catalog_path())?;
    let now = Utc::now();
    let r = Report::build(&cfg, &cat, now)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&r, now))?);
    } else {
        print!("{}", render(&r, cfg.agent.zone, now));
    }
    outcome(&r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{CheckStateRow, RunRecord, RunStatus};
    use crate::config::Zone;
    use chrono::DateTime;
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

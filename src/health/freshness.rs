//! Backup freshness, one check per backup job (`backup:JOB`): CRIT when the last good backup is
//! older than the job's schedule period plus a grace, or when the last restore drill failed.
//! The value is the age of the last good backup in hours.

use super::state::Level;
use super::{CheckSpec, Sample};
use crate::catalog::{Catalog, RunRecord, RunStatus};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;

/// A backup freshness check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The job.
    pub job: String,
    /// Its runs' kind in the catalog: `mysql` or `media`.
    pub kind: String,
    /// The longest gap between two of its scheduled runs.
    pub period: Duration,
    /// Extra time allowed (a dump takes a while); default 1h.
    pub grace: Duration,
    /// For a job archiving its binary log: the archive's lag that warns (twice: critical).
    pub binlog_max_lag: Option<Duration>,
}

/// What the catalog says about a job.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Its newest successful (or partial: something was committed) backup run.
    pub last_good: Option<RunRecord>,
    /// Its newest finished backup run.
    pub last_run: Option<RunRecord>,
    /// Its newest finished restore drill.
    pub last_drill: Option<RunRecord>,
    /// Its binary log archive, when it has one.
    pub binlog: Option<crate::catalog::BinlogProgress>,
}

/// The level, value (age in hours) and detail, the binary log archive's lag included. Pure.
pub fn judge(b: &Spec, f: &Facts, now: DateTime<Utc>) -> (Level, Option<f64>, String) {
    let (level, value, mut detail) = judge_backups(b, f, now);
    let Some(max) = b.binlog_max_lag else {
        return (level, value, detail);
    };
    let (lag_level, said) = match &f.binlog {
        // (The archiver records within its first interval after the daemon starts.)
        None => (Level::Ok, "binary log archiving is starting".to_string()),
        Some(p) => {
            let lag = (now - p.updated_at).to_std().unwrap_or_default();
            let human = humantime::format_duration(Duration::from_secs(lag.as_secs()));
            let level = match lag {
                l if l > max * 2 => Level::Crit,
                l if l > max => Level::Warn,
                _ => Level::Ok,
            };
            let why = p
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            (
                level,
                format!(
                    "binary log archived up to {human} ago (max lag {}){why}",
                    humantime::format_duration(max)
                ),
            )
        }
    };
    detail.push_str("; ");
    detail.push_str(&said);
    let worse = if lag_level.severity() > level.severity() {
        lag_level
    } else {
        level
    };
    (worse, value, detail)
}

/// [`judge`] for the backups and drills alone.
fn judge_backups(b: &Spec, f: &Facts, now: DateTime<Utc>) -> (Level, Option<f64>, String) {
    if let Some(d) = f
        .last_drill
        .as_ref()
        .filter(|d| d.status != RunStatus::Success)
    {
        let err = d.error.as_deref().unwrap_or("no error recorded");
        return (
            Level::Crit,
            None,
            format!(
                "the last restore drill of `{}` ({}) failed: {err}",
                b.job,
                d.started_at.format("%Y-%m-%d %H:%M UTC")
            ),
        );
    }
    let limit = b.period + b.grace;
    let Some(good) = &f.last_good else {
        return match &f.last_run {
            Some(r) => (
                Level::Crit,
                None,
                format!(
                    "`{}` has no good backup; the last run ({}) ended {}: {}",
                    b.job,
                    r.started_at.format("%Y-%m-%d %H:%M UTC"),
                    r.status.as_str(),
                    r.error.as_deref().unwrap_or("-")
                ),
            ),
            None => (Level::Ok, None, format!("`{}` has not run yet", b.job)),
        };
    };
    let at = good.ended_at.unwrap_or(good.started_at);
    let age = (now - at).to_std().unwrap_or_default();
    let hours = age.as_secs_f64() / 3600.0;
    let human = humantime::format_duration(Duration::from_secs(age.as_secs() / 60 * 60));
    if age > limit {
        let mut d = format!(
            "the last good backup of `{}` is {human} old (expected every {} + {} grace)",
            b.job,
            humantime::format_duration(b.period),
            humantime::format_duration(b.grace)
        );
        if let Some(r) = f
            .last_run
            .as_ref()
            .filter(|r| r.status != RunStatus::Success)
        {
            d.push_str(&format!(
                "; the last run failed: {}",
                r.error.as_deref().unwrap_or("-")
            ));
        }
        return (Level::Crit, Some(hours), d);
    }
    if let Some(r) = f
        .last_run
        .as_ref()
        .filter(|r| r.status == RunStatus::Partial)
    {
        return (
            Level::Warn,
            Some(hours),
            format!(
                "the last backup of `{}` ({human} ago) is partial: {}",
                b.job,
                r.error.as_deref().unwrap_or("some files were skipped")
            ),
        );
    }
    (
        Level::Ok,
        Some(hours),
        format!("last good backup of `{}` {human} ago", b.job),
    )
}

/// Reads the catalog (on a blocking thread) and judges.
pub async fn probe(spec: &CheckSpec, catalog: Arc<Catalog>) -> Sample {
    let super::ProbeSpec::Backup(b) = &spec.probe else {
        return Sample::failed(spec, "internal: not a backup check".into());
    };
    let (job, kind) = (b.job.clone(), b.kind.clone());
    let facts =
        tokio::task::spawn_blocking(move || -> Result<Facts, crate::catalog::CatalogError> {
            Ok(Facts {
                last_good: catalog.last_finished_run(&job, &kind, true)?,
                last_run: catalog.last_finished_run(&job, &kind, false)?,
                last_drill: catalog.last_finished_run(&job, "verify", false)?,
                binlog: catalog.binlog_progress(&job)?,
            })
        })
        .await;
    match facts {
        Ok(Ok(f)) => {
            let (level, value, detail) = judge(b, &f, Utc::now());
            Sample::judged(spec, level, value, detail)
        }
        Ok(Err(e)) => Sample::failed(spec, e.to_string()),
        Err(e) => Sample::failed(spec, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn run(kind: &str, h: i64, status: RunStatus) -> RunRecord {
        let t = Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap() + chrono::Duration::hours(h);
        RunRecord {
            id: 1,
            job: "main".into(),
            kind: kind.into(),
            trigger: "schedule".into(),
            started_at: t,
            ended_at: Some(t),
            status,
            bytes: 0,
            error: (status != RunStatus::Success).then(|| "boom".into()),
            pid: 1,
        }
    }

    #[test]
    fn freshness_table() {
        let spec = Spec {
            job: "main".into(),
            kind: "mysql".into(),
            period: Duration::from_secs(24 * 3600),
            grace: Duration::from_secs(3600),
            binlog_max_lag: None,
        };
        let now = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap(); // h = 36
        let good = |h| Some(run("mysql", h, RunStatus::Success));
        let cases = [
            ("never ran", Facts::default(), Level::Ok),
            (
                "fresh",
                Facts {
                    last_good: good(30),
                    last_run: good(30),
                    ..Facts::default()
                },
                Level::Ok,
            ),
            (
                "just inside the grace",
                Facts {
                    last_good: good(11),
                    ..Facts::default()
                },
                Level::Ok,
            ),
            (
                "stale",
                Facts {
                    last_good: good(10),
                    ..Facts::default()
                },
                Level::Crit,
            ),
            (
                "only failures",
                Facts {
                    last_run: Some(run("mysql", 30, RunStatus::Failed)),
                    ..Facts::default()
                },
                Level::Crit,
            ),
            (
                "partial media run",
                Facts {
                    last_good: Some(run("media", 30, RunStatus::Partial)),
                    last_run: Some(run("media", 30, RunStatus::Partial)),
                    ..Facts::default()
                },
                Level::Warn,
            ),
            (
                "drill failed",
                Facts {
                    last_good: good(30),
                    last_drill: Some(run("verify", 31, RunStatus::Failed)),
                    ..Facts::default()
                },
                Level::Crit,
            ),
            (
                "drill passed",
                Facts {
                    last_good: good(30),
                    last_drill: Some(run("verify", 31, RunStatus::Success)),
                    ..Facts::default()
                },
                Level::Ok,
            ),
        ];
        for (name, f, want) in cases {
            let (level, _, detail) = judge(&spec, &f, now);
            assert_eq!(level, want, "{name}: {detail}");
        }
    }

    #[test]
    fn the_binary_log_archive_lag_warns_then_goes_critical() {
        let spec = Spec {
            job: "main".into(),
            kind: "mysql".into(),
            period: Duration::from_secs(24 * 3600),
            grace: Duration::from_secs(3600),
            binlog_max_lag: Some(Duration::from_secs(300)),
        };
        let now = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
        let at = |secs: i64, error: Option<&str>| Facts {
            last_good: Some(run("mysql", 30, RunStatus::Success)),
            binlog: Some(crate::catalog::BinlogProgress {
                job: "main".into(),
                file: "b.000001".into(),
                pos: 4,
                last_event_at: None,
                updated_at: now - chrono::Duration::seconds(secs),
                error: error.map(str::to_string),
            }),
            ..Facts::default()
        };
        assert_eq!(judge(&spec, &at(20, None), now).0, Level::Ok);
        let (level, _, detail) = judge(&spec, &at(400, Some("server down")), now);
        assert_eq!(level, Level::Warn);
        assert!(
            detail.contains("binary log archived up to 6m 40s ago (max lag 5m): server down"),
            "{detail}"
        );
        assert_eq!(judge(&spec, &at(700, None), now).0, Level::Crit);
        let none = Facts {
            last_good: Some(run("mysql", 30, RunStatus::Success)),
            ..Facts::default()
        };
        assert_eq!(judge(&spec, &none, now).0, Level::Ok);
    }
}

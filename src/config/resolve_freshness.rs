//! The automatic checks of backup jobs: one freshness check per job (`backup:JOB`) and per
//! copy storage, watching the archive's lag for jobs with `binlog = true`.

use super::defaults;
use super::{MysqlJob, Schedule, Zone};
use crate::health::{self, CheckSpec, ProbeSpec};
use std::time::Duration;

/// One freshness check per backup job (`backup:JOB`) and per copy storage (`backup:JOB@NAME`);
/// a job archiving its binary log has its check also watch the archive's lag.
pub(super) fn backup_checks(
    out: &mut Vec<CheckSpec>,
    (jobs, media): (&[MysqlJob], &[super::MediaJob]),
    zone: Zone,
    grace: Duration,
    (interval, timeout): (Duration, Duration),
) {
    let backup_jobs = jobs
        .iter()
        .map(|j| (&j.name, &j.schedule, "mysql", &j.copy_to))
        .chain(
            media
                .iter()
                .map(|j| (&j.name, &j.schedule, "media", &j.copy_to)),
        );
    for (name, schedule, kind, copy_to) in backup_jobs {
        out.push(freshness(
            name, kind, schedule, zone, grace, interval, timeout,
        ));
        // Each copy storage too (`backup:JOB@NAME`, from the `copy` runs): a copy that keeps
        // failing alerts once it is older than the job's period plus grace.
        for to in copy_to {
            let copy = format!("{name}@{to}");
            out.push(freshness(
                &copy, "copy", schedule, zone, grace, interval, timeout,
            ));
        }
    }
    // A job archiving its binary log: its check also watches the archive's lag.
    for j in jobs {
        let name = format!("backup:{}", j.name);
        let spec = out.iter_mut().find(|c| c.name == name);
        if let (Some(b), Some(ProbeSpec::Backup(s))) = (j.binlog, spec.map(|c| &mut c.probe)) {
            s.binlog_max_lag = Some(b.max_lag);
        }
    }
}

/// The automatic backup freshness check of one job (`backup:<job>`).
fn freshness(
    job: &str,
    kind: &str,
    schedule: &Schedule,
    zone: Zone,
    grace: Duration,
    interval: Duration,
    timeout: Duration,
) -> CheckSpec {
    CheckSpec {
        name: format!("backup:{job}"),
        interval: interval.max(defaults::FRESHNESS_INTERVAL_MIN),
        hold: Duration::ZERO,
        timeout,
        probe: ProbeSpec::Backup(health::freshness::Spec {
            job: job.to_string(),
            kind: kind.into(),
            period: period(schedule, zone),
            grace,
            binlog_max_lag: None,
        }),
    }
}

/// The longest gap between the next few slots of a schedule.
pub(super) fn period(s: &Schedule, zone: Zone) -> Duration {
    let mut t = chrono::Utc::now();
    let mut longest = Duration::ZERO;
    let Some(mut prev) = s.next_after(t, zone) else {
        return defaults::FRESHNESS_PERIOD_FALLBACK;
    };
    for _ in 0..16 {
        t = prev;
        let Some(next) = s.next_after(t, zone) else {
            break;
        };
        longest = longest.max((next - prev).to_std().unwrap_or_default());
        prev = next;
    }
    longest
}

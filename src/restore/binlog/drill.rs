//! Drills that roll forward: for a job archiving its binary log, the drill loads the newest dump
//! and replays the archive up to a minute ago ([`LOOKBACK`]), then compares the copy with the
//! live database: every table the archive shows no change to since that moment must have the
//! live row count. A replay that loses or doubles rows fails the drill, naming the table.
//!
//! Which tables changed since the moment comes from the archive itself (the same filter as the
//! replay, reading from the segment before the one holding the moment, so a transaction
//! straddling two segments keeps its table map, and counting events stamped at or after the
//! moment): tables with row events are left out of the comparison; any
//! statement that is not transaction control (DDL, or DML logged as a statement) leaves the
//! comparison out altogether, since which tables it touched is not known. The comparison waits
//! (bounded) until the archive holds everything up to the live count; an archive that lags
//! skips it, saying so.

use super::{check_contiguous, plan, preview, BinlogRestoreError, RollForward, StopAt};
use crate::config::MysqlJob;
use crate::restore::plan::Chosen;
use crate::restore::sql::{ident, run};
use crate::snapshot::binlog as segment;
use crate::snapshot::manifest::BinlogPos;
use crate::storage::Storage;
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;
use std::path::Path;

/// How far back from now a drill rolls forward to.
pub const LOOKBACK: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// The roll forward of a drill of `c`, to [`LOOKBACK`] before `now`; `None` when the job does
/// not archive, the dump has no position, or the dump is newer than that moment.
pub async fn plan_for_drill(
    storage: &Storage,
    job: &MysqlJob,
    c: &Chosen,
    now: DateTime<Utc>,
) -> Result<Option<RollForward>, BinlogRestoreError> {
    let moment = now - LOOKBACK;
    match &c.manifest.binlog {
        Some(from) if job.binlog.is_some() && moment > c.manifest.finished_at => {
            plan(storage, &job.name, from, moment, &StopAt::Moment)
                .await
                .map(Some)
        }
        _ => Ok(None),
    }
}

/// How a drill's copy compared with the live database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compared {
    /// This many tables the archive shows unchanged matched the live row counts.
    Tables(usize),
    /// The archive lagged behind the live count: nothing compared.
    Lagging,
    /// The archive holds this many statements after the moment (DDL, or DML the server logged
    /// as a statement with `binlog_format` MIXED or STATEMENT), whose tables are not known:
    /// nothing compared.
    Statements(u64),
}

/// What the archive says changed after a moment.
#[derive(Debug, Clone, Default)]
pub struct Changed {
    /// Tables of the database with row events.
    pub tables: BTreeSet<String>,
    /// Statements that are not transaction control.
    pub statements: u64,
}

/// The tables of `source` the archive of `job` shows changes to after `since`, to its end.
pub async fn changed_since(
    storage: &Storage,
    job: &str,
    source: &str,
    since: DateTime<Utc>,
    work: &Path,
) -> Result<Changed, BinlogRestoreError> {
    let all = segment::list(storage, job).await?;
    let Some(i) = (all.iter()).position(|s| s.last_event_at.is_some_and(|t| t >= since)) else {
        return Ok(Changed::default());
    };
    // From the segment before (same file), so a transaction begun there keeps its map.
    let at = if i > 0 && all[i - 1].file == all[i].file {
        i - 1
    } else {
        i
    };
    let first = all
        .iter()
        .position(|s| s.file == all[at].file)
        .unwrap_or(at);
    let segments = all[first..].to_vec();
    check_contiguous(job, &segments).map_err(|(_, gap)| gap)?;
    let rf = RollForward {
        job: job.to_string(),
        from: BinlogPos {
            file: all[at].file.clone(),
            pos: all[at].start,
        },
        to: Utc::now() + chrono::TimeDelta::days(1),
        segments,
        reach: None,
        tables: Vec::new(),
        stop: StopAt::Moment,
        count_from: Some(since),
    };
    let p = preview(storage, &rf, source, 0, work).await?;
    Ok(Changed {
        tables: p.tables,
        statements: p.statements,
    })
}

/// After a drill's roll forward `rf`: compares the copy's row counts (`copied`, counted by
/// the drill's check) with the live `source` (see the module documentation).
pub async fn check_against_live(
    env: &crate::snapshot::Env,
    (job, client): (&MysqlJob, &Path),
    source: &str,
    rf: &RollForward,
    copied: &[(String, u64)],
) -> Result<Compared, crate::restore::RestoreError> {
    use crate::restore::RestoreError;
    let live_at = Utc::now();
    let (j, c, db) = (job.clone(), client.to_path_buf(), source.to_string());
    let live = tokio::task::spawn_blocking(move || counts(&j, &c, &db))
        .await
        .map_err(RestoreError::task)??;
    // The archive must hold everything up to the live count.
    let interval = job.binlog.map_or(std::time::Duration::ZERO, |b| b.interval);
    let wait = (interval * 3).max(std::time::Duration::from_secs(30));
    let t0 = std::time::Instant::now();
    loop {
        let p = env.catalog.binlog_progress(&job.name).ok().flatten();
        if p.is_some_and(|p| p.updated_at >= live_at) {
            break;
        }
        if t0.elapsed() > wait {
            tracing::warn!(job = %job.name, database = source, "the binary log archive lags: the drill's copy was not compared with the live database");
            return Ok(Compared::Lagging);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let work = super::work_dir(&env.config.agent.state_dir);
    let changed = changed_since(&env.storage, &job.name, source, rf.to, &work).await?;
    Ok(compare(copied, &live, &changed, (source, rf.to))?)
}

/// Row counts of every base table of `db`, by name; a table that does not read to its end
/// is an error naming it.
pub fn counts(
    job: &MysqlJob,
    client: &Path,
    db: &str,
) -> Result<Vec<(String, u64)>, crate::restore::RestoreError> {
    let tables = run(job, client, &format!("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME", crate::restore::sql::literal(db)))?;
    let mut out = Vec::new();
    for t in tables {
        let name = t.into_iter().next().unwrap_or_default();
        let q = format!("SELECT COUNT(*) FROM {}.{}", ident(db), ident(&name));
        let n = run(job, client, &q).map_err(|cause| crate::restore::RestoreError::Unreadable {
            table: name.clone(),
            cause,
        })?;
        let n = (n.first().and_then(|r| r.first())).and_then(|v| v.parse().ok());
        out.push((name, n.unwrap_or(0)));
    }
    Ok(out)
}

/// Compares the copy's counts with the live ones for the tables `changed` leaves out; the
/// number of tables compared, or the first that differs.
pub fn compare(
    copy: &[(String, u64)],
    live: &[(String, u64)],
    changed: &Changed,
    (database, moment): (&str, DateTime<Utc>),
) -> Result<Compared, BinlogRestoreError> {
    if changed.statements > 0 {
        return Ok(Compared::Statements(changed.statements));
    }
    let mut compared = 0;
    for (table, rows) in copy {
        if changed.tables.contains(table) {
            continue;
        }
        let Some((_, live_rows)) = live.iter().find(|(t, _)| t == table) else {
            continue;
        };
        if live_rows != rows {
            return Err(BinlogRestoreError::Diverged {
                database: database.to_string(),
                table: table.clone(),
                copy: *rows,
                live: *live_rows,
                moment: moment.to_rfc3339(),
            });
        }
        compared += 1;
    }
    Ok(Compared::Tables(compared))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(v: &[(&str, u64)]) -> Vec<(String, u64)> {
        v.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    #[test]
    fn unchanged_tables_must_match_changed_ones_are_left_out() {
        let copy = rows(&[("a", 10), ("b", 5), ("c", 7)]);
        let live = rows(&[("a", 10), ("b", 9), ("c", 7)]);
        let at = Utc::now();
        let mut changed = Changed::default();
        let e = compare(&copy, &live, &changed, ("shop", at)).unwrap_err();
        assert!(e.to_string().contains("`b`"), "{e}");
        changed.tables.insert("b".into());
        assert_eq!(
            compare(&copy, &live, &changed, ("shop", at)).unwrap(),
            Compared::Tables(2)
        );
        // A statement of unknown reach: nothing is compared.
        changed.tables.clear();
        changed.statements = 1;
        assert_eq!(
            compare(&copy, &live, &changed, ("shop", at)).unwrap(),
            Compared::Statements(1)
        );
        // A table gone from the live database is not compared.
        let fewer = rows(&[("a", 10)]);
        let none = Changed::default();
        assert_eq!(
            compare(&copy[..1], &fewer, &none, ("shop", at)).unwrap(),
            Compared::Tables(1)
        );
    }
}

//! Runs of jobs: one row per attempt, from start to outcome.

use super::{from_millis, to_millis, Catalog, CatalogError};
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Row};

/// How a run ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Still going.
    Running,
    /// Finished and committed.
    Success,
    /// Committed with warnings (some files skipped).
    Partial,
    /// Failed; nothing committed.
    Failed,
    /// The process died while it ran (found at the next start).
    Interrupted,
}

impl RunStatus {
    /// The word stored in the catalog and shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Success => "success",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }

    fn parse(s: &str) -> RunStatus {
        match s {
            "running" => RunStatus::Running,
            "success" => RunStatus::Success,
            "partial" => RunStatus::Partial,
            "interrupted" => RunStatus::Interrupted,
            _ => RunStatus::Failed,
        }
    }
}

/// One row of `runs`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// Row id.
    pub id: i64,
    /// Job name.
    pub job: String,
    /// Job kind (`mysql`, `media`, `verify`).
    pub kind: String,
    /// What started it (`schedule`, `catch-up`, `cli`).
    pub trigger: String,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// End time, once ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Outcome.
    pub status: RunStatus,
    /// Bytes stored.
    pub bytes: u64,
    /// Error text of a failed run.
    pub error: Option<String>,
    /// The process that ran it.
    pub pid: u32,
}

const COLS: &str = "id, job, kind, trigger, started_at, ended_at, status, bytes, error, pid";

fn row(r: &Row) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: r.get(0)?,
        job: r.get(1)?,
        kind: r.get(2)?,
        trigger: r.get(3)?,
        started_at: from_millis(r.get(4)?),
        ended_at: r.get::<_, Option<i64>>(5)?.map(from_millis),
        status: RunStatus::parse(&r.get::<_, String>(6)?),
        bytes: r.get::<_, i64>(7)? as u64,
        error: r.get(8)?,
        pid: r.get::<_, i64>(9)? as u32,
    })
}

impl Catalog {
    /// Records the start of a run and returns its id.
    pub fn start_run(
        &self,
        job: &str,
        kind: &str,
        trigger: &str,
        at: DateTime<Utc>,
    ) -> Result<i64, CatalogError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO runs (job, kind, trigger, started_at, status, pid) VALUES (?1, ?2, ?3, ?4, 'running', ?5)",
            params![job, kind, trigger, to_millis(at), std::process::id()],
        )
        .map_err(|e| self.q(e))?;
        Ok(conn.last_insert_rowid())
    }

    /// Records how a run ended. The end time is never before the start (clocks jump).
    pub fn finish_run(
        &self,
        id: i64,
        status: RunStatus,
        bytes: u64,
        error: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        self.conn()
            .execute(
                "UPDATE runs SET status = ?2, bytes = ?3, error = ?4, ended_at = max(started_at, ?5) WHERE id = ?1",
                params![id, status.as_str(), bytes as i64, error, to_millis(at)],
            )
            .map_err(|e| self.q(e))?;
        Ok(())
    }

    /// The newest run of `job`, if any.
    pub fn last_run(&self, job: &str) -> Result<Option<RunRecord>, CatalogError> {
        self.conn()
            .query_row(
                &format!("SELECT {COLS} FROM runs WHERE job = ?1 ORDER BY started_at DESC, id DESC LIMIT 1"),
                params![job],
                row,
            )
            .optional()
            .map_err(|e| self.q(e))
    }

    /// The newest run of `job` of one kind (`mysql`, `verify`), if any.
    pub fn last_run_of(&self, job: &str, kind: &str) -> Result<Option<RunRecord>, CatalogError> {
        self.conn()
            .query_row(
                &format!("SELECT {COLS} FROM runs WHERE job = ?1 AND kind = ?2 ORDER BY started_at DESC, id DESC LIMIT 1"),
                params![job, kind],
                row,
            )
            .optional()
            .map_err(|e| self.q(e))
    }

    /// The newest finished run of `job` of `kind` (`mysql`, `media`, `verify`); only ones that
    /// committed something (success or partial) when `success_only`.
    pub fn last_finished_run(
        &self,
        job: &str,
        kind: &str,
        success_only: bool,
    ) -> Result<Option<RunRecord>, CatalogError> {
        self.conn()
            .query_row(
                &format!(
                    "SELECT {COLS} FROM runs WHERE job = ?1 AND kind = ?2 AND status != 'running'
                       AND (?3 = 0 OR status IN ('success', 'partial'))
                     ORDER BY started_at DESC, id DESC LIMIT 1"
                ),
                params![job, kind, success_only as i64],
                row,
            )
            .optional()
            .map_err(|e| self.q(e))
    }

    /// The sizes (bytes) of the newest `limit` runs of `job` of `kind` that committed
    /// something, oldest first (the status page's size trend).
    pub fn run_sizes(
        &self,
        job: &str,
        kind: &str,
        limit: usize,
    ) -> Result<Vec<(DateTime<Utc>, u64)>, CatalogError> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached(
                "SELECT started_at, bytes FROM runs WHERE job = ?1 AND kind = ?2
                   AND status IN ('success', 'partial') ORDER BY started_at DESC, id DESC LIMIT ?3",
            )
            .map_err(|e| self.q(e))?;
        let rows = st
            .query_map(params![job, kind, limit as i64], |r| {
                Ok((from_millis(r.get(0)?), r.get::<_, i64>(1)?.max(0) as u64))
            })
            .map_err(|e| self.q(e))?;
        let mut v: Vec<_> = rows.collect::<Result<_, _>>().map_err(|e| self.q(e))?;
        v.reverse();
        Ok(v)
    }

    /// The newest `limit` runs, newest first.
    pub fn recent_runs(&self, limit: usize) -> Result<Vec<RunRecord>, CatalogError> {
        let conn = self.conn();
        let mut st = conn
            .prepare(&format!(
                "SELECT {COLS} FROM runs ORDER BY started_at DESC, id DESC LIMIT ?1"
            ))
            .map_err(|e| self.q(e))?;
        let rows = st
            .query_map(params![limit as i64], row)
            .map_err(|e| self.q(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.q(e))
    }

    /// Marks runs left `running` by a process that no longer exists as `interrupted`; returns
    /// how many. Called when the daemon starts.
    pub fn repair_interrupted(&self, now: DateTime<Utc>) -> Result<usize, CatalogError> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT id, pid FROM runs WHERE status = 'running'")
            .map_err(|e| self.q(e))?;
        let stale: Vec<i64> = st
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.q(e))?
            .filter_map(Result::ok)
            .filter(|(_, pid)| !process_alive(*pid as u32))
            .map(|(id, _)| id)
            .collect();
        for id in &stale {
            conn.execute(
                "UPDATE runs SET status = 'interrupted', ended_at = max(started_at, ?2), error = 'the opsagent process ended while this run was in progress' WHERE id = ?1",
                params![id, to_millis(now)],
            )
            .map_err(|e| self.q(e))?;
        }
        Ok(stale.len())
    }
}

fn process_alive(pid: u32) -> bool {
    pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_lifecycle_and_migration_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/catalog.sqlite");
        let cat = Catalog::open(&path).unwrap();
        let t0 = Utc::now();
        let id = cat.start_run("main", "mysql", "cli", t0).unwrap();
        assert_eq!(
            cat.last_run("main").unwrap().unwrap().status,
            RunStatus::Running
        );
        // The clock jumped back an hour: the end is clamped to the start.
        cat.finish_run(
            id,
            RunStatus::Failed,
            7,
            Some("boom"),
            t0 - chrono::Duration::hours(1),
        )
        .unwrap();
        drop(cat);
        let cat = Catalog::open(&path).unwrap();
        let r = cat.last_run("main").unwrap().unwrap();
        assert_eq!(
            (r.status, r.bytes, r.error.as_deref()),
            (RunStatus::Failed, 7, Some("boom"))
        );
        assert!(r.ended_at.unwrap() >= r.started_at);
        assert_eq!(cat.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn dead_runs_become_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        let id = cat.start_run("j", "mysql", "schedule", Utc::now()).unwrap();
        cat.conn()
            .execute("UPDATE runs SET pid = 999999999 WHERE id = ?1", params![id])
            .unwrap();
        let live = cat.start_run("k", "mysql", "schedule", Utc::now()).unwrap();
        assert_eq!(cat.repair_interrupted(Utc::now()).unwrap(), 1);
        assert_eq!(
            cat.last_run("j").unwrap().unwrap().status,
            RunStatus::Interrupted
        );
        assert_eq!(cat.last_run("k").unwrap().unwrap().id, live);
        assert_eq!(
            cat.last_run("k").unwrap().unwrap().status,
            RunStatus::Running
        );
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        drop(Catalog::open(&path).unwrap());
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        let err = Catalog::open(&path).err().unwrap().to_string();
        assert!(err.contains("schema version 99"), "{err}");
    }
}

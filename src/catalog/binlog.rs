//! The `binlog_progress` table: per MySQL job archiving its server's binary log, how far the
//! archive is committed and the time of its newest event, for `status` ("data at risk"), the
//! freshness check and the Prometheus endpoint. The archive itself is in storage.

use super::{from_millis, to_millis, Catalog, CatalogError};
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

/// One job's archive, as last recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinlogProgress {
    /// The job.
    pub job: String,
    /// The binary log file committed up to `pos`.
    pub file: String,
    /// The byte position committed in `file`.
    pub pos: u64,
    /// The time of the newest event committed (`None`: nothing committed yet).
    pub last_event_at: Option<DateTime<Utc>>,
    /// When the archive last had everything the server had written (committed at a tick with
    /// the reader running): what is newer is the data at risk.
    pub updated_at: DateTime<Utc>,
    /// What stops the archive, when it is stopped (`None`: running).
    pub error: Option<String>,
}

impl Catalog {
    /// Records the archive of `p.job`, replacing what was there.
    pub fn set_binlog_progress(&self, p: &BinlogProgress) -> Result<(), CatalogError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO binlog_progress (job, file, pos, last_event_at, updated_at, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    p.job,
                    p.file,
                    i64::try_from(p.pos).unwrap_or(i64::MAX),
                    p.last_event_at.map(to_millis),
                    to_millis(p.updated_at),
                    p.error
                ],
            )
            .map(drop)
            .map_err(|e| self.q(e))
    }

    /// The archive of `job`, if it ever recorded anything.
    pub fn binlog_progress(&self, job: &str) -> Result<Option<BinlogProgress>, CatalogError> {
        self.conn()
            .query_row(
                "SELECT job, file, pos, last_event_at, updated_at, error FROM binlog_progress WHERE job = ?1",
                params![job],
                |r| {
                    Ok(BinlogProgress {
                        job: r.get(0)?,
                        file: r.get(1)?,
                        pos: r.get::<_, i64>(2)?.max(0) as u64,
                        last_event_at: r.get::<_, Option<i64>>(3)?.map(from_millis),
                        updated_at: from_millis(r.get(4)?),
                        error: r.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.q(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_round_trip_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        assert_eq!(c.binlog_progress("main").unwrap(), None);
        let at = from_millis(1_700_000_000_000);
        let mut p = BinlogProgress {
            job: "main".into(),
            file: "binlog.000001".into(),
            pos: 4,
            last_event_at: None,
            updated_at: at,
            error: None,
        };
        c.set_binlog_progress(&p).unwrap();
        p.pos = 1234;
        p.last_event_at = Some(at);
        p.error = Some("down".into());
        c.set_binlog_progress(&p).unwrap();
        assert_eq!(c.binlog_progress("main").unwrap(), Some(p));
    }
}

//! The `anomalies` table: snapshots that shrank sharply against their job's previous one. An
//! anomaly not yet acknowledged freezes the job's retention; `opsagent ack JOB` acknowledges
//! every open one of the job. Alerting reads the rows whose change it has not seen
//! (`alerted = 0`): a new row fires `anomaly:JOB`, an acknowledged one resolves it.

use super::{from_millis, to_millis, Catalog, CatalogError};
use chrono::{DateTime, Utc};
use rusqlite::{params, Row};

/// One row of `anomalies`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnomalyRow {
    /// Row id.
    pub id: i64,
    /// The job whose retention it freezes.
    pub job: String,
    /// The database (`files` for media jobs).
    pub item: String,
    /// The snapshot that shrank.
    pub snapshot: String,
    /// When it was found (after the snapshot committed).
    pub detected_at: DateTime<Utc>,
    /// What shrank, one clause per table or measure (`shop.orders: 1 200 000 → 240 000 rows …`).
    pub detail: String,
    /// When it was acknowledged (`None`: open, retention frozen).
    pub acked_at: Option<DateTime<Utc>>,
    /// Who acknowledged it (the Unix user).
    pub acked_by: Option<String>,
}

const COLS: &str = "id, job, item, snapshot, detected_at, detail, acked_at, acked_by";

fn row(r: &Row) -> rusqlite::Result<AnomalyRow> {
    Ok(AnomalyRow {
        id: r.get(0)?,
        job: r.get(1)?,
        item: r.get(2)?,
        snapshot: r.get(3)?,
        detected_at: from_millis(r.get(4)?),
        detail: r.get(5)?,
        acked_at: r.get::<_, Option<i64>>(6)?.map(from_millis),
        acked_by: r.get(7)?,
    })
}

impl Catalog {
    /// Records an anomaly (open, not yet seen by alerting); returns its id.
    pub fn add_anomaly(
        &self,
        job: &str,
        item: &str,
        snapshot: &str,
        at: DateTime<Utc>,
        detail: &str,
    ) -> Result<i64, CatalogError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO anomalies (job, item, snapshot, detected_at, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![job, item, snapshot, to_millis(at), detail],
        )
        .map_err(|e| self.q(e))?;
        Ok(conn.last_insert_rowid())
    }

    /// Anomalies not acknowledged yet (oldest first), of one job or all: a job with one has its
    /// retention frozen.
    pub fn open_anomalies(&self, job: Option<&str>) -> Result<Vec<AnomalyRow>, CatalogError> {
        self.anomalies_where("acked_at IS NULL AND (?1 IS NULL OR job = ?1)", job)
    }

    /// Anomalies whose latest change (found, acknowledged) alerting has not seen, oldest first.
    pub fn unalerted_anomalies(&self) -> Result<Vec<AnomalyRow>, CatalogError> {
        self.anomalies_where("alerted = 0 AND ?1 IS NULL", None)
    }

    fn anomalies_where(
        &self,
        filter: &str,
        job: Option<&str>,
    ) -> Result<Vec<AnomalyRow>, CatalogError> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached(&format!(
                "SELECT {COLS} FROM anomalies WHERE {filter} ORDER BY id"
            ))
            .map_err(|e| self.q(e))?;
        let rows = st.query_map(params![job], row).map_err(|e| self.q(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.q(e))
    }

    /// Acknowledges every open anomaly of `job` (retention resumes; alerting resolves
    /// `anomaly:JOB`); returns the rows acknowledged.
    pub fn ack_anomalies(
        &self,
        job: &str,
        at: DateTime<Utc>,
        by: &str,
    ) -> Result<Vec<AnomalyRow>, CatalogError> {
        let open = self.open_anomalies(Some(job))?;
        self.conn()
            .execute(
                "UPDATE anomalies SET acked_at = ?2, acked_by = ?3, alerted = 0 WHERE job = ?1 AND acked_at IS NULL",
                params![job, to_millis(at), by],
            )
            .map_err(|e| self.q(e))?;
        Ok(open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_ack_and_alerting_flags() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        let now = from_millis(to_millis(Utc::now()));
        let a = c
            .add_anomaly("main", "shop", "s1", now, "shop.orders: …")
            .unwrap();
        c.add_anomaly("other", "files", "s2", now, "uploads: …")
            .unwrap();
        assert_eq!(c.open_anomalies(Some("main")).unwrap().len(), 1);
        assert_eq!(c.open_anomalies(None).unwrap().len(), 2);
        assert_eq!(c.unalerted_anomalies().unwrap().len(), 2);
        c.save_alert_inputs(&[], &[], (&[], &[a])).unwrap();
        assert_eq!(c.unalerted_anomalies().unwrap().len(), 1);
        let acked = c.ack_anomalies("main", now, "root").unwrap();
        assert_eq!(
            (acked.len(), acked[0].detail.as_str()),
            (1, "shop.orders: …")
        );
        assert!(c.open_anomalies(Some("main")).unwrap().is_empty());
        let seen = c.unalerted_anomalies().unwrap();
        let back = seen.iter().find(|r| r.id == a).unwrap();
        assert_eq!(back.acked_by.as_deref(), Some("root"));
        assert!(c.ack_anomalies("main", now, "root").unwrap().is_empty());
    }
}

//! The snapshot table: a cache of the manifests in storage, rebuilt from them on demand.

use super::{from_millis, to_millis, Catalog, CatalogError};
use chrono::{DateTime, Utc};
use rusqlite::{params, Row};

/// One committed snapshot as the catalog knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRow {
    /// Snapshot id.
    pub id: String,
    /// Job name.
    pub job: String,
    /// `mysql`.
    pub kind: String,
    /// Host that made it.
    pub host: String,
    /// Database name (MySQL).
    pub item: String,
    /// Start of the backup.
    pub started_at: DateTime<Utc>,
    /// When it was committed.
    pub finished_at: DateTime<Utc>,
    /// Bytes before compression.
    pub size: u64,
    /// Bytes stored.
    pub stored_size: u64,
    /// Key of the manifest (relative to the storage prefix).
    pub manifest_key: String,
    /// The manifest's JSON.
    pub manifest: String,
}

const COLS: &str =
    "id, job, kind, host, item, started_at, finished_at, size, stored_size, manifest_key, manifest";

fn row(r: &Row) -> rusqlite::Result<SnapshotRow> {
    Ok(SnapshotRow {
        id: r.get(0)?,
        job: r.get(1)?,
        kind: r.get(2)?,
        host: r.get(3)?,
        item: r.get(4)?,
        started_at: from_millis(r.get(5)?),
        finished_at: from_millis(r.get(6)?),
        size: r.get::<_, i64>(7)? as u64,
        stored_size: r.get::<_, i64>(8)? as u64,
        manifest_key: r.get(9)?,
        manifest: r.get(10)?,
    })
}

fn insert(
    conn: &rusqlite::Connection,
    s: &SnapshotRow,
    run_id: Option<i64>,
) -> rusqlite::Result<usize> {
    conn.execute(
        &format!("INSERT OR REPLACE INTO snapshots ({COLS}, run_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
        params![
            s.id, s.job, s.kind, s.host, s.item,
            to_millis(s.started_at), to_millis(s.finished_at),
            s.size as i64, s.stored_size as i64, s.manifest_key, s.manifest, run_id
        ],
    )
}

impl Catalog {
    /// Records a committed snapshot.
    pub fn add_snapshot(&self, s: &SnapshotRow, run_id: Option<i64>) -> Result<(), CatalogError> {
        insert(&self.conn(), s, run_id).map_err(|e| self.q(e))?;
        Ok(())
    }

    /// Forgets a snapshot (after its manifest was deleted).
    pub fn remove_snapshot(&self, id: &str) -> Result<(), CatalogError> {
        self.conn()
            .execute("DELETE FROM snapshots WHERE id = ?1", params![id])
            .map_err(|e| self.q(e))?;
        Ok(())
    }

    /// Snapshots, newest first, optionally of one job.
    pub fn snapshots(&self, job: Option<&str>) -> Result<Vec<SnapshotRow>, CatalogError> {
        let conn = self.conn();
        let mut st = conn
            .prepare(&format!(
                "SELECT {COLS} FROM snapshots WHERE ?1 IS NULL OR job = ?1 ORDER BY started_at DESC, id DESC"
            ))
            .map_err(|e| self.q(e))?;
        let rows = st.query_map(params![job], row).map_err(|e| self.q(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.q(e))
    }

    /// The newest snapshot of `job` and `item` other than `id` that started before it.
    pub fn previous_snapshot(
        &self,
        job: &str,
        item: &str,
        id: &str,
    ) -> Result<Option<SnapshotRow>, CatalogError> {
        let conn = self.conn();
        let mut st = conn
            .prepare(&format!(
                "SELECT {COLS} FROM snapshots WHERE job = ?1 AND item = ?2 AND id != ?3 \
                 AND started_at <= coalesce((SELECT started_at FROM snapshots WHERE id = ?3), started_at) \
                 ORDER BY started_at DESC, id DESC LIMIT 1"
            ))
            .map_err(|e| self.q(e))?;
        let mut rows = st
            .query_map(params![job, item, id], row)
            .map_err(|e| self.q(e))?;
        rows.next().transpose().map_err(|e| self.q(e))
    }

    /// Replaces the whole snapshot table with `rows` (a rebuild from the manifests in storage),
    /// in one transaction.
    pub fn replace_snapshots(&self, rows: &[SnapshotRow]) -> Result<(), CatalogError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.q(e))?;
        tx.execute("DELETE FROM snapshots", [])
            .map_err(|e| self.q(e))?;
        for r in rows {
            insert(&tx, r, None).map_err(|e| self.q(e))?;
        }
        tx.commit().map_err(|e| self.q(e))
    }
}

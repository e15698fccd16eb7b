//! The digests sent (`[alerts] digest`): one row per scheduled slot, written in the transaction
//! that queues the digest's notifications, so a slot is queued at most once; and the snapshot
//! totals a digest reports its growth from.

use super::alerts::outbox;
use super::{from_millis, to_millis, Catalog, CatalogError, OutboxRow};
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

/// One row of `digests`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestRow {
    /// The scheduled time the digest was for.
    pub slot: DateTime<Utc>,
    /// When it was built (the end of the period it covered).
    pub sent_at: DateTime<Utc>,
    /// How many snapshots the catalog held then.
    pub snapshots: u64,
    /// Their stored bytes then.
    pub stored_bytes: u64,
}

/// The snapshots in the catalog, and those among them committed after a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SnapshotTotals {
    /// Snapshots in the catalog.
    pub count: u64,
    /// Their stored bytes.
    pub stored_bytes: u64,
    /// Those committed after the time asked about.
    pub added: u64,
    /// Their stored bytes.
    pub added_bytes: u64,
}

impl Catalog {
    /// The newest digest sent, if any.
    pub fn last_digest(&self) -> Result<Option<DigestRow>, CatalogError> {
        self.conn()
            .query_row(
                "SELECT slot, sent_at, snapshots, stored_bytes FROM digests ORDER BY slot DESC LIMIT 1",
                [],
                |r| {
                    Ok(DigestRow {
                        slot: from_millis(r.get(0)?),
                        sent_at: from_millis(r.get(1)?),
                        snapshots: r.get::<_, i64>(2)? as u64,
                        stored_bytes: r.get::<_, i64>(3)? as u64,
                    })
                },
            )
            .optional()
            .map_err(|e| self.q(e))
    }

    /// Records the digest of `d.slot` and queues its notifications, at once; `false` (and
    /// nothing queued) when that slot was recorded already (by another process meanwhile).
    pub fn save_digest(&self, d: &DigestRow, queued: &[OutboxRow]) -> Result<bool, CatalogError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.q(e))?;
        let new = tx
            .execute(
                "INSERT OR IGNORE INTO digests (slot, sent_at, snapshots, stored_bytes) VALUES (?1, ?2, ?3, ?4)",
                params![
                    to_millis(d.slot),
                    to_millis(d.sent_at),
                    d.snapshots as i64,
                    d.stored_bytes as i64
                ],
            )
            .map_err(|e| self.q(e))?;
        if new == 0 {
            return Ok(false);
        }
        for m in queued {
            outbox::insert(&tx, m).map_err(|e| self.q(e))?;
        }
        tx.commit().map_err(|e| self.q(e))?;
        Ok(true)
    }

    /// The snapshot totals, counting as added those committed after `after`.
    pub fn snapshot_totals(&self, after: DateTime<Utc>) -> Result<SnapshotTotals, CatalogError> {
        self.conn()
            .query_row(
                "SELECT count(*), coalesce(sum(stored_size), 0),
                        coalesce(sum(finished_at > ?1), 0),
                        coalesce(sum(CASE WHEN finished_at > ?1 THEN stored_size ELSE 0 END), 0)
                 FROM snapshots",
                params![to_millis(after)],
                |r| {
                    Ok(SnapshotTotals {
                        count: r.get::<_, i64>(0)? as u64,
                        stored_bytes: r.get::<_, i64>(1)? as u64,
                        added: r.get::<_, i64>(2)? as u64,
                        added_bytes: r.get::<_, i64>(3)? as u64,
                    })
                },
            )
            .map_err(|e| self.q(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn snapshot(id: &str, at: DateTime<Utc>, stored: u64) -> crate::catalog::SnapshotRow {
        crate::catalog::SnapshotRow {
            id: id.into(),
            job: "uploads".into(),
            kind: "media".into(),
            host: "web-01".into(),
            item: String::new(),
            started_at: at,
            finished_at: at,
            size: stored * 2,
            stored_size: stored,
            manifest_key: format!("m/{id}"),
            manifest: "{}".into(),
        }
    }

    #[test]
    fn a_slot_is_saved_once_and_totals_count_what_was_added() {
        let dir = tempfile::tempdir().unwrap();
        let cat = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        assert_eq!(cat.last_digest().unwrap(), None);
        let t = |h| Utc.with_ymd_and_hms(2026, 11, 20, h, 0, 0).unwrap();
        cat.add_snapshot(&snapshot("a", t(1), 100), None).unwrap();
        cat.add_snapshot(&snapshot("b", t(5), 30), None).unwrap();
        let totals = cat.snapshot_totals(t(2)).unwrap();
        assert_eq!(
            totals,
            SnapshotTotals {
                count: 2,
                stored_bytes: 130,
                added: 1,
                added_bytes: 30
            }
        );
        let row = DigestRow {
            slot: t(8),
            sent_at: t(8),
            snapshots: 2,
            stored_bytes: 130,
        };
        let mail = OutboxRow {
            id: 0,
            message_id: "<1@x>".into(),
            subject: "digest".into(),
            mail_from: "a@x".into(),
            rcpt_to: vec!["b@x".into()],
            raw: b"raw".to_vec(),
            created_at: t(8),
            attempts: 0,
            next_attempt: t(8),
            last_error: None,
            channel: OutboxRow::EMAIL.into(),
            content_type: String::new(),
            headers: Vec::new(),
        };
        assert!(cat.save_digest(&row, std::slice::from_ref(&mail)).unwrap());
        let again = OutboxRow {
            message_id: "<2@x>".into(),
            ..mail
        };
        assert!(!cat.save_digest(&row, &[again]).unwrap());
        assert_eq!(cat.outbox(None).unwrap().len(), 1, "queued once");
        assert_eq!(cat.last_digest().unwrap(), Some(row));
    }
}

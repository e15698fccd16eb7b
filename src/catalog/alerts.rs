//! Alerting tables: the state of every alert (`alerts`), the durable `outbox` of formatted
//! mails, `silences`, and the `runs.alerted` flag that marks finished runs alerting has seen.
//!
//! Every change that must not be half-done is one transaction: consuming events and runs
//! together with the alert states they produce; queueing a mail together with the record that
//! it was queued (so a crash never loses a mail, nor queues it twice).

use super::{from_millis, to_millis, Catalog, CatalogError};
use chrono::{DateTime, Utc};
use rusqlite::{params, Row};

pub(super) mod outbox;
pub use outbox::{OutboxRow, GIVEN_UP};

/// One row of `alerts`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    /// Check name (`disk:/`), or `backup-run:JOB` / `drill:JOB` for failed runs.
    pub key: String,
    /// Firing now (at or above `min_severity`, or flapping).
    pub firing: bool,
    /// The check is flapping.
    pub flapping: bool,
    /// `WARN`, `CRIT` or `UNKNOWN` (the last bad level while resolved).
    pub severity: String,
    /// Since when the condition holds.
    pub since: DateTime<Utc>,
    /// When `firing`, `flapping` or `severity` last changed.
    pub changed_at: DateTime<Utc>,
    /// The value that decided it.
    pub value: Option<f64>,
    /// The threshold crossed.
    pub threshold: Option<f64>,
    /// Detail from the check or the run's error.
    pub detail: String,
    /// What was last mailed: `""` (nothing), `FIRING`, `FLAPPING` or `RESOLVED`.
    pub notified: String,
    /// Severity in that mail.
    pub notified_severity: String,
    /// When it was mailed (queued).
    pub notified_at: Option<DateTime<Utc>>,
    /// Message-ID of the incident's first mail (for In-Reply-To / References).
    pub thread: Option<String>,
}

/// One row of `silences`.
#[derive(Debug, Clone, PartialEq)]
pub struct SilenceRow {
    /// Row id.
    pub id: i64,
    /// Alert key, or a prefix ending in `*` (`disk:*`), or `*`.
    pub pattern: String,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End.
    pub ends_at: DateTime<Utc>,
    /// Why.
    pub reason: String,
    /// Who (the Unix user).
    pub created_by: String,
}

/// A finished run alerting has not looked at yet.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedRun {
    /// Row id.
    pub id: i64,
    /// Job name.
    pub job: String,
    /// `mysql`, `verify`, …
    pub kind: String,
    /// `success`, `failed`, …
    pub status: String,
    /// Error text.
    pub error: Option<String>,
    /// When it ended.
    pub ended_at: DateTime<Utc>,
}

const ALERT_COLS: &str = "key, firing, flapping, severity, since, changed_at, value, threshold, detail, notified, notified_severity, notified_at, thread";

fn alert_row(r: &Row) -> rusqlite::Result<AlertRow> {
    Ok(AlertRow {
        key: r.get(0)?,
        firing: r.get::<_, i64>(1)? != 0,
        flapping: r.get::<_, i64>(2)? != 0,
        severity: r.get(3)?,
        since: from_millis(r.get(4)?),
        changed_at: from_millis(r.get(5)?),
        value: r.get(6)?,
        threshold: r.get(7)?,
        detail: r.get(8)?,
        notified: r.get(9)?,
        notified_severity: r.get(10)?,
        notified_at: r.get::<_, Option<i64>>(11)?.map(from_millis),
        thread: r.get(12)?,
    })
}

fn silence_row(r: &Row) -> rusqlite::Result<SilenceRow> {
    Ok(SilenceRow {
        id: r.get(0)?,
        pattern: r.get(1)?,
        starts_at: from_millis(r.get(2)?),
        ends_at: from_millis(r.get(3)?),
        reason: r.get(4)?,
        created_by: r.get(5)?,
    })
}

fn upsert(tx: &rusqlite::Transaction, a: &AlertRow) -> rusqlite::Result<usize> {
    tx.execute(
        &format!(
            "INSERT OR REPLACE INTO alerts ({ALERT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        ),
        params![
            a.key,
            a.firing as i64,
            a.flapping as i64,
            a.severity,
            to_millis(a.since),
            to_millis(a.changed_at),
            a.value,
            a.threshold,
            a.detail,
            a.notified,
            a.notified_severity,
            a.notified_at.map(to_millis),
            a.thread
        ],
    )
}

impl Catalog {
    /// Every alert, by key.
    pub fn alerts(&self) -> Result<Vec<AlertRow>, CatalogError> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached(&format!("SELECT {ALERT_COLS} FROM alerts ORDER BY key"))
            .map_err(|e| self.q(e))?;
        let rows = st.query_map([], alert_row).map_err(|e| self.q(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.q(e))
    }

    /// Finished runs alerting has not looked at yet, oldest first.
    pub fn unalerted_runs(&self) -> Result<Vec<FinishedRun>, CatalogError> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached("SELECT id, job, kind, status, error, coalesce(ended_at, started_at) FROM runs WHERE alerted = 0 AND status != 'running' ORDER BY id")
            .map_err(|e| self.q(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(FinishedRun {
                    id: r.get(0)?,
                    job: r.get(1)?,
                    kind: r.get(2)?,
                    status: r.get(3)?,
                    error: r.get(4)?,
                    ended_at: from_millis(r.get(5)?),
                })
            })
            .map_err(|e| self.q(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.q(e))
    }

    /// Stores alert states and marks the events, runs and anomaly changes they came from as
    /// consumed, at once.
    pub fn save_alert_inputs(
        &self,
        alerts: &[AlertRow],
        events: &[i64],
        (runs, anomalies): (&[i64], &[i64]),
    ) -> Result<(), CatalogError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.q(e))?;
        for a in alerts {
            upsert(&tx, a).map_err(|e| self.q(e))?;
        }
        for id in events {
            tx.execute("UPDATE events SET delivered = 1 WHERE id = ?1", params![id])
                .map_err(|e| self.q(e))?;
        }
        for id in runs {
            tx.execute("UPDATE runs SET alerted = 1 WHERE id = ?1", params![id])
                .map_err(|e| self.q(e))?;
        }
        for id in anomalies {
            tx.execute(
                "UPDATE anomalies SET alerted = 1 WHERE id = ?1",
                params![id],
            )
            .map_err(|e| self.q(e))?;
        }
        tx.commit().map_err(|e| self.q(e))
    }

    /// Queues the notifications (a mail, a webhook request per webhook), stores the alerts they
    /// are about and drops the finished ones, at once.
    pub fn save_notices(
        &self,
        alerts: &[AlertRow],
        forget: &[String],
        queued: &[OutboxRow],
    ) -> Result<(), CatalogError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.q(e))?;
        for m in queued {
            outbox::insert(&tx, m).map_err(|e| self.q(e))?;
        }
        for a in alerts {
            upsert(&tx, a).map_err(|e| self.q(e))?;
        }
        for k in forget {
            tx.execute("DELETE FROM alerts WHERE key = ?1", params![k])
                .map_err(|e| self.q(e))?;
        }
        tx.commit().map_err(|e| self.q(e))
    }

    /// Adds a silence; returns its id.
    pub fn add_silence(
        &self,
        pattern: &str,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        reason: &str,
        created_by: &str,
    ) -> Result<i64, CatalogError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO silences (pattern, starts_at, ends_at, reason, created_by) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![pattern, to_millis(starts_at), to_millis(ends_at), reason, created_by],
        )
        .map_err(|e| self.q(e))?;
        Ok(conn.last_insert_rowid())
    }

    /// Silences, by id; only those not yet over at `active_at` when given.
    pub fn silences(
        &self,
        active_at: Option<DateTime<Utc>>,
    ) -> Result<Vec<SilenceRow>, CatalogError> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached("SELECT id, pattern, starts_at, ends_at, reason, created_by FROM silences WHERE (?1 IS NULL OR ends_at > ?1) ORDER BY id")
            .map_err(|e| self.q(e))?;
        let rows = st
            .query_map(params![active_at.map(to_millis)], silence_row)
            .map_err(|e| self.q(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.q(e))
    }

    /// Removes a silence; false when there is none with that id.
    pub fn remove_silence(&self, id: i64) -> Result<bool, CatalogError> {
        let n = self
            .conn()
            .execute("DELETE FROM silences WHERE id = ?1", params![id])
            .map_err(|e| self.q(e))?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::RunStatus;

    #[test]
    fn outbox_silences_and_runs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
        let now = from_millis(to_millis(Utc::now()));
        let done = c.start_run("main", "mysql", "cli", now).unwrap();
        c.finish_run(done, RunStatus::Failed, 0, Some("boom"), now)
            .unwrap();
        let runs = c.unalerted_runs().unwrap();
        assert_eq!((runs.len(), runs[0].error.as_deref()), (1, Some("boom")));
        c.save_alert_inputs(&[], &[], (&[done], &[])).unwrap();
        assert!(c.unalerted_runs().unwrap().is_empty());
        let m = OutboxRow {
            id: 0,
            message_id: "<a@b>".into(),
            subject: "s".into(),
            mail_from: "f@b".into(),
            rcpt_to: vec!["x@b".into(), "y@b".into()],
            raw: b"raw".to_vec(),
            created_at: now,
            attempts: 0,
            next_attempt: now,
            last_error: None,
            channel: OutboxRow::EMAIL.into(),
            content_type: String::new(),
            headers: Vec::new(),
        };
        let hook = OutboxRow {
            message_id: "<a@b>/webhook:ops".into(),
            mail_from: String::new(),
            rcpt_to: Vec::new(),
            channel: "webhook:ops".into(),
            content_type: "text/plain".into(),
            headers: vec![
                ("Title".into(), "x: y".into()),
                ("Priority".into(), "5".into()),
            ],
            ..m.clone()
        };
        c.save_notices(&[], &[], std::slice::from_ref(&hook))
            .unwrap();
        let got = c.outbox_of("webhook:ops", Some(now)).unwrap();
        assert_eq!(
            (got[0].headers.clone(), got[0].webhook()),
            (hook.headers.clone(), Some("ops"))
        );
        assert!(c.outbox_of(OutboxRow::EMAIL, None).unwrap().is_empty());
        c.outbox_failed(got[0].id, GIVEN_UP, "400").unwrap();
        c.outbox_retry_now_of(OutboxRow::EMAIL, now).unwrap();
        assert!(c.outbox_of("webhook:ops", None).unwrap()[0].given_up());
        c.outbox_retry_now_of("webhook:ops", now).unwrap();
        c.outbox_sent(got[0].id).unwrap();
        c.save_notices(&[], &[], std::slice::from_ref(&m)).unwrap();
        let got = c.outbox(Some(now)).unwrap();
        assert_eq!(got[0].rcpt_to, m.rcpt_to);
        c.outbox_failed(got[0].id, now + chrono::Duration::seconds(60), "down")
            .unwrap();
        assert!(c.outbox(Some(now)).unwrap().is_empty());
        c.outbox_retry_now(now).unwrap();
        assert_eq!(c.outbox(Some(now)).unwrap()[0].attempts, 1);
        c.outbox_sent(got[0].id).unwrap();
        assert!(c.outbox(None).unwrap().is_empty());
        let id = c
            .add_silence("disk:*", now, now + chrono::Duration::hours(2), "r", "root")
            .unwrap();
        assert_eq!(c.silences(Some(now)).unwrap().len(), 1);
        assert!(c
            .silences(Some(now + chrono::Duration::hours(3)))
            .unwrap()
            .is_empty());
        assert!(c.remove_silence(id).unwrap());
        assert!(!c.remove_silence(id).unwrap());
    }
}

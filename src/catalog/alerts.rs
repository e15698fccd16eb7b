//! Alerting tables: the state of every alert (`alerts`), the durable `outbox` of formatted
//! mails, `silences`, and the `runs.alerted` flag that marks finished runs alerting has seen.
//!
//! Every change that must not be half-done is one transaction: consuming events and runs
//! together with the alert states they produce; queueing a mail together with the record that
//! it was queued (so a crash never loses a mail, nor queues it twice).

use super::{from_millis, to_millis, Catalog, CatalogError};
use chrono::{DateTime, Utc};
use rusqlite::{params, Row};

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

/// One row of `outbox`: a formatted mail waiting for the SMTP server to accept it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    /// Row id (0 before insertion).
    pub id: i64,
    /// The mail's Message-ID (stable across retries: a duplicate is recognisable).
    pub message_id: String,
    /// Subject, for status and logs.
    pub subject: String,
    /// Envelope sender.
    pub mail_from: String,
    /// Envelope recipients.
    pub rcpt_to: Vec<String>,
    /// The RFC 5322 text.
    pub raw: Vec<u8>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not before.
    pub next_attempt: DateTime<Utc>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// `next_attempt` of a mail the server refused for good (5xx): not retried until the daemon
/// restarts or the mail settings change ([`Catalog::outbox_retry_now`]).
pub const GIVEN_UP: DateTime<Utc> =
    DateTime::<Utc>::from_timestamp_nanos(7_258_118_400_000_000_000); // 2200-01-01

impl OutboxRow {
    /// Whether the server refused it for good (see [`GIVEN_UP`]).
    pub fn given_up(&self) -> bool {
        self.next_attempt >= GIVEN_UP
    }
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
const OUTBOX_COLS: &str = "id, message_id, subject, mail_from, rcpt_to, raw, created_at, attempts, next_attempt, last_error";

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

fn outbox_row(r: &Row) -> rusqlite::Result<OutboxRow> {
    Ok(OutboxRow {
        id: r.get(0)?,
        message_id: r.get(1)?,
        subject: r.get(2)?,
        mail_from: r.get(3)?,
        rcpt_to: r
            .get::<_, String>(4)?
            .split('\n')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        raw: r.get(5)?,
        created_at: from_millis(r.get(6)?),
        attempts: r.get::<_, i64>(7)? as u32,
        next_attempt: from_millis(r.get(8)?),
        last_error: r.get(9)?,
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
            .prepare(&format!("SELECT {ALERT_COLS} FROM alerts ORDER BY key"))
            .map_err(|e| self.q(e))?;
        let rows = st.query_map([], alert_row).map_err(|e| self.q(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.q(e))
    }

    /// Finished runs alerting has not looked at yet, oldest first.
    pub fn unalerted_runs(&self) -> Result<Vec<FinishedRun>, CatalogError> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT id, job, kind, status, error, coalesce(ended_at, started_at) FROM runs WHERE alerted = 0 AND status != 'running' ORDER BY id")
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

    /// Stores alert states and marks the events and runs they came from as consumed, at once.
    pub fn save_alert_inputs(
        &self,
        alerts: &[AlertRow],
        events: &[i64],
        runs: &[i64],
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
        tx.commit().map_err(|e| self.q(e))
    }

    /// Queues `mail` (if any), stores the alerts it is about and drops the finished ones, at
    /// once.
    pub fn save_notices(
        &self,
        alerts: &[AlertRow],
        forget: &[String],
        mail: Option<&OutboxRow>,
    ) -> Result<(), CatalogError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.q(e))?;
        if let Some(m) = mail {
            tx.execute(
                "INSERT INTO outbox (message_id, subject, mail_from, rcpt_to, raw, created_at, attempts, next_attempt, last_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, NULL)",
                params![m.message_id, m.subject, m.mail_from, m.rcpt_to.join("\n"), m.raw, to_millis(m.created_at), to_millis(m.next_attempt)],
            )
            .map_err(|e| self.q(e))?;
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

    /// Mails in the outbox, oldest first; only those due at `due` when given.
    pub fn outbox(&self, due: Option<DateTime<Utc>>) -> Result<Vec<OutboxRow>, CatalogError> {
        let conn = self.conn();
        let mut st = conn
            .prepare(&format!(
                "SELECT {OUTBOX_COLS} FROM outbox WHERE (?1 IS NULL OR next_attempt <= ?1) ORDER BY id"
            ))
            .map_err(|e| self.q(e))?;
        let rows = st
            .query_map(params![due.map(to_millis)], outbox_row)
            .map_err(|e| self.q(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.q(e))
    }

    /// The SMTP server accepted the mail: it leaves the outbox.
    pub fn outbox_sent(&self, id: i64) -> Result<(), CatalogError> {
        self.conn()
            .execute("DELETE FROM outbox WHERE id = ?1", params![id])
            .map_err(|e| self.q(e))?;
        Ok(())
    }

    /// An attempt failed: count it and set the next one.
    pub fn outbox_failed(
        &self,
        id: i64,
        next: DateTime<Utc>,
        error: &str,
    ) -> Result<(), CatalogError> {
        self.conn()
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt = ?2, last_error = ?3 WHERE id = ?1",
                params![id, to_millis(next), error],
            )
            .map_err(|e| self.q(e))?;
        Ok(())
    }

    /// The server accepted the mail for some recipients: only `rest` are still to be reached.
    pub fn outbox_recipients(&self, id: i64, rest: &[String]) -> Result<(), CatalogError> {
        self.conn()
            .execute(
                "UPDATE outbox SET rcpt_to = ?2 WHERE id = ?1",
                params![id, rest.join("\n")],
            )
            .map_err(|e| self.q(e))?;
        Ok(())
    }

    /// Makes every queued mail due now (the daemon just started, or the config changed).
    pub fn outbox_retry_now(&self, now: DateTime<Utc>) -> Result<(), CatalogError> {
        self.conn()
            .execute(
                "UPDATE outbox SET next_attempt = ?1 WHERE next_attempt > ?1",
                params![to_millis(now)],
            )
            .map_err(|e| self.q(e))?;
        Ok(())
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
            .prepare("SELECT id, pattern, starts_at, ends_at, reason, created_by FROM silences WHERE (?1 IS NULL OR ends_at > ?1) ORDER BY id")
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
        c.save_alert_inputs(&[], &[], &[done]).unwrap();
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
        };
        c.save_notices(&[], &[], Some(&m)).unwrap();
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

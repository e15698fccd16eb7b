//! The durable `outbox`: notifications written before any attempt, deleted only once delivered.
//! Mails (`channel = 'email'`) and webhook requests (`channel = 'webhook:<name>'`) share it;
//! each channel's sender reads only its own rows, so one dead channel never holds up another.

use super::super::{from_millis, to_millis, Catalog, CatalogError};
use chrono::{DateTime, Utc};
use rusqlite::{params, Row};

/// One row of `outbox`: a formatted mail waiting for the SMTP server to accept it, or a
/// webhook request waiting for a 2xx answer.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    /// Row id (0 before insertion).
    pub id: i64,
    /// The mail's Message-ID (stable across retries: a duplicate is recognisable); a webhook
    /// request's id, sent with it.
    pub message_id: String,
    /// Subject (a webhook's title), for status and logs.
    pub subject: String,
    /// Envelope sender (empty for webhooks).
    pub mail_from: String,
    /// Envelope recipients (empty for webhooks).
    pub rcpt_to: Vec<String>,
    /// The RFC 5322 text, or the webhook request's body.
    pub raw: Vec<u8>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not before.
    pub next_attempt: DateTime<Utc>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Who delivers it: [`OutboxRow::EMAIL`] or `webhook:<name>`.
    pub channel: String,
    /// The webhook body's media type (empty for mails).
    pub content_type: String,
    /// Extra request headers of a webhook (ntfy's `Title`, `Priority`).
    pub headers: Vec<(String, String)>,
}

/// `next_attempt` of a notification refused for good (SMTP 5xx, HTTP 4xx): not retried until
/// the daemon restarts or the settings change ([`Catalog::outbox_retry_now`]).
pub const GIVEN_UP: DateTime<Utc> =
    DateTime::<Utc>::from_timestamp_nanos(7_258_118_400_000_000_000); // 2200-01-01

impl OutboxRow {
    /// The channel of mails.
    pub const EMAIL: &'static str = "email";

    /// Whether the server refused it for good (see [`GIVEN_UP`]).
    pub fn given_up(&self) -> bool {
        self.next_attempt >= GIVEN_UP
    }

    /// The webhook's name, for a webhook row.
    pub fn webhook(&self) -> Option<&str> {
        self.channel.strip_prefix("webhook:")
    }
}

const OUTBOX_COLS: &str = "id, message_id, subject, mail_from, rcpt_to, raw, created_at, attempts, next_attempt, last_error, channel, content_type, headers";

fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n').filter(|s| !s.is_empty())
}

fn outbox_row(r: &Row) -> rusqlite::Result<OutboxRow> {
    Ok(OutboxRow {
        id: r.get(0)?,
        message_id: r.get(1)?,
        subject: r.get(2)?,
        mail_from: r.get(3)?,
        rcpt_to: lines(&r.get::<_, String>(4)?).map(str::to_string).collect(),
        raw: r.get(5)?,
        created_at: from_millis(r.get(6)?),
        attempts: r.get::<_, i64>(7)? as u32,
        next_attempt: from_millis(r.get(8)?),
        last_error: r.get(9)?,
        channel: r.get(10)?,
        content_type: r.get(11)?,
        headers: lines(&r.get::<_, String>(12)?)
            .filter_map(|l| l.split_once(": "))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    })
}

/// Inserts `m` (in the transaction that records it was queued).
pub(in crate::catalog) fn insert(
    tx: &rusqlite::Transaction,
    m: &OutboxRow,
) -> rusqlite::Result<usize> {
    let headers: String = m
        .headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\n"))
        .collect();
    tx.execute(
        "INSERT INTO outbox (message_id, subject, mail_from, rcpt_to, raw, created_at, attempts, next_attempt, last_error, channel, content_type, headers)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, NULL, ?8, ?9, ?10)",
        params![m.message_id, m.subject, m.mail_from, m.rcpt_to.join("\n"), m.raw, to_millis(m.created_at), to_millis(m.next_attempt), m.channel, m.content_type, headers],
    )
}

impl Catalog {
    /// Everything in the outbox (every channel), oldest first; only what is due at `due` when
    /// given.
    pub fn outbox(&self, due: Option<DateTime<Utc>>) -> Result<Vec<OutboxRow>, CatalogError> {
        self.outbox_rows(None, due)
    }

    /// The rows of one channel ([`OutboxRow::EMAIL`], `webhook:<name>`), oldest first; only those due at
    /// `due` when given.
    pub fn outbox_of(
        &self,
        channel: &str,
        due: Option<DateTime<Utc>>,
    ) -> Result<Vec<OutboxRow>, CatalogError> {
        self.outbox_rows(Some(channel), due)
    }

    fn outbox_rows(
        &self,
        channel: Option<&str>,
        due: Option<DateTime<Utc>>,
    ) -> Result<Vec<OutboxRow>, CatalogError> {
        let conn = self.conn();
        let mut st = conn
            .prepare(&format!(
                "SELECT {OUTBOX_COLS} FROM outbox WHERE (?1 IS NULL OR next_attempt <= ?1) AND (?2 IS NULL OR channel = ?2) ORDER BY id"
            ))
            .map_err(|e| self.q(e))?;
        let rows = st
            .query_map(params![due.map(to_millis), channel], outbox_row)
            .map_err(|e| self.q(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.q(e))
    }

    /// Delivered (the SMTP server accepted the mail, the webhook answered 2xx): it leaves the
    /// outbox.
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

    /// Makes every queued row due now (the daemon just started, or the config changed).
    pub fn outbox_retry_now(&self, now: DateTime<Utc>) -> Result<(), CatalogError> {
        self.outbox_retry(None, now)
    }

    /// Makes the queued rows of `channel` due now (its sender started, or its settings changed).
    pub fn outbox_retry_now_of(
        &self,
        channel: &str,
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        self.outbox_retry(Some(channel), now)
    }

    fn outbox_retry(&self, channel: Option<&str>, now: DateTime<Utc>) -> Result<(), CatalogError> {
        self.conn()
            .execute(
                "UPDATE outbox SET next_attempt = ?1 WHERE next_attempt > ?1 AND (?2 IS NULL OR channel = ?2)",
                params![to_millis(now), channel],
            )
            .map_err(|e| self.q(e))?;
        Ok(())
    }
}

//! Delivery of the durable outbox: every mail was written to the catalog before any attempt;
//! a row is deleted only after the SMTP server accepted the message (250 after DATA). Failed
//! attempts are retried with exponential backoff capped at [`MAX_BACKOFF`]; the daemon retries
//! everything at once when it starts. At-least-once: a crash between acceptance and deletion
//! sends the mail again with the same Message-ID, so a duplicate is recognisable.

use super::email::{Mailer, SendError};
use crate::catalog::{Catalog, OutboxRow};
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The wait after the `attempts`-th failure: 1 s, 2 s, 4 s … capped at [`MAX_BACKOFF`].
pub fn backoff(attempts: u32) -> Duration {
    let secs = 1u64 << attempts.saturating_sub(1).min(16);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

/// After this many failures of one mail an ERROR is logged (before: warnings).
const LOUD_AFTER: u32 = 5;

fn failed(cat: &Catalog, row: &OutboxRow, e: &SendError) {
    let attempts = row.attempts + 1;
    let wait = backoff(attempts);
    let next = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
    if let Err(ce) = cat.outbox_failed(row.id, next, &e.to_string()) {
        tracing::error!(error = %ce, "cannot record a failed mail attempt");
    }
    if attempts == LOUD_AFTER {
        tracing::error!(subject = %row.subject, attempts, error = %e, "alert mail still not delivered; it stays in the outbox and is retried every minute");
    } else {
        tracing::warn!(subject = %row.subject, attempts, retry_in = ?wait, error = %e, "alert mail not delivered yet; it stays in the outbox");
    }
}

/// Sends every mail due now over one SMTP session; returns how many the server accepted.
pub async fn deliver_due(cat: &Catalog, mailer: &Mailer) -> usize {
    let due = match cat.outbox(Some(Utc::now())) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the outbox");
            return 0;
        }
    };
    if due.is_empty() {
        return 0;
    }
    let mut session = match mailer.open().await {
        Ok(s) => s,
        Err(e) => {
            for row in &due {
                failed(cat, row, &e);
            }
            return 0;
        }
    };
    let mut sent = 0;
    for row in &due {
        match session.send(&row.mail_from, &row.rcpt_to, &row.raw).await {
            Ok(()) => {
                sent += 1;
                tracing::info!(subject = %row.subject, message_id = %row.message_id, "alert mail sent");
                if let Err(e) = cat.outbox_sent(row.id) {
                    tracing::error!(error = %e, "mail sent but not removed from the outbox; it will be sent again");
                }
            }
            Err(e) => {
                // The session is in an unknown state (mid-transaction): the rest waits for
                // the next round, over a new connection.
                failed(cat, row, &e);
                return sent;
            }
        }
    }
    session.close().await;
    sent
}

/// The sender task: delivers due mails, then sleeps until the next is due, `wake` is notified
/// (a mail was queued) or the mailer changes (reload).
pub async fn run(
    cat: Arc<Catalog>,
    mut mailer: watch::Receiver<Option<Mailer>>,
    wake: Arc<Notify>,
) {
    if let Err(e) = cat.outbox_retry_now(Utc::now()) {
        tracing::warn!(error = %e, "cannot reset the outbox retry times");
    }
    loop {
        let m = mailer.borrow_and_update().clone();
        let mut pause = MAX_BACKOFF;
        if let Some(m) = &m {
            deliver_due(&cat, m).await;
            if let Ok(rows) = cat.outbox(None) {
                let now = Utc::now();
                if let Some(next) = rows.iter().map(|r| r.next_attempt).min() {
                    pause = (next - now)
                        .to_std()
                        .unwrap_or(Duration::ZERO)
                        .min(MAX_BACKOFF);
                }
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            changed = mailer.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(pause.max(Duration::from_millis(50))) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_and_is_capped_at_a_minute() {
        let got: Vec<u64> = (1..=9).map(|a| super::backoff(a).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}

//! Delivery of the durable outbox: every mail was written to the catalog before any attempt;
//! a row is deleted only after the SMTP server accepted the message (250 after DATA). Failed
//! attempts are retried with exponential backoff capped at [`MAX_BACKOFF`]; the daemon retries
//! everything at once when it starts. At-least-once: a crash between acceptance and deletion
//! sends the mail again with the same Message-ID, so a duplicate is recognisable.
//!
//! Refusals are handled like an MTA would: a recipient the server refuses does not keep the
//! mail from the others; the row then waits only for the refused ones. A permanent refusal
//! (5xx: of the sender, the message, or every remaining recipient) is not retried on the
//! backoff schedule, since the same mail would be refused again: the row stays in the outbox,
//! shown by `opsagent status` as refused, logged as an ERROR, and is tried once more when the
//! daemon restarts or the mail settings change (after the operator fixed the cause).
//!
//! Webhook rows are delivered the same way by their own senders ([`WebhookSenders`], one task
//! per webhook): a dead SMTP relay never holds up a webhook, nor one webhook another.

use super::email::{Mailer, SendError, Step};
use crate::catalog::{Catalog, OutboxRow, GIVEN_UP};
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

mod webhooks;
pub use webhooks::{deliver_due_webhook, WebhookSenders};

fn failed(cat: &Catalog, row: &OutboxRow, e: &SendError) {
    let attempts = row.attempts + 1;
    if e.permanent() {
        if let Err(ce) = cat.outbox_failed(row.id, GIVEN_UP, &e.to_string()) {
            tracing::error!(error = %ce, "cannot record a failed mail attempt");
        }
        tracing::error!(subject = %row.subject, attempts, error = %e, "alert mail refused for good by the SMTP server; not retried until the daemon restarts or [alerts.email] changes (see opsagent status)");
        return;
    }
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

/// The server took the mail for some recipients and refused `refused`: the row now waits for
/// those only (for good if every refusal was permanent).
fn partly_sent(cat: &Catalog, row: &OutboxRow, refused: &[SendError]) {
    let rest: Vec<String> = row
        .rcpt_to
        .iter()
        .filter(|r| {
            refused
                .iter()
                .any(|e| e.step == Step::Recipient(r.to_string()))
        })
        .cloned()
        .collect();
    let reached: Vec<&str> = row
        .rcpt_to
        .iter()
        .filter(|r| !rest.contains(r))
        .map(String::as_str)
        .collect();
    tracing::info!(subject = %row.subject, to = %reached.join(", "), "alert mail sent to some recipients");
    if let Err(ce) = cat.outbox_recipients(row.id, &rest) {
        tracing::error!(error = %ce, "cannot record the recipients still to reach; the mail may be sent to all again");
    }
    let why = refused
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let err = SendError {
        message: why,
        code: refused.iter().map(|e| e.code.unwrap_or(0)).min(),
        ..refused[0].clone()
    };
    failed(cat, row, &err);
}

/// Sends every mail due now over one SMTP session; returns how many the server accepted.
pub async fn deliver_due(cat: &Catalog, mailer: &Mailer) -> usize {
    let due = match cat.outbox_of(OutboxRow::EMAIL, Some(Utc::now())) {
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
                failed(
                    cat,
                    row,
                    &SendError {
                        code: None,
                        ..e.clone()
                    },
                );
            }
            return 0;
        }
    };
    let mut sent = 0;
    for row in &due {
        match session.send(&row.mail_from, &row.rcpt_to, &row.raw).await {
            Ok(refused) => {
                sent += 1;
                if !refused.is_empty() {
                    partly_sent(cat, row, &refused);
                    continue;
                }
                tracing::info!(subject = %row.subject, message_id = %row.message_id, "alert mail sent");
                if let Err(e) = cat.outbox_sent(row.id) {
                    tracing::error!(error = %e, "mail sent but not removed from the outbox; it will be sent again");
                }
            }
            Err(e) => {
                failed(cat, row, &e);
                // A refusal leaves the session usable (it was reset); anything else (timeout,
                // closed connection) leaves it in an unknown state: the rest waits for the
                // next round, over a new connection.
                if e.code.is_none() || !session.usable() {
                    return sent;
                }
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
    if let Err(e) = cat.outbox_retry_now_of(OutboxRow::EMAIL, Utc::now()) {
        tracing::warn!(error = %e, "cannot reset the outbox retry times");
    }
    loop {
        let m = mailer.borrow_and_update().clone();
        let mut pause = MAX_BACKOFF;
        if let Some(m) = &m {
            deliver_due(&cat, m).await;
            if let Ok(rows) = cat.outbox_of(OutboxRow::EMAIL, None) {
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
            changed = mailer.changed() => {
                if changed.is_err() {
                    return;
                }
                // New mail settings: whatever waits (refused ones too) is tried with them now.
                if let Err(e) = cat.outbox_retry_now_of(OutboxRow::EMAIL, Utc::now()) {
                    tracing::warn!(error = %e, "cannot reset the outbox retry times");
                }
            }
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

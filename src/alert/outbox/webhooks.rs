//! Delivery of the outbox's webhook rows: one task per webhook, each reading only its channel
//! (`webhook:<name>`), so a dead receiver or SMTP relay never delays another channel. The rules
//! are the mail's: a row leaves the outbox only after a 2xx; no answer, 408, 429 and 5xx are
//! retried with [`backoff`]; any other 4xx is a refusal for good ([`GIVEN_UP`], logged as an
//! ERROR, shown by `status`, tried once more when the daemon restarts or the webhooks change).

use super::{backoff, LOUD_AFTER, MAX_BACKOFF};
use crate::alert::webhook::{Delivery, Webhook, WebhookError, WebhookSettings};
use crate::catalog::{Catalog, OutboxRow, GIVEN_UP};
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

fn record(cat: &Catalog, row: &OutboxRow, next: chrono::DateTime<Utc>, e: &WebhookError) {
    if let Err(ce) = cat.outbox_failed(row.id, next, &e.to_string()) {
        tracing::error!(error = %ce, "cannot record a failed webhook attempt");
    }
}

fn failed(cat: &Catalog, row: &OutboxRow, e: &WebhookError) {
    let attempts = row.attempts + 1;
    // The receiver's `Retry-After` when it asks for longer than the backoff.
    let wait = backoff(attempts).max(e.retry_after.unwrap_or_default());
    record(
        cat,
        row,
        Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default(),
        e,
    );
    if attempts == LOUD_AFTER {
        tracing::error!(title = %row.subject, attempts, error = %e, "alert webhook still not delivered; it stays in the outbox and is retried every minute");
    } else {
        tracing::warn!(title = %row.subject, attempts, retry_in = ?wait, error = %e, "alert webhook not delivered yet; it stays in the outbox");
    }
}

/// Sends every row of `hook`'s channel due now, oldest first; returns how many were
/// delivered. The round stops at the first failure that is not a refusal (the receiver is
/// down: the rest waits for the next round).
pub async fn deliver_due_webhook(cat: &Catalog, hook: &Webhook) -> usize {
    let channel = hook.settings().channel();
    let due = match cat.outbox_of(&channel, Some(Utc::now())) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the outbox");
            return 0;
        }
    };
    let mut sent = 0;
    for row in &due {
        match hook.deliver_row(row).await {
            Delivery::Sent(code) => {
                sent += 1;
                tracing::info!(webhook = %hook.settings().name, title = %row.subject, status = code, "alert webhook sent");
                if let Err(e) = cat.outbox_sent(row.id) {
                    tracing::error!(error = %e, "webhook sent but not removed from the outbox; it will be sent again");
                }
            }
            Delivery::GaveUp(e) => {
                record(cat, row, GIVEN_UP, &e);
                tracing::error!(title = %row.subject, attempts = row.attempts + 1, error = %e, "alert webhook refused for good; not retried until the daemon restarts or [[alerts.webhook]] changes (see opsagent status)");
            }
            Delivery::RetryLater(e) => {
                failed(cat, row, &e);
                return sent;
            }
        }
    }
    sent
}

/// One webhook's sender: delivers what is due, then sleeps until the next row is due or a
/// notification is queued (`queued` changes).
async fn run(cat: Arc<Catalog>, settings: WebhookSettings, mut queued: watch::Receiver<u64>) {
    let channel = settings.channel();
    let hook = match Webhook::new(settings) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "alert webhooks cannot be sent; they wait in the outbox");
            return;
        }
    };
    if let Err(e) = cat.outbox_retry_now_of(&channel, Utc::now()) {
        tracing::warn!(error = %e, "cannot reset the outbox retry times");
    }
    loop {
        queued.borrow_and_update();
        deliver_due_webhook(&cat, &hook).await;
        let mut pause = MAX_BACKOFF;
        if let Ok(rows) = cat.outbox_of(&channel, None) {
            if let Some(next) = rows.iter().map(|r| r.next_attempt).min() {
                pause = (next - Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(MAX_BACKOFF);
            }
        }
        tokio::select! {
            changed = queued.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep(pause.max(Duration::from_millis(50))) => {}
        }
    }
}

/// The running webhook senders (one task per webhook); dropping them stops them.
pub struct WebhookSenders {
    hooks: Vec<WebhookSettings>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl WebhookSenders {
    /// Starts a sender per webhook on the current tokio runtime; each wakes when `queued`
    /// changes.
    pub fn start(
        cat: &Arc<Catalog>,
        hooks: &[WebhookSettings],
        queued: &watch::Receiver<u64>,
    ) -> WebhookSenders {
        let tasks = hooks
            .iter()
            .map(|h| tokio::spawn(run(cat.clone(), h.clone(), queued.clone())))
            .collect();
        WebhookSenders {
            hooks: hooks.to_vec(),
            tasks,
        }
    }

    /// The webhooks these senders deliver to.
    pub fn hooks(&self) -> &[WebhookSettings] {
        &self.hooks
    }
}

impl Drop for WebhookSenders {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

//! One open SMTP session: sending messages, recipient by recipient, over a connection
//! [`super::Mailer::open`] made.

use super::{no_answer, ReplyCode, SendError, Step};
use lettre::message::Mailbox;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use std::future::Future;
use std::time::Duration;

/// One open SMTP session (after TLS and AUTH).
pub struct Session {
    pub(super) conn: AsyncSmtpConnection,
    pub(super) server: String,
    pub(super) timeout: Duration,
}

/// A sender or recipient that is not a mail address (caught before anything is sent).
#[derive(Debug, thiserror::Error)]
#[error("`{mailbox}` is not an address: {cause}")]
struct BadAddress {
    /// The address as configured.
    mailbox: String,
    /// Why lettre refused it.
    cause: lettre::address::AddressError,
}

/// One error for "every recipient was refused": the first one's step, permanent only when
/// every refusal was.
fn all_refused(mut refused: Vec<SendError>) -> SendError {
    let permanent = refused.iter().all(SendError::permanent);
    let mut first = refused.remove(0);
    if !refused.is_empty() {
        let others: Vec<String> = refused.iter().map(|e| e.step.to_string()).collect();
        first.message = format!("{} (also refused: {})", first.message, others.join(", "));
    }
    if !permanent && first.permanent() {
        first.code = refused.iter().find_map(|e| e.code.filter(|c| *c < 500));
    }
    first
}

fn address(mailbox: &str) -> Result<lettre::Address, BadAddress> {
    mailbox
        .parse::<Mailbox>()
        .map(|m| m.email)
        .map_err(|cause| BadAddress {
            mailbox: mailbox.to_string(),
            cause,
        })
}

impl Session {
    async fn step<T>(
        server: &str,
        timeout: Duration,
        step: Step,
        f: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
    ) -> Result<T, SendError> {
        let err = |message: String, code| SendError {
            server: server.to_string(),
            step: step.clone(),
            message,
            code,
        };
        match tokio::time::timeout(timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(err(e.to_string(), e.reply_code())),
            Err(_) => Err(err(no_answer(timeout), None)),
        }
    }

    /// Sends one formatted message (RFC 5322 text) to `to`. Like an MTA, a recipient the
    /// server refuses does not stop the others: the message goes to those it accepted and the
    /// refusals are returned (empty: everyone got it). An error means nobody got it. After a
    /// refusal the transaction is reset, so the session can send the next message.
    pub async fn send(
        &mut self,
        from: &str,
        to: &[String],
        raw: &[u8],
    ) -> Result<Vec<SendError>, SendError> {
        let result = self.transaction(from, to, raw).await;
        if let Err(e) = &result {
            if e.code.is_some() && !self.conn.has_broken() {
                let reset = self.conn.command(lettre::transport::smtp::commands::Rset);
                if !matches!(tokio::time::timeout(self.timeout, reset).await, Ok(Ok(_))) {
                    self.conn.abort().await;
                }
            }
        }
        result
    }

    async fn transaction(
        &mut self,
        from: &str,
        to: &[String],
        raw: &[u8],
    ) -> Result<Vec<SendError>, SendError> {
        let (server, t) = (self.server.clone(), self.timeout);
        let local = |step: Step, message: String| SendError {
            server: server.clone(),
            step,
            message,
            code: None,
        };
        let from_addr = address(from).map_err(|e| local(Step::Sender, e.to_string()))?;
        let mail = self.conn.command(Mail::new(Some(from_addr), vec![]));
        Self::step(&server, t, Step::Sender, mail).await?;
        let mut refused = Vec::new();
        for r in to {
            let step = Step::Recipient(r.clone());
            let a = address(r).map_err(|e| local(step.clone(), e.to_string()))?;
            match Self::step(&server, t, step, self.conn.command(Rcpt::new(a, vec![]))).await {
                Ok(_) => {}
                Err(e) if e.code.is_some() => refused.push(e),
                Err(e) => return Err(e),
            }
        }
        if refused.len() == to.len() {
            return Err(all_refused(refused));
        }
        Self::step(&server, t, Step::Data, self.conn.command(Data)).await?;
        Self::step(&server, t, Step::Data, self.conn.message(raw)).await?;
        Ok(refused)
    }

    /// Whether the connection can carry another message.
    pub fn usable(&self) -> bool {
        !self.conn.has_broken()
    }

    /// Says goodbye (errors ignored: the mail is already accepted).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(self.timeout, self.conn.quit()).await;
    }
}

//! `opsagent notify-test`: tries every alert channel now, bypassing the outbox, and reports
//! each one's outcome: a test mail with `[alerts.email]` (saying exactly which step failed if
//! one did: DNS, connect, TLS, greeting, AUTH, sender, a rejected recipient, the message) and a
//! test notification to each `[[alerts.webhook]]`. Exit 0 when every channel took it, 1 when
//! one did not, 2 when no channel is configured.

use super::Cli;
use crate::alert::compose::{self, Envelope};
use crate::alert::email::{EmailSettings, Mailer, SmtpTls, Step};
use crate::alert::webhook::{payload, Delivery, Webhook, WebhookSettings};
use crate::config::Config;
use crate::error::UsageError;
use chrono::Utc;

/// Flags.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Tries every channel.
pub fn run(cli: &Cli, _args: &Args) -> anyhow::Result<()> {
    let cfg = super::load_config(cli)?;
    let hooks = &cfg.alerts.webhooks;
    if cfg.email.is_none() && hooks.is_empty() {
        return Err(UsageError(format!(
            "{}: no [alerts.email] section and no [[alerts.webhook]]: nothing to test (see config/opsagent.example.toml)",
            cfg.file.display()
        ))
        .into());
    }
    let rt = super::runtime()?;
    let mut failed = 0;
    if let Some(email) = cfg.email.clone() {
        if let Err(e) = test_email(&cfg, email, &rt) {
            if hooks.is_empty() {
                return Err(e);
            }
            println!("email: FAILED: {e:#}");
            failed += 1;
        }
    }
    for w in hooks {
        if let Err(e) = rt.block_on(test_webhook(&cfg, w)) {
            println!("webhook {}: FAILED: {e}", w.name);
            failed += 1;
        }
    }
    let total = hooks.len() + usize::from(cfg.email.is_some());
    if failed > 0 {
        anyhow::bail!("{failed} of {total} alert channels failed (see above)");
    }
    Ok(())
}

/// POSTs a test notification to one webhook.
async fn test_webhook(
    cfg: &Config,
    w: &WebhookSettings,
) -> Result<(), crate::alert::webhook::WebhookError> {
    let now = Utc::now();
    let id = compose::message_id(&format!("opsagent@{}", cfg.agent.hostname), now);
    let about = payload::About {
        host: &cfg.agent.hostname,
        zone: cfg.agent.zone,
        now,
        id: &id,
    };
    let p = payload::test(w.format, &about);
    println!(
        "sending a test notification to webhook {} ({}, format {}, timeout {})",
        w.name,
        w.url.describe(),
        w.format.name(),
        humantime::format_duration(w.timeout)
    );
    let hook = Webhook::new(w.clone())?;
    match hook.post(&p.body, p.content_type, &p.headers, &id).await {
        Delivery::Sent(code) => {
            println!("ok: webhook {} answered {code}", w.name);
            Ok(())
        }
        Delivery::RetryLater(e) | Delivery::GaveUp(e) => Err(e),
    }
}

/// Sends the test mail.
fn test_email(
    cfg: &Config,
    email: EmailSettings,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<()> {
    let now = Utc::now();
    let env = Envelope {
        host: cfg.agent.hostname.clone(),
        from: email.from.clone(),
        to: email.to.clone(),
        zone: cfg.agent.zone,
    };
    let id = compose::message_id(&email.from, now);
    let raw = compose::test_mail(&env, &id, now)?;
    let tls = match email.tls {
        SmtpTls::Starttls => "STARTTLS",
        SmtpTls::Tls => "TLS",
        SmtpTls::None => "no TLS",
    };
    let auth = match &email.username {
        Some(u) => format!(", AUTH as {u}"),
        None => String::new(),
    };
    println!(
        "sending a test mail to {} via {}:{} ({tls}{auth})",
        email.to.join(", "),
        email.smtp_host,
        email.smtp_port
    );
    let mailer = Mailer::new(email.clone())?;
    let refused = rt.block_on(async {
        let mut s = mailer.open().await?;
        let refused = s.send(&email.from, &email.to, &raw).await?;
        s.close().await;
        Ok::<_, crate::alert::email::SendError>(refused)
    })?;
    if !refused.is_empty() {
        let got: Vec<&str> = email
            .to
            .iter()
            .filter(|r| {
                !refused
                    .iter()
                    .any(|e| e.step == Step::Recipient(r.to_string()))
            })
            .map(String::as_str)
            .collect();
        println!(
            "partly: the server accepted the test mail for {} only (Message-ID {id})",
            got.join(", ")
        );
        let why: Vec<String> = refused.iter().map(ToString::to_string).collect();
        anyhow::bail!("{}", why.join("\n"));
    }
    println!("ok: the server accepted the test mail (Message-ID {id})");
    Ok(())
}

//! `opsagent notify-test`: sends a test mail with `[alerts.email]` now, bypassing the outbox,
//! and says exactly which step failed if one did (DNS, connect, TLS, greeting, AUTH, sender,
//! a rejected recipient, the message). Exit 0 when the server accepted it, 1 when not, 2 when
//! no email is configured.

use super::Cli;
use crate::alert::compose::{self, Envelope};
use crate::alert::email::{Mailer, SmtpTls, Step};
use crate::error::UsageError;
use chrono::Utc;

/// Flags.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Sends the test mail.
pub fn run(cli: &Cli, _args: &Args) -> anyhow::Result<()> {
    let cfg = super::load_config(cli)?;
    let Some(email) = cfg.email.clone() else {
        return Err(UsageError(format!(
            "{}: no [alerts.email] section: nothing to test (see config/opsagent.example.toml)",
            cfg.file.display()
        ))
        .into());
    };
    let now = Utc::now();
    let env = Envelope {
        host: cfg.agent.hostname.clone(),
        from: email.from.clone(),
        to: email.to.clone(),
        zone: cfg.agent.zone,
    };
    let id = compose::message_id(&email.from, now);
    let raw = compose::test_mail(&env, &id, now).map_err(anyhow::Error::msg)?;
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
    let rt = super::runtime()?;
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

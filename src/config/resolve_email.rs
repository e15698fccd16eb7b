//! `[alerts.email]`: SMTP server, TLS mode, credentials and addresses.

use super::raw::RawEmail;
use super::resolve::{secret_file, Ctx};
use super::span::KeyPath;
use super::{EmailSettings, SmtpTls};
use std::time::Duration;

pub(super) fn email(cx: &mut Ctx, e: &RawEmail, p: &KeyPath) -> Option<EmailSettings> {
    let host = match &e.smtp_host {
        None => {
            cx.missing(&p.key("smtp_host"), "smtp_host = \"smtp.example.com\"");
            None
        }
        Some(h) if h.is_empty() || h.contains(char::is_whitespace) => {
            cx.error(
                &p.key("smtp_host"),
                format!("`{h}` is not a host name"),
                "e.g. smtp_host = \"smtp.example.com\"",
            );
            None
        }
        Some(h) => Some(h.clone()),
    };
    let tls = match e.tls.as_deref().unwrap_or("starttls") {
        "starttls" => Some(SmtpTls::Starttls),
        "tls" => Some(SmtpTls::Tls),
        "none" => Some(SmtpTls::None),
        other => {
            cx.error(&p.key("tls"), format!("unknown TLS mode `{other}`"), "use \"starttls\" (port 587), \"tls\" (port 465) or \"none\" (local relay on port 25)");
            None
        }
    };
    let port = e.smtp_port.unwrap_or(match tls {
        Some(SmtpTls::Tls) => 465,
        Some(SmtpTls::None) => 25,
        _ => 587,
    });
    match (tls, port) {
        (Some(SmtpTls::Starttls | SmtpTls::None), 465) => cx.warn(
            &p.key("tls"),
            "port 465 speaks TLS from the first byte (SMTPS), but tls is not \"tls\": the server will not answer",
            "set tls = \"tls\" for port 465, or use port 587 with tls = \"starttls\"",
        ),
        (Some(SmtpTls::Tls), 25 | 587) => cx.warn(
            &p.key("tls"),
            format!("port {port} starts in plain text (STARTTLS), but tls = \"tls\" expects TLS at once: the handshake will fail"),
            "set tls = \"starttls\" for ports 587 and 25, or use port 465 with tls = \"tls\"",
        ),
        _ => {}
    }
    if e.username.is_some() && e.password_file.is_none() {
        cx.error(
            &p.key("username"),
            "a username is set but no password_file",
            "set password_file = \"/etc/opsagent/secrets/smtp\" (the password on one line), or remove username for a relay without login",
        );
    }
    let password = e
        .password_file
        .as_ref()
        .and_then(|f| secret_file(cx, f, &p.key("password_file")));
    if e.password_file.is_some() && e.username.is_none() {
        cx.error(
            &p.key("password_file"),
            "a password file is set but no username",
            "set username = \"alerts@example.com\"",
        );
    }
    let from = match &e.from {
        None => {
            cx.missing(&p.key("from"), "from = \"opsagent@web-01.example.com\"");
            None
        }
        Some(f) => address(cx, f, &p.key("from")),
    };
    let to = match &e.to {
        None => {
            cx.missing(&p.key("to"), "to = [\"oncall@example.com\"]");
            None
        }
        Some(v) if v.is_empty() => {
            cx.error(
                &p.key("to"),
                "no recipients",
                "to = [\"oncall@example.com\"]",
            );
            None
        }
        Some(v) => {
            let good: Vec<String> = v
                .iter()
                .enumerate()
                .filter_map(|(i, a)| address(cx, a, &p.key("to").index(i)))
                .collect();
            (good.len() == v.len()).then_some(good)
        }
    };
    if let Some(ca) = &e.ca_file {
        if !ca.is_absolute() {
            cx.error(
                &p.key("ca_file"),
                format!("`{}` is a relative path", ca.display()),
                "use an absolute path to a PEM file",
            );
        } else if let Err(err) =
            crate::secret::read_small_file(ca, crate::alert::email::MAX_CA_FILE, true)
        {
            cx.error(
                &p.key("ca_file"),
                format!("cannot read {}: {err}", ca.display()),
                "point ca_file at a PEM certificate the opsagent user can read",
            );
        }
    }
    Some(EmailSettings {
        smtp_host: host?,
        smtp_port: port,
        tls: tls?,
        username: e.username.clone(),
        password,
        from: from?,
        to: to?,
        ca_file: e.ca_file.clone(),
        timeout: e.timeout.unwrap_or(Duration::from_secs(30)),
    })
}

/// Checks one mail address (`user@example.com` or `Name <user@example.com>`).
fn address(cx: &mut Ctx, a: &str, p: &KeyPath) -> Option<String> {
    match a.parse::<lettre::message::Mailbox>() {
        Ok(_) => Some(a.to_string()),
        Err(err) => {
            cx.error(
                p,
                format!("`{a}` is not a valid email address ({err})"),
                "write it as user@example.com or \"Name <user@example.com>\"",
            );
            None
        }
    }
}

//! `[alerts.email]`: SMTP server, TLS mode, credentials and addresses.

use super::defaults;
use super::raw::RawEmail;
use super::resolve::{secret_file, Ctx};
use super::span::KeyPath;
use super::{EmailSettings, SmtpTls};
use crate::secret::Secret;
use std::path::Path;

pub(super) fn email(cx: &mut Ctx, e: &RawEmail, p: &KeyPath) -> Option<EmailSettings> {
    let host = smtp_host(cx, e.smtp_host.as_deref(), &p.key("smtp_host"));
    let (tls, port) = tls_and_port(cx, e, p);
    let password = credentials(cx, e, p);
    let from = match &e.from {
        None => {
            cx.missing(&p.key("from"), "from = \"opsagent@web-01.example.com\"");
            None
        }
        Some(f) => address(cx, f, &p.key("from")),
    };
    let to = recipients(cx, e.to.as_deref(), &p.key("to"));
    if let Some(ca) = &e.ca_file {
        ca_file(cx, ca, &p.key("ca_file"));
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
        timeout: e.timeout.unwrap_or(defaults::SMTP_TIMEOUT),
    })
}

fn smtp_host(cx: &mut Ctx, host: Option<&str>, p: &KeyPath) -> Option<String> {
    match host {
        None => {
            cx.missing(p, "smtp_host = \"smtp.example.com\"");
            None
        }
        Some(h) if h.is_empty() || h.contains(char::is_whitespace) => {
            cx.error(
                p,
                format!("`{h}` is not a host name"),
                "e.g. smtp_host = \"smtp.example.com\"",
            );
            None
        }
        Some(h) => Some(h.to_string()),
    }
}

/// `tls` and `smtp_port` (its default follows the TLS mode), warning when they disagree.
fn tls_and_port(cx: &mut Ctx, e: &RawEmail, p: &KeyPath) -> (Option<SmtpTls>, u16) {
    let tls = match e.tls.as_deref().unwrap_or(defaults::SMTP_TLS) {
        "starttls" => Some(SmtpTls::Starttls),
        "tls" => Some(SmtpTls::Tls),
        "none" => Some(SmtpTls::None),
        other => {
            cx.error(&p.key("tls"), format!("unknown TLS mode `{other}`"), "use \"starttls\" (port 587), \"tls\" (port 465) or \"none\" (local relay on port 25)");
            None
        }
    };
    let port = e.smtp_port.unwrap_or(match tls {
        Some(SmtpTls::Tls) => defaults::SMTP_PORT_TLS,
        Some(SmtpTls::None) => defaults::SMTP_PORT_PLAIN,
        _ => defaults::SMTP_PORT_STARTTLS,
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
    (tls, port)
}

/// `username` and `password_file`: both or neither; the password read.
fn credentials(cx: &mut Ctx, e: &RawEmail, p: &KeyPath) -> Option<Secret> {
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
    password
}

/// `to`: at least one address, every one valid.
fn recipients(cx: &mut Ctx, to: Option<&[String]>, p: &KeyPath) -> Option<Vec<String>> {
    match to {
        None => {
            cx.missing(p, "to = [\"oncall@example.com\"]");
            None
        }
        Some([]) => {
            cx.error(p, "no recipients", "to = [\"oncall@example.com\"]");
            None
        }
        Some(v) => {
            let good: Vec<String> = v
                .iter()
                .enumerate()
                .filter_map(|(i, a)| address(cx, a, &p.index(i)))
                .collect();
            (good.len() == v.len()).then_some(good)
        }
    }
}

/// `ca_file`: an absolute path to a readable PEM file.
fn ca_file(cx: &mut Ctx, ca: &Path, p: &KeyPath) {
    if !ca.is_absolute() {
        cx.error(
            p,
            format!("`{}` is a relative path", ca.display()),
            "use an absolute path to a PEM file",
        );
    } else if let Err(err) =
        crate::secret::read_small_file(ca, crate::alert::email::MAX_CA_FILE, true)
    {
        cx.error(
            p,
            format!("cannot read {}: {err}", ca.display()),
            "point ca_file at a PEM certificate the opsagent user can read",
        );
    }
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

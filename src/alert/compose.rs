//! Mails about alerts: subjects an on-call person can triage from a lock screen, a plain-text
//! body with an HTML alternative, and proper RFC 5322 headers (Date, a Message-ID on the
//! sender's domain, `Auto-Submitted: auto-generated`, In-Reply-To/References threading the
//! follow-ups of one incident). Headers are UTF-8 encoded by lettre.

use super::route::NoticeKind;
use crate::catalog::{AlertRow, OutboxRow};
use crate::schedule::Zone;
use chrono::{DateTime, Utc};
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::Message;
use std::fmt::Write;

mod show;

pub use show::{
    band_colours, chart_caption, threshold_sentence, with_unit, Figure, Figures, Inline,
    CHART_SPAN, MAX_CHART_BYTES,
};
use show::{bodies, body, cid_suffix, escape};

/// `Auto-Submitted: auto-generated` (RFC 3834): vacation responders stay quiet.
#[derive(Debug, Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".into())
    }
}

/// Who a mail is from and to, and about which host.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// This host's name.
    pub host: String,
    /// Sender (`from`).
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Zone for the times in the body.
    pub zone: Zone,
}

/// An alert key as people read it: `disk:/` → `disk /`.
pub fn display_name(key: &str) -> String {
    key.replacen(':', " ", 1)
}

/// A new Message-ID on the sender's domain.
pub fn message_id(from: &str, now: DateTime<Utc>) -> String {
    let domain = from
        .parse::<Mailbox>()
        .map(|m| m.email.domain().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let mut rnd = [0u8; 6];
    let _ = getrandom::fill(&mut rnd);
    format!(
        "<{}.{}.opsagent@{domain}>",
        now.timestamp_millis(),
        hex::encode(rnd)
    )
}

/// The subject of a mail about `notices`.
pub fn subject(host: &str, notices: &[(NoticeKind, &AlertRow)]) -> String {
    if let [(kind, a)] = notices {
        let name = display_name(&a.key);
        return match kind {
            NoticeKind::Firing => format!("[opsagent] FIRING {} {name} on {host}", a.severity),
            NoticeKind::Reminder => {
                format!(
                    "[opsagent] FIRING {} {name} on {host} (reminder)",
                    a.severity
                )
            }
            NoticeKind::Flapping => format!("[opsagent] FLAPPING {name} on {host}"),
            NoticeKind::Resolved => format!("[opsagent] RESOLVED {name} on {host}"),
        };
    }
    let resolved = notices
        .iter()
        .filter(|(k, _)| *k == NoticeKind::Resolved)
        .count();
    let firing = notices.len() - resolved;
    let names: Vec<String> = notices.iter().map(|(_, a)| display_name(&a.key)).collect();
    let counts = match (firing, resolved) {
        (f, 0) => format!("FIRING {f} alerts"),
        (0, r) => format!("RESOLVED {r} alerts"),
        (f, r) => format!("FIRING {f}, RESOLVED {r} alerts"),
    };
    format!("[opsagent] {counts} on {host}: {}", names.join(", "))
}

pub(super) fn value(v: f64) -> String {
    if v.fract() == 0.0 || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// "3d 4h", "2h 5m", "40s".
pub fn age(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// What to run to look further at an alert.
fn next_step(key: &str) -> String {
    if let Some(job) = key.strip_prefix("backup-run:") {
        format!("opsagent snapshots --job {job}; journalctl -u opsagent; opsagent backup {job}")
    } else if let Some(job) = key.strip_prefix("drill:") {
        format!("opsagent verify {job}; journalctl -u opsagent")
    } else {
        "opsagent status".into()
    }
}

/// The facts of one notice as (label, text) lines.
fn facts(
    kind: NoticeKind,
    a: &AlertRow,
    env: &Envelope,
    now: DateTime<Utc>,
) -> Vec<(&'static str, String)> {
    let mut f = Vec::new();
    let state = match kind {
        NoticeKind::Resolved => "OK".to_string(),
        NoticeKind::Flapping => format!("flapping (last bad level {})", a.severity),
        _ => a.severity.clone(),
    };
    f.push(("state", state));
    if let Some(v) = a.value {
        let t = a
            .threshold
            .map(|t| format!(" (threshold {})", value(t)))
            .unwrap_or_default();
        f.push(("value", format!("{}{t}", value(v))));
    }
    let age = age(now - a.since);
    f.push((
        "since",
        format!(
            "{} ({age} ago)",
            env.zone.format(a.since, "%Y-%m-%d %H:%M %Z")
        ),
    ));
    if !a.detail.is_empty() {
        f.push(("detail", a.detail.clone()));
    }
    if kind == NoticeKind::Flapping {
        f.push((
            "note",
            "it keeps changing state; further changes are not mailed until it settles".into(),
        ));
    }
    if kind != NoticeKind::Resolved {
        f.push(("look further", next_step(&a.key)));
        f.push((
            "silence",
            format!("opsagent silence add {} --for 2h --reason \"...\"", a.key),
        ));
    }
    f.push(("host", env.host.clone()));
    f
}

/// Why an alert mail could not be built (the engine adds the hint: check `from` and `to`).
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The sender is not a mailbox.
    #[error("from `{address}`: {cause}")]
    From {
        /// `[alerts.email] from`.
        address: String,
        /// Why lettre refused it (kept as a cause, not a `source()`, so `{:#}` prints it once).
        cause: lettre::address::AddressError,
    },
    /// A recipient is not a mailbox.
    #[error("to `{address}`: {cause}")]
    To {
        /// The entry of `[alerts.email] to`.
        address: String,
        /// Why lettre refused it (kept as a cause, not a `source()`, so `{:#}` prints it once).
        cause: lettre::address::AddressError,
    },
    /// lettre could not assemble the message.
    #[error("{0}")]
    Build(lettre::error::Error),
}

/// A message builder from `env.from` to `env.to` with the headers every mail has: Subject,
/// Date, Message-ID and `Auto-Submitted`.
fn builder(
    env: &Envelope,
    subject: &str,
    message_id: &str,
    now: DateTime<Utc>,
) -> Result<lettre::message::MessageBuilder, ComposeError> {
    let from: Mailbox = env.from.parse().map_err(|cause| ComposeError::From {
        address: env.from.clone(),
        cause,
    })?;
    let mut b = Message::builder()
        .from(from)
        .subject(subject)
        .date(now.into())
        .message_id(Some(message_id.to_string()))
        .header(AutoSubmitted);
    for t in &env.to {
        b = b.to(t.parse().map_err(|cause| ComposeError::To {
            address: t.clone(),
            cause,
        })?);
    }
    Ok(b)
}

/// The mail's outbox row (due `now`).
fn mail_row(
    env: &Envelope,
    subject: String,
    id: &str,
    raw: Vec<u8>,
    now: DateTime<Utc>,
) -> OutboxRow {
    OutboxRow {
        id: 0,
        message_id: id.to_string(),
        subject,
        mail_from: env.from.clone(),
        rcpt_to: env.to.clone(),
        raw,
        created_at: now,
        attempts: 0,
        next_attempt: now,
        last_error: None,
        channel: OutboxRow::EMAIL.into(),
        content_type: String::new(),
        headers: Vec::new(),
    }
}

/// Builds the mail about `notices` as an outbox row (due `now`). `threads` are the Message-IDs
/// of the incidents it follows up.
pub fn compose(
    notices: &[(NoticeKind, &AlertRow)],
    threads: &[String],
    env: &Envelope,
    figures: &Figures,
    message_id: &str,
    now: DateTime<Utc>,
) -> Result<OutboxRow, ComposeError> {
    let subject = subject(&env.host, notices);
    let mut b = builder(env, &subject, message_id, now)?;
    if let Some(first) = threads.first() {
        b = b.in_reply_to(first.clone()).references(threads.join(" "));
    }
    let (text, html, images) = bodies(notices, env, figures, message_id, now);
    let msg = b
        .multipart(body(text, html, images))
        .map_err(ComposeError::Build)?;
    Ok(mail_row(env, subject, message_id, msg.formatted(), now))
}

/// A chart a text mail shows under its text: a heading, the PNG, the words under it.
#[derive(Debug, Clone)]
pub struct Captioned {
    /// What it is (`disk /`).
    pub title: String,
    /// The PNG.
    pub png: Vec<u8>,
    /// The span, the range, the lines.
    pub caption: String,
}

/// A mail of plain text (and the same text preformatted as its HTML alternative, followed by
/// `charts`).
fn text_message(
    env: &Envelope,
    subject: &str,
    text: String,
    charts: Vec<Captioned>,
    message_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<u8>, ComposeError> {
    let mut html = format!(
        "<html><body><pre style=\"font-family:monospace;white-space:pre-wrap\">{}</pre>\n",
        escape(&text)
    );
    let mut images = Vec::new();
    let mut bytes = 0;
    for c in charts {
        if bytes + c.png.len() > MAX_CHART_BYTES {
            break;
        }
        let cid = format!("chart-{}.{}", images.len() + 1, cid_suffix(message_id));
        let _ = writeln!(
            html,
            "<h4 style=\"font-family:sans-serif;margin:14px 0 4px 0\">{}</h4><img src=\"cid:{cid}\" alt=\"{}\" style=\"max-width:100%;height:auto;display:block;border:1px solid #ddd\">\n<p style=\"font-family:sans-serif;font-size:13px;color:#555;margin:4px 0\">{}</p>",
            escape(&c.title),
            escape(&format!("chart of {}", c.title)),
            escape(&c.caption)
        );
        bytes += c.png.len();
        images.push(Inline { cid, png: c.png });
    }
    html.push_str("</body></html>\n");
    let msg = builder(env, subject, message_id, now)?
        .multipart(body(text, html, images))
        .map_err(ComposeError::Build)?;
    Ok(msg.formatted())
}

/// The digest mail (`subject`, the plain-text `text`) as an outbox row (due `now`).
pub fn text_mail(
    env: &Envelope,
    subject: String,
    text: String,
    charts: Vec<Captioned>,
    message_id: &str,
    now: DateTime<Utc>,
) -> Result<OutboxRow, ComposeError> {
    let raw = text_message(env, &subject, text, charts, message_id, now)?;
    Ok(mail_row(env, subject, message_id, raw, now))
}

/// The mail `opsagent notify-test` sends.
pub fn test_mail(
    env: &Envelope,
    message_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<u8>, ComposeError> {
    let text = format!(
        "This is a test from opsagent on {}, sent at {}.\nIf you read this, alert mails reach you.\n",
        env.host,
        env.zone.format(now, "%Y-%m-%d %H:%M:%S %Z")
    );
    let subject = format!("[opsagent] TEST mail from {}", env.host);
    text_message(env, &subject, text, Vec::new(), message_id, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn alert(key: &str, sev: &str) -> AlertRow {
        let t = Utc.with_ymd_and_hms(2026, 11, 20, 2, 30, 0).unwrap();
        AlertRow {
            key: key.into(),
            firing: true,
            flapping: false,
            severity: sev.into(),
            since: t,
            changed_at: t,
            value: Some(93.4),
            threshold: Some(90.0),
            detail: "biggest directories: /srv/www 40 GiB <big>".into(),
            notified: String::new(),
            notified_severity: String::new(),
            notified_at: None,
            thread: None,
        }
    }

    #[test]
    fn subjects() {
        let (a, b, c) = (
            alert("disk:/", "CRIT"),
            alert("cpu", "WARN"),
            alert("tcp:shop", "CRIT"),
        );
        use NoticeKind::*;
        assert_eq!(
            subject("web-01", &[(Firing, &a)]),
            "[opsagent] FIRING CRIT disk / on web-01"
        );
        assert_eq!(
            subject("web-01", &[(Resolved, &a)]),
            "[opsagent] RESOLVED disk / on web-01"
        );
        assert_eq!(
            subject("web-01", &[(Firing, &a), (Firing, &b), (Firing, &c)]),
            "[opsagent] FIRING 3 alerts on web-01: disk /, cpu, tcp shop"
        );
        assert_eq!(
            subject("web-01", &[(Firing, &a), (Resolved, &b)]),
            "[opsagent] FIRING 1, RESOLVED 1 alerts on web-01: disk /, cpu"
        );
    }

    #[test]
    fn a_proper_mail() {
        let a = alert("disk:/", "CRIT");
        let env = Envelope {
            host: "web-01".into(),
            from: "opsagent <alerts@example.com>".into(),
            to: vec!["oncall@example.com".into(), "Zoë <zoe@example.com>".into()],
            zone: Zone::Named(chrono_tz::UTC),
        };
        let now = Utc.with_ymd_and_hms(2026, 11, 20, 3, 0, 0).unwrap();
        let id = message_id(&env.from, now);
        assert!(id.ends_with("@example.com>"), "{id}");
        let m = compose(
            &[(NoticeKind::Firing, &a)],
            &["<t@example.com>".into()],
            &env,
            &Figures::new(),
            &id,
            now,
        )
        .unwrap();
        let raw = String::from_utf8(m.raw).unwrap();
        for h in [
            "Date: Fri, 20 Nov 2026 03:00:00 +0000",
            "Auto-Submitted: auto-generated",
            "In-Reply-To: <t@example.com>",
            "References: <t@example.com>",
            "multipart/alternative",
            "text/html",
            &format!("Message-ID: {id}"),
        ] {
            assert!(raw.contains(h), "{h} missing:\n{raw}");
        }
        assert!(
            raw.contains("=?utf-8?"),
            "the non-ASCII name is encoded:\n{raw}"
        );
        assert!(raw.contains("&lt;big&gt;"), "{raw}");
        assert_eq!(m.rcpt_to.len(), 2);
    }
}

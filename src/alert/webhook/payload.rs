//! The body of a webhook request about one alert group (the same group a mail is about), in
//! each [`WebhookFormat`], bounded: details are cut, then alerts left out (counted in `more`)
//! until the body fits [`MAX_BODY`] ([`MAX_NTFY_BODY`] for ntfy, which turns longer messages
//! into attachments).

use super::{WebhookFormat, WebhookSettings};
use crate::alert::compose::{self, display_name};
use crate::alert::route::NoticeKind;
use crate::catalog::{AlertRow, OutboxRow};
use crate::schedule::Zone;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use std::fmt::Write;

/// The largest body sent.
pub const MAX_BODY: usize = 32 * 1024;
/// The largest ntfy body (ntfy's message limit is 4 KiB).
pub const MAX_NTFY_BODY: usize = 4096;
/// The longest title (characters).
const MAX_TITLE: usize = 250;

/// A request body and what goes with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    /// The title (the mail's subject), for logs and `status`.
    pub title: String,
    /// The body.
    pub body: Vec<u8>,
    /// Its media type.
    pub content_type: &'static str,
    /// Extra headers (ntfy's `Title`, `Priority`, `Tags`).
    pub headers: Vec<(String, String)>,
}

/// What every payload says besides the alerts.
#[derive(Debug, Clone, Copy)]
pub struct About<'a> {
    /// This host's name.
    pub host: &'a str,
    /// Zone of the times in text formats.
    pub zone: Zone,
    /// Now.
    pub now: DateTime<Utc>,
    /// The notification's id (the JSON format carries it).
    pub id: &'a str,
}

/// `s` cut to `max` characters, with `…` where it was cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The largest body `build(detail_cap, alerts_kept)` makes that fits `max`: full details,
/// then details cut ever shorter, then fewer alerts (down to none).
fn fit(n: usize, max: usize, build: impl Fn(usize, usize) -> Vec<u8>) -> Vec<u8> {
    for cap in [usize::MAX, 2048, 512, 128] {
        let b = build(cap, n);
        if b.len() <= max {
            return b;
        }
    }
    let mut k = n;
    loop {
        k /= 2;
        let b = build(128, k);
        if b.len() <= max || k == 0 {
            return b;
        }
    }
}

fn state(kind: NoticeKind) -> &'static str {
    match kind {
        NoticeKind::Firing | NoticeKind::Reminder => "firing",
        NoticeKind::Flapping => "flapping",
        NoticeKind::Resolved => "resolved",
    }
}

fn json_body(
    notices: &[(NoticeKind, &AlertRow)],
    a: &About,
    title: &str,
    cap: usize,
    k: usize,
) -> Vec<u8> {
    let resolved = notices
        .iter()
        .all(|(kind, _)| *kind == NoticeKind::Resolved);
    let alerts: Vec<serde_json::Value> = notices
        .iter()
        .take(k)
        .map(|(kind, r)| {
            json!({
                "name": r.key,
                "state": state(*kind),
                "severity": r.severity,
                "since": r.since.to_rfc3339_opts(SecondsFormat::Secs, true),
                "value": r.value,
                "threshold": r.threshold,
                "detail": cut(&r.detail, cap),
                "reminder": *kind == NoticeKind::Reminder,
            })
        })
        .collect();
    let doc = json!({
        "version": 1,
        "id": a.id,
        "status": if resolved { "resolved" } else { "firing" },
        "host": a.host,
        "title": title,
        "alerts": alerts,
        "more": notices.len() - k.min(notices.len()),
    });
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// One alert as text: its head line and its facts.
fn text(kind: NoticeKind, r: &AlertRow, a: &About, cap: usize) -> (String, Vec<String>) {
    let name = display_name(&r.key);
    let head = match kind {
        NoticeKind::Resolved => format!("RESOLVED {name}"),
        NoticeKind::Flapping => format!("FLAPPING {name} (last bad level {})", r.severity),
        NoticeKind::Reminder => format!("FIRING {} {name} (still firing)", r.severity),
        NoticeKind::Firing => format!("FIRING {} {name}", r.severity),
    };
    let mut facts = vec![format!(
        "since {} ({} ago)",
        a.zone.format(r.since, "%Y-%m-%d %H:%M %Z"),
        compose::age(a.now - r.since)
    )];
    if let Some(v) = r.value {
        let t = r
            .threshold
            .map(|t| format!(" (threshold {})", compose::value(t)))
            .unwrap_or_default();
        facts.push(format!("value {}{t}", compose::value(v)));
    }
    if !r.detail.is_empty() {
        facts.push(cut(&r.detail, cap));
    }
    (head, facts)
}

fn more(n: usize, k: usize, host: &str) -> String {
    match n - k.min(n) {
        0 => String::new(),
        m => format!("… and {m} more (opsagent status on {host})\n"),
    }
}

/// Slack's three escapes (Mattermost accepts them too).
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn slack_body(
    notices: &[(NoticeKind, &AlertRow)],
    a: &About,
    title: &str,
    cap: usize,
    k: usize,
) -> Vec<u8> {
    let mut t = format!("*{}*\n", slack_escape(title));
    for (kind, r) in notices.iter().take(k) {
        let (head, facts) = text(*kind, r, a, cap);
        let _ = writeln!(t, "• *{}*", slack_escape(&head));
        for f in facts {
            let _ = writeln!(t, ">{}", slack_escape(&f).replace('\n', "\n>"));
        }
    }
    t.push_str(&slack_escape(&more(notices.len(), k, a.host)));
    serde_json::to_vec(&json!({ "text": t.trim_end() })).unwrap_or_default()
}

fn ntfy_body(notices: &[(NoticeKind, &AlertRow)], a: &About, cap: usize, k: usize) -> Vec<u8> {
    let mut t = String::new();
    for (kind, r) in notices.iter().take(k) {
        let (head, facts) = text(*kind, r, a, cap);
        let _ = writeln!(t, "{head}");
        for f in facts {
            let _ = writeln!(t, "{f}");
        }
        t.push('\n');
    }
    t.push_str(&more(notices.len(), k, a.host));
    t.trim_end().as_bytes().to_vec()
}

/// A header value: control characters dropped; non-ASCII text as an RFC 2047 encoded word
/// (ntfy decodes it).
fn header_text(s: &str) -> String {
    let clean: String = s.chars().filter(|c| !c.is_control()).collect();
    if clean.is_ascii() {
        return clean;
    }
    let mut out = String::from("=?UTF-8?Q?");
    for b in clean.bytes() {
        match b {
            b' ' => out.push('_'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'!' | b'*' | b'+' | b'-' | b'/' => {
                out.push(b as char)
            }
            _ => {
                let _ = write!(out, "={b:02X}");
            }
        }
    }
    out.push_str("?=");
    out
}

/// ntfy's `Priority` (5 urgent … 2 low) and `Tags` (emoji shortcodes) for the group.
fn ntfy_priority(notices: &[(NoticeKind, &AlertRow)]) -> (&'static str, &'static str) {
    let bad = |r: &&AlertRow, sev: &str| r.severity == sev;
    let firing: Vec<&AlertRow> = notices
        .iter()
        .filter(|(k, _)| *k != NoticeKind::Resolved)
        .map(|(_, r)| *r)
        .collect();
    if firing.iter().any(|r| bad(r, "CRIT")) {
        ("5", "rotating_light")
    } else if !firing.is_empty() {
        ("4", "warning")
    } else {
        ("2", "white_check_mark")
    }
}

/// The payload about `notices` in `format`.
pub fn build(format: WebhookFormat, notices: &[(NoticeKind, &AlertRow)], a: &About) -> Payload {
    let title = cut(&compose::subject(a.host, notices), MAX_TITLE);
    let n = notices.len();
    let (body, content_type, headers) = match format {
        WebhookFormat::Json => (
            fit(n, MAX_BODY, |cap, k| json_body(notices, a, &title, cap, k)),
            "application/json",
            Vec::new(),
        ),
        WebhookFormat::Slack => (
            fit(n, MAX_BODY, |cap, k| slack_body(notices, a, &title, cap, k)),
            "application/json",
            Vec::new(),
        ),
        WebhookFormat::Ntfy => {
            let (priority, tags) = ntfy_priority(notices);
            (
                fit(n, MAX_NTFY_BODY, |cap, k| ntfy_body(notices, a, cap, k)),
                "text/plain; charset=utf-8",
                vec![
                    ("Title".to_string(), header_text(&title)),
                    ("Priority".to_string(), priority.to_string()),
                    ("Tags".to_string(), tags.to_string()),
                ],
            )
        }
    };
    Payload {
        title,
        body,
        content_type,
        headers,
    }
}

/// The largest body `build(text cut to n characters)` makes that fits `max`.
fn fit_text(text: &str, max: usize, build: impl Fn(&str) -> Vec<u8>) -> Vec<u8> {
    let mut cap = text.chars().count();
    loop {
        let b = build(&cut(text, cap));
        if b.len() <= max || cap == 0 {
            return b;
        }
        cap = (cap * max / b.len()).saturating_sub(16).min(cap - 1);
    }
}

/// A message of text rather than alerts (`notify-test`, the digest), titled `title`: the JSON
/// document with `status` and `text` and no alerts, a Slack message (the text preformatted
/// when `pre`), or an ntfy text body with `Title` and `Tags` (`tags`). Bounded like [`build`].
pub fn message(
    format: WebhookFormat,
    a: &About,
    title: &str,
    text: &str,
    status: &str,
    tags: &str,
    pre: bool,
) -> Payload {
    let title = cut(title, MAX_TITLE);
    let (body, content_type, headers) = match format {
        WebhookFormat::Json => (
            fit_text(text, MAX_BODY, |t| {
                json!({"version": 1, "id": a.id, "status": status, "host": a.host, "title": title, "alerts": [], "more": 0, "text": t}).to_string().into_bytes()
            }),
            "application/json",
            Vec::new(),
        ),
        WebhookFormat::Slack => {
            let fence = if pre { "```" } else { "" };
            (
                fit_text(text, MAX_BODY, |t| {
                    json!({"text": format!("*{}*\n{fence}{}{fence}", slack_escape(&title), slack_escape(t))}).to_string().into_bytes()
                }),
                "application/json",
                Vec::new(),
            )
        }
        WebhookFormat::Ntfy => (
            fit_text(text, MAX_NTFY_BODY, |t| t.as_bytes().to_vec()),
            "text/plain; charset=utf-8",
            vec![
                ("Title".to_string(), header_text(&title)),
                ("Tags".to_string(), tags.to_string()),
            ],
        ),
    };
    Payload {
        title,
        body,
        content_type,
        headers,
    }
}

/// The payload `opsagent notify-test` sends.
pub fn test(format: WebhookFormat, a: &About) -> Payload {
    let text = format!(
        "This is a test from opsagent on {}, sent at {}. If you read this, alert notifications reach you.",
        a.host,
        a.zone.format(a.now, "%Y-%m-%d %H:%M:%S %Z")
    );
    let title = format!("[opsagent] TEST from {}", a.host);
    message(format, a, &title, &text, "test", "test_tube", false)
}

/// The outbox row delivering `p` to webhook `w`; `id` is the group's notification id.
pub fn row(w: &WebhookSettings, p: Payload, id: &str, now: DateTime<Utc>) -> OutboxRow {
    OutboxRow {
        id: 0,
        message_id: format!("{id}/{}", w.channel()),
        subject: p.title,
        mail_from: String::new(),
        rcpt_to: Vec::new(),
        raw: p.body,
        created_at: now,
        attempts: 0,
        next_attempt: now,
        last_error: None,
        channel: w.channel(),
        content_type: p.content_type.to_string(),
        headers: p.headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn alert(key: &str, sev: &str, detail: &str) -> AlertRow {
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
            detail: detail.into(),
            notified: String::new(),
            notified_severity: String::new(),
            notified_at: None,
            thread: None,
        }
    }

    fn about() -> About<'static> {
        About {
            host: "web-01",
            zone: Zone::Named(chrono_tz::UTC),
            now: Utc.with_ymd_and_hms(2026, 11, 20, 3, 0, 0).unwrap(),
            id: "<1.ab.opsagent@web-01>",
        }
    }

    #[test]
    fn json_has_the_alert_fields() {
        let (a, b) = (
            alert("disk:/", "CRIT", "biggest: /srv 40 GiB"),
            alert("cpu", "WARN", ""),
        );
        let p = build(
            WebhookFormat::Json,
            &[(NoticeKind::Firing, &a), (NoticeKind::Resolved, &b)],
            &about(),
        );
        assert_eq!(p.content_type, "application/json");
        let v: serde_json::Value = serde_json::from_slice(&p.body).unwrap();
        assert_eq!(v["status"], "firing");
        assert_eq!(v["host"], "web-01");
        assert_eq!(v["id"], "<1.ab.opsagent@web-01>");
        assert_eq!(
            v["title"],
            "[opsagent] FIRING 1, RESOLVED 1 alerts on web-01: disk /, cpu"
        );
        let x = &v["alerts"][0];
        assert_eq!(
            (&x["name"], &x["state"], &x["severity"], &x["since"]),
            (
                &json!("disk:/"),
                &json!("firing"),
                &json!("CRIT"),
                &json!("2026-11-20T02:30:00Z")
            )
        );
        assert_eq!(
            (x["value"].as_f64(), x["detail"].as_str()),
            (Some(93.4), Some("biggest: /srv 40 GiB"))
        );
        assert_eq!(v["alerts"][1]["state"], "resolved");
        let only_resolved = build(WebhookFormat::Json, &[(NoticeKind::Resolved, &b)], &about());
        let v: serde_json::Value = serde_json::from_slice(&only_resolved.body).unwrap();
        assert_eq!(v["status"], "resolved");
    }

    #[test]
    fn slack_escapes_and_ntfy_has_headers() {
        let a = alert("http:shop", "CRIT", "answered 500 <html> & more");
        let p = build(WebhookFormat::Slack, &[(NoticeKind::Firing, &a)], &about());
        let v: serde_json::Value = serde_json::from_slice(&p.body).unwrap();
        let text = v["text"].as_str().unwrap();
        assert!(
            text.starts_with("*[opsagent] FIRING CRIT http shop on web-01*"),
            "{text}"
        );
        assert!(text.contains("&lt;html&gt; &amp; more"), "{text}");
        assert_eq!(v.as_object().unwrap().len(), 1);
        let p = build(WebhookFormat::Ntfy, &[(NoticeKind::Firing, &a)], &about());
        let body = String::from_utf8(p.body).unwrap();
        assert!(
            body.starts_with("FIRING CRIT http shop\nsince 2026-11-20 02:30 UTC (30m ago)"),
            "{body}"
        );
        assert!(p.headers.contains(&(
            "Title".into(),
            "[opsagent] FIRING CRIT http shop on web-01".into()
        )));
        assert!(p.headers.contains(&("Priority".into(), "5".into())));
        let r = build(WebhookFormat::Ntfy, &[(NoticeKind::Resolved, &a)], &about());
        assert!(r.headers.contains(&("Priority".into(), "2".into())));
        assert_eq!(header_text("dïsk\r\nX: y"), "=?UTF-8?Q?d=C3=AFskX=3A_y?=");
    }

    #[test]
    fn bodies_are_bounded() {
        let big = "x".repeat(100_000);
        let many: Vec<AlertRow> = (0..400)
            .map(|i| alert(&format!("log:app{i}"), "CRIT", &big))
            .collect();
        let notices: Vec<(NoticeKind, &AlertRow)> =
            many.iter().map(|a| (NoticeKind::Firing, a)).collect();
        for (f, max) in [
            (WebhookFormat::Json, MAX_BODY),
            (WebhookFormat::Slack, MAX_BODY),
            (WebhookFormat::Ntfy, MAX_NTFY_BODY),
        ] {
            let p = build(f, &notices, &about());
            assert!(p.body.len() <= max, "{f:?}: {}", p.body.len());
            assert!(p.title.chars().count() <= MAX_TITLE);
            let text = String::from_utf8(p.body).unwrap();
            assert!(
                text.contains("more"),
                "{f:?}: the left-out alerts are counted"
            );
        }
        let one = build(WebhookFormat::Json, &notices[..1], &about());
        let v: serde_json::Value = serde_json::from_slice(&one.body).unwrap();
        assert_eq!(
            (v["more"].as_u64(), v["alerts"].as_array().unwrap().len()),
            (Some(0), 1)
        );
        assert!(v["alerts"][0]["detail"].as_str().unwrap().ends_with('…'));
    }

    #[test]
    fn text_messages_are_bounded_and_keep_their_title() {
        let text = "uploads (media) → ok\n".repeat(10_000);
        let title = "[opsagent] web-01 daily digest: 1 job ok, 0 failed, 0 checks changed";
        for (f, max) in [
            (WebhookFormat::Json, MAX_BODY),
            (WebhookFormat::Slack, MAX_BODY),
            (WebhookFormat::Ntfy, MAX_NTFY_BODY),
        ] {
            let p = message(f, &about(), title, &text, "digest", "clipboard", true);
            assert!(p.body.len() <= max, "{f:?}: {}", p.body.len());
            assert!(p.body.len() > max / 2, "{f:?}: cut to {}", p.body.len());
            assert_eq!(p.title, title);
        }
        let p = message(
            WebhookFormat::Json,
            &about(),
            title,
            "short",
            "digest",
            "clipboard",
            true,
        );
        let v: serde_json::Value = serde_json::from_slice(&p.body).unwrap();
        assert_eq!(
            (v["status"].as_str(), v["text"].as_str()),
            (Some("digest"), Some("short"))
        );
        let p = message(
            WebhookFormat::Slack,
            &about(),
            title,
            "a <b>",
            "digest",
            "clipboard",
            true,
        );
        let v: serde_json::Value = serde_json::from_slice(&p.body).unwrap();
        assert_eq!(v["text"], format!("*{title}*\n```a &lt;b&gt;```"));
    }
}

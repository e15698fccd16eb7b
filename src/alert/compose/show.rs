//! What an alert mail shows beyond its facts: the severity band, the value against its
//! thresholds in words, and a PNG chart of the last hours per alert (inline, `cid:`).

use super::{display_name, facts, value, Envelope};
use crate::alert::route::NoticeKind;
use crate::alert::Thresholds;
use crate::catalog::AlertRow;
use chrono::{DateTime, Utc};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, MultiPart, SinglePart};
use std::fmt::Write;

pub(super) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// What a mail draws for one alert: its thresholds and its recent history (1-minute points).
#[derive(Debug, Clone, Default)]
pub struct Figure {
    /// The check's warn and crit lines, when known.
    pub thresholds: Option<Thresholds>,
    /// The history shown, oldest first (empty: no chart).
    pub points: Vec<(DateTime<Utc>, f64)>,
}

/// Alert key → what its mail draws.
pub type Figures = std::collections::BTreeMap<String, Figure>;

/// The history an alert mail's chart spans.
pub const CHART_SPAN: chrono::Duration = chrono::Duration::hours(6);
/// The PNG bytes one mail carries at most (mails stay well under 200 KB once base64-encoded).
pub const MAX_CHART_BYTES: usize = 120_000;

/// An inline image of a mail: its Content-ID (without the angle brackets) and PNG bytes.
#[derive(Debug, Clone)]
pub struct Inline {
    /// `chart-N.MESSAGE-ID-PART`.
    pub cid: String,
    /// The PNG.
    pub png: Vec<u8>,
}

/// The band colour and the text colour on it for a notice.
pub fn band_colours(kind: NoticeKind, severity: &str) -> (&'static str, &'static str) {
    match (kind, severity) {
        (NoticeKind::Resolved, _) => ("#2e7d32", "#ffffff"),
        (NoticeKind::Flapping, _) => ("#6a1b9a", "#ffffff"),
        (_, "CRIT") => ("#c62828", "#ffffff"),
        (_, "WARN") => ("#f0a000", "#1a1a1a"),
        _ => ("#616161", "#ffffff"),
    }
}

/// A number with its unit: `93.4 %`, `2.1`, `340 ms`.
pub fn with_unit(v: f64, unit: &str) -> String {
    if unit.is_empty() {
        value(v)
    } else {
        format!("{} {unit}", value(v))
    }
}

/// "disk / 93.4 % — crit above 90 %, warn above 80 %" (the value against its thresholds).
pub fn threshold_sentence(a: &AlertRow, th: Option<&Thresholds>) -> Option<String> {
    let v = a.value?;
    let name = display_name(&a.key);
    let Some(th) = th else {
        return Some(match a.threshold {
            Some(t) => format!("{name} {} — threshold {}", value(v), value(t)),
            None => format!("{name} {}", value(v)),
        });
    };
    let dir = if th.high_is_bad { "above" } else { "below" };
    let mut parts = Vec::new();
    if let Some(c) = th.crit {
        parts.push(format!("crit {dir} {}", with_unit(c, th.unit)));
    }
    if let Some(w) = th.warn {
        parts.push(format!("warn {dir} {}", with_unit(w, th.unit)));
    }
    let v = with_unit(v, th.unit);
    Some(match parts.is_empty() {
        true => format!("{name} {v}"),
        false => format!("{name} {v} — {}", parts.join(", ")),
    })
}

/// The words under a chart: the span, the range of the values, what the lines mean.
pub fn chart_caption(
    span: &str,
    points: &[(DateTime<Utc>, f64)],
    th: Option<&Thresholds>,
    mark: Option<String>,
) -> String {
    let unit = th.map(|t| t.unit).unwrap_or("");
    let (lo, hi) = points
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), p| (l.min(p.1), h.max(p.1)));
    let mut s = format!(
        "{span}: from {} to {}",
        with_unit(lo, unit),
        with_unit(hi, unit)
    );
    if let Some(c) = th.and_then(|t| t.crit) {
        let _ = write!(s, "; red line: crit {}", with_unit(c, unit));
    }
    if let Some(w) = th.and_then(|t| t.warn) {
        let _ = write!(s, "; amber line: warn {}", with_unit(w, unit));
    }
    if let Some(m) = mark {
        let _ = write!(s, "; the dark line marks {m}");
    }
    s
}

/// The chart of one alert (PNG), when it has history.
fn alert_chart(
    a: &AlertRow,
    fig: &Figure,
    size: (u32, u32),
    now: DateTime<Utc>,
) -> Option<Vec<u8>> {
    let th = fig.thresholds.as_ref();
    let chart = crate::alert::chart::Chart {
        points: &fig.points,
        from: now - CHART_SPAN,
        to: now,
        warn: th.and_then(|t| t.warn),
        crit: th.and_then(|t| t.crit),
        mark: Some(a.since),
    };
    match chart.png(size) {
        Ok(png) => Some(png),
        Err(crate::alert::chart::ChartError::Empty) => None,
        Err(e) => {
            tracing::warn!(alert = %a.key, error = %e, "alert mail goes out without its chart");
            None
        }
    }
}

/// The Content-ID suffix of a mail's images: the part of its Message-ID inside `<>`.
pub(super) fn cid_suffix(message_id: &str) -> &str {
    message_id.trim_start_matches('<').trim_end_matches('>')
}

/// The first line of a notice: "FIRING CRIT disk / on web1".
fn head_line(kind: NoticeKind, a: &AlertRow, host: &str) -> String {
    let name = display_name(&a.key);
    match kind {
        NoticeKind::Resolved => format!("RESOLVED {name} on {host}"),
        NoticeKind::Flapping => format!("FLAPPING {name} on {host}"),
        NoticeKind::Reminder => format!("FIRING {} {name} on {host} (still firing)", a.severity),
        NoticeKind::Firing => format!("FIRING {} {name} on {host}", a.severity),
    }
}

/// Plain text and HTML bodies, and the images the HTML shows.
pub(super) fn bodies(
    notices: &[(NoticeKind, &AlertRow)],
    env: &Envelope,
    figures: &Figures,
    message_id: &str,
    now: DateTime<Utc>,
) -> (String, String, Vec<Inline>) {
    let mut text = String::new();
    let mut images: Vec<Inline> = Vec::new();
    let mut bytes = 0;
    let size = if notices.len() == 1 {
        crate::alert::chart::MAIL_SIZE
    } else {
        crate::alert::chart::SMALL_SIZE
    };
    let mut html = String::from(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"></head>\n<body style=\"font-family:sans-serif;margin:0;padding:8px;color:#1a1a1a\">\n",
    );
    for (kind, a) in notices {
        let head = head_line(*kind, a, &env.host);
        let _ = writeln!(text, "{head}");
        let fig = figures.get(&a.key);
        let th = fig.and_then(|f| f.thresholds.as_ref());
        let (band, ink) = band_colours(*kind, &a.severity);
        let _ = writeln!(
            html,
            "<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" style=\"margin:12px 0 6px 0\"><tr><td class=\"band\" bgcolor=\"{band}\" style=\"background:{band};color:{ink};padding:10px 14px;font-size:18px;font-weight:bold\">{}</td></tr></table>",
            escape(&head)
        );
        if let Some(sentence) = threshold_sentence(a, th) {
            let _ = writeln!(
                html,
                "<p class=\"value\" style=\"font-size:17px;margin:6px 0\">{}</p>",
                escape(&sentence)
            );
        }
        let chart = fig.filter(|_| bytes < MAX_CHART_BYTES && images.len() < 20);
        if let Some(png) = chart.and_then(|f| alert_chart(a, f, size, now)) {
            let cid = format!("chart-{}.{}", images.len() + 1, cid_suffix(message_id));
            let pts = &chart.map(|f| f.points.as_slice()).unwrap_or_default();
            let mark = format!(
                "when the condition began ({})",
                env.zone.format(a.since, "%H:%M")
            );
            let caption = chart_caption("last 6 hours", pts, th, Some(mark));
            let _ = writeln!(
                html,
                "<img src=\"cid:{cid}\" width=\"{}\" height=\"{}\" alt=\"{}\" style=\"max-width:100%;height:auto;display:block;border:1px solid #ddd\">\n<p style=\"font-size:13px;color:#555;margin:4px 0 10px 0\">{}</p>",
                size.0,
                size.1,
                escape(&format!("chart of {}", display_name(&a.key))),
                escape(&caption)
            );
            bytes += png.len();
            images.push(Inline { cid, png });
        }
        html.push_str("<table>\n");
        for (label, v) in facts(*kind, a, env, now) {
            let _ = writeln!(text, "  {label:<13} {v}");
            let _ = writeln!(html, "<tr><th align=\"left\" valign=\"top\">{label}</th><td><pre style=\"margin:0;white-space:pre-wrap\">{}</pre></td></tr>", escape(&v));
        }
        let _ = writeln!(text);
        html.push_str("</table>\n");
    }
    let _ = writeln!(text, "-- \nopsagent on {}", env.host);
    html.push_str("</body></html>\n");
    (text, html, images)
}

/// The body of a mail: the text, and the HTML with its images (`multipart/related`) when it
/// has any.
pub(super) fn body(text: String, html: String, images: Vec<Inline>) -> MultiPart {
    if images.is_empty() {
        return MultiPart::alternative_plain_html(text, html);
    }
    let mut related = MultiPart::related().singlepart(SinglePart::html(html));
    for img in images {
        related = related.singlepart(
            Attachment::new_inline(img.cid)
                .body(img.png, ContentType::parse("image/png").expect("image/png")),
        );
    }
    MultiPart::alternative()
        .singlepart(SinglePart::plain(text))
        .multipart(related)
}

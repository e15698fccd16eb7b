//! The status page's HTML: `/` (the host, every check with a sparkline, every job, the alerts,
//! silences and the outbox) and `/check/NAME` (one check's charts over 6 hours, 2 days and 90
//! days). Server-rendered, no script, one inline style sheet (allowed by its hash in the
//! Content-Security-Policy), laid out to fit a phone. Every name and value from the config,
//! the catalog or a probed host is escaped with [`esc`]; nothing with a credential is shown
//! (no URL of a webhook, no mail's headers or raw text, no webhook's error).

use super::svg::{thin, Svg};
use crate::alert::{thresholds_of, ThresholdMap};
use crate::catalog::{Catalog, CatalogError, RunRecord};
use crate::daemon::report::{CheckLine, JobLine, Report};
use crate::schedule::Zone;
use chrono::{DateTime, Duration, Utc};
use std::fmt::Write;

mod check;
pub use check::check;

/// The style sheet (its SHA-256 is in the Content-Security-Policy).
pub const CSS: &str = "*{box-sizing:border-box}\
body{margin:0;font:15px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1a1a1a;background:#fff}\
main{max-width:980px;margin:0 auto;padding:0 10px 24px}\
h1{font-size:20px;margin:0}h2{font-size:17px;margin:18px 0 6px;border-bottom:2px solid #eee;padding-bottom:2px}\
a{color:#1f5fa8}header{padding:10px 14px;margin:0 -10px 8px}\
.s-OK{background:#2e7d32;color:#fff}.s-WARN,.s-STALE,.s-UNKNOWN{background:#f0a000;color:#1a1a1a}.s-CRIT{background:#c62828;color:#fff}\
.item{display:flex;flex-wrap:wrap;gap:2px 12px;align-items:center;border-bottom:1px solid #eee;padding:6px 0}\
.name{flex:1 1 11em;min-width:0;overflow-wrap:anywhere;font-weight:600}\
.st{display:inline-block;min-width:4.5em;text-align:center;border-radius:3px;padding:0 6px;font-weight:600;font-size:13px}\
.muted{color:#555;font-size:13px}.val{min-width:5em}\
.detail{flex-basis:100%;color:#555;font-size:13px;overflow-wrap:anywhere;white-space:pre-wrap;margin:0}\
.spark{width:120px;height:28px;flex:0 0 120px}.chart{width:100%;height:170px;display:block}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 10px;margin:4px 0}dt{color:#555}dd{margin:0;overflow-wrap:anywhere}\
p{overflow-wrap:anywhere}footer{color:#777;font-size:12px;margin-top:20px}";

/// A history.
type Points = [(DateTime<Utc>, f64)];

/// The sparkline's span and its most points.
const SPARK_SPAN: Duration = Duration::hours(6);
const SPARK_POINTS: usize = 120;
/// The size trend: the newest runs shown.
const SIZE_RUNS: usize = 30;

/// HTML-escapes `s` (text and attribute values).
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The link to a check's page: its name percent-encoded as one path segment (a `/` in it
/// kept, as `/check/disk:/srv` reads better than `%2F`).
pub fn check_href(name: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b':')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.');
    format!(
        "/check/{}",
        percent_encoding::utf8_percent_encode(name, SET)
    )
}

fn head(o: &mut String, title: &str) {
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><meta name=\"referrer\" content=\"no-referrer\"><title>{}</title><style>{CSS}</style></head><body><main>",
        esc(title)
    );
}

fn value(v: Option<f64>, unit: &str) -> String {
    match v {
        None => "-".into(),
        Some(x) => crate::alert::compose::with_unit(x, unit),
    }
}

fn when(zone: Zone, t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!(
        "{} ({} ago)",
        zone.format(t, "%Y-%m-%d %H:%M"),
        crate::daemon::report::age(now - t)
    )
}

fn run_text(r: Option<&RunRecord>, zone: Zone, now: DateTime<Utc>) -> String {
    match r {
        None => "never".into(),
        Some(r) => {
            let at = r.ended_at.unwrap_or(r.started_at);
            format!("{} {}", r.status.as_str(), when(zone, at, now))
        }
    }
}

/// What the pages need besides the report.
pub struct Context<'a> {
    /// The catalog (histories, run sizes).
    pub catalog: &'a Catalog,
    /// The checks' thresholds.
    pub thresholds: &'a ThresholdMap,
    /// The zone times are shown in.
    pub zone: Zone,
    /// Now.
    pub now: DateTime<Utc>,
}

fn check_item(o: &mut String, c: &CheckLine, r: &Report, cx: &Context) -> Result<(), CatalogError> {
    let name = &c.row.check;
    let th = thresholds_of(cx.thresholds, name);
    let unit = th.map(|t| t.unit).unwrap_or("");
    let state = c.shown();
    let _ = write!(
        o,
        "<div class=\"item check\" data-check=\"{}\"><span class=\"name\"><a href=\"{}\">{}</a></span><span class=\"st s-{}\">{}</span><span class=\"val\">{}</span><span class=\"muted\">since {}</span>",
        esc(name),
        esc(&check_href(name)),
        esc(name),
        esc(state),
        esc(state),
        esc(&value(c.row.value, unit)),
        esc(&when(cx.zone, c.row.since, cx.now))
    );
    let pts = cx.catalog.history(name, cx.now - SPARK_SPAN)?;
    if !pts.is_empty() {
        let pts = thin(&pts, SPARK_POINTS);
        o.push_str(&lines(
            &pts,
            (cx.now - SPARK_SPAN, cx.now),
            th,
            (120, 28),
            "spark",
        ));
    }
    if let Some(cause) = r.causes.get(name) {
        let _ = write!(o, "<p class=\"detail\">caused by {}</p>", esc(cause));
    }
    if state != "OK" && !c.row.detail.is_empty() {
        let _ = write!(o, "<p class=\"detail\">{}</p>", esc(&c.row.detail));
    }
    o.push_str("</div>");
    Ok(())
}

/// An SVG chart of `points` over `span` with the warn and crit lines of `th`.
fn lines(
    points: &Points,
    span: (DateTime<Utc>, DateTime<Utc>),
    th: Option<&crate::alert::Thresholds>,
    size: (u32, u32),
    class: &'static str,
) -> String {
    Svg {
        points,
        from: span.0,
        to: span.1,
        warn: th.and_then(|t| t.warn),
        crit: th.and_then(|t| t.crit),
        size,
        class,
    }
    .render()
}

fn job_item(o: &mut String, j: &JobLine, cx: &Context) -> Result<(), CatalogError> {
    let _ = write!(
        o,
        "<div class=\"item job\" data-job=\"{}\"><span class=\"name\">{}</span><dl>",
        esc(&j.job),
        esc(&j.job)
    );
    let row = |o: &mut String, k: &str, v: &str| {
        let _ = write!(o, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    };
    row(
        o,
        "last backup",
        &run_text(j.last_backup.as_ref(), cx.zone, cx.now),
    );
    if j.last_good.as_ref().map(|r| r.id) != j.last_backup.as_ref().map(|r| r.id) {
        row(
            o,
            "last good",
            &run_text(j.last_good.as_ref(), cx.zone, cx.now),
        );
    }
    row(
        o,
        "last drill",
        &run_text(j.last_drill.as_ref(), cx.zone, cx.now),
    );
    if let Some(d) = &j.last_drill {
        if let Some(end) = d.ended_at {
            let secs = (end - d.started_at).num_seconds().max(0) as u64;
            let rto = humantime::format_duration(std::time::Duration::from_secs(secs));
            row(o, "RTO (last drill)", &rto.to_string());
        }
    }
    if !j.frozen.is_empty() {
        row(
            o,
            "retention",
            &format!(
                "FROZEN by {} anomalies: opsagent ack {}",
                j.frozen.len(),
                j.job
            ),
        );
    }
    if let Some(b) = &j.binlog {
        row(o, "binlog archived", &when(cx.zone, b.updated_at, cx.now));
    }
    size_trend(o, j, cx)?;
    o.push_str("</div>");
    Ok(())
}

/// A job's last backup size and the sparkline of its last [`SIZE_RUNS`] sizes (closes the
/// job's `<dl>`).
fn size_trend(o: &mut String, j: &JobLine, cx: &Context) -> Result<(), CatalogError> {
    let kind = j
        .last_backup
        .as_ref()
        .map(|r| r.kind.clone())
        .unwrap_or_default();
    let sizes = cx.catalog.run_sizes(&j.job, &kind, SIZE_RUNS)?;
    if let Some(last) = sizes.last() {
        let _ = write!(
            o,
            "<dt>size</dt><dd>{}</dd>",
            esc(&format!(
                "{} (last {} runs)",
                crate::quote::human_bytes(last.1),
                sizes.len()
            ))
        );
    }
    o.push_str("</dl>");
    if sizes.len() >= 2 {
        let pts: Vec<(DateTime<Utc>, f64)> = sizes.iter().map(|(t, b)| (*t, *b as f64)).collect();
        o.push_str(
            &Svg {
                points: &pts,
                from: pts[0].0,
                to: pts[pts.len() - 1].0,
                warn: None,
                crit: None,
                size: (120, 28),
                class: "spark",
            }
            .render(),
        );
    }
    Ok(())
}

fn alerts_section(o: &mut String, r: &Report, cx: &Context) {
    o.push_str("<h2>Alerts</h2>");
    if r.alerts.is_empty() {
        o.push_str("<p class=\"muted\">no alerts firing</p>");
    }
    for a in &r.alerts {
        let state = match (a.row.firing, a.row.flapping) {
            (true, true) => "FLAPPING".to_string(),
            (true, false) => a.row.severity.clone(),
            _ => "OK".to_string(),
        };
        let what = match (a.row.firing, a.row.notified.as_str()) {
            (false, _) => "resolved, mail pending".to_string(),
            (true, "") => "not mailed yet".to_string(),
            (true, n) => format!("mailed ({})", n.to_lowercase()),
        };
        let muted = a
            .muted
            .as_deref()
            .map(|m| format!("; {m}"))
            .unwrap_or_default();
        let _ = write!(
            o,
            "<div class=\"item alert\"><span class=\"name\">{}</span><span class=\"st s-{}\">{}</span><span class=\"muted\">since {}; {}{}</span></div>",
            esc(&a.row.key),
            esc(if state == "FLAPPING" { "WARN" } else { &state }),
            esc(&state),
            esc(&when(cx.zone, a.row.since, cx.now)),
            esc(&what),
            esc(&muted)
        );
    }
    o.push_str("<h2>Silences</h2>");
    if r.silences.is_empty() {
        o.push_str("<p class=\"muted\">none</p>");
    }
    for s in &r.silences {
        let _ = write!(
            o,
            "<div class=\"item silence\"><span class=\"name\">#{} {}</span><span class=\"muted\">until {} by {}: {}</span></div>",
            s.id,
            esc(&s.pattern),
            esc(&cx.zone.format(s.ends_at, "%Y-%m-%d %H:%M")),
            esc(&s.created_by),
            esc(&s.reason)
        );
    }
    o.push_str("<h2>Outbox</h2>");
    if r.outbox.is_empty() {
        o.push_str("<p class=\"muted\">empty: every notification was delivered</p>");
    }
    for m in &r.outbox {
        let channel = match m.webhook() {
            Some(w) => format!("webhook {w}"),
            None => "mail".to_string(),
        };
        let state = if m.given_up() { "REFUSED" } else { "waiting" };
        // A webhook's error may quote its URL (a token): only mail errors are shown.
        let why = match (m.webhook(), &m.last_error) {
            (None, Some(e)) => format!(": {e}"),
            _ => String::new(),
        };
        let _ = write!(
            o,
            "<div class=\"item outbox\"><span class=\"name\">{}</span><span class=\"muted\">{} {}, queued {}, {} attempts{}</span></div>",
            esc(&m.subject),
            esc(&channel),
            state,
            esc(&when(cx.zone, m.created_at, cx.now)),
            m.attempts,
            esc(&why)
        );
    }
}

/// `/`.
pub fn index(r: &Report, cx: &Context) -> Result<String, CatalogError> {
    let mut o = String::with_capacity(64 << 10);
    head(&mut o, &format!("opsagent · {}", r.host));
    let status = ["OK", "WARN", "CRIT"][r.exit_code().min(2) as usize];
    let _ = write!(
        o,
        "<header class=\"s-{status}\"><h1>{} · {status}</h1><div>{}</div></header>",
        esc(&r.host),
        esc(&r.host_summary())
    );
    let _ = write!(o, "<h2>Checks ({})</h2>", r.checks.len());
    if r.checks.is_empty() {
        o.push_str("<p class=\"muted\">no check has run yet</p>");
    }
    for c in &r.checks {
        check_item(&mut o, c, r, cx)?;
    }
    let _ = write!(o, "<h2>Jobs ({})</h2>", r.jobs.len());
    if r.jobs.is_empty() {
        o.push_str("<p class=\"muted\">no backup jobs</p>");
    }
    for j in &r.jobs {
        job_item(&mut o, j, cx)?;
    }
    alerts_section(&mut o, r, cx);
    if r.pending_events > 0 {
        let _ = write!(
            o,
            "<p class=\"muted\">{} check events not yet handled by alerting</p>",
            r.pending_events
        );
    }
    footer(&mut o, cx);
    Ok(o)
}

fn footer(o: &mut String, cx: &Context) {
    let _ = write!(
        o,
        "<footer>opsagent {} · {} · read-only; <a href=\"/\">overview</a> · <a href=\"/api/status\">/api/status</a></footer></main></body></html>",
        env!("CARGO_PKG_VERSION"),
        esc(&cx.zone.format(cx.now, "%Y-%m-%d %H:%M:%S %Z"))
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_links() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(check_href("disk:/srv"), "/check/disk:/srv");
        assert_eq!(check_href("a b<"), "/check/a%20b%3C");
    }
}

//! `/check/NAME`: one check's state, thresholds and charts over 6 hours, 2 days and 90 days.

use super::{esc, footer, head, lines, value, when, Context, Points};
use crate::alert::thresholds_of;
use crate::catalog::CatalogError;
use crate::daemon::report::Report;
use chrono::{DateTime, Duration, Utc};
use std::fmt::Write;

/// `/check/NAME`; `None` when no such check is stored.
pub fn check(r: &Report, name: &str, cx: &Context) -> Result<Option<String>, CatalogError> {
    let Some(c) = r.checks.iter().find(|c| c.row.check == name) else {
        return Ok(None);
    };
    let th = thresholds_of(cx.thresholds, name);
    let unit = th.map(|t| t.unit).unwrap_or("");
    let mut o = String::with_capacity(128 << 10);
    head(&mut o, &format!("{name} · opsagent · {}", r.host));
    let state = c.shown();
    let _ = write!(
        o,
        "<header class=\"s-{}\"><h1>{} · {}</h1><div>{} on {}</div></header><dl>",
        esc(state),
        esc(name),
        esc(state),
        esc(&value(c.row.value, unit)),
        esc(&r.host)
    );
    let row = |o: &mut String, k: &str, v: &str| {
        let _ = write!(o, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    };
    row(&mut o, "kind", &c.row.kind);
    row(&mut o, "since", &when(cx.zone, c.row.since, cx.now));
    row(&mut o, "updated", &when(cx.zone, c.row.updated_at, cx.now));
    if let Some(th) = th {
        let dir = if th.high_is_bad { "above" } else { "below" };
        for (k, v) in [("crit", th.crit), ("warn", th.warn)] {
            if let Some(v) = v {
                row(&mut o, k, &format!("{dir} {}", value(Some(v), unit)));
            }
        }
    } else if let Some(t) = c.row.threshold {
        row(&mut o, "threshold", &value(Some(t), unit));
    }
    if !c.row.detail.is_empty() {
        row(&mut o, "detail", &c.row.detail);
    }
    o.push_str("</dl>");
    charts(&mut o, name, th, cx)?;
    footer(&mut o, cx);
    Ok(Some(o))
}

/// The check's charts over 6 hours, 2 days and 90 days, each with its caption.
fn charts(
    o: &mut String,
    name: &str,
    th: Option<&crate::alert::Thresholds>,
    cx: &Context,
) -> Result<(), CatalogError> {
    let minute = cx.catalog.history(name, cx.now - Duration::days(2))?;
    let hourly: Vec<(DateTime<Utc>, f64)> = (cx.catalog.history_hourly(name)?.into_iter())
        .map(|(t, avg, _)| (t, avg))
        .chain(minute.iter().copied())
        .filter(|p| p.0 >= cx.now - Duration::days(90))
        .collect();
    let six: Vec<_> = (minute.iter().copied())
        .filter(|p| p.0 >= cx.now - Duration::hours(6))
        .collect();
    let charts: [(&str, &Points, Duration); 3] = [
        ("last 6 hours (1-minute points)", &six, Duration::hours(6)),
        ("last 2 days (1-minute points)", &minute, Duration::days(2)),
        (
            "last 90 days (hourly, then 1-minute points)",
            &hourly,
            Duration::days(90),
        ),
    ];
    for (title, pts, span) in charts {
        let _ = write!(o, "<h2>{}</h2>", esc(title));
        if pts.is_empty() {
            o.push_str("<p class=\"muted\">no history</p>");
            continue;
        }
        o.push_str(&lines(
            pts,
            (cx.now - span, cx.now),
            th,
            (600, 170),
            "chart",
        ));
        let caption =
            crate::alert::compose::chart_caption(&format!("{} points", pts.len()), pts, th, None);
        let _ = write!(o, "<p class=\"muted\">{}</p>", esc(&caption));
    }
    Ok(())
}

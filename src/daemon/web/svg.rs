//! The status page's charts: hand-written inline SVG (a polyline, the threshold lines), no
//! script, no external asset. Every text put into the markup is escaped by the caller's
//! [`super::page::esc`]; this file writes numbers only.

use chrono::{DateTime, Utc};
use std::fmt::Write;

/// What one SVG chart shows.
pub struct Svg<'a> {
    /// (time, value), oldest first.
    pub points: &'a [(DateTime<Utc>, f64)],
    /// Left edge.
    pub from: DateTime<Utc>,
    /// Right edge.
    pub to: DateTime<Utc>,
    /// The warn line.
    pub warn: Option<f64>,
    /// The crit line.
    pub crit: Option<f64>,
    /// viewBox width and height.
    pub size: (u32, u32),
    /// CSS class (`spark`, `chart`).
    pub class: &'static str,
}

/// At most `max` points: consecutive points averaged into `max` buckets of equal count.
pub fn thin(points: &[(DateTime<Utc>, f64)], max: usize) -> Vec<(DateTime<Utc>, f64)> {
    if points.len() <= max || max == 0 {
        return points.to_vec();
    }
    let per = points.len().div_ceil(max);
    points
        .chunks(per)
        .map(|c| {
            let avg = c.iter().map(|p| p.1).sum::<f64>() / c.len() as f64;
            (c[c.len() / 2].0, avg)
        })
        .collect()
}

impl Svg<'_> {
    /// The markup: `<svg …><polyline points="…"/></svg>`, `data-points` the number of points.
    pub fn render(&self) -> String {
        let (w, h) = (self.size.0 as f64, self.size.1 as f64);
        let span = ((self.to - self.from).num_milliseconds() as f64).max(1.0);
        let vals = self.points.iter().map(|p| p.1).filter(|v| v.is_finite());
        let lines = self.warn.into_iter().chain(self.crit);
        let (mut lo, mut hi) = vals
            .chain(lines)
            .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
        if lo > hi {
            (lo, hi) = (0.0, 1.0);
        }
        if lo >= 0.0 {
            lo = 0.0;
        }
        hi += ((hi - lo) * 0.08).max(1e-9);
        let pad = 2.0;
        let x =
            |t: DateTime<Utc>| ((t - self.from).num_milliseconds() as f64 / span * w).clamp(0.0, w);
        let y = |v: f64| pad + (1.0 - (v - lo) / (hi - lo)) * (h - 2.0 * pad);
        let pts: Vec<&(DateTime<Utc>, f64)> =
            self.points.iter().filter(|p| p.1.is_finite()).collect();
        let mut s = format!(
            "<svg class=\"{}\" viewBox=\"0 0 {w} {h}\" preserveAspectRatio=\"none\" role=\"img\" data-points=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
            self.class,
            pts.len()
        );
        let _ = write!(
            s,
            "<rect width=\"{w}\" height=\"{h}\" fill=\"#fafafa\" stroke=\"#ddd\" vector-effect=\"non-scaling-stroke\"/>"
        );
        for (t, colour) in [(self.warn, "#e09b00"), (self.crit, "#c62828")] {
            if let Some(t) = t {
                let ty = y(t);
                let _ = write!(
                    s,
                    "<line x1=\"0\" y1=\"{ty:.1}\" x2=\"{w}\" y2=\"{ty:.1}\" stroke=\"{colour}\" stroke-dasharray=\"4 3\" vector-effect=\"non-scaling-stroke\"/>"
                );
            }
        }
        s.push_str("<polyline fill=\"none\" stroke=\"#1f5fa8\" stroke-width=\"1.5\" vector-effect=\"non-scaling-stroke\" points=\"");
        for (i, p) in pts.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            let _ = write!(s, "{:.1},{:.1}", x(p.0), y(p.1));
        }
        s.push_str("\"/></svg>");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn one_point_per_sample() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap();
        let pts: Vec<_> = (0..120)
            .map(|m| (t0 + chrono::Duration::minutes(m), m as f64))
            .collect();
        let svg = Svg {
            points: &pts,
            from: t0,
            to: t0 + chrono::Duration::hours(2),
            warn: Some(80.0),
            crit: Some(90.0),
            size: (600, 160),
            class: "chart",
        }
        .render();
        assert!(svg.contains("data-points=\"120\""), "{svg}");
        let poly = svg.split("points=\"").nth(2).unwrap();
        assert_eq!(poly.split('"').next().unwrap().split(' ').count(), 120);
        assert_eq!(thin(&pts, 50).len(), 40);
        assert_eq!(thin(&pts, 500).len(), 120);
    }
}

//! What the history is used for: the time-until-full forecast of a disk from its recent
//! 1-minute points (a least-squares line through them). Pure.

use chrono::{DateTime, Utc};
use std::time::Duration;

/// Points needed before a forecast is made.
pub const MIN_POINTS: usize = 10;
/// The history a forecast must span.
pub const MIN_SPAN: Duration = Duration::from_secs(30 * 60);
/// How far back the forecast looks.
pub const LOOKBACK: Duration = Duration::from_secs(6 * 3600);

/// When `points` (time, % used), growing along a straight line, reach 100 %: `None` when the
/// history is too short or the use is not growing.
pub fn time_until_full(points: &[(DateTime<Utc>, f64)]) -> Option<Duration> {
    let (first, last) = (points.first()?, points.last()?);
    if points.len() < MIN_POINTS || (last.0 - first.0).to_std().ok()? < MIN_SPAN {
        return None;
    }
    let x = |t: DateTime<Utc>| (t - first.0).num_milliseconds() as f64 / 1000.0;
    let n = points.len() as f64;
    let mx = points.iter().map(|p| x(p.0)).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for p in points {
        sxy += (x(p.0) - mx) * (p.1 - my);
        sxx += (x(p.0) - mx).powi(2);
    }
    let slope = sxy / sxx; // % per second
    if slope.is_nan() || slope <= 1e-9 {
        return None;
    }
    let now_fit = my + slope * (x(last.0) - mx);
    let secs = ((100.0 - now_fit) / slope).max(0.0);
    Some(Duration::from_secs_f64(secs.min(1e10)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn series(minutes: i64, f: impl Fn(i64) -> f64) -> Vec<(DateTime<Utc>, f64)> {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap();
        (0..minutes)
            .map(|m| (t0 + chrono::Duration::minutes(m), f(m)))
            .collect()
    }

    #[test]
    fn forecasts() {
        // +1 % per hour from 50 %: at minute 119 it is at ~52 %, full in ~48 h.
        let h = time_until_full(&series(120, |m| 50.0 + m as f64 / 60.0)).unwrap();
        assert!((h.as_secs_f64() / 3600.0 - 48.0).abs() < 0.1, "{h:?}");
        // +10 % per hour from 80 %: full in < 2 h.
        let h = time_until_full(&series(60, |m| 80.0 + m as f64 / 6.0)).unwrap();
        assert!(h < Duration::from_secs(2 * 3600), "{h:?}");
        // Flat, shrinking, too short: no forecast.
        assert_eq!(time_until_full(&series(120, |_| 70.0)), None);
        assert_eq!(
            time_until_full(&series(120, |m| 70.0 - m as f64 / 60.0)),
            None
        );
        assert_eq!(time_until_full(&series(20, |m| 50.0 + m as f64)), None);
        assert_eq!(time_until_full(&[]), None);
    }
}

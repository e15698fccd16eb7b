//! One round of probes, counted: loss, mean and 95th-percentile round-trip time, and the level
//! they deserve against the check's thresholds. Pure (no sockets, no clock).

use super::super::state::{Level, Limits};
use std::time::Duration;

/// What a round of `sent` probes got back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Round {
    /// Probes sent (or attempted).
    pub sent: u32,
    /// The round-trip times of the probes answered in time, in no particular order.
    pub rtts: Vec<Duration>,
    /// The last error a probe met (unreachable, refused to send), for the detail.
    pub last_error: Option<String>,
}

impl Round {
    /// Probes answered.
    pub fn answered(&self) -> u32 {
        self.rtts.len() as u32
    }

    /// Lost probes in percent of those sent (100 when none was sent).
    pub fn loss_pct(&self) -> f64 {
        if self.sent == 0 {
            return 100.0;
        }
        let lost = self.sent.saturating_sub(self.answered());
        f64::from(lost) * 100.0 / f64::from(self.sent)
    }

    /// The mean round-trip time in milliseconds, when any probe was answered.
    pub fn avg_ms(&self) -> Option<f64> {
        let n = self.rtts.len();
        (n > 0).then(|| self.rtts.iter().map(ms).sum::<f64>() / n as f64)
    }

    /// The 95th percentile (nearest rank) of the round-trip times in milliseconds.
    pub fn p95_ms(&self) -> Option<f64> {
        percentile_ms(&self.rtts, 95.0)
    }
}

fn ms(d: &Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `p`th percentile of `values` by the nearest-rank method (the smallest value with at
/// least p % of the values at or below it), in milliseconds; `None` for no values.
pub fn percentile_ms(values: &[Duration], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(ms(&sorted[rank.clamp(1, sorted.len()) - 1]))
}

/// The thresholds of a ping check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// On the loss in percent.
    pub loss: Limits,
    /// On the round's p95 round-trip time in milliseconds; `None`: not judged.
    pub rtt: Option<Limits>,
}

/// How a round was judged.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The worse of the loss's and the round-trip time's level.
    pub level: Level,
    /// The loss threshold crossed (or the warn threshold when OK); `None` when the round-trip
    /// time decided (its threshold is in milliseconds, not percent: the detail names it).
    pub threshold: Option<f64>,
    /// What an operator reads: `loss 20% (4/5 answered), rtt avg 1.2 ms, p95 3.4 ms`.
    pub detail: String,
}

/// Judges `round` for a check whose previous sample was `last` (for the thresholds'
/// hysteresis): the level is the worse of loss and p95 round-trip time.
pub fn judge(round: &Round, t: &Thresholds, last: Level) -> Verdict {
    let loss = round.loss_pct();
    let (loss_level, loss_at) = t.loss.level(loss, last);
    let mut detail = format!(
        "loss {}% ({}/{} answered)",
        pct(loss),
        round.answered(),
        round.sent
    );
    match (round.avg_ms(), round.p95_ms()) {
        (Some(avg), Some(p95)) => {
            detail.push_str(&format!(", rtt avg {avg:.1} ms, p95 {p95:.1} ms"));
        }
        _ => detail.push_str(", no answer"),
    }
    let mut verdict = Verdict {
        level: loss_level,
        threshold: loss_at,
        detail,
    };
    if loss_level != Level::Ok {
        let word = if loss_level == Level::Crit {
            "crit"
        } else {
            "warn"
        };
        let at = loss_at.map(pct).unwrap_or_default();
        verdict
            .detail
            .push_str(&format!(" — at or above loss_{word} {at}%"));
    }
    if let (Some(limits), Some(p95)) = (t.rtt, round.p95_ms()) {
        let (rtt_level, rtt_at) = limits.level(p95, last);
        if rtt_level.severity() > verdict.level.severity() {
            let word = if rtt_level == Level::Crit {
                "crit"
            } else {
                "warn"
            };
            let at = rtt_at.unwrap_or_default();
            verdict
                .detail
                .push_str(&format!(" — p95 at or above rtt_{word} {at} ms"));
            verdict.level = rtt_level;
            verdict.threshold = None;
        }
    }
    if let (Some(e), true) = (&round.last_error, round.answered() < round.sent) {
        verdict.detail.push_str(&format!(" (last error: {e})"));
    }
    verdict
}

/// A percentage as people write it: `20`, `33.3`.
fn pct(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Level::*;

    fn round(sent: u32, rtts_ms: &[u64]) -> Round {
        Round {
            sent,
            rtts: rtts_ms.iter().map(|m| Duration::from_millis(*m)).collect(),
            last_error: None,
        }
    }

    fn t(rtt: Option<(f64, f64)>) -> Thresholds {
        Thresholds {
            loss: Limits::above(10.0, 25.0),
            rtt: rtt.map(|(w, c)| Limits::above(w, c)),
        }
    }

    #[test]
    fn loss_counts_what_was_not_answered() {
        assert_eq!(round(5, &[1, 1, 1, 1]).loss_pct(), 20.0);
        assert_eq!(round(5, &[1, 1, 1, 1, 1]).loss_pct(), 0.0);
        assert_eq!(round(3, &[]).loss_pct(), 100.0);
        assert_eq!(round(0, &[]).loss_pct(), 100.0);
        // More answers than probes (a duplicate slipped through) is never negative loss.
        assert_eq!(round(1, &[1, 1]).loss_pct(), 0.0);
    }

    #[test]
    fn percentile_by_nearest_rank() {
        let d = |v: &[u64]| {
            v.iter()
                .map(|m| Duration::from_millis(*m))
                .collect::<Vec<_>>()
        };
        assert_eq!(percentile_ms(&[], 95.0), None);
        assert_eq!(percentile_ms(&d(&[7]), 95.0), Some(7.0));
        assert_eq!(percentile_ms(&d(&[5, 1, 4, 2, 3]), 95.0), Some(5.0));
        let hundred: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentile_ms(&d(&hundred), 95.0), Some(95.0));
        assert_eq!(percentile_ms(&d(&hundred), 50.0), Some(50.0));
        assert_eq!(percentile_ms(&d(&hundred), 100.0), Some(100.0));
        assert_eq!(percentile_ms(&d(&hundred), 0.0), Some(1.0));
        let twenty: Vec<u64> = (1..=20).collect();
        assert_eq!(percentile_ms(&d(&twenty), 95.0), Some(19.0));
    }

    #[test]
    fn detail_names_loss_avg_and_p95() {
        let v = judge(&round(5, &[1, 2, 3, 4]), &t(None), Ok);
        assert_eq!(v.level, Warn);
        assert_eq!(v.threshold, Some(10.0));
        assert!(
            v.detail
                .starts_with("loss 20% (4/5 answered), rtt avg 2.5 ms, p95 4.0 ms"),
            "{}",
            v.detail
        );
        let v = judge(&round(3, &[]), &t(None), Ok);
        assert_eq!(v.level, Crit);
        assert!(v.detail.starts_with("loss 100% (0/3 answered), no answer"));
        let v = judge(&round(3, &[1]), &t(None), Ok);
        assert!(v.detail.starts_with("loss 66.7% (1/3"), "{}", v.detail);
    }

    #[test]
    fn thresholds_on_loss() {
        let l = |sent, n: usize| judge(&round(sent, &vec![1; n]), &t(None), Ok).level;
        assert_eq!(l(10, 10), Ok);
        assert_eq!(l(10, 9), Warn);
        assert_eq!(l(100, 76), Warn);
        assert_eq!(l(100, 75), Crit);
        // Hysteresis: from CRIT, 24 % loss is still CRIT (needs < 23.75).
        let v = judge(&round(100, &[1; 76]), &t(None), Crit);
        assert_eq!(v.level, Crit);
        let v = judge(&round(100, &[1; 77]), &t(None), Crit);
        assert_eq!(v.level, Warn);
    }

    #[test]
    fn thresholds_on_p95() {
        let th = t(Some((100.0, 200.0)));
        let mut rtts = vec![10; 94];
        rtts.extend([150; 6]);
        let v = judge(&round(100, &rtts), &th, Ok);
        assert_eq!(v.level, Warn, "{}", v.detail);
        assert_eq!(v.threshold, None);
        assert!(
            v.detail.contains("p95 at or above rtt_warn 100 ms"),
            "{}",
            v.detail
        );
        // Five slow answers of a hundred are the 5 % above p95: OK.
        let mut rtts = vec![10; 95];
        rtts.extend([500; 5]);
        assert_eq!(judge(&round(100, &rtts), &th, Ok).level, Ok);
        // Slow and lossy: the worse decides; equal levels name the loss.
        let v = judge(&round(10, &[300; 5]), &th, Ok);
        assert_eq!((v.level, v.threshold), (Crit, Some(25.0)));
        let v = judge(&round(10, &[300; 7]), &th, Ok);
        assert_eq!((v.level, v.threshold), (Crit, Some(25.0)));
        let v = judge(&round(10, &[300; 8]), &th, Ok);
        assert_eq!((v.level, v.threshold), (Crit, None));
        let v = judge(&round(10, &[300; 10]), &th, Ok);
        assert_eq!((v.level, v.threshold), (Crit, None));
        assert!(v.detail.contains("rtt_crit 200 ms"));
        // No answer: nothing to judge the time of.
        assert_eq!(judge(&round(4, &[]), &th, Ok).threshold, Some(25.0));
    }

    #[test]
    fn the_last_error_is_named_when_probes_were_lost() {
        let mut r = round(2, &[1]);
        r.last_error = Some("No route to host".into());
        assert!(judge(&r, &t(None), Ok)
            .detail
            .ends_with("(last error: No route to host)"));
        let mut r = round(1, &[1]);
        r.last_error = Some("No route to host".into());
        assert!(!judge(&r, &t(None), Ok).detail.contains("last error"));
    }
}

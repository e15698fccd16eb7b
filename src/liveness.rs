//! Proof that a loop still makes progress, for the systemd watchdog: each loop that matters
//! (the scheduler, the health rounds) touches its [`Beat`]; the watchdog is fed only while every
//! beat is younger than its limit, so a wedged loop gets the service restarted even when the
//! runtime itself still runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn epoch() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// When a loop last made progress, and how long it may go without.
#[derive(Debug)]
pub struct Beat {
    last: AtomicU64,
    limit_ms: u64,
}

impl Beat {
    /// A beat touched now, stalled when not touched for `limit`.
    pub fn new(limit: Duration) -> Beat {
        Beat {
            last: AtomicU64::new(now_ms()),
            limit_ms: limit.as_millis() as u64,
        }
    }

    /// The loop made progress.
    pub fn touch(&self) {
        self.last.store(now_ms(), Ordering::Relaxed);
    }

    /// How long since the last progress, when that is longer than the limit.
    pub fn stalled(&self) -> Option<Duration> {
        let age = now_ms().saturating_sub(self.last.load(Ordering::Relaxed));
        (age > self.limit_ms).then(|| Duration::from_millis(age))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_beat_stalls_past_its_limit_and_recovers_when_touched() {
        let b = Beat::new(Duration::from_millis(30));
        assert_eq!(b.stalled(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.stalled().is_some_and(|d| d >= Duration::from_millis(60)));
        b.touch();
        assert_eq!(b.stalled(), None);
        let zero = Beat::new(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        assert!(zero.stalled().is_some());
    }
}

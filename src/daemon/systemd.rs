//! systemd integration over `NOTIFY_SOCKET` (`Type=notify`): READY, STATUS, RELOADING,
//! STOPPING and watchdog pings. Everything here is a no-op when not started by systemd.

use crate::liveness::Beat;
use sd_notify::NotifyState;
use std::sync::Arc;
use std::time::Duration;

/// Sends states to systemd; failures are logged at debug (no socket is the normal case).
pub fn notify(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// `READY=1` plus a status line.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A `STATUS=` line shown by `systemctl status`.
pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

/// `RELOADING=1` with the monotonic timestamp systemd wants.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(t) => notify(&[NotifyState::Reloading, t]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

/// `STOPPING=1`.
pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Starts the watchdog pinger when `WATCHDOG_USEC` asks for one: `WATCHDOG=1` at half the
/// interval, but only while every loop in `beats` makes progress. The pings come from the
/// runtime, so a wedged runtime stops them too; either way systemd restarts the service.
pub fn spawn_watchdog(
    beats: Vec<(&'static str, Arc<Beat>)>,
) -> Option<tokio::task::JoinHandle<()>> {
    let interval = sd_notify::watchdog_enabled()?;
    Some(tokio::spawn(feed(interval, beats, || {
        notify(&[NotifyState::Watchdog])
    })))
}

/// Calls `ping` every half `interval` while no beat is stalled; logs when one stalls and when
/// all recover.
pub async fn feed(interval: Duration, beats: Vec<(&'static str, Arc<Beat>)>, ping: impl Fn()) {
    let period = (interval / 2).max(Duration::from_millis(100));
    tracing::info!(?period, "systemd watchdog enabled");
    let mut tick = tokio::time::interval(period);
    let mut withheld = false;
    loop {
        tick.tick().await;
        let stalled: Vec<String> = beats
            .iter()
            .filter_map(|(what, b)| {
                b.stalled().map(|d| {
                    format!(
                        "{what} made no progress for {}",
                        humantime::format_duration(Duration::from_secs(d.as_secs()))
                    )
                })
            })
            .collect();
        if stalled.is_empty() {
            if withheld {
                tracing::info!("progress again: feeding the watchdog");
                withheld = false;
            }
            ping();
        } else if !withheld {
            tracing::error!(
                "{}; not feeding the watchdog, so systemd restarts the service",
                stalled.join("; ")
            );
            withheld = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn the_watchdog_is_fed_only_while_every_loop_makes_progress() {
        let beat = Arc::new(Beat::new(Duration::from_millis(300)));
        let pings = Arc::new(AtomicUsize::new(0));
        let p = pings.clone();
        let feeder = tokio::spawn(feed(
            Duration::from_millis(200),
            vec![("the test loop", beat.clone())],
            move || {
                p.fetch_add(1, Ordering::SeqCst);
            },
        ));
        for _ in 0..10 {
            beat.touch();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let fed = pings.load(Ordering::SeqCst);
        assert!(fed >= 4, "{fed} pings while the loop advanced");
        // The loop hangs: past its limit the pings stop.
        tokio::time::sleep(Duration::from_millis(450)).await;
        let stopped = pings.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(pings.load(Ordering::SeqCst), stopped, "fed while stalled");
        // It advances again: so do the pings.
        for _ in 0..10 {
            beat.touch();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(pings.load(Ordering::SeqCst) > stopped);
        feeder.abort();
    }
}

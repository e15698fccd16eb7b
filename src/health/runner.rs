//! Runs the checks: one task per configured check and one for the host, each on its own
//! interval with a timeout (a hung endpoint delays nothing else; past its timeout a sample is
//! UNKNOWN), all feeding one collector that applies the state machines and writes states,
//! events and history to the catalog. A reload restarts the probes and keeps the states.

use super::host::HostSampler;
use super::{HealthConfig, Prober, Sample};
use crate::catalog::Catalog;
use crate::liveness::Beat;
use chrono::Utc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

pub use super::collector::{observe, Collector, KEEP_HOURS, KEEP_MINUTES};

/// The running health watch; dropping it stops every check.
pub struct Watch {
    config: watch::Sender<Arc<HealthConfig>>,
    task: tokio::task::JoinHandle<()>,
    beat: Arc<Beat>,
}

impl Watch {
    /// Touched whenever a sample reaches the collector; stalled after a few intervals without.
    pub fn beat(&self) -> Arc<Beat> {
        self.beat.clone()
    }

    /// Applies a new configuration (probes restart, states are kept).
    pub fn reload(&self, config: HealthConfig) {
        let _ = self.config.send(Arc::new(config));
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the health watch on the current tokio runtime.
pub fn spawn(config: HealthConfig, catalog: Arc<Catalog>) -> Watch {
    let beat = Arc::new(Beat::new(stall_limit(&config)));
    let (tx, rx) = watch::channel(Arc::new(config));
    let task = tokio::spawn(supervise(rx, catalog, beat.clone()));
    Watch {
        config: tx,
        task,
        beat,
    }
}

/// How long the collector may go without a sample before the health watch counts as stuck:
/// the host sampler reports every interval, so three of them plus a timeout.
fn stall_limit(cfg: &HealthConfig) -> Duration {
    (cfg.interval * 3 + cfg.timeout).max(Duration::from_secs(60))
}

async fn supervise(
    mut rx: watch::Receiver<Arc<HealthConfig>>,
    catalog: Arc<Catalog>,
    beat: Arc<Beat>,
) {
    let mut col = Collector::load(catalog.clone());
    let sampler = Arc::new(Mutex::new(HostSampler::new()));
    loop {
        let cfg = rx.borrow_and_update().clone();
        beat.set_limit(stall_limit(&cfg));
        beat.touch();
        col.configure(&cfg);
        let (stx, mut srx) = mpsc::channel::<Vec<Sample>>(64);
        let mut tasks = JoinSet::new();
        tasks.spawn(host_loop(cfg.clone(), sampler.clone(), stx.clone()));
        for spec in &cfg.checks {
            tasks.spawn(check_loop(Prober::new(spec.clone(), &catalog), stx.clone()));
        }
        drop(stx);
        let mut hourly = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break; // dropping `tasks` aborts the probes
                }
                Some(batch) = srx.recv() => {
                    col.handle(batch, Utc::now());
                    beat.touch();
                }
                _ = hourly.tick() => col.downsample(Utc::now()),
            }
        }
    }
}

async fn host_loop(
    cfg: Arc<HealthConfig>,
    sampler: Arc<Mutex<HostSampler>>,
    tx: mpsc::Sender<Vec<Sample>>,
) {
    let mut iv = tokio::time::interval(cfg.interval);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        iv.tick().await;
        let (s, host) = (sampler.clone(), cfg.host.clone());
        // A sampler still busy from the previous tick (a slow disk walk) skips this one.
        let job =
            tokio::task::spawn_blocking(move || s.try_lock().ok().map(|mut s| s.sample(&host)));
        match tokio::time::timeout(cfg.interval, job).await {
            Ok(Ok(Some(batch))) => {
                if tx.send(batch).await.is_err() {
                    return;
                }
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "host sampling failed"),
            Err(_) => {
                tracing::warn!(interval = ?cfg.interval, "host sampling took longer than the interval")
            }
        }
    }
}

async fn check_loop(mut prober: Prober, tx: mpsc::Sender<Vec<Sample>>) {
    let spec = prober.spec().clone();
    let mut iv = tokio::time::interval(spec.interval);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        iv.tick().await;
        let sample = match tokio::time::timeout(spec.timeout, prober.probe()).await {
            Ok(s) => s,
            Err(_) => Sample::failed(
                &spec,
                format!(
                    "{} timed out after {}",
                    spec.probe.waits_on(),
                    humantime::format_duration(spec.timeout)
                ),
            ),
        };
        if tx.send(vec![sample]).await.is_err() {
            return;
        }
    }
}

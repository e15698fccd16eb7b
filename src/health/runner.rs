//! Runs the checks: one task per configured check and one for the host, each on its own
//! interval with a timeout (a hung endpoint delays nothing else; past its timeout a sample is
//! UNKNOWN), all feeding one collector that applies the state machines and writes states,
//! events and history to the catalog. A reload restarts the probes and keeps the states.
//!
//! Progress is watched per loop: the health [`Beat`] (which feeds the systemd watchdog) is
//! touched only while every loop has reported within a few of its intervals, so one wedged
//! loop (a host sampler stuck in a dead NFS mount, a probe blocking its thread) gets the
//! service restarted instead of leaving that check silently stale.

use super::host::HostSampler;
use super::{HealthConfig, Prober, Sample};
use crate::catalog::Catalog;
use crate::liveness::Beat;
use chrono::Utc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
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
    /// Touched while every check loop reports (see [`Progress`]); stalled when one is stuck or the
    /// collector itself is.
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

/// Where the host checks' figures come from: [`HostSampler`] reads `/proc` and the mounts; the
/// daemon can be given another source (`daemon::run_with`).
pub trait HostSource: Send {
    /// One round of host samples; runs on a blocking thread and may block.
    fn sample(&mut self, cfg: &super::host::HostConfig) -> Vec<Sample>;
}

impl HostSource for HostSampler {
    fn sample(&mut self, cfg: &super::host::HostConfig) -> Vec<Sample> {
        HostSampler::sample(self, cfg)
    }
}

/// Starts the health watch on the current tokio runtime, sampling this host.
pub fn spawn(config: HealthConfig, catalog: Arc<Catalog>) -> Watch {
    spawn_with(config, catalog, Box::new(HostSampler::new()))
}

/// Starts the health watch with the host figures taken from `host`.
pub fn spawn_with(config: HealthConfig, catalog: Arc<Catalog>, host: Box<dyn HostSource>) -> Watch {
    let beat = Arc::new(Beat::new(SUPERVISOR_LIMIT));
    let (tx, rx) = watch::channel(Arc::new(config));
    let task = tokio::spawn(supervise(rx, catalog, beat.clone(), host));
    Watch {
        config: tx,
        task,
        beat,
    }
}

/// How long the health beat may go untouched: two looks. Withholding the watchdog this briefly
/// (the collector waiting for a catalog lock) restarts nothing; systemd waits `WatchdogSec=`
/// (60 s in the unit) without a ping.
const SUPERVISOR_LIMIT: Duration = Duration::from_secs(10);
/// How often the supervisor checks that every loop still reports.
const LOOK_EVERY: Duration = Duration::from_secs(5);
/// The least time a loop may go without a sample before it counts as stuck.
const MIN_LOOP_LIMIT: Duration = Duration::from_secs(20);

/// When each loop last sent a sample, and how long it may go without.
struct Progress {
    loops: Vec<(String, Duration, Instant)>,
    stuck: Vec<String>,
}

impl Progress {
    fn new(cfg: &HealthConfig) -> Progress {
        let limit =
            |interval: Duration, timeout: Duration| (interval * 3 + timeout).max(MIN_LOOP_LIMIT);
        let now = Instant::now();
        let mut loops = vec![(
            "the host checks".to_string(),
            limit(cfg.interval, cfg.interval),
            now,
        )];
        for spec in &cfg.checks {
            loops.push((
                format!("check {}", spec.name),
                limit(spec.interval, spec.timeout),
                now,
            ));
        }
        Progress {
            loops,
            stuck: Vec::new(),
        }
    }

    fn reported(&mut self, id: usize) {
        if let Some(l) = self.loops.get_mut(id) {
            l.2 = Instant::now();
        }
    }

    /// Whether every loop reported within its limit; logs when loops get stuck or recover.
    fn all_advance(&mut self) -> bool {
        let stuck: Vec<String> = self
            .loops
            .iter()
            .filter(|(_, limit, last)| last.elapsed() > *limit)
            .map(|(what, _, last)| {
                let secs = Duration::from_secs(last.elapsed().as_secs());
                format!(
                    "{what} reported nothing for {}",
                    humantime::format_duration(secs)
                )
            })
            .collect();
        if stuck.is_empty() && !self.stuck.is_empty() {
            tracing::info!("every health check loop reports again");
        } else if !stuck.is_empty() && self.stuck.is_empty() {
            tracing::error!(
                "{}; the watchdog is no longer fed, so systemd restarts the service",
                stuck.join("; ")
            );
        }
        self.stuck = stuck;
        self.stuck.is_empty()
    }
}

async fn supervise(
    mut rx: watch::Receiver<Arc<HealthConfig>>,
    catalog: Arc<Catalog>,
    beat: Arc<Beat>,
    host: Box<dyn HostSource>,
) {
    let mut col = Collector::load(catalog.clone());
    let sampler = Arc::new(Mutex::new(host));
    loop {
        let given = rx.borrow_and_update().clone();
        // The gateway ping joins the checks when the host has a gateway at (re)start.
        let cfg = Arc::new(HealthConfig {
            checks: given.active_checks(),
            ..(*given).clone()
        });
        beat.touch();
        col.configure(&cfg);
        let mut progress = Progress::new(&cfg);
        let (stx, mut srx) = mpsc::channel::<(usize, Vec<Sample>)>(64);
        let mut tasks = JoinSet::new();
        tasks.spawn(host_loop(cfg.clone(), sampler.clone(), stx.clone()));
        for (i, spec) in cfg.checks.iter().enumerate() {
            let prober = Prober::new(spec.clone(), &catalog);
            tasks.spawn(check_loop(i + 1, prober, stx.clone()));
        }
        drop(stx);
        let mut hourly = tokio::time::interval(Duration::from_secs(3600));
        let mut look = tokio::time::interval(LOOK_EVERY);
        loop {
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break; // dropping `tasks` aborts the probes
                }
                Some((id, batch)) = srx.recv() => {
                    col.handle(batch, Utc::now());
                    progress.reported(id);
                }
                _ = look.tick() => {
                    if progress.all_advance() {
                        beat.touch();
                    }
                }
                _ = hourly.tick() => col.downsample(Utc::now()),
            }
        }
    }
}

async fn host_loop(
    cfg: Arc<HealthConfig>,
    sampler: Arc<Mutex<Box<dyn HostSource>>>,
    tx: mpsc::Sender<(usize, Vec<Sample>)>,
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
                if tx.send((0, batch)).await.is_err() {
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

async fn check_loop(id: usize, mut prober: Prober, tx: mpsc::Sender<(usize, Vec<Sample>)>) {
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
        if tx.send((id, vec![sample])).await.is_err() {
            return;
        }
    }
}

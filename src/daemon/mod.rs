//! `opsagent run`: the daemon. Runs each job on its schedule (one run of a job at a time, a run
//! missed while it was down once soon after start), talks to systemd, reloads when told
//! ([`Control::Reload`]: SIGHUP, via `cli/run.rs`) or when the config file changes (an invalid
//! new file is logged and the old one kept), and on [`Control::Stop`] (SIGTERM, SIGINT) stops
//! starting work, lets running jobs finish within `agent.shutdown_grace`, and returns.

pub mod presence;
pub mod report;
pub mod scheduler;
pub mod systemd;
pub mod watch;
pub mod web;

use crate::backup::{self, Trigger};
use crate::catalog::Catalog;
use crate::config::{self, Config};
use crate::liveness::Beat;
use crate::snapshot::Env;
use chrono::Utc;
use scheduler::JobClock;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long after start a missed run is caught up.
const CATCH_UP_DELAY: Duration = Duration::from_secs(5);
/// The scheduler re-reads the wall clock at least this often (clock jumps, suspend).
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Daemon errors that stop it from starting.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The catalog cannot be opened.
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    /// Storage settings are unusable.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

struct Daemon {
    config_path: PathBuf,
    env: Env,
    clocks: HashMap<String, JobClock>,
    running: HashMap<String, JoinHandle<()>>,
}

/// What the daemon is told from outside while it runs (`cli/run.rs` turns signals into these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Stop starting work, let running jobs finish within the grace period, return.
    Stop,
    /// Reload the configuration file; the reason is logged.
    Reload(&'static str),
}

/// Runs the daemon until told to [`Control::Stop`] (or the sender is dropped). `config` was
/// loaded from `config_path` by the caller, which also handles signals.
pub async fn run(
    config_path: PathBuf,
    config: Config,
    control: mpsc::Receiver<Control>,
) -> Result<(), DaemonError> {
    let host = Box::new(crate::health::host::HostSampler::new());
    run_with(config_path, config, control, host).await
}

/// [`run`] with the host checks' figures taken from `host` instead of this machine's `/proc`.
pub async fn run_with(
    config_path: PathBuf,
    config: Config,
    mut control: mpsc::Receiver<Control>,
    host: Box<dyn crate::health::HostSource>,
) -> Result<(), DaemonError> {
    let env = open_env(config)?;
    let (reload_tx, mut reload_rx) = mpsc::channel(4);
    let _watch = watch_config(&config_path, reload_tx);
    let scheduler_beat = Arc::new(Beat::new(MAX_SLEEP * 3));
    let mut d = Daemon {
        config_path,
        env,
        clocks: HashMap::new(),
        running: HashMap::new(),
    };
    d.schedule_all(true);
    // Uploads a killed run left open are aborted beside the start (the bucket may be slow).
    let env = d.env.clone();
    tokio::spawn(async move { crate::snapshot::orphan_uploads::sweep_and_log(&env).await });
    // Health checks run beside the jobs; they follow the configuration across reloads.
    let health =
        crate::health::spawn_with(d.env.config.health.clone(), d.env.catalog.clone(), host);
    // Alerting turns check events and failed runs into mails through the durable outbox.
    let alerting = crate::alert::spawn(d.env.config.alert_setup(), d.env.catalog.clone());
    // The dead-man's switch: pings to an outside monitor while all is well.
    let heartbeat = crate::heartbeat::spawn(d.env.config.heartbeat.clone(), d.env.catalog.clone());
    let _watchdog = systemd::spawn_watchdog(vec![
        ("the scheduler", scheduler_beat.clone()),
        ("the health checks", health.beat()),
    ]);
    // The status page, when `[web] listen` asks for one (its address is not followed on
    // reload, what it shows is); it answers `/metrics` too when `[metrics] listen` is the same.
    let (web_config, web_rx) = tokio::sync::watch::channel(d.env.config.clone());
    let _web = serve_web(&d.env, web_rx).await;
    // The Prometheus endpoint, when `[metrics] listen` asks for one (not followed on reload).
    let _metrics = match shares_metrics(&d.env.config) {
        true => None,
        false => serve_metrics(&d.env).await,
    };
    // The heartbeat object peers read; restarted with the configuration.
    let mut presence = tokio::spawn(presence::run(d.env.clone()));
    // The binary log archives; restarted with the configuration.
    let mut archives = Archives(backup::binlog::spawn_all(&d.env));
    let mut watched = d.env.config.clone();
    let status = d.status_line();
    tracing::info!(jobs = d.clocks.len(), storage = %d.env.storage.describe(), "opsagent started");
    systemd::ready(&status);
    loop {
        scheduler_beat.touch();
        let sleep = d.sleep_duration();
        tokio::select! {
            c = control.recv() => match c {
                Some(Control::Reload(why)) => d.reload(why),
                Some(Control::Stop) | None => break,
            },
            Some(()) = reload_rx.recv() => d.reload("configuration file changed"),
            _ = tokio::time::sleep(sleep) => d.start_due_jobs(),
        }
        if !Arc::ptr_eq(&watched, &d.env.config) {
            watched = d.env.config.clone();
            health.reload(watched.health.clone());
            alerting.reload(watched.alert_setup());
            heartbeat.reload(watched.heartbeat.clone());
            web_config.send_replace(watched.clone());
            presence.abort();
            presence = tokio::spawn(presence::run(d.env.clone()));
            drop(std::mem::replace(&mut archives, Archives(Vec::new())));
            archives = Archives(backup::binlog::spawn_all(&d.env));
        }
    }
    drop(archives);
    d.shutdown().await;
    Ok(())
}

/// A watch on the configuration file that sends on `tx` when it changes; `None` (logged) when
/// the file cannot be watched, and SIGHUP is then the way to reload.
fn watch_config(path: &std::path::Path, tx: mpsc::Sender<()>) -> Option<watch::ConfigWatch> {
    match watch::watch(path, tx, Duration::from_millis(300)) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, file = %path.display(), "cannot watch the configuration file; reload with SIGHUP");
            None
        }
    }
}

/// The binary log archive tasks: aborted (their readers killed) when dropped.
struct Archives(Vec<JoinHandle<()>>);

impl Drop for Archives {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// The catalog (runs a previous process left marked `interrupted`) and the storage.
fn open_env(config: Config) -> Result<Env, DaemonError> {
    let catalog = Arc::new(Catalog::open(&config.catalog_path())?);
    let repaired = catalog.repair_interrupted(Utc::now())?;
    if repaired > 0 {
        tracing::warn!(
            runs = repaired,
            "runs interrupted by a previous stop were marked `interrupted`"
        );
    }
    let storage = config.open_storage(&config.storage, config.storage_limits)?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    Ok(Env {
        config: Arc::new(config),
        storage,
        catalog,
        progress: None,
        copy: None,
    })
}

/// Whether `[web]` and `[metrics]` listen on the same address (one server answers both).
fn shares_metrics(cfg: &Config) -> bool {
    matches!((&cfg.web, cfg.metrics_listen), (Some(w), Some(m)) if w.listen == m)
}

/// Serves the status page when `[web] listen` is set; a failure to bind is logged, not fatal.
async fn serve_web(
    env: &Env,
    config: tokio::sync::watch::Receiver<Arc<Config>>,
) -> Option<JoinHandle<()>> {
    let web = env.config.web.as_ref()?;
    let metrics = shares_metrics(&env.config);
    let pw = web.password.as_ref();
    match web::serve(web.listen, pw, config, env.catalog.clone(), metrics).await {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::error!(addr = %web.listen, error = %e, "cannot serve the status page; check [web] listen");
            None
        }
    }
}

/// Serves `/metrics` when `[metrics] listen` is set; a failure to bind is logged, not fatal.
async fn serve_metrics(env: &Env) -> Option<JoinHandle<()>> {
    let addr = env.config.metrics_listen?;
    let jobs = env
        .config
        .job_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    match crate::metrics::serve(addr, env.catalog.clone(), jobs).await {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::error!(%addr, error = %e, "cannot serve metrics; check [metrics] listen");
            None
        }
    }
}

impl Daemon {
    /// (Re)builds every job's clock from the catalog's last runs.
    fn schedule_all(&mut self, starting: bool) {
        let now = Utc::now();
        let zone = self.env.config.agent.zone;
        let mut clocks = HashMap::new();
        for (name, schedule) in backup::schedules(&self.env.config) {
            let clock = match self.clocks.remove(&name) {
                // A reload keeps what this daemon already knows if the schedule is unchanged.
                Some(c) if !starting && c.schedule == schedule => c,
                _ => {
                    let (job, kind) = match name.strip_prefix(backup::VERIFY_PREFIX) {
                        Some(job) => (job, "verify"),
                        None => (
                            name.as_str(),
                            self.env.config.job_kind(&name).unwrap_or("mysql"),
                        ),
                    };
                    let last = self
                        .env
                        .catalog
                        .last_run_of(job, kind)
                        .ok()
                        .flatten()
                        .map(|r| r.started_at);
                    let delay = chrono::Duration::from_std(CATCH_UP_DELAY).unwrap_or_default();
                    JobClock::new(schedule, zone, last, now, delay)
                }
            };
            if let Some(due) = clock.due {
                tracing::info!(job = %name, next = %zone.format(due, "%Y-%m-%d %H:%M %Z"), catch_up = clock.catch_up, "scheduled");
            }
            clocks.insert(name, clock);
        }
        self.clocks = clocks;
    }

    fn sleep_duration(&self) -> Duration {
        let now = Utc::now();
        self.clocks
            .values()
            .filter_map(|c| c.due)
            .map(|due| (due - now).to_std().unwrap_or(Duration::ZERO))
            .min()
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP)
    }

    fn start_due_jobs(&mut self) {
        let now = Utc::now();
        let zone = self.env.config.agent.zone;
        self.running.retain(|_, h| !h.is_finished());
        let due: Vec<String> = self
            .clocks
            .iter()
            .filter(|(_, c)| c.due.is_some_and(|d| d <= now))
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            let clock = self.clocks.get_mut(&name).expect("clock of a due job");
            let trigger = if clock.catch_up {
                Trigger::CatchUp
            } else {
                Trigger::Schedule
            };
            clock.advance(now, zone);
            if self.running.contains_key(&name) {
                tracing::warn!(job = %name, "previous run still in progress; skipping this slot");
                continue;
            }
            let env = self.env.clone();
            let job = name.clone();
            let handle = tokio::spawn(async move {
                // Outcomes are logged and recorded in the catalog by the callees.
                match job.strip_prefix(backup::VERIFY_PREFIX) {
                    Some(j) => drop(crate::restore::verify::run_drill(&env, j).await),
                    None => {
                        let result = backup::run_job(&env, &job, trigger).await;
                        // Failures of the work were logged and recorded; these were not.
                        if let Err(
                            e @ (backup::BackupError::Catalog(_) | backup::BackupError::Locked(_)),
                        ) = result
                        {
                            tracing::error!(job = %job, error = %e, "backup not started");
                        }
                    }
                }
            });
            self.running.insert(name, handle);
        }
        systemd::status(&self.status_line());
    }

    fn reload(&mut self, why: &str) {
        systemd::reloading();
        match config::load(&self.config_path) {
            Ok(new) => match new.open_storage(&new.storage, new.storage_limits) {
                Ok(storage) => {
                    for w in &new.warnings {
                        tracing::warn!("{w}");
                    }
                    self.env.config = Arc::new(new);
                    self.env.storage = storage;
                    self.schedule_all(false);
                    tracing::info!(reason = why, file = %self.config_path.display(), "configuration reloaded");
                }
                Err(e) => {
                    tracing::error!(reason = why, error = %e, "new configuration refused; keeping the previous one")
                }
            },
            Err(errors) => {
                tracing::error!(reason = why, file = %self.config_path.display(), "new configuration refused; keeping the previous one:\n{errors}");
            }
        }
        systemd::ready(&self.status_line());
    }

    fn status_line(&self) -> String {
        let next = self
            .clocks
            .iter()
            .filter_map(|(n, c)| c.due.map(|d| (d, n)))
            .min();
        let jobs = self
            .clocks
            .keys()
            .filter(|n| !n.starts_with(backup::VERIFY_PREFIX))
            .count();
        let running = self.running.values().filter(|h| !h.is_finished()).count();
        match next {
            Some((due, name)) => format!(
                "{jobs} jobs, {running} running; next: {name} at {}",
                self.env.config.agent.zone.format(due, "%Y-%m-%d %H:%M")
            ),
            None => format!("{jobs} jobs, {running} running"),
        }
    }

    async fn shutdown(mut self) {
        systemd::stopping();
        self.running.retain(|_, h| !h.is_finished());
        if self.running.is_empty() {
            tracing::info!("stopped");
            return;
        }
        let grace = self.env.config.agent.shutdown_grace;
        tracing::info!(
            jobs = self.running.len(),
            ?grace,
            "waiting for running jobs to finish"
        );
        let names: Vec<String> = self.running.keys().cloned().collect();
        let all = futures::future::join_all(self.running.drain().map(|(_, h)| h));
        tokio::pin!(all);
        if tokio::time::timeout(grace, &mut all).await.is_err() {
            tracing::error!(jobs = ?names, "jobs did not finish within the shutdown grace period; they are abandoned and will be marked interrupted");
        } else {
            tracing::info!("stopped");
        }
    }
}

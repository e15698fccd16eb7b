//! Backups: what a job does when it runs, the snapshot manifests that commit it, and retention.
//!
//! A run of a job: take the job's lock, record the run in the catalog, check the prefix claim,
//! abort the multipart uploads a dead run of the job left (`stale`), do the work (one
//! snapshot per database for MySQL jobs), commit each snapshot by writing its manifest last,
//! apply retention only if everything succeeded, record the outcome.

pub mod dump;
pub mod lock;
pub mod manifest;
pub mod media;
pub mod mysql;
pub mod mysql_cmd;
pub mod mysql_inspect;
pub mod owner;
pub mod prune;
pub mod refresh;
pub mod stale;

use crate::catalog::{Catalog, RunStatus};
use crate::config::{Config, Schedule};
use crate::storage::Storage;
use chrono::Utc;
use std::sync::Arc;

/// What every job run needs.
#[derive(Clone)]
pub struct Env {
    /// The configuration in force when the run started.
    pub config: Arc<Config>,
    /// Where snapshots go.
    pub storage: Storage,
    /// The catalog.
    pub catalog: Arc<Catalog>,
    /// Counts uncompressed bytes read from dump tools, for a progress display.
    pub progress: Option<Arc<std::sync::atomic::AtomicU64>>,
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Its schedule.
    Schedule,
    /// A slot missed while the daemon was down.
    CatchUp,
    /// `opsagent backup`.
    Cli,
}

impl Trigger {
    /// The word stored in the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::CatchUp => "catch-up",
            Trigger::Cli => "cli",
        }
    }
}

/// Why a run failed. Each names the job and what an operator should look at.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// No such job in the configuration.
    #[error(
        "no job named `{0}` in the configuration (hint: `opsagent check-config` lists the jobs)"
    )]
    UnknownJob(String),
    /// Another run of the job holds its lock.
    #[error(transparent)]
    Locked(#[from] lock::LockError),
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    /// The MySQL part of a run failed (its error is shown, not a `source()`).
    #[error("job `{job}`: {error}")]
    Mysql {
        /// The job.
        job: String,
        /// Every database's failure.
        error: mysql::RunError,
    },
    /// The media part failed.
    #[error("job `{job}`: {message}")]
    Failed {
        /// The job.
        job: String,
        /// Every database's failure, one per line.
        message: String,
    },
}

/// What a finished run produced.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// Snapshots committed.
    pub snapshots: Vec<manifest::Manifest>,
    /// Bytes stored.
    pub bytes: u64,
    /// Snapshots removed by retention.
    pub pruned: usize,
    /// Files a media snapshot skipped or may hold inconsistently (the snapshot is `partial`).
    pub warnings: Vec<String>,
}

/// Prefix of the scheduler's key for a job's restore drill.
pub const VERIFY_PREFIX: &str = "verify:";

/// Every scheduled task: each job's backups under its name, its drills under `verify:<name>`.
pub fn schedules(config: &Config) -> Vec<(String, Schedule)> {
    let mut v: Vec<(String, Schedule)> = config
        .mysql
        .iter()
        .map(|j| (j.name.clone(), j.schedule.clone()))
        .collect();
    v.extend(
        config
            .media
            .iter()
            .map(|j| (j.name.clone(), j.schedule.clone())),
    );
    v.extend(config.mysql.iter().filter_map(|j| {
        j.verify_schedule
            .clone()
            .map(|s| (format!("{VERIFY_PREFIX}{}", j.name), s))
    }));
    v.extend(config.media.iter().filter_map(|j| {
        j.verify_schedule
            .clone()
            .map(|s| (format!("{VERIFY_PREFIX}{}", j.name), s))
    }));
    v
}

/// Runs job `name` once, recording it in the catalog. Logs the outcome.
pub async fn run_job(env: &Env, name: &str, trigger: Trigger) -> Result<RunReport, BackupError> {
    if let Some(job) = env.config.media.iter().find(|j| j.name == name).cloned() {
        return run_media_job(env, &job, trigger).await;
    }
    let job = env
        .config
        .mysql
        .iter()
        .find(|j| j.name == name)
        .ok_or_else(|| BackupError::UnknownJob(name.to_string()))?
        .clone();
    let _lock = lock::JobLock::acquire(&env.config.agent.state_dir, name)?;
    let run_id = env
        .catalog
        .start_run(name, "mysql", trigger.as_str(), Utc::now())?;
    tracing::info!(job = name, trigger = trigger.as_str(), "backup started");
    let started = std::time::Instant::now();
    // Only the agent that owns the storage prefix writes to it (see `owner`).
    let result = match owner::guard(env).await {
        Ok(()) => {
            stale::abort_orphans_of(env, name).await;
            mysql::run(env, &job, run_id).await
        }
        Err(e) => Err(mysql::RunError::whole(mysql::Failure::Other(e.to_string()))),
    };
    let (status, bytes, error) = match &result {
        Ok(r) => (RunStatus::Success, r.bytes, None),
        Err(e) => (RunStatus::Failed, e.bytes, Some(e.to_string())),
    };
    env.catalog
        .finish_run(run_id, status, bytes, error.as_deref(), Utc::now())?;
    match result {
        Ok(mut report) => {
            report.pruned = retention(env, name, &job.keep).await;
            finished(name, &report, started);
            Ok(report)
        }
        Err(e) => {
            tracing::error!(job = name, error = %e, "backup failed");
            Err(BackupError::Mysql {
                job: name.to_string(),
                error: e,
            })
        }
    }
}

/// A `[[media]]` job's run: one snapshot of all its paths; `partial` when files were skipped.
async fn run_media_job(
    env: &Env,
    job: &crate::config::MediaJob,
    trigger: Trigger,
) -> Result<RunReport, BackupError> {
    let name = job.name.as_str();
    let _lock = lock::JobLock::acquire(&env.config.agent.state_dir, name)?;
    let run_id = env
        .catalog
        .start_run(name, "media", trigger.as_str(), Utc::now())?;
    tracing::info!(
        job = name,
        trigger = trigger.as_str(),
        "media backup started"
    );
    let started = std::time::Instant::now();
    // Only the agent that owns the storage prefix writes to it (see `owner`).
    let result = match owner::guard(env).await {
        Ok(()) => {
            stale::abort_orphans_of(env, name).await;
            media::run(env, job, run_id).await
        }
        Err(e) => Err(e.to_string()),
    };
    let uploaded =
        |m: &manifest::Manifest| m.stored_size() + m.media.as_ref().map_or(0, |s| s.new_stored);
    let (status, bytes, error) = match &result {
        Ok(r) if r.partial => (
            RunStatus::Partial,
            uploaded(&r.manifest),
            r.manifest
                .media
                .as_ref()
                .map(|m| format!("{} warning(s); first: {}", m.warnings.len(), m.warnings[0])),
        ),
        Ok(r) => (RunStatus::Success, uploaded(&r.manifest), None),
        Err(e) => (RunStatus::Failed, 0, Some(e.clone())),
    };
    env.catalog
        .finish_run(run_id, status, bytes, error.as_deref(), Utc::now())?;
    match result {
        Ok(r) => {
            let mut report = RunReport {
                bytes,
                warnings: r
                    .manifest
                    .media
                    .as_ref()
                    .map(|m| m.warnings.clone())
                    .unwrap_or_default(),
                ..RunReport::default()
            };
            report.snapshots.push(r.manifest);
            report.pruned = retention(env, name, &job.keep).await;
            finished(name, &report, started);
            Ok(report)
        }
        Err(e) => {
            tracing::error!(job = name, error = %e, "media backup failed");
            Err(BackupError::Failed {
                job: name.to_string(),
                message: e,
            })
        }
    }
}

/// Applies retention after a good run; a failure is logged and retried after the next run.
async fn retention(env: &Env, name: &str, keep: &crate::retention::KeepPolicy) -> usize {
    match prune::apply(env, name, keep, false).await {
        Ok(plan) => plan.iter().filter(|p| !p.keep).count(),
        Err(e) => {
            tracing::warn!(job = name, error = %e, "retention failed; it will be retried after the next run");
            0
        }
    }
}

fn finished(name: &str, report: &RunReport, started: std::time::Instant) {
    tracing::info!(
        job = name,
        snapshots = report.snapshots.len(),
        bytes = report.bytes,
        pruned = report.pruned,
        secs = started.elapsed().as_secs_f64(),
        "backup finished"
    );
}

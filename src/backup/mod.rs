//! Backups: what a job does when it runs, and retention.
//!
//! Every kind of job runs through one [`lifecycle`]: take the job's lock, record the run in the
//! catalog, check the prefix claim, abort the multipart uploads a dead run of the job left
//! (`snapshot::orphan_uploads`), do the kind's work (one snapshot per database for MySQL jobs,
//! one of all paths for media jobs), each snapshot committed by writing its manifest last
//! (`snapshot::commit`), record the outcome, apply retention only if everything succeeded.

pub mod anomaly;
pub mod binlog;
pub mod copy;
pub mod dump;
pub mod dump_rows;
pub mod media;
pub mod mysql;
pub mod mysql_cmd;
pub mod mysql_inspect;
pub mod object_lock;
pub mod pause;
pub mod prune;

use crate::snapshot::Env;
use crate::snapshot::{claim, lock, manifest, orphan_uploads};

use crate::catalog::RunStatus;
use crate::config::{Config, Schedule};
use crate::heartbeat::{self, PingUrl, Signal};
use chrono::Utc;

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
    /// The job's work failed (its error is shown, not a `source()`).
    #[error("job `{job}`: {error}")]
    Failed {
        /// The job.
        job: String,
        /// What failed.
        error: Box<WorkError>,
    },
}

/// Why a job's work failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    /// This agent may not write the storage prefix.
    #[error(transparent)]
    Claim(claim::OwnerError),
    /// A MySQL job: every database's failure, one per line.
    #[error(transparent)]
    Mysql(mysql::RunError),
    /// A media job.
    #[error(transparent)]
    Media(media::MediaRunError),
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
/// The job runs on threads at the agent's CPU priority (`[agent] nice`; the idle policy by
/// default, `priority::Priority::run_gently`), so none of its work, its storage writes and the
/// sends of its uploads included, takes the CPU from the applications or the daemon's checks.
pub async fn run_job(env: &Env, name: &str, trigger: Trigger) -> Result<RunReport, BackupError> {
    let (job_env, job) = (env.clone(), name.to_string());
    let priority = env.config.agent.priority;
    priority
        .run_gently(async move { run_job_here(&job_env, &job, trigger).await })
        .await
}

/// [`run_job`] on the caller's threads.
async fn run_job_here(env: &Env, name: &str, trigger: Trigger) -> Result<RunReport, BackupError> {
    if let Some(job) = env.config.media.iter().find(|j| j.name == name) {
        let opts = (&job.keep, job.ping_url.as_ref(), &job.copy_to[..]);
        return lifecycle(env, name, "media", trigger, opts, |run_id| {
            media_work(env, job, run_id)
        })
        .await;
    }
    let job = env
        .config
        .mysql
        .iter()
        .find(|j| j.name == name)
        .ok_or_else(|| BackupError::UnknownJob(name.to_string()))?;
    let opts = (&job.keep, job.ping_url.as_ref(), &job.copy_to[..]);
    lifecycle(env, name, "mysql", trigger, opts, |run_id| async move {
        match mysql::run(env, job, run_id).await {
            Ok(report) => Ok(Done {
                status: RunStatus::Success,
                note: None,
                report,
            }),
            Err(e) => Err(Failure {
                bytes: e.bytes,
                error: WorkError::Mysql(e),
            }),
        }
    })
    .await
}

/// What a job's work hands back to [`lifecycle`] when it committed its snapshots.
struct Done {
    report: RunReport,
    /// `Success`, or `Partial` when a media snapshot skipped files.
    status: RunStatus,
    /// Recorded with the run (a partial snapshot's first warning).
    note: Option<String>,
}

/// A job's work that failed: what it stored before failing, and why.
struct Failure {
    bytes: u64,
    error: WorkError,
}

/// One run of any kind of job: wait for a cooler CPU (`pause_when`), take the job's lock, record the run, ping the job's `ping_url`
/// (`/start`), check the prefix claim and abort the uploads a dead run of the job left, do
/// `work`, record the outcome, ping success or `/fail`, and apply retention and copy to the
/// job's copy storages only after a good run.
async fn lifecycle<'a, F, Fut>(
    env: &'a Env,
    name: &'a str,
    kind: &'static str,
    trigger: Trigger,
    (keep, ping, copy_to): (&crate::retention::KeepPolicy, Option<&PingUrl>, &[String]),
    work: F,
) -> Result<RunReport, BackupError>
where
    F: FnOnce(i64) -> Fut,
    Fut: std::future::Future<Output = Result<Done, Failure>> + 'a,
{
    if let Some(p) = &env.config.agent.pause_when {
        pause::until_cool(name, p).await;
    }
    let _lock = lock::JobLock::acquire(&env.config.agent.state_dir, name)?;
    let run_id = env
        .catalog
        .start_run(name, kind, trigger.as_str(), Utc::now())?;
    tracing::info!(
        job = name,
        kind,
        trigger = trigger.as_str(),
        "backup started"
    );
    if let Some(url) = ping {
        heartbeat::ping_job(url, name, &Signal::Start, &env.catalog).await;
    }
    let started = std::time::Instant::now();
    // Only the agent that owns the storage prefix writes to it (see `snapshot::claim`).
    let result = match claim::guard(env).await {
        Ok(()) => {
            orphan_uploads::abort_orphans_of(env, name).await;
            work(run_id).await
        }
        Err(e) => Err(Failure {
            bytes: 0,
            error: WorkError::Claim(e),
        }),
    };
    let (status, bytes, error) = match &result {
        Ok(d) => (d.status, d.report.bytes, d.note.clone()),
        Err(f) => (RunStatus::Failed, f.bytes, Some(f.error.to_string())),
    };
    env.catalog
        .finish_run(run_id, status, bytes, error.as_deref(), Utc::now())?;
    if let Some(url) = ping {
        let signal = match &error {
            Some(e) if status == RunStatus::Failed => Signal::Fail(format!("job {name}: {e}")),
            _ => Signal::Ok,
        };
        heartbeat::ping_job(url, name, &signal, &env.catalog).await;
    }
    match result {
        Ok(Done { mut report, .. }) => {
            report.pruned = retention(env, name, keep).await;
            copy::copy_after_run(env, name, copy_to, keep).await;
            finished(name, &report, started);
            Ok(report)
        }
        Err(f) => {
            tracing::error!(job = name, kind, error = %f.error, "backup failed");
            Err(BackupError::Failed {
                job: name.to_string(),
                error: Box::new(f.error),
            })
        }
    }
}

/// A `[[media]]` job's work: one snapshot of all its paths; `partial` when files were skipped.
async fn media_work(
    env: &Env,
    job: &crate::config::MediaJob,
    run_id: i64,
) -> Result<Done, Failure> {
    let r = media::run(env, job, run_id).await.map_err(|e| Failure {
        bytes: 0,
        error: WorkError::Media(e),
    })?;
    let summary = r.manifest.media.as_ref();
    let warnings = summary.map(|m| m.warnings.clone()).unwrap_or_default();
    let note = (r.partial && !warnings.is_empty())
        .then(|| format!("{} warning(s); first: {}", warnings.len(), warnings[0]));
    let mut report = RunReport {
        bytes: r.manifest.stored_size() + summary.map_or(0, |s| s.new_stored),
        warnings,
        ..RunReport::default()
    };
    report.snapshots.push(r.manifest);
    Ok(Done {
        status: if r.partial {
            RunStatus::Partial
        } else {
            RunStatus::Success
        },
        note,
        report,
    })
}

/// Applies retention after a good run; a failure is logged and retried after the next run.
/// A failure is recorded as a failed `prune` run (a WARN alert `retention:JOB` naming the
/// fix, e.g. an append-only key); the next success after one is recorded too, resolving it.
async fn retention(env: &Env, name: &str, keep: &crate::retention::KeepPolicy) -> usize {
    let started = Utc::now();
    let result = prune::apply(env, name, keep, false).await;
    let failed_before = env
        .catalog
        .last_run_of(name, PRUNE_KIND)
        .ok()
        .flatten()
        .is_some_and(|r| r.status == RunStatus::Failed);
    let (count, error) = match &result {
        Ok(plan) => (plan.iter().filter(|p| !p.keep).count(), None),
        Err(e) => {
            tracing::warn!(job = name, error = %e, "retention failed; it will be retried after the next run");
            (0, Some(e.to_string()))
        }
    };
    if error.is_some() || failed_before {
        let status = match error {
            Some(_) => RunStatus::Failed,
            None => RunStatus::Success,
        };
        let recorded = env
            .catalog
            .start_run(name, PRUNE_KIND, "after-backup", started)
            .and_then(|id| {
                env.catalog
                    .finish_run(id, status, 0, error.as_deref(), Utc::now())
            });
        if let Err(e) = recorded {
            tracing::warn!(job = name, error = %e, "retention outcome not recorded in the catalog");
        }
    }
    count
}

/// The catalog's run kind of retention that failed (and of the success after a failure).
pub const PRUNE_KIND: &str = "prune";

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

//! Aborting multipart uploads that no running opsagent will finish (left by a SIGKILL or a
//! power cut): at daemon start and on `opsagent prune`.
//!
//! An upload is stale when it is older than [`STALE_AFTER`] *and* nobody runs its job: uploads
//! of `<kind>/<job>/…` are only made while the job's lock is held, so if that lock is free now,
//! the upload (listed before the lock was tried) belongs to a dead process. A long dump still
//! uploading holds its lock and is left alone however old it is. The age guards against clock
//! trouble and against writers this host's locks do not see.
//!
//! A run of a job also aborts, before it uploads anything, every open upload under that job's
//! keys, whatever its age ([`abort_orphans_of`]): it holds the job's lock and has passed the
//! prefix claim (`owner::guard`), so no one else writes under those keys and each such upload
//! was left by a dead run of the job. The sweep above stays for the other jobs' leftovers.

use super::lock::{JobLock, LockError};
use super::Env;
use crate::storage::multipart::{Upload, Uploads};
use crate::storage::StorageError;
use chrono::{DateTime, Utc};

/// Uploads younger than this are never touched.
pub const STALE_AFTER: chrono::Duration = chrono::Duration::hours(1);

/// What a sweep found.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Aborted (or, on a dry run, to be aborted).
    pub aborted: Vec<Upload>,
    /// Stale by age, but their job is running.
    pub busy: Vec<Upload>,
    /// Too young to judge.
    pub young: usize,
}

/// The job an upload key belongs to: `mysql/<job>/…` → `<job>`.
pub fn job_of(key: &str) -> Option<&str> {
    let mut parts = key.split('/');
    let (_kind, job) = (parts.next()?, parts.next()?);
    parts.next()?;
    let name_like = job
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (!job.is_empty() && name_like).then_some(job)
}

/// Whether `u` is old enough to be judged at `now` (S3's clock against ours).
pub fn old_enough(u: &Upload, now: DateTime<Utc>) -> bool {
    now - u.initiated >= STALE_AFTER
}

/// Lists our prefix's open uploads and aborts the stale ones (only reports them when
/// `dry_run`). Nothing to do for a local directory.
pub async fn sweep(env: &Env, now: DateTime<Utc>, dry_run: bool) -> Result<Sweep, StorageError> {
    let Some(uploads) = Uploads::open(&env.config.storage)? else {
        return Ok(Sweep::default());
    };
    let mut sweep = Sweep::default();
    for u in uploads.list().await? {
        if !old_enough(&u, now) {
            sweep.young += 1;
            continue;
        }
        let free = match job_of(&u.key) {
            // Taken and released at once: free means no run of the job is alive.
            Some(job) => match JobLock::acquire(&env.config.agent.state_dir, job) {
                Ok(_lock) => true,
                Err(LockError::Busy { .. }) => false,
                Err(e) => {
                    tracing::warn!(key = %u.key, error = %e, "cannot tell whether this upload's job runs; leaving it");
                    false
                }
            },
            None => true,
        };
        if !free {
            tracing::info!(key = %u.key, initiated = %u.initiated, "open upload of a running job left alone");
            sweep.busy.push(u);
            continue;
        }
        if !dry_run {
            uploads.abort(&u).await?;
            tracing::warn!(key = %u.key, initiated = %u.initiated, "aborted a stale multipart upload (left by an interrupted run)");
        }
        sweep.aborted.push(u);
    }
    Ok(sweep)
}

/// Aborts the open uploads under `job`'s keys (see the module doc: only called by a run of
/// `job` that holds its lock and passed the prefix claim). Returns how many; a failure is
/// logged and never fails the run (the sweep retries).
pub async fn abort_orphans_of(env: &Env, job: &str) -> usize {
    let uploads = match Uploads::open(&env.config.storage) {
        Ok(Some(u)) => u,
        Ok(None) => return 0,
        Err(e) => {
            tracing::warn!(job, error = %e, "cannot check for uploads left by an interrupted run");
            return 0;
        }
    };
    let listed = match uploads.list().await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(job, error = %e, "cannot list uploads left by an interrupted run; `opsagent prune` retries");
            return 0;
        }
    };
    let mut aborted = 0;
    for u in listed.iter().filter(|u| job_of(&u.key) == Some(job)) {
        match uploads.abort(u).await {
            Ok(()) => {
                aborted += 1;
                tracing::warn!(job, key = %u.key, initiated = %u.initiated, "aborted a multipart upload left by an interrupted run of this job");
            }
            Err(e) => {
                tracing::warn!(job, key = %u.key, error = %e, "cannot abort an upload left by an interrupted run")
            }
        }
    }
    aborted
}

/// [`sweep`] for the daemon's start: logs instead of failing, and leaves a prefix another
/// agent owns alone.
pub async fn sweep_and_log(env: &Env) {
    if let Err(e) = super::claim::check_only(env).await {
        tracing::error!(error = %e, "backups to this storage will fail");
        return;
    }
    match sweep(env, Utc::now(), false).await {
        Ok(s) => tracing::info!(
            aborted = s.aborted.len(),
            running = s.busy.len(),
            younger = s.young,
            "stale multipart uploads checked"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "cannot check for stale multipart uploads; `opsagent prune` retries")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_uploads_older_than_an_hour_are_judged() {
        let now = DateTime::parse_from_rfc3339("2026-11-20T12:00:00Z")
            .unwrap()
            .to_utc();
        let at = |minutes: i64| Upload {
            key: "mysql/j/db/x.sql.zst".into(),
            upload_id: "id".into(),
            initiated: now - chrono::Duration::minutes(minutes),
        };
        assert!(!old_enough(&at(0), now));
        assert!(!old_enough(&at(59), now));
        assert!(old_enough(&at(60), now));
        assert!(old_enough(&at(60 * 24 * 365), now));
        // An upload "from the future" (S3's clock ahead of ours) is young.
        assert!(!old_enough(&at(-120), now));
    }

    #[test]
    fn jobs_of_keys() {
        assert_eq!(job_of("mysql/main/shop/1.sql.zst"), Some("main"));
        assert_eq!(job_of("media/photos/packs/ab"), Some("photos"));
        assert_eq!(job_of("mysql/main"), None);
        assert_eq!(job_of("opsagent-owner.json"), None);
        assert_eq!(job_of("x//y"), None);
        assert_eq!(job_of("x/../y"), None);
    }
}

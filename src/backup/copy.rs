//! Copies of committed snapshots to the copy storages a job names (`copy_to`, `[storage.NAME]`).
//!
//! After a good run, every snapshot of the job that the default storage holds and a copy
//! storage lacks (and whose retention there keeps it) is copied, oldest first, by the commit
//! rule of a backup: the data objects first (streamed as stored, so an encrypted object stays
//! encrypted; a dump's SHA-256 checked against its manifest; a media pack or index the copy
//! already has is not copied again), the manifest last. A copy that fails leaves at most data
//! without a manifest (no snapshot), is recorded as a failed `copy` run and is retried after
//! the next run; the freshness check `backup:JOB@STORAGE` alerts once the copy is older than
//! the job's period plus grace (the default storage holds the data meanwhile). Then retention
//! runs on the copy storage with its own `keep` (or the job's); it never touches the catalog,
//! which mirrors the default storage.

use super::prune::{self, PruneError};
use crate::catalog::RunStatus;
use crate::config::CopyStorage;
use crate::media::keys as media_keys;
use crate::media::limits::MAX_MANIFEST;
use crate::retention::plan;
use crate::retention::KeepPolicy;
use crate::snapshot::keys::{manifests_prefix, parse_manifest_key};
use crate::snapshot::manifest::{Manifest, ManifestError};
use crate::snapshot::Env;
use crate::storage::{Storage, StorageError};
use chrono::Utc;
use std::collections::{BTreeMap, BTreeSet};

/// The catalog's run kind of a copy; its job is `<job>@<storage>`.
pub const COPY_KIND: &str = "copy";

/// A copy failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The copy storage's settings cannot work.
    #[error("copy storage `{storage}`: {source}")]
    Open {
        /// The copy storage.
        storage: String,
        /// The cause.
        source: Box<StorageError>,
    },
    /// Reading from the default storage or writing to the copy failed.
    #[error("copying job `{job}` to `{storage}`: {source}")]
    Storage {
        /// The job.
        job: String,
        /// The copy storage.
        storage: String,
        /// The cause.
        source: Box<StorageError>,
    },
    /// A manifest in the default storage does not pass its checks: it is not copied.
    #[error("copying job `{job}` to `{storage}`: {source}")]
    Manifest {
        /// The job.
        job: String,
        /// The copy storage.
        storage: String,
        /// What is wrong.
        source: Box<ManifestError>,
    },
    /// What arrived is not what the manifest says was stored.
    #[error("copying `{key}` to `{storage}`: its SHA-256 is {got}, the manifest says {want} (hint: the object in the default storage is damaged; `opsagent verify` tells which snapshots are affected)")]
    Hash {
        /// The object.
        key: String,
        /// The copy storage.
        storage: String,
        /// What the manifest says.
        want: String,
        /// What was copied.
        got: String,
    },
    /// Retention on the copy storage failed (the copies themselves are done).
    #[error("retention on copy storage `{storage}`: {source}")]
    Prune {
        /// The copy storage.
        storage: String,
        /// The cause.
        source: Box<PruneError>,
    },
}

/// What copying one job to one storage did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Snapshots copied now.
    pub snapshots: usize,
    /// Bytes copied now.
    pub bytes: u64,
    /// Objects the copy already held (media packs shared with earlier snapshots).
    pub skipped: usize,
    /// Snapshots retention removed from the copy.
    pub pruned: usize,
}

/// The catalog's job name of copies of `job` to `storage`.
pub fn copy_job_name(job: &str, storage: &str) -> String {
    format!("{job}@{storage}")
}

/// Copies `job` to every storage it names, each recorded as a `copy` run; failures are logged
/// and recorded, never returned (the backup itself succeeded).
pub async fn copy_after_run(env: &Env, job: &str, copy_to: &[String], keep: &KeepPolicy) {
    for name in copy_to {
        let Some(target) = env.config.copies.iter().find(|c| &c.name == name) else {
            continue;
        };
        let run_name = copy_job_name(job, name);
        let run_id = match env
            .catalog
            .start_run(&run_name, COPY_KIND, "after-backup", Utc::now())
        {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::warn!(job, storage = %name, error = %e, "copy not recorded in the catalog");
                None
            }
        };
        let result = copy_job(env, job, target, keep).await;
        let (status, bytes, error) = match &result {
            Ok(c) => (RunStatus::Success, c.bytes, None),
            Err(e) => (RunStatus::Failed, 0, Some(e.to_string())),
        };
        match &result {
            Ok(c) => {
                tracing::info!(job, storage = %name, copied = c.snapshots, bytes = c.bytes, already_there = c.skipped, pruned = c.pruned, "copy done")
            }
            Err(e) => {
                tracing::warn!(job, storage = %name, error = %e, "copy failed; it is retried after the next run")
            }
        }
        if let Some(id) = run_id {
            let finished = env
                .catalog
                .finish_run(id, status, bytes, error.as_deref(), Utc::now());
            if let Err(e) = finished {
                tracing::warn!(job, storage = %name, error = %e, "copy not recorded in the catalog");
            }
        }
    }
}

/// Copies every snapshot of `job` that the default storage holds and `target` lacks, then
/// applies retention there (`target.keep`, else `keep`).
pub async fn copy_job(
    env: &Env,
    job: &str,
    target: &CopyStorage,
    keep: &KeepPolicy,
) -> Result<Copied, CopyError> {
    let to = open(env, target)?;
    let storage_err = |source| CopyError::Storage {
        job: job.to_string(),
        storage: target.name.clone(),
        source: Box::new(source),
    };
    let prefix = manifests_prefix(Some(job));
    let mut have: BTreeMap<String, u64> = to
        .list(&format!("{}/", job_root(env, job)))
        .await
        .map_err(storage_err)?
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    let keep = target.keep.as_ref().unwrap_or(keep);
    let there: BTreeSet<String> = manifest_keys(&to, &prefix).await.map_err(storage_err)?;
    let here = manifest_keys(&env.storage, &prefix)
        .await
        .map_err(storage_err)?;
    let missing = to_copy(&here, &there, keep, env.config.agent.zone);
    // A media job's index maps blobs to packs: every index object not yet there goes along
    // with the first snapshot copied (listed once, not per snapshot).
    let index: Vec<String> = match env.config.job_kind(job) {
        Some("media") if !missing.is_empty() => env
            .storage
            .list(&media_keys::index_prefix(job))
            .await
            .map_err(storage_err)?
            .into_iter()
            .map(|o| o.key)
            .collect(),
        _ => Vec::new(),
    };
    let mut done = Copied::default();
    for key in missing {
        let to_name = &target.name;
        copy_snapshot(env, &to, to_name, &key, &index, &mut have, &mut done).await?;
    }
    let copy_env = Env {
        storage: to,
        copy: Some(target.name.clone()),
        ..env.clone()
    };
    let pruned = prune::apply(&copy_env, job, keep, false)
        .await
        .map_err(|source| CopyError::Prune {
            storage: target.name.clone(),
            source: Box::new(source),
        })?;
    done.pruned = pruned.iter().filter(|d| !d.keep).count();
    Ok(done)
}

/// The manifest keys under `prefix`.
async fn manifest_keys(storage: &Storage, prefix: &str) -> Result<BTreeSet<String>, StorageError> {
    let listed = storage.list(prefix).await?;
    Ok(listed
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.ends_with(".json"))
        .collect())
}

/// The manifests of `here` (the default storage) that `there` (the copy) lacks and that the
/// copy's retention would keep among all snapshots of both, oldest first: a snapshot the copy
/// keeps fewer of is not copied only to be pruned again.
fn to_copy(
    here: &BTreeSet<String>,
    there: &BTreeSet<String>,
    keep: &KeepPolicy,
    zone: crate::schedule::Zone,
) -> Vec<String> {
    let mut series: BTreeMap<String, Vec<(chrono::DateTime<Utc>, String)>> = BTreeMap::new();
    for key in here.union(there) {
        if let Some((t, k)) = parse_manifest_key(key) {
            series.entry(k.item).or_default().push((t, key.clone()));
        }
    }
    let mut out: Vec<(chrono::DateTime<Utc>, String)> = series
        .values()
        .flat_map(|snaps| plan(snaps, keep, zone))
        .filter(|d| d.keep && !there.contains(&d.item))
        .map(|d| (d.time, d.item))
        .collect();
    out.sort();
    out.into_iter().map(|(_, k)| k).collect()
}

/// The copy storage, with the default storage's encryption settings (only used to read the
/// copy back: copying moves stored bytes).
fn open(env: &Env, target: &CopyStorage) -> Result<Storage, CopyError> {
    (env.config)
        .open_storage(&target.spec, target.limits)
        .map_err(|source| CopyError::Open {
            storage: target.name.clone(),
            source: Box::new(source),
        })
}

/// Where a job's data objects are: `mysql/<job>` or `media/<job>`.
fn job_root(env: &Env, job: &str) -> String {
    match env.config.job_kind(job) {
        Some("media") => media_keys::job_prefix(job)
            .trim_end_matches('/')
            .to_string(),
        _ => format!("mysql/{job}"),
    }
}

/// The packs among `objects` that the copy already holds (`have`).
fn packs_there(
    job: &str,
    objects: &[(String, Option<String>)],
    have: &BTreeMap<String, u64>,
) -> Vec<crate::media::Id> {
    let prefix = media_keys::packs_prefix(job);
    (objects.iter())
        .filter(|(o, _)| have.contains_key(o) && o.starts_with(&prefix))
        .filter_map(|(o, _)| media_keys::pack_id_of(o))
        .collect()
}

/// Copies one snapshot to `to` (the copy storage `storage`): its data objects and, for media,
/// the `index` objects (those `have` lacks), then its manifest.
async fn copy_snapshot(
    env: &Env,
    to: &Storage,
    storage: &str,
    key: &str,
    index: &[String],
    have: &mut BTreeMap<String, u64>,
    done: &mut Copied,
) -> Result<(), CopyError> {
    let job = key.split('/').nth(1).unwrap_or_default();
    let storage_err = |source| CopyError::Storage {
        job: job.to_string(),
        storage: storage.to_string(),
        source: Box::new(source),
    };
    let bytes = env
        .storage
        .get_bytes_max(key, MAX_MANIFEST)
        .await
        .map_err(storage_err)?;
    let m = Manifest::parse(key, &bytes).map_err(|source| CopyError::Manifest {
        job: job.to_string(),
        storage: storage.to_string(),
        source: Box::new(source),
    })?;
    // (key, the SHA-256 the manifest promises, when it does)
    let mut objects: Vec<(String, Option<String>)> = m
        .objects
        .iter()
        .map(|o| (o.key.clone(), Some(o.sha256.clone())))
        .collect();
    if let Some(media) = &m.media {
        objects.extend(
            media
                .packs
                .iter()
                .map(|p| (media_keys::pack_key(&m.job, p), None)),
        );
        objects.extend(index.iter().map(|k| (k.clone(), None)));
    }
    // Packs already there belong to earlier snapshots: under object lock, theirs is extended.
    let reused = packs_there(&m.job, &objects, have);
    for (object, sha) in objects {
        if have.contains_key(&object) {
            done.skipped += 1;
            continue;
        }
        let put = env
            .storage
            .copy_to(&object, to)
            .await
            .map_err(storage_err)?;
        if let Some(want) = sha.filter(|w| *w != put.sha256) {
            let _ = to.delete(&object).await;
            return Err(CopyError::Hash {
                key: object,
                storage: storage.to_string(),
                want,
                got: put.sha256,
            });
        }
        done.bytes += put.size;
        have.insert(object, put.size);
    }
    if let Some(spec) = (env.config.copies.iter())
        .find(|c| c.name == storage)
        .map(|c| &c.spec)
    {
        crate::backup::object_lock::extend_packs(spec, &m.job, &reused)
            .await
            .map_err(storage_err)?;
    }
    // The manifest last: the snapshot exists in the copy once every byte is there.
    let put = env.storage.copy_to(key, to).await.map_err(storage_err)?;
    done.bytes += put.size;
    done.snapshots += 1;
    Ok(())
}

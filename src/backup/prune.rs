//! Applying retention to the bucket: plan per database from the manifest keys (the truth), then
//! delete forgotten snapshots — manifest first (the snapshot stops existing), data after. For
//! media jobs, the packs no remaining snapshot uses are then collected (src/media/prune.rs).

use crate::media::limits::MAX_MANIFEST;
use crate::media::prune as media_prune;
use crate::retention::{plan, Decision, KeepPolicy};
use crate::snapshot::keys::{dump_id, manifests_prefix, parse_manifest_key, SnapshotKey};
use crate::snapshot::manifest::{Manifest, ManifestError};
use crate::snapshot::Env;
use crate::storage::{ObjectLock, StorageError};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// Retention failed.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The storage refused to delete: its key may write but not delete (append-only).
    #[error("job `{job}`: retention cannot delete: {source}; the key may write but not delete (append-only credentials?), so nothing was removed and nothing is lost (hint: run `opsagent prune --credentials FILE` with a key that may delete, from a trusted machine, or allow s3:DeleteObject for this key)")]
    AppendOnly {
        /// The job.
        job: String,
        /// The refused delete.
        source: StorageError,
    },
    /// Collecting a media job's packs failed (the snapshots were forgotten already).
    #[error("job `{job}`: collecting unused packs: {source}")]
    Media {
        /// The job.
        job: String,
        /// The cause.
        source: media_prune::PackPruneError,
    },
    /// Reading whether the job's retention is frozen failed (nothing was pruned).
    #[error("job `{job}`: cannot tell whether retention is frozen: {source} (hint: nothing was pruned; fix the catalog, then prune again)")]
    Catalog {
        /// The job.
        job: String,
        /// The cause.
        source: crate::catalog::CatalogError,
    },
    /// A remaining manifest cannot be read, so which packs are in use is unknown.
    #[error("job `{job}`: {source} (hint: no pack was deleted; fix or remove the manifest, then prune again)")]
    Manifest {
        /// The job.
        job: String,
        /// What is wrong.
        source: ManifestError,
    },
}

/// What retention did to one job.
#[derive(Debug, Default)]
pub struct Pruned {
    /// Every snapshot, kept or forgotten, with the reasons.
    pub decisions: Vec<Decision<SnapshotKey>>,
    /// For media jobs: what collecting unused packs did.
    pub packs: Option<media_prune::Report>,
    /// The open anomalies that froze the job's retention: then every snapshot was kept (those
    /// the policy would forget with the reason `frozen`) and no pack was collected.
    pub frozen: Vec<crate::catalog::AnomalyRow>,
}

/// The reason of a snapshot kept only because the job's retention is frozen.
pub const FROZEN: &str = "frozen";

/// Plans (and unless `dry_run`, applies) retention for every database of `job`; for a media
/// job, then collects the packs no remaining snapshot uses.
pub async fn apply(
    env: &Env,
    job: &str,
    keep: &KeepPolicy,
    dry_run: bool,
) -> Result<Vec<Decision<SnapshotKey>>, PruneError> {
    Ok(apply_all(env, job, keep, dry_run, false).await?.decisions)
}

/// [`apply`], also returning what collecting a media job's packs did. Media trees are read
/// (to repack mostly-dead packs) when `thorough` or when a snapshot was forgotten; otherwise
/// the manifests' pack lists decide, which needs no tree download after every backup.
pub async fn apply_all(
    env: &Env,
    job: &str,
    keep: &KeepPolicy,
    dry_run: bool,
    thorough: bool,
) -> Result<Pruned, PruneError> {
    let frozen = env
        .catalog
        .open_anomalies(Some(job))
        .map_err(|source| PruneError::Catalog {
            job: job.to_string(),
            source,
        })?;
    if !frozen.is_empty() {
        let mut decisions = forget_snapshots(env, job, keep, true).await?;
        for d in decisions.iter_mut().filter(|d| !d.keep) {
            d.keep = true;
            d.reasons = vec![FROZEN];
        }
        tracing::warn!(job, anomaly = %frozen[0].detail, "retention is frozen by an anomaly: every snapshot kept until `opsagent ack {job}`");
        return Ok(Pruned {
            decisions,
            packs: None,
            frozen,
        });
    }
    let decisions = forget_snapshots(env, job, keep, dry_run)
        .await
        .map_err(|e| match e.is_delete_denied() {
            true => PruneError::AppendOnly {
                job: job.to_string(),
                source: e,
            },
            false => PruneError::Storage(e),
        })?;
    let packs = match env.config.media.iter().find(|m| m.name == job) {
        Some(m) => {
            let forgotten: Vec<&str> = decisions
                .iter()
                .filter(|d| !d.keep)
                .map(|d| d.item.key.as_str())
                .collect();
            let s = media_prune::Settings {
                job: job.to_string(),
                grace: m.prune_grace,
                dry_run,
                read_trees: thorough || !forgotten.is_empty(),
            };
            Some(collect_packs(env, &s, &forgotten).await?)
        }
        None => None,
    };
    let archives = env
        .config
        .mysql
        .iter()
        .any(|m| m.name == job && m.binlog.is_some());
    if archives && !dry_run && env.copy.is_none() {
        let kept: Vec<&SnapshotKey> = (decisions.iter())
            .filter(|d| d.keep)
            .map(|d| &d.item)
            .collect();
        super::binlog::retention::prune_segments(env, job, &kept).await?;
    }
    Ok(Pruned {
        decisions,
        packs,
        frozen,
    })
}

/// Retention proper: plans per item from the manifest keys and (unless `dry_run`) forgets.
async fn forget_snapshots(
    env: &Env,
    job: &str,
    keep: &KeepPolicy,
    dry_run: bool,
) -> Result<Vec<Decision<SnapshotKey>>, StorageError> {
    let listed = env.storage.list(&manifests_prefix(Some(job))).await?;
    if !dry_run {
        sweep_orphans(env, job, &listed, Utc::now()).await?;
    }
    let mut series: BTreeMap<String, Vec<(DateTime<Utc>, SnapshotKey)>> = BTreeMap::new();
    for o in listed {
        if let Some((t, k)) = parse_manifest_key(&o.key) {
            series.entry(k.item.clone()).or_default().push((t, k));
        }
    }
    let mut all = Vec::new();
    let lock = storage_lock(env);
    let now = Utc::now();
    for snaps in series.values() {
        let mut decisions = plan(snaps, keep, env.config.agent.zone);
        // Under object lock a snapshot is kept until its objects can be deleted.
        for d in decisions.iter_mut().filter(|d| !d.keep) {
            if lock.is_some_and(|l| unlocked_at(d.time, l) > now) {
                d.keep = true;
                d.reasons = vec![LOCKED];
            }
        }
        if !dry_run {
            for d in decisions.iter().filter(|d| !d.keep) {
                forget(env, &d.item).await?;
            }
        }
        all.extend(decisions);
    }
    Ok(all)
}

/// The reason of a snapshot retention would remove that the bucket's object lock still holds.
pub const LOCKED: &str = "locked";

/// When every object of a snapshot started at `time` can be deleted: the lock runs from when
/// each object was written, which may be hours after the start, so a day's margin is added.
pub fn unlocked_at(time: DateTime<Utc>, lock: ObjectLock) -> DateTime<Utc> {
    lock.until(time) + chrono::Duration::days(1)
}

/// The object lock of the storage `env` works on: the default storage's, or the copy's.
pub fn storage_lock(env: &Env) -> Option<ObjectLock> {
    match &env.copy {
        Some(name) => (env.config.copies.iter())
            .find(|c| &c.name == name)?
            .spec
            .object_lock(),
        None => env.config.storage.object_lock(),
    }
}

/// Collects the unused packs of media job `s.job`: reads the remaining manifests (those not
/// in `forgotten`, which a dry run left in place), prepares, rewrites the manifests whose pack
/// list changed, then lets the collector delete.
async fn collect_packs(
    env: &Env,
    s: &media_prune::Settings,
    forgotten: &[&str],
) -> Result<media_prune::Report, PruneError> {
    let job = s.job.as_str();
    let manifest_err = |source| PruneError::Manifest {
        job: job.to_string(),
        source,
    };
    let media_err = |source| PruneError::Media {
        job: job.to_string(),
        source,
    };
    let mut snaps = Vec::new();
    for o in env.storage.list(&manifests_prefix(Some(job))).await? {
        if !o.key.ends_with(".json") || forgotten.contains(&o.key.as_str()) {
            continue;
        }
        let bytes = match env.storage.get_bytes_max(&o.key, MAX_MANIFEST).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => continue, // forgotten meanwhile
            Err(e) => return Err(e.into()),
        };
        let m = Manifest::parse(&o.key, &bytes).map_err(manifest_err)?;
        let Some(media) = m.media.as_ref() else {
            return Err(manifest_err(ManifestError::NotMedia { key: o.key }));
        };
        snaps.push(media_prune::SnapshotRefs {
            manifest: o.key.clone(),
            tree: m.objects.first().map(|t| t.key.clone()),
            packs: media.packs.clone(),
        });
    }
    let prepared = media_prune::prepare(&env.storage, s, &snaps, Utc::now())
        .await
        .map_err(media_err)?;
    if !s.dry_run {
        for (key, packs) in prepared.manifest_updates() {
            rewrite_packs(env, job, key, packs).await?;
        }
    }
    let report = prepared.finish(&env.storage).await.map_err(media_err)?;
    for w in &report.warnings {
        tracing::warn!(job, "{w}");
    }
    tracing::info!(
        job,
        dry_run = s.dry_run,
        marked = report.marked,
        unmarked = report.unmarked,
        deleted = report.deleted,
        freed = report.deleted_bytes,
        pending = report.pending,
        repacked = report.repacked,
        trees_deleted = report.trees_deleted,
        "unused packs collected"
    );
    Ok(report)
}

/// Stores `packs` as the pack list of the manifest at `key`, unless it was forgotten meanwhile
/// (a manifest is never brought back).
async fn rewrite_packs(
    env: &Env,
    job: &str,
    key: &str,
    packs: &[crate::media::Id],
) -> Result<(), PruneError> {
    let bytes = match env.storage.get_bytes_max(key, MAX_MANIFEST).await {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut m = Manifest::parse(key, &bytes).map_err(|source| PruneError::Manifest {
        job: job.to_string(),
        source,
    })?;
    if let Some(media) = m.media.as_mut() {
        media.packs = packs.to_vec();
    }
    let json = serde_json::to_vec_pretty(&m).expect("manifest serializes");
    env.storage.put_bytes(key, Bytes::from(json)).await?;
    Ok(())
}

/// Data objects younger than this are never treated as orphans (clock skew, slow uploads).
const ORPHAN_GRACE_HOURS: i64 = 1;

/// Deletes dumps of `job` that no manifest commits: leftovers of runs that died after their
/// upload finished but before the manifest was written. Runs with the job's lock held, so no
/// backup of the job is in progress here; the grace covers clocks and other writers.
async fn sweep_orphans(
    env: &Env,
    job: &str,
    manifests: &[crate::storage::ObjectInfo],
    now: DateTime<Utc>,
) -> Result<(), StorageError> {
    let committed: std::collections::HashSet<&str> = manifests
        .iter()
        .filter_map(|o| o.key.rsplit('/').next()?.strip_suffix(".json"))
        .collect();
    for o in env.storage.list(&format!("mysql/{job}/")).await? {
        let Some(id) = o.key.rsplit('/').next().and_then(dump_id) else {
            continue;
        };
        let Some((t, _)) = parse_manifest_key(&format!("snapshots/{job}/x/{id}.json")) else {
            continue;
        };
        if !committed.contains(id) && now - t > chrono::Duration::hours(ORPHAN_GRACE_HOURS) {
            env.storage.delete(&o.key).await?;
            tracing::warn!(job, key = %o.key, "deleted a dump no snapshot commits (left by an interrupted run)");
        }
    }
    Ok(())
}

/// Deletes one snapshot: its manifest, then the data it lists, then the catalog row.
async fn forget(env: &Env, snap: &SnapshotKey) -> Result<(), StorageError> {
    let manifest = match env.storage.get_bytes_max(&snap.key, MAX_MANIFEST).await {
        Ok(bytes) => Manifest::parse(&snap.key, &bytes).ok(),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e),
    };
    env.storage.delete(&snap.key).await?;
    if let Some(m) = manifest {
        for o in &m.objects {
            env.storage.delete(&o.key).await?;
        }
    }
    if env.copy.is_some() {
        tracing::info!(job = %snap.job, database = %snap.item, snapshot = %snap.id, storage = env.copy.as_deref(), "snapshot forgotten by retention on the copy storage");
        return Ok(());
    }
    if let Err(e) = env.catalog.remove_snapshot(&snap.id) {
        tracing::warn!(error = %e, "catalog not updated; `opsagent snapshots --refresh` fixes it");
    }
    tracing::info!(job = %snap.job, database = %snap.item, snapshot = %snap.id, "snapshot forgotten by retention");
    Ok(())
}

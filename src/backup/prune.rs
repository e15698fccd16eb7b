//! Applying retention to the bucket: plan per database from the manifest keys (the truth), then
//! delete forgotten snapshots — manifest first (the snapshot stops existing), data after.

use super::manifest::{decode_segment, manifests_prefix, Manifest};
use super::retention::{plan, Decision, KeepPolicy};
use super::Env;
use crate::storage::StorageError;
use chrono::{DateTime, NaiveDateTime, Utc};
use std::collections::BTreeMap;

/// A snapshot as seen in a manifest key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotKey {
    /// Job.
    pub job: String,
    /// Database.
    pub item: String,
    /// Snapshot id.
    pub id: String,
    /// Manifest key.
    pub key: String,
}

/// Parses `snapshots/<job>/<item>/<id>.json` into its parts and the id's time.
pub fn parse_manifest_key(key: &str) -> Option<(DateTime<Utc>, SnapshotKey)> {
    let rest = key.strip_prefix("snapshots/")?;
    let mut parts = rest.split('/');
    let (job, item, file) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let id = file.strip_suffix(".json")?;
    let stamp = id.split('-').next()?;
    let t = NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()?
        .and_utc();
    Some((
        t,
        SnapshotKey {
            job: job.to_string(),
            item: decode_segment(item)?,
            id: id.to_string(),
            key: key.to_string(),
        },
    ))
}

/// Plans (and unless `dry_run`, applies) retention for every database of `job`.
pub async fn apply(
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
    for snaps in series.values() {
        let decisions = plan(snaps, keep, env.config.agent.zone);
        if !dry_run {
            for d in decisions.iter().filter(|d| !d.keep) {
                forget(env, &d.item).await?;
            }
        }
        all.extend(decisions);
    }
    Ok(all)
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
        let Some(id) = o.key.rsplit('/').next().and_then(super::manifest::dump_id) else {
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
    let manifest = match env.storage.get_bytes(&snap.key).await {
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
    if let Err(e) = env.catalog.remove_snapshot(&snap.id) {
        tracing::warn!(error = %e, "catalog not updated; `opsagent snapshots --refresh` fixes it");
    }
    tracing::info!(job = %snap.job, database = %snap.item, snapshot = %snap.id, "snapshot forgotten by retention");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_keys_parse() {
        let (t, k) =
            parse_manifest_key("snapshots/main/my-db%2Ex/20261120T073000Z-0a1b2c3d.json").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-20T07:30:00+00:00");
        assert_eq!(
            (k.job.as_str(), k.item.as_str(), k.id.as_str()),
            ("main", "my-db.x", "20261120T073000Z-0a1b2c3d")
        );
        assert!(parse_manifest_key("snapshots/main/x/notatime.json").is_none());
        assert!(parse_manifest_key("snapshots/main/x/y/z.json").is_none());
        assert!(parse_manifest_key("mysql/main/x/20261120T073000Z-0a.json").is_none());
    }
}

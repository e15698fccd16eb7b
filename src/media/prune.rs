//! Garbage collection of a media job's packs, run after retention forgot snapshots. The model
//! is restic's lock-free prune: mark what no snapshot uses, wait a grace period, then delete.
//!
//! 1. Use. Each remaining snapshot's tree is read and each chunk mapped to one pack holding it
//!    (a pack in the bucket and not pending deletion if there is one). A snapshot whose tree
//!    cannot be read (encrypted without the identity on this host, damaged) or names chunks no
//!    index knows counts with the `packs` its manifest lists instead; so do all snapshots when
//!    trees are not read (`read_trees` off: after a backup that forgot no snapshot, the cheap
//!    way). The union is the live set.
//! 2. Marks. A pack that is indexed or in the bucket but not live goes on the index's
//!    `delete_pending` list (since now, if it is not there yet); a pending pack that is live
//!    again (a backup that loaded the index before the mark reused it) comes off the list.
//!    Packs no index lists (a crashed or still running backup uploaded them) are treated alike.
//! 3. Repack. When every tree could be read, the live blobs of packs less than half live are
//!    copied into new packs (src/media/prune/repack.rs) and the old packs are marked pending.
//! 4. Commit, in this order: new packs; ONE new index object (every remaining pack and the
//!    pending list); the manifests whose `packs` list changed are rewritten by the caller
//!    (between [`prepare`] and [`Prepared::finish`]); the index objects read in step 1 are
//!    deleted (never others: a running backup may have just written one); packs pending for
//!    longer than the grace period; trees without a manifest older than the grace period.
//!
//! Safety rests on the grace period being longer than any backup run: a backup that loaded the
//! index before a pack was marked commits before the pack can go, and its snapshot makes the
//! pack live again. One prune of a job at a time: the job lock ensures it on one host.

use super::id::Id;
use super::index::{self, Index, IndexError, IndexFile, PackIndex, PendingDelete, INDEX_FORMAT};
use super::keys;
use crate::storage::{Storage, StorageError};
use chrono::{DateTime, NaiveDateTime, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

mod repack;
#[cfg(test)]
mod tests;
mod uses;

/// Packs with less than this percentage of their bytes live are repacked.
pub const REPACK_BELOW_PERCENT: u64 = 50;

/// What to prune.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The media job.
    pub job: String,
    /// How long an unreferenced pack stays pending before it is deleted.
    pub grace: std::time::Duration,
    /// Compute and report, change nothing.
    pub dry_run: bool,
    /// Read every tree: needed to repack and to keep manifests' pack lists exact. Without it
    /// each manifest's `packs` list decides (safe, cheaper: no tree is downloaded).
    pub read_trees: bool,
}

/// A remaining snapshot, as its manifest describes it.
#[derive(Debug, Clone)]
pub struct SnapshotRefs {
    /// The manifest's key.
    pub manifest: String,
    /// Its tree object's key.
    pub tree: Option<String>,
    /// The packs its manifest lists.
    pub packs: Vec<Id>,
}

/// What a prune did (or, in a dry run, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Remaining snapshots.
    pub snapshots: usize,
    /// Of which the tree could not be read.
    pub trees_unreadable: usize,
    /// Packs found (indexed or in the bucket) before.
    pub packs: usize,
    /// Packs in use by the remaining snapshots afterwards.
    pub live: usize,
    /// Packs newly marked for deletion.
    pub marked: usize,
    /// Bytes of those.
    pub marked_bytes: u64,
    /// Pending packs in use again, taken off the list.
    pub unmarked: usize,
    /// Packs deleted.
    pub deleted: usize,
    /// Bytes freed by deleting them.
    pub deleted_bytes: u64,
    /// Packs still pending afterwards.
    pub pending: usize,
    /// Their bytes.
    pub pending_bytes: u64,
    /// Mostly-dead packs whose live blobs were copied (then marked pending).
    pub repacked: usize,
    /// Their bytes.
    pub repacked_bytes: u64,
    /// Bytes of the new packs written by repacking.
    pub repack_written: u64,
    /// Why repacking did not run, when it did not.
    pub repack_skipped: Option<String>,
    /// Manifests whose `packs` list was rewritten.
    pub manifests_rewritten: usize,
    /// Trees of interrupted runs deleted.
    pub trees_deleted: usize,
    /// Index objects read (and replaced when `index_written`).
    pub index_read: usize,
    /// Whether a new index object was written.
    pub index_written: bool,
    /// Problems found on the way (damaged trees, missing packs).
    pub warnings: Vec<String>,
}

/// Pruning stopped; nothing after the failed step was done, and what was done is safe.
#[derive(Debug, thiserror::Error)]
pub enum PackPruneError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The index cannot be read.
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// A prune whose new packs and index are stored; [`Prepared::finish`] deletes.
#[derive(Debug)]
pub struct Prepared {
    report: Report,
    job: String,
    manifest_updates: Vec<(String, Vec<Id>)>,
    old_index: Vec<String>,
    new_index: Option<String>,
    delete_packs: Vec<(Id, u64)>,
    delete_trees: Vec<String>,
}

/// Reads the index, the packs in the bucket and every tree; marks, repacks, writes the new
/// index (unless `dry_run`). `snaps` are all remaining snapshots of the job.
pub async fn prepare(
    storage: &Storage,
    s: &Settings,
    snaps: &[SnapshotRefs],
    now: DateTime<Utc>,
) -> Result<Prepared, PackPruneError> {
    // The index first: a pack is uploaded before its index, so every pack it lists is listed
    // by the bucket listing that follows.
    let idx = Index::load(storage, &s.job).await?;
    let bucket: BTreeMap<Id, u64> = storage
        .list(&keys::packs_prefix(&s.job))
        .await?
        .into_iter()
        .filter_map(|o| Some((keys::pack_id_of(&o.key)?, o.size)))
        .collect();
    let mut report = Report {
        dry_run: s.dry_run,
        snapshots: snaps.len(),
        index_read: idx.keys.len(),
        packs: idx
            .packs
            .keys()
            .chain(bucket.keys())
            .collect::<BTreeSet<_>>()
            .len(),
        ..Report::default()
    };
    let (mut uses, live_blobs) = uses::find(
        storage,
        &s.job,
        snaps,
        &idx,
        &bucket,
        s.read_trees,
        &mut report,
    )
    .await;
    let new_packs = repack_step(
        storage,
        s,
        &idx,
        &bucket,
        &live_blobs,
        &mut uses,
        &mut report,
    )
    .await?;
    let live: BTreeSet<Id> = uses.iter().flat_map(|u| u.packs.iter().copied()).collect();
    let marks = mark(&idx, &bucket, &new_packs, &live, now, s.grace, &mut report);
    let file = index_file(&idx, new_packs, &live, &marks);
    let same_packs = file.packs.len() == idx.packs.len()
        && file.packs.iter().all(|p| idx.packs.contains_key(&p.id));
    let changed = marks.pending != idx.delete_pending || !same_packs || idx.keys.len() > 1;
    let manifest_updates: Vec<(String, Vec<Id>)> = uses
        .iter()
        .filter(|u| u.exact && u.packs != u.listed)
        .map(|u| (u.manifest.clone(), u.packs.iter().copied().collect()))
        .collect();
    report.manifests_rewritten = manifest_updates.len();
    let delete_trees = orphan_trees(storage, &s.job, snaps, now, marks.grace).await?;
    report.trees_deleted = delete_trees.len();
    let mut new_index = None;
    if changed && !s.dry_run && !(file.packs.is_empty() && file.delete_pending.is_empty()) {
        new_index = Some(index::write(storage, &s.job, &file).await?);
        report.index_written = true;
    }
    Ok(Prepared {
        report,
        job: s.job.clone(),
        manifest_updates,
        old_index: if changed { idx.keys } else { Vec::new() },
        new_index,
        delete_packs: marks.delete,
        delete_trees,
    })
}

/// Repacks the mostly-dead packs when every tree could be read (counts them in a dry run);
/// the snapshots using an old pack then use the new ones. Returns the new packs.
async fn repack_step(
    storage: &Storage,
    s: &Settings,
    idx: &Index,
    bucket: &BTreeMap<Id, u64>,
    live_blobs: &HashMap<Id, HashSet<Id>>,
    uses: &mut [uses::Use],
    report: &mut Report,
) -> Result<Vec<PackIndex>, PackPruneError> {
    let candidates = uses::repack_candidates(idx, bucket, live_blobs);
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(u) = uses.iter().find(|u| !u.exact) {
        report.repack_skipped = Some(format!(
            "the tree of `{}` could not be read to the chunk",
            u.manifest
        ));
        return Ok(Vec::new());
    }
    if s.dry_run {
        report.repacked = candidates.len();
        report.repacked_bytes = candidates.iter().map(|(p, _)| p.size).sum();
        return Ok(Vec::new());
    }
    let r = repack::run(storage, &s.job, candidates).await?;
    report.warnings.extend(r.warnings);
    for (old, new) in &r.moved {
        report.repacked += 1;
        report.repacked_bytes += idx.packs.get(old).map_or(0, |p| p.size);
        for u in uses.iter_mut() {
            if u.packs.remove(old) {
                u.packs.extend(new.iter().copied());
            }
        }
    }
    report.repack_written = r.new_packs.iter().map(|p| p.size).sum();
    Ok(r.new_packs)
}

/// The pending list after this prune and the packs to delete.
struct Marks {
    pending: BTreeMap<Id, DateTime<Utc>>,
    delete: Vec<(Id, u64)>,
    grace: chrono::Duration,
}

/// Every pack that exists and is not live is pending, since its first mark; a live one is
/// not. Pending packs whose grace period is over are to be deleted.
fn mark(
    idx: &Index,
    bucket: &BTreeMap<Id, u64>,
    new_packs: &[PackIndex],
    live: &BTreeSet<Id>,
    now: DateTime<Utc>,
    grace: std::time::Duration,
    report: &mut Report,
) -> Marks {
    let mut sizes: BTreeMap<Id, u64> = bucket.clone();
    sizes.extend(idx.packs.values().chain(new_packs).map(|p| (p.id, p.size)));
    let present = |p: &Id| bucket.contains_key(p) || new_packs.iter().any(|n| n.id == *p);
    report.live = live.len();
    for p in live.iter().filter(|p| !present(p)) {
        report.warnings.push(format!(
            "pack {p} is used by a snapshot but missing from the bucket (hint: `opsagent verify` names the files affected)"
        ));
    }
    let mut pending = BTreeMap::new();
    for (p, size) in sizes.iter().filter(|(p, _)| present(p)) {
        let was = idx.delete_pending.get(p).copied();
        if live.contains(p) {
            report.unmarked += usize::from(was.is_some());
            continue;
        }
        if was.is_none() {
            report.marked += 1;
            report.marked_bytes += size;
        }
        pending.insert(*p, was.unwrap_or(now));
    }
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let delete: Vec<(Id, u64)> = pending
        .iter()
        .filter(|(_, since)| now - **since >= grace)
        .map(|(p, _)| (*p, sizes[p]))
        .collect();
    for (p, size) in &delete {
        pending.remove(p);
        report.deleted += 1;
        report.deleted_bytes += size;
    }
    report.pending = pending.len();
    report.pending_bytes = pending.keys().map(|p| sizes[p]).sum();
    Marks {
        pending,
        delete,
        grace,
    }
}

/// The new index: packs that still exist or are in use, the ones not pending first so that a
/// reader taking the first location of a blob finds one that stays; and the pending list.
fn index_file(idx: &Index, new_packs: Vec<PackIndex>, live: &BTreeSet<Id>, m: &Marks) -> IndexFile {
    let deleted: HashSet<Id> = m.delete.iter().map(|(p, _)| *p).collect();
    let mut packs: Vec<PackIndex> = idx
        .packs
        .values()
        .filter(|p| live.contains(&p.id) || m.pending.contains_key(&p.id))
        .filter(|p| !deleted.contains(&p.id))
        .cloned()
        .chain(new_packs)
        .collect();
    packs.sort_by_key(|p| m.pending.contains_key(&p.id));
    IndexFile {
        format: INDEX_FORMAT,
        packs,
        delete_pending: m
            .pending
            .iter()
            .map(|(p, since)| PendingDelete {
                pack: *p,
                since: *since,
            })
            .collect(),
    }
}

impl Prepared {
    /// The manifests (key, new `packs` list) to rewrite before [`Prepared::finish`]: their
    /// chunks now live in other packs (repacked, or a pending duplicate was dropped).
    pub fn manifest_updates(&self) -> &[(String, Vec<Id>)] {
        &self.manifest_updates
    }

    /// Deletes the replaced index objects, then the packs whose grace period is over, then
    /// the trees of interrupted runs. Call it after the manifest updates are stored.
    pub async fn finish(self, storage: &Storage) -> Result<Report, PackPruneError> {
        let report = self.report;
        if report.dry_run {
            return Ok(report);
        }
        for key in self
            .old_index
            .iter()
            .filter(|k| Some(*k) != self.new_index.as_ref())
        {
            storage.delete(key).await?;
        }
        for (p, size) in &self.delete_packs {
            storage.delete(&keys::pack_key(&self.job, p)).await?;
            tracing::info!(job = %self.job, pack = %p, size, "deleted an unused pack");
        }
        for key in &self.delete_trees {
            storage.delete(key).await?;
            tracing::info!(job = %self.job, key = %key, "deleted the tree of an interrupted run");
        }
        Ok(report)
    }
}

/// Trees no remaining manifest names whose snapshot started more than `grace` ago.
async fn orphan_trees(
    storage: &Storage,
    job: &str,
    snaps: &[SnapshotRefs],
    now: DateTime<Utc>,
    grace: chrono::Duration,
) -> Result<Vec<String>, StorageError> {
    let named: HashSet<&str> = snaps.iter().filter_map(|s| s.tree.as_deref()).collect();
    Ok(storage
        .list(&keys::trees_prefix(job))
        .await?
        .into_iter()
        .filter(|o| !named.contains(o.key.as_str()))
        .filter(|o| snapshot_time(&o.key).is_some_and(|t| now - t >= grace))
        .map(|o| o.key)
        .collect())
}

/// The start time in a tree key (`…/<YYYYMMDDTHHMMSSZ>-<hex>.jsonl.zst`).
fn snapshot_time(key: &str) -> Option<DateTime<Utc>> {
    let name = key.rsplit('/').next()?.strip_suffix(".jsonl.zst")?;
    let stamp = name.split('-').next()?;
    Some(
        NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
            .ok()?
            .and_utc(),
    )
}

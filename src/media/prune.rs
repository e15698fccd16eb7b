//! Garbage collection of a media job's packs, run after retention forgot snapshots. The model
//! is restic's lock-free prune: mark what no snapshot uses, wait a grace period, then delete.
//!
//! 1. Use. Each remaining snapshot's tree is read and each chunk mapped to one pack holding it
//!    (a pack in the bucket and not pending deletion if there is one). A snapshot whose tree
//!    cannot be read (encrypted without the identity on this host, damaged) or names chunks no
//!    index knows counts with the `packs` its manifest lists instead. The union is the live set.
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
use super::{keys, tree};
use crate::storage::{Storage, StorageError};
use chrono::{DateTime, NaiveDateTime, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

mod repack;
#[cfg(test)]
mod tests;

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
    /// Packs newly marked for deletion, and their bytes.
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
pub enum PruneError {
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

/// How one snapshot uses packs.
struct Use {
    manifest: String,
    listed: BTreeSet<Id>,
    packs: BTreeSet<Id>,
    /// `packs` comes from the tree (else from the manifest's list).
    exact: bool,
}

/// Reads the index, the packs in the bucket and every tree; marks, repacks, writes the new
/// index (unless `dry_run`). `snaps` are all remaining snapshots of the job.
pub async fn prepare(
    storage: &Storage,
    s: &Settings,
    snaps: &[SnapshotRefs],
    now: DateTime<Utc>,
) -> Result<Prepared, PruneError> {
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
        ..Report::default()
    };
    let locations = Locations::new(&idx, &bucket);
    let mut live_blobs: HashMap<Id, HashSet<Id>> = HashMap::new();
    let mut uses = Vec::new();
    for snap in snaps {
        uses.push(snapshot_use(storage, snap, &locations, &mut live_blobs, &mut report).await);
    }
    let mut new_packs: Vec<PackIndex> = Vec::new();
    let candidates = repack_candidates(&idx, &bucket, &live_blobs);
    if let Some(why) = uses
        .iter()
        .find(|u| !u.exact)
        .map(|u| format!("snapshot `{}` could not be read to the chunk", u.manifest))
    {
        report.repack_skipped = (!candidates.is_empty()).then_some(why);
    } else if s.dry_run {
        report.repacked = candidates.len();
        report.repacked_bytes = candidates.iter().map(|(p, _)| p.size).sum();
    } else if !candidates.is_empty() {
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
        new_packs = r.new_packs;
    }
    let live: BTreeSet<Id> = uses.iter().flat_map(|u| u.packs.iter().copied()).collect();
    report.live = live.len();
    let mut all: BTreeMap<Id, PackIndex> = idx.packs.clone();
    all.extend(new_packs.iter().map(|p| (p.id, p.clone())));
    let present = |p: &Id| bucket.contains_key(p) || new_packs.iter().any(|n| n.id == *p);
    let mut sizes: BTreeMap<Id, u64> = bucket.clone();
    sizes.extend(all.values().map(|p| (p.id, p.size)));
    report.packs = idx
        .packs
        .keys()
        .chain(bucket.keys())
        .collect::<BTreeSet<_>>()
        .len();
    for p in live.iter().filter(|p| !present(p)) {
        report.warnings.push(format!(
            "pack {p} is used by a snapshot but missing from the bucket (hint: `opsagent verify` names the files affected)"
        ));
    }
    // Marks: every pack that exists and is not live is pending; since its first mark.
    let mut pending: BTreeMap<Id, DateTime<Utc>> = BTreeMap::new();
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
    let grace = chrono::Duration::from_std(s.grace).unwrap_or(chrono::Duration::MAX);
    let delete_packs: Vec<(Id, u64)> = pending
        .iter()
        .filter(|(_, since)| now - **since >= grace)
        .map(|(p, _)| (*p, sizes[p]))
        .collect();
    for (p, size) in &delete_packs {
        pending.remove(p);
        report.deleted += 1;
        report.deleted_bytes += size;
    }
    report.pending = pending.len();
    report.pending_bytes = pending.keys().map(|p| sizes[p]).sum();
    // The new index: packs that still exist or are in use, the ones in use first so that a
    // reader taking the first location of a blob finds one that is not pending.
    let mut packs: Vec<PackIndex> = all
        .into_values()
        .filter(|p| {
            (present(&p.id) || live.contains(&p.id))
                && !delete_packs.iter().any(|(d, _)| *d == p.id)
        })
        .collect();
    packs.sort_by_key(|p| pending.contains_key(&p.id));
    let file = IndexFile {
        format: INDEX_FORMAT,
        delete_pending: pending
            .iter()
            .map(|(p, since)| PendingDelete {
                pack: *p,
                since: *since,
            })
            .collect(),
        packs,
    };
    let same_packs = file.packs.len() == idx.packs.len()
        && file.packs.iter().all(|p| idx.packs.contains_key(&p.id));
    let changed = pending != idx.delete_pending || !same_packs || idx.keys.len() > 1;
    let manifest_updates: Vec<(String, Vec<Id>)> = uses
        .iter()
        .filter(|u| u.exact && u.packs != u.listed)
        .map(|u| (u.manifest.clone(), u.packs.iter().copied().collect()))
        .collect();
    report.manifests_rewritten = manifest_updates.len();
    let delete_trees = orphan_trees(storage, &s.job, snaps, now, grace).await?;
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
        delete_packs,
        delete_trees,
    })
}

impl Prepared {
    /// The manifests (key, new `packs` list) to rewrite before [`Prepared::finish`]: their
    /// chunks now live in other packs (repacked, or a pending duplicate was dropped).
    pub fn manifest_updates(&self) -> &[(String, Vec<Id>)] {
        &self.manifest_updates
    }

    /// Deletes the replaced index objects, then the packs whose grace period is over, then
    /// the trees of interrupted runs. Call it after the manifest updates are stored.
    pub async fn finish(self, storage: &Storage) -> Result<Report, PruneError> {
        let mut report = self.report;
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
        report.warnings.shrink_to_fit();
        Ok(report)
    }
}

/// Every location of every blob, and which packs exist.
struct Locations<'a> {
    blobs: HashMap<Id, Vec<Id>>,
    pending: &'a BTreeMap<Id, DateTime<Utc>>,
    bucket: &'a BTreeMap<Id, u64>,
}

impl<'a> Locations<'a> {
    fn new(idx: &'a Index, bucket: &'a BTreeMap<Id, u64>) -> Locations<'a> {
        let mut blobs: HashMap<Id, Vec<Id>> = HashMap::new();
        for p in idx.packs.values() {
            for b in &p.blobs {
                blobs.entry(b.id).or_default().push(p.id);
            }
        }
        Locations {
            blobs,
            pending: &idx.delete_pending,
            bucket,
        }
    }

    /// The pack to keep `blob` in: one in the bucket and not pending if there is one.
    fn choose(&self, blob: &Id) -> Option<Id> {
        self.blobs
            .get(blob)?
            .iter()
            .copied()
            .min_by_key(|p| (!self.bucket.contains_key(p), self.pending.contains_key(p)))
    }
}

/// Which packs `snap` needs: from its tree when it can be read and every chunk is indexed,
/// else the packs its manifest lists. Records live blobs per pack from trees.
async fn snapshot_use(
    storage: &Storage,
    snap: &SnapshotRefs,
    loc: &Locations<'_>,
    live_blobs: &mut HashMap<Id, HashSet<Id>>,
    report: &mut Report,
) -> Use {
    let listed: BTreeSet<Id> = snap.packs.iter().copied().collect();
    let mut u = Use {
        manifest: snap.manifest.clone(),
        packs: listed.clone(),
        listed,
        exact: false,
    };
    let nodes = match &snap.tree {
        None => Err("the manifest names no tree".to_string()),
        Some(key) => match storage.get_bytes(key).await {
            Ok(b) => tree::decode(key, &b),
            Err(e) => Err(e.to_string()),
        },
    };
    let nodes = match nodes {
        Ok(n) => n,
        Err(e) => {
            report.trees_unreadable += 1;
            report.warnings.push(format!(
                "snapshot `{}`: {e}; counting the packs its manifest lists",
                snap.manifest
            ));
            return u;
        }
    };
    let chunks: HashSet<Id> = nodes
        .iter()
        .flat_map(|n| n.chunks.iter().copied())
        .collect();
    let mut packs = BTreeSet::new();
    let mut missing = 0usize;
    for c in &chunks {
        match loc.choose(c) {
            Some(p) => {
                packs.insert(p);
                live_blobs.entry(p).or_default().insert(*c);
            }
            None => missing += 1,
        }
    }
    if missing > 0 {
        report.warnings.push(format!(
            "snapshot `{}`: {missing} chunk(s) are in no index; counting the packs its manifest lists too",
            snap.manifest
        ));
        u.packs.extend(packs);
    } else {
        u.packs = packs;
        u.exact = true;
    }
    u
}

/// Packs worth repacking: indexed, in the bucket, not pending, partly live, less than
/// [`REPACK_BELOW_PERCENT`] of their bytes live; with their live blobs.
fn repack_candidates(
    idx: &Index,
    bucket: &BTreeMap<Id, u64>,
    live_blobs: &HashMap<Id, HashSet<Id>>,
) -> Vec<(PackIndex, HashSet<Id>)> {
    idx.packs
        .values()
        .filter(|p| bucket.contains_key(&p.id) && !idx.delete_pending.contains_key(&p.id))
        .filter_map(|p| {
            let live = live_blobs.get(&p.id)?;
            let live_bytes: u64 = p
                .blobs
                .iter()
                .filter(|b| live.contains(&b.id))
                .map(|b| b.length)
                .sum();
            (live_bytes * 100 < REPACK_BELOW_PERCENT * p.size).then(|| (p.clone(), live.clone()))
        })
        .collect()
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

//! Which packs the remaining snapshots use: each tree's chunks mapped to one pack holding them
//! (one in the bucket and not pending deletion if there is one), or, when trees are not read
//! or a tree cannot be read, the packs its manifest lists. Also which blobs of each pack are
//! live, for repacking.

use super::{Report, SnapshotRefs, REPACK_BELOW_PERCENT};
use crate::media::id::Id;
use crate::media::index::{Index, PackIndex};
use crate::media::limits;
use crate::media::tree::blobs::BlobCache;
use crate::media::tree::{self, Opened, TreeBlobs};
use crate::storage::Storage;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Bytes of tree blobs kept while reading the snapshots' trees (format 2): they share most
/// blobs, so most tree packs are downloaded once per prune rather than once per snapshot.
const TREE_CACHE: usize = 64 << 20;

/// How one snapshot uses packs.
pub(super) struct Use {
    pub manifest: String,
    pub listed: BTreeSet<Id>,
    pub packs: BTreeSet<Id>,
    /// `packs` comes from the tree (else from the manifest's list).
    pub exact: bool,
}

/// How every snapshot in `snaps` uses packs, and the live blobs of each pack (from trees,
/// only when `read_trees`; else each manifest's list counts).
pub(super) async fn find(
    storage: &Storage,
    job: &str,
    snaps: &[SnapshotRefs],
    idx: &Index,
    bucket: &BTreeMap<Id, u64>,
    read_trees: bool,
    report: &mut Report,
) -> (Vec<Use>, HashMap<Id, HashSet<Id>>) {
    let mut live_blobs = HashMap::new();
    let mut uses = Vec::new();
    if !read_trees {
        uses.extend(snaps.iter().map(listed));
        return (uses, live_blobs);
    }
    let loc = Locations::new(idx, bucket);
    let mut cache = BlobCache::new(TREE_CACHE);
    for snap in snaps {
        let u = snapshot_use(
            storage,
            job,
            snap,
            &loc,
            &mut cache,
            &mut live_blobs,
            report,
        );
        uses.push(u.await);
    }
    (uses, live_blobs)
}

/// The use a snapshot's manifest lists.
fn listed(snap: &SnapshotRefs) -> Use {
    let listed: BTreeSet<Id> = snap.packs.iter().copied().collect();
    Use {
        manifest: snap.manifest.clone(),
        packs: listed.clone(),
        listed,
        exact: false,
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
    job: &str,
    snap: &SnapshotRefs,
    loc: &Locations<'_>,
    cache: &mut BlobCache,
    live_blobs: &mut HashMap<Id, HashSet<Id>>,
    report: &mut Report,
) -> Use {
    let mut u = listed(snap);
    // The tree is decoded as it streams: only its chunk ids are kept, not its nodes.
    let mut chunks: HashSet<Id> = HashSet::new();
    let read = match &snap.tree {
        None => Err("the manifest names no tree".to_string()),
        Some(key) => tree_chunks(storage, job, key, (loc, cache), &mut chunks).await,
    };
    if let Err(e) = read {
        report.trees_unreadable += 1;
        report.warnings.push(format!(
            "snapshot `{}`: {e}; counting the packs its manifest lists",
            snap.manifest
        ));
        return u;
    }
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

/// Adds to `chunks` every blob tree `key` uses: its entries' chunks and, in format 2, its own
/// list and entry blobs. (The error is a `String` on purpose: it becomes one line of the prune
/// report's warnings and the packs the manifest lists are counted instead; nothing matches on it.)
async fn tree_chunks(
    storage: &Storage,
    job: &str,
    key: &str,
    (loc, cache): (&Locations<'_>, &mut BlobCache),
    chunks: &mut HashSet<Id>,
) -> Result<(), String> {
    let b = (storage.get_bytes_max(key, limits::MAX_TREE).await).map_err(|e| e.to_string())?;
    let n = b.len() as u64;
    let mut r = match tree::open(key, std::io::Cursor::new(b), n).map_err(|e| e.to_string())? {
        Opened::Entries(r) => r,
        Opened::Lists(lists) => {
            let pack_of = |id: &Id| loc.choose(id);
            let blobs = TreeBlobs::fetch_with(storage, job, key, lists, &pack_of, cache)
                .await
                .map_err(|e| e.to_string())?;
            chunks.extend(blobs.lists.iter().chain(&blobs.entries).copied());
            blobs.reader()
        }
    };
    while let Some(n) = r.next_node().map_err(|e| e.to_string())? {
        chunks.extend(n.chunks);
    }
    Ok(())
}

/// Packs worth repacking: indexed, in the bucket, not pending, partly live, less than
/// [`REPACK_BELOW_PERCENT`] of their bytes live; with their live blobs.
pub(super) fn repack_candidates(
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

//! Repacking: the live blobs of mostly-dead packs are copied, as stored (no recompression),
//! into new packs of about [`PACK_SIZE`] bytes. Each blob is checked against its id first; a
//! pack with a damaged live blob is left alone (and reported), so repacking never spreads
//! damage. The caller indexes the new packs and marks the old ones pending.

use super::super::backup::PACK_SIZE;
use super::super::id::Id;
use super::super::index::PackIndex;
use super::super::keys;
use super::super::limits;
use super::super::pack::{self, PackBuilder};
use crate::storage::{Storage, StorageError};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// What repacking stored.
#[derive(Debug, Default)]
pub(super) struct Repacked {
    /// The new packs, uploaded.
    pub new_packs: Vec<PackIndex>,
    /// Each old pack copied, with the new pack(s) now holding its live blobs.
    pub moved: BTreeMap<Id, BTreeSet<Id>>,
    /// Packs left alone, and why.
    pub warnings: Vec<String>,
}

/// Copies the `live` blobs of each candidate pack into new packs and uploads them.
pub(super) async fn run(
    storage: &Storage,
    job: &str,
    candidates: Vec<(PackIndex, HashSet<Id>)>,
) -> Result<Repacked, StorageError> {
    let mut out = Repacked::default();
    let mut builder = PackBuilder::with_capacity(PACK_SIZE + (1 << 20));
    let mut sources: Vec<Id> = Vec::new();
    for (old, live) in candidates {
        let key = keys::pack_key(job, &old.id);
        let bytes = storage.get_bytes_max(&key, limits::MAX_PACK).await?;
        let entries: Vec<_> = old.blobs.iter().filter(|b| live.contains(&b.id)).collect();
        if let Some(e) = entries
            .iter()
            .find_map(|b| pack::extract(&key, &bytes, b).err())
        {
            out.warnings.push(format!(
                "{e}; the pack was not repacked (hint: `opsagent verify` names the files affected)"
            ));
            continue;
        }
        for b in entries {
            let stored = &bytes[b.offset as usize..(b.offset + b.length) as usize];
            builder.push(b.id, b.raw_length, b.compression, stored);
        }
        sources.push(old.id);
        if builder.len() >= PACK_SIZE {
            flush(storage, job, &mut builder, &mut sources, &mut out).await?;
        }
    }
    flush(storage, job, &mut builder, &mut sources, &mut out).await?;
    Ok(out)
}

/// Uploads the pack being filled, if any, and records which old packs it took blobs from.
async fn flush(
    storage: &Storage,
    job: &str,
    builder: &mut PackBuilder,
    sources: &mut Vec<Id>,
    out: &mut Repacked,
) -> Result<(), StorageError> {
    let full = std::mem::replace(builder, PackBuilder::with_capacity(PACK_SIZE + (1 << 20)));
    if full.is_empty() {
        // Nothing copied: the sources (if any) stay as they are, in use.
        sources.clear();
        return Ok(());
    }
    let p = full.finish();
    let size = p.bytes.len() as u64;
    storage
        .put_bytes(&keys::pack_key(job, &p.id), p.bytes.into())
        .await?;
    tracing::info!(job, pack = %p.id, size, from = sources.len(), "wrote a repacked pack");
    for s in sources.drain(..) {
        out.moved.entry(s).or_default().insert(p.id);
    }
    out.new_packs.push(PackIndex {
        id: p.id,
        size,
        blobs: p.blobs,
    });
    Ok(())
}

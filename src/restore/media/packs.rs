//! Pack by pack: which blobs of which pack land at which offsets of which files, and the
//! download pipeline that fetches each needed pack once (two downloads ahead of the writer),
//! checks its id, and hands it to a blocking consumer. Memory stays at a few packs (~8 MiB each)
//! whatever the size of the snapshot.

use crate::media::index::{Index, IndexFile, PackIndex, INDEX_FORMAT};
use crate::media::pack::BlobEntry;
use crate::media::tree::Node;
use crate::media::{keys, limits, Id};
use crate::storage::{Storage, StorageError};
use bytes::Bytes;
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap};

/// Where one chunk of a file goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkTarget {
    /// Index into the list of files being restored.
    pub file: u32,
    /// Byte offset in that file.
    pub offset: u64,
}

/// One blob of a pack and every place it is written.
#[derive(Debug, Clone)]
pub struct BlobWork {
    /// Where the blob is in the pack.
    pub entry: BlobEntry,
    /// Where it goes.
    pub targets: Vec<ChunkTarget>,
}

/// One pack to download and what to take out of it.
#[derive(Debug, Clone)]
pub struct PackWork {
    /// The pack id.
    pub id: Id,
    /// Its object key.
    pub key: String,
    /// Needed blobs, in pack order.
    pub blobs: Vec<BlobWork>,
}

/// The packs a set of files needs.
#[derive(Debug, Default)]
pub struct Plan {
    /// Packs in id order.
    pub packs: Vec<PackWork>,
    /// Per file: how many chunk writes complete it.
    pub writes: Vec<u32>,
    /// Files that cannot be planned (a chunk in no index, sizes that disagree), with why.
    pub unplannable: Vec<(u32, String)>,
}

/// Groups the chunks of `files` (tree nodes) by pack, via `index`.
pub fn plan(job: &str, files: &[&Node], index: &Index) -> Plan {
    let mut packs: BTreeMap<Id, (Vec<BlobWork>, HashMap<Id, usize>)> = BTreeMap::new();
    let mut out = Plan {
        writes: vec![0; files.len()],
        ..Plan::default()
    };
    for (i, node) in files.iter().enumerate() {
        let i = i as u32;
        let located: Option<Vec<_>> = node.chunks.iter().map(|c| index.blobs.get(c)).collect();
        let Some(located) = located else {
            let missing = node.chunks.iter().find(|c| !index.blobs.contains_key(c));
            out.unplannable.push((
                i,
                format!(
                    "chunk {} is in no index object (its pack was never indexed, or the index was removed)",
                    missing.map(|c| c.to_hex()).unwrap_or_default()
                ),
            ));
            continue;
        };
        let total = located
            .iter()
            .try_fold(0u64, |t, l| t.checked_add(l.entry.raw_length))
            .unwrap_or(u64::MAX);
        if total != node.size {
            out.unplannable.push((
                i,
                format!(
                    "its chunks add up to {total} bytes but the tree says {} (damaged tree or index)",
                    node.size
                ),
            ));
            continue;
        }
        let mut offset = 0;
        for l in located {
            let (blobs, pos) = packs.entry(l.pack).or_default();
            let at = *pos.entry(l.entry.id).or_insert_with(|| {
                blobs.push(BlobWork {
                    entry: l.entry,
                    targets: Vec::new(),
                });
                blobs.len() - 1
            });
            blobs[at].targets.push(ChunkTarget { file: i, offset });
            offset += l.entry.raw_length;
            out.writes[i as usize] += 1;
        }
    }
    out.packs = packs
        .into_iter()
        .map(|(id, (mut blobs, _))| {
            blobs.sort_by_key(|b| b.entry.offset);
            PackWork {
                id,
                key: keys::pack_key(job, &id),
                blobs,
            }
        })
        .collect();
    out
}

/// A downloaded pack.
#[derive(Debug)]
pub struct Fetched {
    /// Its bytes.
    pub bytes: Bytes,
    /// Whether they hash to the pack id (blobs are still checked one by one either way).
    pub id_ok: bool,
}

/// Why a pack could not be had, in a few words (the damage report names the pack's key).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The storage does not hold it.
    #[error("the pack is missing from storage")]
    Missing,
    /// Any other storage failure.
    #[error("it cannot be downloaded: {0}")]
    Download(StorageError),
}

/// A task of the restore's pipeline panicked or was cancelled.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// A pack download.
    #[error("a pack download task failed: {0}")]
    Download(tokio::task::JoinError),
    /// The thread writing the restored files (or checking packs, in a drill).
    #[error("the restore writer failed: {0}")]
    Writer(tokio::task::JoinError),
    /// The thread decoding the tree.
    #[error("{0}")]
    DecodeTree(tokio::task::JoinError),
}

/// The job's index, completed from the pack headers for packs of `packs` no index object
/// lists, and the warnings saying so.
pub async fn load_index(
    storage: &Storage,
    job: &str,
    packs: &[Id],
) -> Result<(Index, Vec<String>), super::MediaError> {
    let mut index = Index::load(storage, job)
        .await
        .map_err(|why| super::MediaError::Index {
            job: job.to_string(),
            why: Box::new(why),
        })?;
    let warnings = index_from_headers(storage, job, &mut index, packs).await;
    index.prefer(packs);
    Ok((index, warnings))
}

/// Adds to `index` each pack of `packs` that no index object lists, from the pack's own
/// header: an index object can be lost (deleted with a leaked key once its lock ran out, or by
/// hand) while the packs a snapshot uses are still there. A pack that cannot be read is left
/// out; the restore then reports the files it held. Returns one warning per pack read so.
pub async fn index_from_headers(
    storage: &Storage,
    job: &str,
    index: &mut Index,
    packs: &[Id],
) -> Vec<String> {
    let mut warnings = Vec::new();
    let unlisted: Vec<Id> = (packs.iter())
        .filter(|id| !index.packs.contains_key(id))
        .copied()
        .collect();
    for id in &unlisted {
        let key = keys::pack_key(job, id);
        let Ok(Fetched { bytes, id_ok: true }) = fetch(storage, &key, id).await else {
            continue;
        };
        let Ok(blobs) = crate::media::pack::parse_header(&key, &bytes) else {
            continue;
        };
        index.add(IndexFile {
            format: INDEX_FORMAT,
            packs: vec![PackIndex {
                id: *id,
                size: bytes.len() as u64,
                blobs,
            }],
            delete_pending: Vec::new(),
        });
        warnings.push(format!(
            "pack `{key}` is in no index object: its blobs were found from the pack's own header"
        ));
    }
    warnings
}

/// Downloads pack `id` at `key` and checks its id.
pub async fn fetch(storage: &Storage, key: &str, id: &Id) -> Result<Fetched, FetchError> {
    match storage.get_bytes_max(key, limits::MAX_PACK).await {
        Ok(bytes) => {
            let bytes2 = bytes.clone();
            let want = *id;
            let id_ok = tokio::task::spawn_blocking(move || Id::of(&bytes2) == want)
                .await
                .unwrap_or(false);
            Ok(Fetched { bytes, id_ok })
        }
        Err(StorageError::NotFound { .. }) => Err(FetchError::Missing),
        Err(e) => Err(FetchError::Download(e)),
    }
}

/// Downloads every pack of `work` (`ahead` at a time, in order) and calls `consume` for each on
/// one blocking thread, which owns `state` and gives it back at the end.
pub async fn pipeline<S, F>(
    storage: &Storage,
    work: Vec<PackWork>,
    ahead: usize,
    state: S,
    mut consume: F,
) -> Result<S, TaskError>
where
    S: Send + 'static,
    F: FnMut(&mut S, &PackWork, Result<Fetched, FetchError>) + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(PackWork, Result<Fetched, FetchError>)>(1);
    let worker = tokio::task::spawn_blocking(move || {
        let mut state = state;
        while let Some((w, got)) = rx.blocking_recv() {
            consume(&mut state, &w, got);
        }
        state
    });
    let mut downloads = futures::stream::iter(work)
        .map(|w| {
            let storage = storage.clone();
            tokio::spawn(async move {
                let got = fetch(&storage, &w.key, &w.id).await;
                (w, got)
            })
        })
        .buffered(ahead.max(1));
    while let Some(done) = downloads.next().await {
        let item = done.map_err(TaskError::Download)?;
        if tx.send(item).await.is_err() {
            break;
        }
    }
    drop(tx);
    worker.await.map_err(TaskError::Writer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::index::{IndexFile, PackIndex, INDEX_FORMAT};
    use crate::media::pack::Compression;
    use crate::media::tree::{NodeKind, RawPath};

    fn entry(data: &[u8], offset: u64) -> BlobEntry {
        BlobEntry {
            id: Id::of(data),
            offset,
            length: data.len() as u64,
            raw_length: data.len() as u64,
            compression: Compression::None,
        }
    }

    fn file(path: &str, chunks: &[&[u8]]) -> Node {
        Node {
            path: RawPath(path.as_bytes().to_vec()),
            kind: NodeKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            inode: 0,
            size: chunks.iter().map(|c| c.len() as u64).sum(),
            target: None,
            chunks: chunks.iter().map(|c| Id::of(c)).collect(),
        }
    }

    #[test]
    fn groups_by_pack_with_offsets_and_shared_blobs() {
        let mut index = Index::default();
        index.add(IndexFile {
            format: INDEX_FORMAT,
            packs: vec![
                PackIndex {
                    id: Id::of(b"p1"),
                    size: 0,
                    blobs: vec![entry(b"bb", 0), entry(b"aaa", 2)],
                },
                PackIndex {
                    id: Id::of(b"p2"),
                    size: 0,
                    blobs: vec![entry(b"c", 0)],
                },
            ],
            delete_pending: vec![],
        });
        let a = file("/a", &[b"aaa", b"c", b"aaa"]);
        let b = file("/b", &[b"bb"]);
        let mut bad = file("/bad", &[b"zz"]);
        let mut wrong = file("/wrong", &[b"c"]);
        wrong.size = 5;
        bad.size = 2;
        let p = plan("up", &[&a, &b, &bad, &wrong], &index);
        assert_eq!(p.writes, vec![3, 1, 0, 0]);
        assert_eq!(p.unplannable.len(), 2);
        assert!(p.unplannable[0].1.contains("no index"));
        assert!(p.unplannable[1].1.contains("add up to 1 bytes"));
        assert_eq!(p.packs.len(), 2);
        let p1 = p.packs.iter().find(|w| w.id == Id::of(b"p1")).unwrap();
        assert_eq!(p1.key, keys::pack_key("up", &Id::of(b"p1")));
        // Pack order, one entry per blob, every target.
        assert_eq!(p1.blobs[0].entry.id, Id::of(b"bb"));
        assert_eq!(
            p1.blobs[0].targets,
            vec![ChunkTarget { file: 1, offset: 0 }]
        );
        assert_eq!(
            p1.blobs[1].targets,
            vec![
                ChunkTarget { file: 0, offset: 0 },
                ChunkTarget { file: 0, offset: 4 }
            ]
        );
    }
}

//! Fetching a format-2 tree's blobs from the packs holding them: the list blobs, then the entry
//! blobs they name; each pack is downloaded once, whole (packs may be encrypted, which rules out
//! range reads), and only the stored bytes of the blobs wanted are kept.
//!
//! Everything here comes from the bucket and is untrusted: the list of ids is bounded before it
//! grows ([`MAX_TREE_BLOBS`]), a blob the index does not know or a pack that does not hold it is
//! an error naming the tree (and the pack), and each blob is checked against its id (BLAKE3 of
//! the plaintext) when it is read, so a pack slipped into the bucket can serve only the very
//! blobs the tree object names.

use super::{Id, TreeError, TreeReader};
use crate::media::keys;
use crate::media::limits::MAX_PACK;
use crate::media::pack::{self, BlobEntry};
use crate::storage::Storage;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufReader, Read};
use std::sync::Arc;

/// Most entry blobs a tree may have: about 15 entries each, so some 30 million files; their
/// ids take 64 MiB.
pub const MAX_TREE_BLOBS: usize = 1 << 21;

/// Bytes of packs [`TreeBlobs::fetch`] keeps from the list blobs' packs for the entry blobs
/// (the same packs hold both).
const FETCH_CACHE: usize = 64 << 20;

/// Packs already downloaded, for reading several trees of a job (prune reads every snapshot's,
/// and they share most blobs): each pack is then downloaded once, not once per tree. Holds at
/// most `budget` bytes of packs; past that, packs are downloaded again.
#[derive(Default)]
pub struct BlobCache {
    packs: HashMap<Id, Arc<Fetched>>,
    bytes: usize,
    budget: usize,
}

impl BlobCache {
    /// A cache of up to `budget` bytes.
    pub fn new(budget: usize) -> BlobCache {
        BlobCache {
            budget,
            ..BlobCache::default()
        }
    }
}

/// A downloaded pack: its bytes and where its blobs are. A tree's blobs point into it, so its
/// bytes are held once, in one block, while the tree is read.
struct Fetched {
    key: String,
    bytes: Bytes,
    blobs: HashMap<Id, BlobEntry>,
}

/// A blob: its pack and its entry there.
#[derive(Clone)]
struct Stored {
    pack: Arc<Fetched>,
    entry: BlobEntry,
}

/// The blobs of a format-2 tree, fetched (stored bytes, checked as they are read).
pub struct TreeBlobs {
    key: String,
    /// The list blobs' ids.
    pub lists: Vec<Id>,
    /// The entry blobs' ids, in order.
    pub entries: Vec<Id>,
    stored: HashMap<Id, Stored>,
}

impl TreeBlobs {
    /// Fetches the blobs of the tree `key` of `job` whose object lists `lists`; `pack_of` says
    /// which pack holds a blob (the job's index).
    pub async fn fetch(
        storage: &Storage,
        job: &str,
        key: &str,
        lists: Vec<Id>,
        pack_of: &(dyn Fn(&Id) -> Option<Id> + Sync),
    ) -> Result<TreeBlobs, TreeError> {
        let mut cache = BlobCache::new(FETCH_CACHE);
        Self::fetch_with(storage, job, key, lists, pack_of, &mut cache).await
    }

    /// [`fetch`](Self::fetch), taking what it can from `cache` and keeping there what it
    /// downloads.
    pub async fn fetch_with(
        storage: &Storage,
        job: &str,
        key: &str,
        lists: Vec<Id>,
        pack_of: &(dyn Fn(&Id) -> Option<Id> + Sync),
        cache: &mut BlobCache,
    ) -> Result<TreeBlobs, TreeError> {
        let at = Where { storage, job, key };
        let listed = fetch_blobs(&at, &lists, pack_of, cache).await?;
        // The lists are one text cut anywhere: a line may go on in the next list blob.
        let (mut entries, mut text) = (Vec::new(), Vec::new());
        for id in &lists {
            text.extend(plain(&listed[id]).map_err(|why| blob_error(key, id, why))?);
            let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            for line in text[..complete]
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
            {
                let Some(e) = std::str::from_utf8(line).ok().and_then(Id::from_hex) else {
                    return Err(blob_error(
                        key,
                        id,
                        "holds a line that is not a blob id".into(),
                    ));
                };
                if entries.len() >= MAX_TREE_BLOBS {
                    let why = format!("lists more than the {MAX_TREE_BLOBS} blobs a tree ever has (forged or damaged); refused");
                    return Err(blob_error(key, id, why));
                }
                entries.push(e);
            }
            text.drain(..complete);
            if text.len() > 64 {
                return Err(blob_error(
                    key,
                    id,
                    "holds a line that is not a blob id".into(),
                ));
            }
        }
        if let (false, Some(id)) = (text.is_empty(), lists.last()) {
            return Err(blob_error(
                key,
                id,
                "ends in the middle of a line (truncated?)".into(),
            ));
        }
        let stored = fetch_blobs(&at, &entries, pack_of, cache).await?;
        Ok(TreeBlobs {
            key: key.to_string(),
            lists,
            entries,
            stored,
        })
    }

    /// The entries, read from the blobs in order.
    pub fn reader(self) -> TreeReader {
        let key = self.key.clone();
        TreeReader::of_text(&key, Box::new(BufReader::new(Chain::new(self))))
    }
}

fn blob_error(key: &str, blob: &Id, why: String) -> TreeError {
    TreeError::Blob {
        key: key.to_string(),
        blob: *blob,
        why,
    }
}

/// The plaintext of a fetched blob, checked against its id.
fn plain(s: &Stored) -> Result<Vec<u8>, String> {
    pack::extract(&s.pack.key, &s.pack.bytes, &s.entry).map_err(|e| format!("is unreadable: {e}"))
}

/// Where a tree's blobs are.
struct Where<'a> {
    storage: &'a Storage,
    job: &'a str,
    /// The tree object's key, for errors.
    key: &'a str,
}

/// Where each blob of `wanted` is: in the packs holding them, from `cache` or downloaded (one
/// at a time).
async fn fetch_blobs(
    at: &Where<'_>,
    wanted: &[Id],
    pack_of: &(dyn Fn(&Id) -> Option<Id> + Sync),
    cache: &mut BlobCache,
) -> Result<HashMap<Id, Stored>, TreeError> {
    let key = at.key;
    let mut by_pack: BTreeMap<Id, HashSet<Id>> = BTreeMap::new();
    for id in wanted {
        let pack = pack_of(id).ok_or_else(|| {
            let why = "is in no pack of the job's index (forged tree, or its pack was lost)";
            blob_error(key, id, why.into())
        })?;
        by_pack.entry(pack).or_default().insert(*id);
    }
    let mut out = HashMap::with_capacity(wanted.len());
    for (pack, ids) in by_pack {
        let first = *ids.iter().next().expect("a pack is listed for a blob");
        let fetched = match cache.packs.get(&pack) {
            Some(f) => f.clone(),
            None => {
                let f = Arc::new(
                    download(at, &pack)
                        .await
                        .map_err(|why| blob_error(key, &first, why))?,
                );
                if cache.bytes + f.bytes.len() <= cache.budget {
                    cache.bytes += f.bytes.len();
                    cache.packs.insert(pack, f.clone());
                }
                f
            }
        };
        for id in ids {
            let Some(entry) = fetched.blobs.get(&id) else {
                let why = format!(
                    "is not in pack `{}`, which the index says holds it",
                    fetched.key
                );
                return Err(blob_error(key, &id, why));
            };
            let pack = fetched.clone();
            out.insert(
                id,
                Stored {
                    pack,
                    entry: *entry,
                },
            );
        }
    }
    Ok(out)
}

/// Downloads pack `id` and reads its header. (The error is a `String` on purpose: the why of
/// the caller's typed `blob_error`, which names the tree and the blob.)
async fn download(at: &Where<'_>, id: &Id) -> Result<Fetched, String> {
    let key = keys::pack_key(at.job, id);
    let bytes = (at.storage.get_bytes_max(&key, MAX_PACK).await)
        .map_err(|e| format!("cannot be had: its pack: {e}"))?;
    let header = pack::parse_header(&key, &bytes).map_err(|e| format!("cannot be had: {e}"))?;
    let blobs = header.into_iter().map(|e| (e.id, e)).collect();
    Ok(Fetched { key, bytes, blobs })
}

/// The entry blobs' plaintexts one after the other, each checked against its id as it comes.
struct Chain {
    blobs: TreeBlobs,
    /// The next blob to read.
    next: usize,
    current: Vec<u8>,
    pos: usize,
}

impl Chain {
    fn new(blobs: TreeBlobs) -> Chain {
        Chain {
            blobs,
            next: 0,
            current: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for Chain {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.current.len() {
            let Some(id) = self.blobs.entries.get(self.next) else {
                return Ok(0);
            };
            self.next += 1;
            let s = &self.blobs.stored[id];
            self.current = plain(s).map_err(|why| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("tree blob {id} {why}"),
                )
            })?;
            self.pos = 0;
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

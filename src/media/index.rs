//! The index: which pack holds which blob. Each backup run writes one index object for the packs
//! it uploaded (after the packs, before the snapshot manifest); prune rewrites them into one.
//! An index object is zstd-compressed JSON (see docs/FORMAT.md):
//!
//! ```json
//! {"format":1,"packs":[{"id":"<pack id>","size":8391234,"blobs":[{"id":"…","offset":0,
//!   "length":1234,"raw_length":4096,"compression":"zstd"}]}],
//!  "delete_pending":[{"pack":"<pack id>","since":"2026-11-20T03:00:00Z"}]}
//! ```
//!
//! `delete_pending` lists packs no snapshot referenced when prune last looked; new backups do not
//! reuse their blobs, and a later prune deletes them once the grace period has passed and they are
//! still unreferenced (a backup that started before the mark and reused them makes them live again).

use super::id::Id;
use super::keys;
use super::limits;
use super::pack::BlobEntry;
use crate::storage::{Storage, StorageError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Index format version.
pub const INDEX_FORMAT: u32 = 1;

/// One pack as the index lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackIndex {
    /// The pack id (BLAKE3 of its bytes).
    pub id: Id,
    /// Stored size of the pack.
    pub size: u64,
    /// Its blobs.
    pub blobs: Vec<BlobEntry>,
}

/// A pack marked for deletion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingDelete {
    /// The pack id.
    pub pack: Id,
    /// When prune first found it unreferenced.
    pub since: DateTime<Utc>,
}

/// The content of one index object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFile {
    /// [`INDEX_FORMAT`].
    pub format: u32,
    /// Packs listed.
    pub packs: Vec<PackIndex>,
    /// Packs waiting for deletion.
    #[serde(default)]
    pub delete_pending: Vec<PendingDelete>,
}

impl IndexFile {
    /// Serializes and compresses; returns the object's id and bytes.
    pub fn encode(&self) -> (Id, Vec<u8>) {
        let json = serde_json::to_vec(self).expect("an index serializes");
        let id = Id::of(&json);
        (id, zstd::bulk::compress(&json, 3).expect("zstd compresses"))
    }

    /// Decompresses and parses an index object; `key` names it in errors.
    pub fn decode(key: &str, bytes: &[u8]) -> Result<IndexFile, IndexDecodeError> {
        // Parsed as it is decompressed: the JSON text is several times the object's size.
        // Bounded: a forged index must not expand a thousandfold (src/media/limits.rs).
        let text =
            zstd::Decoder::with_buffer(bytes).map_err(|cause| IndexDecodeError::Decompress {
                key: key.to_string(),
                cause,
            })?;
        let text = limits::Bounded::new(text, limits::expanded_limit(bytes.len() as u64));
        let f: IndexFile =
            serde_json::from_reader(std::io::BufReader::new(text)).map_err(|cause| {
                IndexDecodeError::Parse {
                    key: key.to_string(),
                    cause,
                }
            })?;
        let huge = f.packs.iter().flat_map(|p| &p.blobs);
        if let Some(b) = huge.into_iter().find(|b| b.raw_length > limits::MAX_BLOB) {
            return Err(IndexDecodeError::BlobTooLarge {
                key: key.to_string(),
                blob: b.id,
                claims: b.raw_length,
            });
        }
        if f.format != INDEX_FORMAT {
            return Err(IndexDecodeError::Format {
                key: key.to_string(),
                format: f.format,
            });
        }
        Ok(f)
    }
}

/// Why an index object cannot be used. Each names the object's key.
#[derive(Debug, thiserror::Error)]
pub enum IndexDecodeError {
    /// It does not decompress.
    #[error("index `{key}` is damaged: {cause}")]
    Decompress {
        /// The index object's key.
        key: String,
        /// What zstd said.
        cause: std::io::Error,
    },
    /// It does not parse, or expands past its bound while parsed.
    #[error("index `{key}` is damaged: {cause}")]
    Parse {
        /// The index object's key.
        key: String,
        /// What the JSON parser (or the bound under it) said.
        cause: serde_json::Error,
    },
    /// A blob claims more content than a blob ever has (a forged index).
    #[error(
        "index `{key}` is damaged: blob {blob} claims {claims} bytes of content, more than the {} a blob ever has; refused",
        limits::MAX_BLOB
    )]
    BlobTooLarge {
        /// The index object's key.
        key: String,
        /// The blob.
        blob: Id,
        /// The content size it claims.
        claims: u64,
    },
    /// A format this build does not know.
    #[error(
        "index `{key}` has format {format}, unknown to this opsagent (hint: upgrade opsagent)"
    )]
    Format {
        /// The index object's key.
        key: String,
        /// The format it claims.
        format: u32,
    },
}

/// Where a blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack holding it.
    pub pack: Id,
    /// Its entry in that pack.
    pub entry: BlobEntry,
}

/// Every index object of a job, merged.
#[derive(Debug, Default)]
pub struct Index {
    /// Pack id → its listing.
    pub packs: BTreeMap<Id, PackIndex>,
    /// Blob id → where it is (first pack found wins).
    pub blobs: HashMap<Id, BlobLocation>,
    /// Packs marked for deletion, with the earliest mark.
    pub delete_pending: BTreeMap<Id, DateTime<Utc>>,
    /// The index objects this was read from.
    pub keys: Vec<String>,
}

impl Index {
    /// Adds one index file's content.
    pub fn add(&mut self, f: IndexFile) {
        for p in f.packs {
            for b in &p.blobs {
                self.blobs.entry(b.id).or_insert(BlobLocation {
                    pack: p.id,
                    entry: *b,
                });
            }
            self.packs.insert(p.id, p);
        }
        for d in f.delete_pending {
            let e = self.delete_pending.entry(d.pack).or_insert(d.since);
            *e = (*e).min(d.since);
        }
    }

    /// Makes the blobs that `packs` (a manifest's list) hold point into those packs. A blob kept
    /// in several packs is otherwise found in whichever index object came first, which may name
    /// a pack the snapshot does not use: one lost from the bucket, whose blobs a later backup
    /// stored again elsewhere (src/backup/media.rs).
    pub fn prefer(&mut self, packs: &[Id]) {
        let wanted: HashSet<&Id> = packs.iter().collect();
        for id in packs {
            let Some(p) = self.packs.get(id) else {
                continue;
            };
            for b in &p.blobs {
                if let Some(l) = self.blobs.get_mut(&b.id) {
                    if !wanted.contains(&l.pack) {
                        *l = BlobLocation {
                            pack: p.id,
                            entry: *b,
                        };
                    }
                }
            }
        }
    }

    /// Reads and merges every index object of `job`. A damaged index object is an error naming
    /// its key: guessing would risk reusing blobs that are not there.
    pub async fn load(storage: &Storage, job: &str) -> Result<Index, IndexError> {
        let mut index = Index::default();
        for o in storage.list(&keys::index_prefix(job)).await? {
            let bytes = storage.get_bytes_max(&o.key, limits::MAX_INDEX).await?;
            let f = IndexFile::decode(&o.key, &bytes).map_err(IndexError::Damaged)?;
            index.add(f);
            index.keys.push(o.key);
        }
        Ok(index)
    }
}

/// What a backup needs of the index: which blobs it may reuse, and the pack each is kept in
/// (for the manifest's `packs`). A blob listed in several packs counts in the first one (in
/// pack id order) that is not pending deletion; blobs only in pending packs are not reusable.
/// About 40 bytes per blob where the whole [`Index`] takes about 180: a backup of a large
/// tree keeps this for its whole run.
#[derive(Debug, Default)]
pub struct Reuse {
    /// Pack number → pack id.
    packs: Vec<Id>,
    /// Blob id → pack number.
    blobs: HashMap<Id, u32>,
}

impl Reuse {
    /// The reusable blobs of `index`.
    pub fn of(index: &Index) -> Reuse {
        let mut r = Reuse {
            packs: Vec::new(),
            blobs: HashMap::with_capacity(index.blobs.len()),
        };
        for p in index.packs.values() {
            if index.delete_pending.contains_key(&p.id) {
                continue;
            }
            let n = u32::try_from(r.packs.len()).expect("fewer than 2^32 packs");
            r.packs.push(p.id);
            for b in &p.blobs {
                r.blobs.entry(b.id).or_insert(n);
            }
        }
        r
    }

    /// Whether a backup may refer to `blob` instead of storing it again.
    pub fn reusable(&self, blob: &Id) -> bool {
        self.blobs.contains_key(blob)
    }

    /// The pack a reusable blob is kept in.
    pub fn pack_of(&self, blob: &Id) -> Option<Id> {
        self.blobs.get(blob).map(|&n| self.packs[n as usize])
    }

    /// Reusable blobs.
    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    /// Whether no blob is reusable.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }
}

/// Writes `file` as a new index object of `job`; returns its key.
pub async fn write(storage: &Storage, job: &str, file: &IndexFile) -> Result<String, StorageError> {
    let (id, bytes) = file.encode();
    let key = keys::index_key(job, &id);
    storage.put_bytes(&key, bytes.into()).await?;
    Ok(key)
}

/// Reading the index failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// An index object cannot be parsed.
    #[error("{0} (hint: `opsagent verify` checks the packs; remove the damaged index only if every pack it lists is also listed elsewhere)")]
    Damaged(IndexDecodeError),
}

#[cfg(test)]
mod tests {
    use super::super::pack::Compression;
    use super::*;

    fn entry(b: &[u8], offset: u64) -> BlobEntry {
        BlobEntry {
            id: Id::of(b),
            offset,
            length: b.len() as u64,
            raw_length: b.len() as u64,
            compression: Compression::None,
        }
    }

    #[test]
    fn prefer_points_shared_blobs_into_the_listed_packs() {
        let lost = PackIndex {
            id: Id::of(b"lost"),
            size: 10,
            blobs: vec![entry(b"a", 0), entry(b"b", 1)],
        };
        let again = PackIndex {
            id: Id::of(b"again"),
            size: 10,
            blobs: vec![entry(b"b", 5), entry(b"a", 6)],
        };
        let mut idx = Index::default();
        for p in [lost, again] {
            idx.add(IndexFile {
                format: INDEX_FORMAT,
                packs: vec![p],
                delete_pending: vec![],
            });
        }
        assert_eq!(idx.blobs[&Id::of(b"a")].pack, Id::of(b"lost"), "first wins");
        idx.prefer(&[Id::of(b"again")]);
        for (b, at) in [(&b"a"[..], 6), (b"b", 5)] {
            let l = &idx.blobs[&Id::of(b)];
            assert_eq!((l.pack, l.entry.offset), (Id::of(b"again"), at));
        }
    }

    #[test]
    fn encode_decode_merge() {
        let p1 = PackIndex {
            id: Id::of(b"p1"),
            size: 10,
            blobs: vec![entry(b"a", 0), entry(b"b", 1)],
        };
        let p2 = PackIndex {
            id: Id::of(b"p2"),
            size: 10,
            blobs: vec![entry(b"c", 0)],
        };
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let f = IndexFile {
            format: INDEX_FORMAT,
            packs: vec![p1.clone(), p2],
            delete_pending: vec![PendingDelete {
                pack: p1.id,
                since: t,
            }],
        };
        let (_, bytes) = f.encode();
        let back = IndexFile::decode("k", &bytes).unwrap();
        assert_eq!(back, f);
        let mut idx = Index::default();
        idx.add(back);
        assert_eq!(idx.blobs.len(), 3);
        let reuse = Reuse::of(&idx);
        assert!(
            !reuse.reusable(&Id::of(b"a")),
            "pack p1 is pending deletion"
        );
        assert!(reuse.reusable(&Id::of(b"c")));
        assert!(!reuse.reusable(&Id::of(b"zz")));
        assert_eq!(reuse.len(), 1, "only p2's blob: p1 is pending deletion");
        assert_eq!(reuse.pack_of(&Id::of(b"c")), Some(Id::of(b"p2")));
        assert!(!reuse.reusable(&Id::of(b"a")));
        // Repacked: `a` also sits in a live pack now, and is reused from there.
        idx.add(IndexFile {
            format: INDEX_FORMAT,
            packs: vec![PackIndex {
                id: Id::of(b"p3"),
                size: 1,
                blobs: vec![entry(b"a", 0)],
            }],
            delete_pending: vec![],
        });
        assert_eq!(Reuse::of(&idx).pack_of(&Id::of(b"a")), Some(Id::of(b"p3")));
        assert!(IndexFile::decode("k", b"junk")
            .unwrap_err()
            .to_string()
            .contains("`k`"));
    }
}

//! A media snapshot's tree for a restore or a drill: the tree object, checked against the
//! manifest's size and sha256 and decrypted, then its entries (a format-2 tree's blobs fetched
//! from their packs through the job's index).

use super::packs::{self, TaskError};
use super::MediaError;
use crate::media::limits;
use crate::media::tree::{self, Node, Opened, TreeBlobs, TreeError};
use crate::snapshot::manifest::Manifest;
use crate::storage::{Storage, StorageError};
use sha2::{Digest, Sha256};

/// Why a snapshot's tree cannot be had; [`MediaError::Tree`] names the snapshot.
#[derive(Debug, thiserror::Error)]
pub enum TreeLoadError {
    /// The manifest has no objects.
    #[error("manifest `{manifest}` lists no tree")]
    NotListed {
        /// The manifest's key.
        manifest: String,
    },
    /// The storage failed (opening or decrypting the object).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Reading the object failed midway.
    #[error("cannot download `{key}`: {cause}")]
    Download {
        /// The tree's key.
        key: String,
        /// What went wrong.
        cause: std::io::Error,
    },
    /// More bytes than a tree ever takes (a forged object).
    #[error(
        "`{key}` is larger than the {} bytes a tree ever takes; refused",
        limits::MAX_TREE
    )]
    TooLarge {
        /// The tree's key.
        key: String,
    },
    /// Not the bytes the manifest recorded.
    #[error("`{key}` is corrupt: {size} bytes with sha256 {sha256}, the manifest recorded {recorded_size} bytes with sha256 {recorded_sha256}")]
    Corrupt {
        /// The tree's key.
        key: String,
        /// Bytes downloaded.
        size: usize,
        /// Their sha256.
        sha256: String,
        /// The manifest's size.
        recorded_size: u64,
        /// The manifest's sha256.
        recorded_sha256: String,
    },
    /// Decrypting failed midway.
    #[error("{0}")]
    Decrypt(std::io::Error),
    /// The tree does not decode.
    #[error(transparent)]
    Decode(#[from] TreeError),
}

/// Downloads the tree of media snapshot `m`, checking size and sha256 against the manifest;
/// a format-2 tree's blobs are then fetched from the packs the job's index names (each checked
/// against its id).
pub async fn load_tree(storage: &Storage, m: &Manifest) -> Result<Vec<Node>, MediaError> {
    let tree_error = |why: TreeLoadError| MediaError::Tree {
        snapshot: m.id.clone(),
        why: Box::new(why),
    };
    let bytes = download_tree(storage, m).await.map_err(tree_error)?;
    let key = m.objects[0].key.clone();
    let n = bytes.len() as u64;
    let reader = match tree::open(&key, std::io::Cursor::new(bytes), n) {
        Ok(Opened::Entries(r)) => r,
        Ok(Opened::Lists(lists)) => {
            let listed = m.media.as_ref().map_or(&[][..], |s| &s.packs);
            let (index, _) = packs::load_index(storage, &m.job, listed).await?;
            let pack_of = |id: &crate::media::Id| index.blobs.get(id).map(|l| l.pack);
            TreeBlobs::fetch(storage, &m.job, &key, lists, &pack_of)
                .await
                .map_err(|e| tree_error(e.into()))?
                .reader()
        }
        Err(e) => return Err(tree_error(e.into())),
    };
    tokio::task::spawn_blocking(move || {
        let mut r = reader;
        let mut nodes = Vec::new();
        while let Some(n) = r.next_node()? {
            nodes.push(n);
        }
        Ok::<_, TreeError>(nodes)
    })
    .await
    .map_err(TaskError::DecodeTree)?
    .map_err(|e| tree_error(e.into()))
}

/// The plaintext of the tree of `m`, its stored bytes checked against the manifest.
async fn download_tree(storage: &Storage, m: &Manifest) -> Result<Vec<u8>, TreeLoadError> {
    let obj = m
        .objects
        .first()
        .ok_or_else(|| TreeLoadError::NotListed { manifest: m.key() })?;
    // The manifest's sha256 is of the stored bytes (ciphertext when encrypted): check those,
    // then decrypt.
    // Read with a cap (src/media/limits.rs): neither the manifest nor the object may make
    // this allocate more than a tree ever takes.
    let mut stored = Vec::new();
    let reader = storage.raw_reader(&obj.key).await?;
    tokio::io::AsyncReadExt::read_to_end(
        &mut tokio::io::AsyncReadExt::take(reader, limits::MAX_TREE + 1),
        &mut stored,
    )
    .await
    .map_err(|cause| TreeLoadError::Download {
        key: obj.key.clone(),
        cause,
    })?;
    if stored.len() as u64 > limits::MAX_TREE {
        return Err(TreeLoadError::TooLarge {
            key: obj.key.clone(),
        });
    }
    let sha = hex::encode(Sha256::digest(&stored));
    if stored.len() as u64 != obj.size || sha != obj.sha256 {
        return Err(TreeLoadError::Corrupt {
            key: obj.key.clone(),
            size: stored.len(),
            sha256: sha,
            recorded_size: obj.size,
            recorded_sha256: obj.sha256.clone(),
        });
    }
    let mut bytes = Vec::new();
    let mut plain = storage.decrypting_read(&obj.key, std::io::Cursor::new(stored))?;
    std::io::Read::read_to_end(&mut plain, &mut bytes).map_err(TreeLoadError::Decrypt)?;
    Ok(bytes)
}

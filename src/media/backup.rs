//! The media backup engine: walks the paths, reads the files that changed since the previous
//! snapshot, cuts them into content-defined chunks, stores each chunk not already in the
//! repository once (compressed unless it does not compress), fills packs of about
//! [`PACK_SIZE`] bytes and uploads them while reading goes on.
//!
//! Threads: the walk runs on one blocking thread, file reading/hashing/compression on
//! `workers` threads, uploads on the async runtime (src/media/upload.rs) with two packs in
//! flight. Memory stays bounded: one pack being filled, `PACKS_QUEUED` queued, two
//! uploading, one chunk window per worker; finished files go back into the tree while the
//! walk goes on.

use super::building::{read_all, Built};
use super::id::Id;
use super::index::{PackIndex, Reuse};
use super::pack::{BlobEncoder, FinishedPack, PackBuilder};
use super::previous::Previous;
use super::upload::upload_packs;
use super::walk::{WalkError, WalkSettings};
use crate::storage::{Storage, StorageError};
use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Largest pack, header and trailer included: the storage's first multipart part size
/// (8 MiB, src/storage/multipart/write.rs) less room for age encryption (16 bytes per 64 KiB plus a
/// header of about 100 bytes per recipient), so each pack goes up as one plain PUT rather
/// than a multipart upload of four requests.
pub const PACK_SIZE: usize = (8 << 20) - (64 << 10);

/// Packs finished and waiting for an upload slot (each up to [`PACK_SIZE`] in memory).
const PACKS_QUEUED: usize = 1;

/// What one backup does.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// The job (names the keys).
    pub job: String,
    /// What to walk.
    pub walk: WalkSettings,
    /// zstd level.
    pub level: i32,
    /// Reading threads.
    pub workers: usize,
    /// The IO class (walk and readers) and nice value (readers) to read at (`None`: inherited).
    pub priority: Option<crate::priority::Priority>,
}

/// Counts of a backup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Regular files in the snapshot.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Bytes of all files.
    pub bytes: u64,
    /// Files read (new or changed).
    pub files_read: u64,
    /// Bytes read from disk.
    pub bytes_read: u64,
    /// Bytes of chunks stored for the first time (plaintext).
    pub new_bytes: u64,
    /// Bytes of packs uploaded.
    pub new_stored: u64,
}

/// What a backup produced; nothing of it is committed yet.
#[derive(Debug)]
pub struct Outcome {
    /// The tree object (src/media/tree.rs, format 2: its blobs were stored as the walk went).
    pub tree: Vec<u8>,
    /// Size of the tree object's text before compression.
    pub tree_raw_size: u64,
    /// Packs of earlier runs that hold chunks or tree blobs of this tree.
    pub reused_packs: BTreeSet<Id>,
    /// Packs uploaded by this run, for the new index object.
    pub new_packs: Vec<PackIndex>,
    /// Counts.
    pub stats: Stats,
    /// Files skipped or possibly inconsistent.
    pub warnings: Vec<String>,
}

/// Why a backup's engine stopped. Nothing is committed then; the packs already uploaded are
/// collected by a later prune.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A configured path cannot be read.
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// A pack upload failed (the storage error names the key and a hint).
    #[error(transparent)]
    Upload(#[from] StorageError),
    /// The uploads stopped (after an upload failure, which is reported instead).
    #[error("the pack upload stopped")]
    UploadStopped,
    /// The reading threads stopped before the walk ended.
    #[error("the reading threads stopped")]
    ReadersStopped,
    /// The walk stopped because a reading thread failed (that failure is reported instead).
    #[error("stopped after an error")]
    Stopped,
    /// The tree could not be encoded.
    #[error("encoding the tree: {0}")]
    EncodeTree(#[from] std::io::Error),
    /// A chunk of the tree is neither reused nor stored by this run.
    #[error("chunk {chunk} of `{path}` is in no pack (bug)")]
    ChunkInNoPack {
        /// The chunk.
        chunk: Id,
        /// The file holding it.
        path: String,
    },
    /// Entries never got their reading result.
    #[error("{entries} entries of the tree never got their reading result (bug)")]
    Unfinished {
        /// How many.
        entries: usize,
    },
    /// The thread reading files panicked or was cancelled.
    #[error("the reading thread failed: {0}")]
    ReadingThread(tokio::task::JoinError),
    /// The task uploading packs panicked or was cancelled.
    #[error("the upload task failed: {0}")]
    UploadTask(tokio::task::JoinError),
    /// One pack upload panicked or was cancelled.
    #[error("a pack upload task failed: {0}")]
    PackUploadTask(tokio::task::JoinError),
    /// An upload was awaited with none running (a bug).
    #[error("no pack upload was running")]
    NoUploadRunning,
}

/// What the walk and the reading threads share.
pub(super) struct Shared {
    pub(super) reuse: Arc<Reuse>,
    pub(super) new_blobs: Mutex<HashSet<Id>>,
    pub(super) packer: Mutex<PackBuilder>,
    /// The pack being filled with tree blobs (kept apart from file data: a tree is read back
    /// whole, pack by pack).
    pub(super) tree_packer: Mutex<PackBuilder>,
    pub(super) pack_tx: tokio::sync::mpsc::Sender<FinishedPack>,
    pub(super) level: i32,
    pub(super) new_bytes: AtomicU64,
    pub(super) failed: AtomicBool,
    pub(super) progress: Option<Arc<AtomicU64>>,
    pub(super) follow_symlinks: bool,
}

impl Shared {
    /// Stores `data` as a blob of file content unless it is stored already; returns its id.
    pub(super) fn add_blob(
        &self,
        enc: &mut BlobEncoder,
        data: &[u8],
        compress: bool,
    ) -> Result<Id, EngineError> {
        let id = Id::of(data);
        if self.reuse.reusable(&id) || !self.new_blobs.lock().unwrap().insert(id) {
            return Ok(id);
        }
        self.new_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.pack(&self.packer, enc, id, data, compress)?;
        Ok(id)
    }

    /// Stores a new blob of the tree (its id is `id`, not in the index) in a tree pack, unless
    /// this run stored it already.
    pub(super) fn add_tree_blob(
        &self,
        enc: &mut BlobEncoder,
        id: Id,
        data: &[u8],
    ) -> Result<(), EngineError> {
        if !self.new_blobs.lock().unwrap().insert(id) {
            return Ok(());
        }
        self.pack(&self.tree_packer, enc, id, data, true)
    }

    /// Encodes a new blob into `packer`, sending the pack first if it is full.
    fn pack(
        &self,
        packer: &Mutex<PackBuilder>,
        enc: &mut BlobEncoder,
        id: Id,
        data: &[u8],
        compress: bool,
    ) -> Result<(), EngineError> {
        let (c, stored) = enc.encode(data, compress);
        let full = {
            let mut p = packer.lock().unwrap();
            let full = (!p.is_empty() && p.size_with(stored.len()) > PACK_SIZE)
                .then(|| std::mem::replace(&mut *p, PackBuilder::with_capacity(PACK_SIZE)));
            p.push(id, data.len() as u64, c, stored);
            full
        };
        if let Some(p) = full {
            self.send(p)?;
        }
        Ok(())
    }

    pub(super) fn send(&self, p: PackBuilder) -> Result<(), EngineError> {
        if p.is_empty() {
            return Ok(());
        }
        self.pack_tx
            .blocking_send(p.finish())
            .map_err(|_| EngineError::UploadStopped)
    }
}

/// The engine's part of a backup: walks the paths, stores the chunks not in `reuse` in new
/// packs (uploaded as they fill) and writes the tree, reusing the chunks of files unchanged
/// since `previous`. Commits nothing: the job run (src/backup/media.rs) writes the index
/// object, the tree and the manifest from the [`Outcome`].
pub async fn walk_and_store(
    storage: &Storage,
    s: &EngineSettings,
    reuse: Arc<Reuse>,
    previous: Previous,
    progress: Option<Arc<AtomicU64>>,
) -> Result<Outcome, EngineError> {
    let (pack_tx, pack_rx) = tokio::sync::mpsc::channel::<FinishedPack>(PACKS_QUEUED);
    let uploader = tokio::spawn(upload_packs(storage.clone(), s.job.clone(), pack_rx));
    let shared = Arc::new(Shared {
        reuse,
        new_blobs: Mutex::new(HashSet::new()),
        packer: Mutex::new(PackBuilder::with_capacity(PACK_SIZE)),
        tree_packer: Mutex::new(PackBuilder::default()),
        pack_tx,
        level: s.level,
        new_bytes: AtomicU64::new(0),
        failed: AtomicBool::new(false),
        progress,
        follow_symlinks: s.walk.follow_symlinks,
    });
    let settings = s.clone();
    let reading = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || read_all(&settings, &shared, previous))
    };
    let read = reading.await.map_err(EngineError::ReadingThread);
    drop(shared); // closes the pack channel once the reading side is done
    let uploaded = uploader.await.map_err(EngineError::UploadTask)?;
    // An upload failure explains a reading failure ("the pack upload stopped"), so it goes first.
    let new_packs = uploaded?;
    let (built, new_bytes) = read??;
    let Built {
        tree,
        tree_raw_size,
        reused_packs,
        mut stats,
        warnings,
    } = built;
    stats.new_bytes = new_bytes;
    stats.new_stored = new_packs.iter().map(|p| p.size).sum();
    Ok(Outcome {
        tree,
        tree_raw_size,
        reused_packs,
        new_packs,
        stats,
        warnings,
    })
}

/// Makes glibc give large freed blocks (packs, part buffers, chunk windows) back to the
/// system. By default it raises its mmap threshold to the largest block freed so far (up to
/// 32 MiB); after the first pack is freed, 8 MiB buffers come from the heap instead and their
/// memory stays with the process once freed. Measured on an incremental of 100k files: peak
/// RSS 177 MiB with the default, 128 MiB with a fixed 1 MiB threshold. Process-wide, set once;
/// call it before loading the index and the previous tree (their buffers count too).
pub fn return_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        /// `M_MMAP_THRESHOLD` in glibc's malloc.h.
        const M_MMAP_THRESHOLD: i32 = -3;
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt only changes allocator tuning; glibc serialises it with allocation.
        ONCE.call_once(|| unsafe {
            mallopt(M_MMAP_THRESHOLD, 1 << 20);
        });
    }
}

//! The media backup engine: walks the paths, reads the files that changed since the previous
//! snapshot, cuts them into content-defined chunks, stores each chunk not already in the
//! repository once (compressed unless it does not compress), fills packs of about
//! [`PACK_SIZE`] bytes and uploads them while reading goes on.
//!
//! Threads: the walk runs on one blocking thread, file reading/hashing/compression on
//! `workers` threads, uploads on the async runtime (src/media/upload.rs) with two packs in
//! flight. Memory stays bounded: one pack being filled, [`PACKS_QUEUED`] queued, two
//! uploading, one chunk window per worker; finished files go back into the tree while the
//! walk goes on.

use super::id::Id;
use super::index::{PackIndex, Reuse};
use super::pack::{BlobEncoder, FinishedPack, PackBuilder};
use super::previous::unchanged;
use super::previous::Previous;
use super::read::{worker, FileDone, FileIssue, FileJob};
use super::tree::{Node, NodeKind, TreeWriter};
use super::upload::upload_packs;
use super::walk::{walk, WalkSettings};
use crate::storage::Storage;
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

/// Largest pack, header and trailer included: the storage's first multipart part size
/// (8 MiB, src/storage/upload.rs) less room for age encryption (16 bytes per 64 KiB plus a
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
    /// The tree object (src/media/tree.rs), written as the walk went.
    pub tree: Vec<u8>,
    /// Size of the tree's JSON lines before compression.
    pub tree_raw_size: u64,
    /// Packs of earlier runs that hold chunks of this tree.
    pub reused_packs: BTreeSet<Id>,
    /// Packs uploaded by this run, for the new index object.
    pub new_packs: Vec<PackIndex>,
    /// Counts.
    pub stats: Stats,
    /// Files skipped or possibly inconsistent.
    pub warnings: Vec<String>,
}

/// What the walk and the reading threads share.
pub(super) struct Shared {
    pub(super) reuse: Arc<Reuse>,
    pub(super) new_blobs: Mutex<HashSet<Id>>,
    pub(super) packer: Mutex<PackBuilder>,
    pub(super) pack_tx: tokio::sync::mpsc::Sender<FinishedPack>,
    pub(super) level: i32,
    pub(super) new_bytes: AtomicU64,
    pub(super) failed: AtomicBool,
    pub(super) progress: Option<Arc<AtomicU64>>,
    pub(super) follow_symlinks: bool,
}

impl Shared {
    /// Stores `data` as a blob unless it is stored already; returns its id.
    pub(super) fn add_blob(
        &self,
        enc: &mut BlobEncoder,
        data: &[u8],
        compress: bool,
    ) -> Result<Id, String> {
        let id = Id::of(data);
        if self.reuse.reusable(&id) || !self.new_blobs.lock().unwrap().insert(id) {
            return Ok(id);
        }
        let (c, stored) = enc.encode(data, compress);
        self.new_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let full = {
            let mut p = self.packer.lock().unwrap();
            let full = (!p.is_empty() && p.size_with(stored.len()) > PACK_SIZE)
                .then(|| std::mem::replace(&mut *p, PackBuilder::with_capacity(PACK_SIZE)));
            p.push(id, data.len() as u64, c, stored);
            full
        };
        if let Some(p) = full {
            self.send(p)?;
        }
        Ok(id)
    }

    fn send(&self, p: PackBuilder) -> Result<(), String> {
        if p.is_empty() {
            return Ok(());
        }
        self.pack_tx
            .blocking_send(p.finish())
            .map_err(|_| "the pack upload stopped".to_string())
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
) -> Result<Outcome, String> {
    let (pack_tx, pack_rx) = tokio::sync::mpsc::channel::<FinishedPack>(PACKS_QUEUED);
    let uploader = tokio::spawn(upload_packs(storage.clone(), s.job.clone(), pack_rx));
    let shared = Arc::new(Shared {
        reuse,
        new_blobs: Mutex::new(HashSet::new()),
        packer: Mutex::new(PackBuilder::with_capacity(PACK_SIZE)),
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
    let read = reading
        .await
        .map_err(|e| format!("the reading thread failed: {e}"));
    drop(shared); // closes the pack channel once the reading side is done
    let uploaded = uploader
        .await
        .map_err(|e| format!("the upload task failed: {e}"))?;
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

/// What reading produced, and the bytes of new blobs.
type Read = (Built, u64);

/// The tree and what was learnt while writing it.
struct Built {
    tree: Vec<u8>,
    tree_raw_size: u64,
    reused_packs: BTreeSet<Id>,
    stats: Stats,
    warnings: Vec<String>,
}

/// A tree entry in walk order, as far as it is known.
enum Slot {
    /// A file some worker is reading.
    Reading,
    /// Complete.
    Ready(Node),
    /// A file that could not be read (not in the snapshot).
    Skipped,
}

/// The tree as it is being built: entries are written to the tree object in walk order as
/// soon as every entry before them is complete, so only the entries behind a file still
/// being read are held (a few hundred, not the whole tree).
struct Building {
    /// Entries not written yet, from slot number `written` on.
    window: VecDeque<Slot>,
    /// Slot number of `window[0]`.
    written: usize,
    tree: TreeWriter,
    reused_packs: BTreeSet<Id>,
    stats: Stats,
    /// Warnings about files read (walk warnings are kept apart, and come first).
    warnings: Vec<String>,
}

impl Building {
    fn new() -> Result<Building, String> {
        Ok(Building {
            window: VecDeque::new(),
            written: 0,
            tree: TreeWriter::new().map_err(|e| format!("encoding the tree: {e}"))?,
            reused_packs: BTreeSet::new(),
            stats: Stats::default(),
            warnings: Vec::new(),
        })
    }

    /// Adds the next entry in walk order; returns its slot number.
    fn push(&mut self, slot: Slot) -> usize {
        self.window.push_back(slot);
        self.written + self.window.len() - 1
    }

    /// Puts a read file into its slot.
    fn done(&mut self, done: FileDone) -> Result<(), String> {
        let slot = match done.result {
            Ok((node, warning)) => {
                self.stats.files_read += 1;
                self.stats.bytes_read += node.size;
                self.warnings.extend(warning);
                Slot::Ready(node)
            }
            Err(FileIssue::Skip(w)) => {
                self.warnings.push(w);
                Slot::Skipped
            }
            Err(FileIssue::Fatal(e)) => return Err(e),
        };
        self.window[done.slot - self.written] = slot;
        Ok(())
    }

    /// Writes the complete entries at the front of the window.
    fn flush(&mut self, shared: &Shared) -> Result<(), String> {
        while !matches!(self.window.front(), None | Some(Slot::Reading)) {
            self.written += 1;
            let Some(Slot::Ready(node)) = self.window.pop_front() else {
                continue;
            };
            if node.kind == NodeKind::File {
                self.stats.files += 1;
                self.stats.bytes += node.size;
            }
            for c in &node.chunks {
                match shared.reuse.pack_of(c) {
                    Some(pack) => {
                        self.reused_packs.insert(pack);
                    }
                    None if shared.new_blobs.lock().unwrap().contains(c) => {}
                    None => {
                        return Err(format!(
                            "chunk {c} of `{}` is in no pack (bug)",
                            node.path.display()
                        ))
                    }
                }
            }
            self.tree
                .push(&node)
                .map_err(|e| format!("encoding the tree: {e}"))?;
        }
        Ok(())
    }
}

fn read_all(
    s: &EngineSettings,
    shared: &Arc<Shared>,
    mut previous: Previous,
) -> Result<Read, String> {
    let mut b = Building::new()?;
    let mut walk_warnings = Vec::new();
    let (job_tx, job_rx) = mpsc::sync_channel::<FileJob>(256);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = mpsc::channel::<FileDone>();
    let walked = std::thread::scope(|scope| {
        for _ in 0..s.workers.max(1) {
            let (rx, tx, shared) = (job_rx.clone(), done_tx.clone(), shared.clone());
            let roots = &s.walk.paths;
            scope.spawn(move || worker(&rx, &tx, &shared, roots));
        }
        drop(done_tx);
        let walked = walk(
            &s.walk,
            |mut node| {
                if shared.failed.load(Ordering::Relaxed) {
                    return Err("stopped after an error".into());
                }
                // Finished files go into the tree now, not after the walk: their results
                // would otherwise pile up in the channel (a second copy of the tree).
                for done in done_rx.try_iter() {
                    b.done(done)?;
                }
                b.flush(shared)?;
                match node.kind {
                    NodeKind::Dir => b.stats.dirs += 1,
                    NodeKind::Symlink => b.stats.symlinks += 1,
                    NodeKind::File => match previous.take(&node.path) {
                        Some(prev) if unchanged(&prev, &node, &shared.reuse) => {
                            node.chunks = prev.chunks;
                        }
                        _ => {
                            let slot = b.push(Slot::Reading);
                            return job_tx
                                .send(FileJob { slot, node })
                                .map_err(|_| "the reading threads stopped".to_string());
                        }
                    },
                }
                b.push(Slot::Ready(node));
                Ok(())
            },
            |w| walk_warnings.push(w),
        );
        drop(job_tx);
        walked
    });
    if let Some(e) = previous.error.take() {
        tracing::warn!(job = %s.job, error = %e, "previous snapshot's tree unreadable; its later files were read again");
    }
    drop(previous);
    for done in done_rx.try_iter() {
        b.done(done)?;
    }
    walked?;
    b.flush(shared)?;
    if !b.window.is_empty() {
        // Never leave a file out of the tree silently.
        return Err(format!(
            "{} entries of the tree never got their reading result (bug)",
            b.window.len()
        ));
    }
    let last = std::mem::take(&mut *shared.packer.lock().unwrap());
    shared.send(last)?;
    let (tree, tree_raw_size) = b
        .tree
        .finish()
        .map_err(|e| format!("encoding the tree: {e}"))?;
    walk_warnings.extend(b.warnings);
    let built = Built {
        tree,
        tree_raw_size,
        reused_packs: b.reused_packs,
        stats: b.stats,
        warnings: walk_warnings,
    };
    Ok((built, shared.new_bytes.load(Ordering::Relaxed)))
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

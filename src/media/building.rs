//! The reading side of a media backup (src/media/backup.rs), on one blocking thread: the walk
//! hands files that changed to the reading threads (src/media/read.rs) and takes the others'
//! chunks from the previous snapshot; the tree is written in walk order as entries complete.

use super::backup::{EngineError, EngineSettings, Shared, Stats};
use super::id::Id;
use super::pack::BlobEncoder;
use super::previous::{unchanged, Previous};
use super::read::{worker, FileDone, FileIssue, FileJob};
use super::tree::write::TreeBuilder;
use super::tree::{Node, NodeKind};
use super::walk::walk;
use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};

/// What reading produced, and the bytes of new blobs.
pub(super) type Read = (Built, u64);

/// The tree and what was learnt while writing it.
pub(super) struct Built {
    pub(super) tree: Vec<u8>,
    pub(super) tree_raw_size: u64,
    pub(super) reused_packs: BTreeSet<Id>,
    pub(super) stats: Stats,
    pub(super) warnings: Vec<String>,
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
    tree: TreeBuilder,
    /// Compresses the tree's blobs.
    tree_enc: BlobEncoder,
    reused_packs: BTreeSet<Id>,
    stats: Stats,
    /// Warnings about files read (walk warnings are kept apart, and come first).
    warnings: Vec<String>,
}

impl Building {
    fn new(level: i32) -> Result<Building, EngineError> {
        Ok(Building {
            window: VecDeque::new(),
            written: 0,
            tree: TreeBuilder::default(),
            tree_enc: BlobEncoder::new(level),
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
    fn done(&mut self, done: FileDone) -> Result<(), EngineError> {
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
    fn flush(&mut self, shared: &Shared) -> Result<(), EngineError> {
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
                        return Err(EngineError::ChunkInNoPack {
                            chunk: *c,
                            path: node.path.display(),
                        })
                    }
                }
            }
            let (enc, reused) = (&mut self.tree_enc, &mut self.reused_packs);
            self.tree.push(&node, &mut |blob| {
                store_tree_blob(shared, enc, reused, blob)
            })?;
        }
        Ok(())
    }

    /// Takes one entry of the walk: finished files go into the tree first, then the entry is
    /// counted, or reuses its previous chunks, or goes to a reading thread.
    fn visit(
        &mut self,
        mut node: Node,
        shared: &Shared,
        previous: &mut Previous,
        jobs: &mpsc::SyncSender<FileJob>,
        done_rx: &mpsc::Receiver<FileDone>,
    ) -> Result<(), EngineError> {
        if shared.failed.load(Ordering::Relaxed) {
            return Err(EngineError::Stopped);
        }
        // Finished files go into the tree now, not after the walk: their results
        // would otherwise pile up in the channel (a second copy of the tree).
        for done in done_rx.try_iter() {
            self.done(done)?;
        }
        self.flush(shared)?;
        match node.kind {
            NodeKind::Dir => self.stats.dirs += 1,
            NodeKind::Symlink => self.stats.symlinks += 1,
            NodeKind::File => match previous.take(&node.path) {
                Some(prev) if unchanged(&prev, &node, &shared.reuse) => {
                    node.chunks = prev.chunks;
                }
                _ => {
                    let slot = self.push(Slot::Reading);
                    return jobs
                        .send(FileJob { slot, node })
                        .map_err(|_| EngineError::ReadersStopped);
                }
            },
        }
        self.push(Slot::Ready(node));
        Ok(())
    }

    /// After the walk: the last results in, the last pack sent, the tree finished.
    fn finish(
        mut self,
        shared: &Shared,
        mut walk_warnings: Vec<String>,
    ) -> Result<Read, EngineError> {
        self.flush(shared)?;
        if !self.window.is_empty() {
            // Never leave a file out of the tree silently.
            return Err(EngineError::Unfinished {
                entries: self.window.len(),
            });
        }
        let (enc, reused) = (&mut self.tree_enc, &mut self.reused_packs);
        let (tree, tree_raw_size) = std::mem::take(&mut self.tree)
            .finish(&mut |blob| store_tree_blob(shared, enc, reused, blob))?;
        let last = std::mem::take(&mut *shared.packer.lock().unwrap());
        shared.send(last)?;
        let last = std::mem::take(&mut *shared.tree_packer.lock().unwrap());
        shared.send(last)?;
        walk_warnings.extend(self.warnings);
        let built = Built {
            tree,
            tree_raw_size,
            reused_packs: self.reused_packs,
            stats: self.stats,
            warnings: walk_warnings,
        };
        Ok((built, shared.new_bytes.load(Ordering::Relaxed)))
    }
}

/// Stores a blob of the tree unless the index or this run has it; a reused blob's pack joins
/// the packs the snapshot uses.
fn store_tree_blob(
    shared: &Shared,
    enc: &mut BlobEncoder,
    reused: &mut BTreeSet<Id>,
    blob: &[u8],
) -> Result<Id, EngineError> {
    let id = Id::of(blob);
    match shared.reuse.pack_of(&id) {
        Some(pack) => {
            reused.insert(pack);
        }
        None => shared.add_tree_blob(enc, id, blob)?,
    }
    Ok(id)
}

/// What setting a thread's priority gave; a failure is logged (the backup goes on at normal
/// priority: a sandbox may forbid it).
fn gently<T>(result: std::io::Result<T>, job: &str) -> Option<T> {
    result
        .map_err(|e| tracing::warn!(job, error = %e, "cannot lower the reading priority; reading at normal priority"))
        .ok()
}

/// Walks the paths with `s.workers` reading threads and builds the tree.
pub(super) fn read_all(
    s: &EngineSettings,
    shared: &Arc<Shared>,
    mut previous: Previous,
) -> Result<Read, EngineError> {
    let mut b = Building::new(s.level)?;
    let mut walk_warnings = Vec::new();
    let (job_tx, job_rx) = mpsc::sync_channel::<FileJob>(256);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = mpsc::channel::<FileDone>();
    // The walk runs on a pool thread, which gets its IO class back afterwards; the readers
    // end with the walk, so they take the CPU priority too (which could not be undone).
    let _io = s.priority.and_then(|p| gently(p.io_for_now(), &s.job));
    let walked = std::thread::scope(|scope| {
        for _ in 0..s.workers.max(1) {
            let (rx, tx, shared) = (job_rx.clone(), done_tx.clone(), shared.clone());
            let roots = &s.walk.paths;
            let (priority, job) = (s.priority, &s.job);
            let reader = std::thread::Builder::new().name("opsagent-read".into());
            let spawned = reader.spawn_scoped(scope, move || {
                if let Some(p) = priority {
                    gently(p.apply_to_thread(), job);
                }
                worker(&rx, &tx, &shared, roots)
            });
            // As `scope.spawn` would: the system is out of threads.
            spawned.expect("cannot start a media reading thread");
        }
        drop(done_tx);
        let walked = walk(
            &s.walk,
            |node| b.visit(node, shared, &mut previous, &job_tx, &done_rx),
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
    b.finish(shared, walk_warnings)
}

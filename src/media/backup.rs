//! The media backup engine: walks the paths, reads the files that changed since the previous
//! snapshot, cuts them into content-defined chunks, stores each chunk not already in the
//! repository once (compressed unless it does not compress), fills packs of about
//! [`PACK_SIZE`] bytes and uploads them while reading goes on.
//!
//! Threads: the walk runs on one blocking thread, file reading/hashing/compression on
//! `workers` threads, uploads on the async runtime with two packs in flight. Memory stays
//! bounded: one pack being filled, two queued, two uploading, one chunk buffer per worker.

use super::chunker::{worth_compressing, Chunker};
use super::id::Id;
use super::index::{Index, PackIndex};
use super::keys;
use super::pack::{encode_blob, FinishedPack, PackBuilder};
use super::tree::{Node, NodeKind, RawPath};
use super::walk::{walk, WalkSettings};
use crate::storage::Storage;
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

/// Target size of a pack.
pub const PACK_SIZE: usize = 8 << 20;

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
    /// The tree, in path order.
    pub nodes: Vec<Node>,
    /// Packs uploaded by this run, for the new index object.
    pub new_packs: Vec<PackIndex>,
    /// Counts.
    pub stats: Stats,
    /// Files skipped or possibly inconsistent.
    pub warnings: Vec<String>,
}

struct Shared {
    index: Arc<Index>,
    new_blobs: Mutex<HashSet<Id>>,
    packer: Mutex<PackBuilder>,
    pack_tx: tokio::sync::mpsc::Sender<FinishedPack>,
    level: i32,
    new_bytes: AtomicU64,
    failed: AtomicBool,
    progress: Option<Arc<AtomicU64>>,
    follow_symlinks: bool,
}

impl Shared {
    fn add_blob(&self, data: &[u8], compress: bool) -> Result<Id, String> {
        let id = Id::of(data);
        if self.index.reusable(&id) || !self.new_blobs.lock().unwrap().insert(id) {
            return Ok(id);
        }
        let (c, stored) = encode_blob(data, compress, self.level);
        self.new_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let full = {
            let mut p = self.packer.lock().unwrap();
            p.push(id, data.len() as u64, c, &stored);
            if p.len() >= PACK_SIZE {
                Some(std::mem::replace(
                    &mut *p,
                    PackBuilder::with_capacity(PACK_SIZE + (1 << 20)),
                ))
            } else {
                None
            }
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

/// Why reading one file did not give a clean result.
enum FileIssue {
    /// Skip it, with this warning.
    Skip(String),
    /// The run cannot go on.
    Fatal(String),
}

struct FileJob {
    slot: usize,
    node: Node,
}

struct FileDone {
    slot: usize,
    result: Result<(Node, Option<String>), FileIssue>,
}

/// Runs one backup against `index`, reusing unchanged files of `previous`.
pub async fn run(
    storage: &Storage,
    s: &EngineSettings,
    index: Arc<Index>,
    previous: HashMap<RawPath, Node>,
    progress: Option<Arc<AtomicU64>>,
) -> Result<Outcome, String> {
    let (pack_tx, pack_rx) = tokio::sync::mpsc::channel::<FinishedPack>(2);
    let uploader = tokio::spawn(upload_packs(storage.clone(), s.job.clone(), pack_rx));
    let shared = Arc::new(Shared {
        index,
        new_blobs: Mutex::new(HashSet::new()),
        packer: Mutex::new(PackBuilder::with_capacity(PACK_SIZE + (1 << 20))),
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
        tokio::task::spawn_blocking(move || read_all(&settings, &shared, &previous))
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
    let (nodes, mut stats, warnings, new_bytes) = read??;
    stats.new_bytes = new_bytes;
    stats.new_stored = new_packs.iter().map(|p| p.size).sum();
    Ok(Outcome {
        nodes,
        new_packs,
        stats,
        warnings,
    })
}

type Read = (Vec<Node>, Stats, Vec<String>, u64);

fn read_all(
    s: &EngineSettings,
    shared: &Arc<Shared>,
    previous: &HashMap<RawPath, Node>,
) -> Result<Read, String> {
    let mut nodes: Vec<Option<Node>> = Vec::new();
    let mut stats = Stats::default();
    let mut warnings = Vec::new();
    let (job_tx, job_rx) = mpsc::sync_channel::<FileJob>(256);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = mpsc::channel::<FileDone>();
    let walked = std::thread::scope(|scope| {
        for _ in 0..s.workers.max(1) {
            let (rx, tx, shared) = (job_rx.clone(), done_tx.clone(), shared.clone());
            scope.spawn(move || worker(&rx, &tx, &shared));
        }
        drop(done_tx);
        let walked = walk(
            &s.walk,
            |mut node| {
                if shared.failed.load(Ordering::Relaxed) {
                    return Err("stopped after an error".into());
                }
                match node.kind {
                    NodeKind::Dir => stats.dirs += 1,
                    NodeKind::Symlink => stats.symlinks += 1,
                    NodeKind::File => {
                        if let Some(prev) = previous
                            .get(&node.path)
                            .filter(|p| unchanged(p, &node, &shared.index))
                        {
                            node.chunks = prev.chunks.clone();
                        } else {
                            let slot = nodes.len();
                            nodes.push(None);
                            return job_tx
                                .send(FileJob { slot, node })
                                .map_err(|_| "the reading threads stopped".to_string());
                        }
                    }
                }
                nodes.push(Some(node));
                Ok(())
            },
            |w| warnings.push(w),
        );
        drop(job_tx);
        walked
    });
    for done in done_rx.try_iter() {
        match done.result {
            Ok((node, warning)) => {
                stats.files_read += 1;
                stats.bytes_read += node.size;
                warnings.extend(warning);
                nodes[done.slot] = Some(node);
            }
            Err(FileIssue::Skip(w)) => warnings.push(w),
            Err(FileIssue::Fatal(e)) => return Err(e),
        }
    }
    walked?;
    let last = std::mem::take(&mut *shared.packer.lock().unwrap());
    shared.send(last)?;
    let nodes: Vec<Node> = nodes.into_iter().flatten().collect();
    for n in nodes.iter().filter(|n| n.kind == NodeKind::File) {
        stats.files += 1;
        stats.bytes += n.size;
    }
    Ok((
        nodes,
        stats,
        warnings,
        shared.new_bytes.load(Ordering::Relaxed),
    ))
}

/// Whether a file may be taken from the previous snapshot without reading it.
fn unchanged(prev: &Node, now: &Node, index: &Index) -> bool {
    prev.kind == NodeKind::File
        && prev.size == now.size
        && prev.mtime_ns == now.mtime_ns
        && prev.ctime_ns == now.ctime_ns
        && prev.inode == now.inode
        && (prev.size == 0 || !prev.chunks.is_empty())
        && prev.chunks.iter().all(|c| index.reusable(c))
}

fn worker(rx: &Mutex<mpsc::Receiver<FileJob>>, tx: &mpsc::Sender<FileDone>, shared: &Shared) {
    let mut chunker = Chunker::default();
    loop {
        let job = match rx.lock().unwrap().recv() {
            Ok(j) => j,
            Err(_) => return,
        };
        let result = read_file(&mut chunker, shared, job.node);
        if matches!(result, Err(FileIssue::Fatal(_))) {
            shared.failed.store(true, Ordering::Relaxed);
        }
        if tx
            .send(FileDone {
                slot: job.slot,
                result,
            })
            .is_err()
        {
            return;
        }
    }
}

/// Reads a file into chunks; a file that changes while read is read once more.
fn read_file(
    chunker: &mut Chunker,
    shared: &Shared,
    mut node: Node,
) -> Result<(Node, Option<String>), FileIssue> {
    let path = node.path.to_path();
    let name = path
        .file_name()
        .map(|n| n.as_encoded_bytes().to_vec())
        .unwrap_or_default();
    let compress = worth_compressing(&name);
    for attempt in 0..2 {
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true);
        if !shared.follow_symlinks {
            opts.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
        }
        let file = opts.open(&path).map_err(|e| skip(&path, &e))?;
        let before = file.metadata().map_err(|e| skip(&path, &e))?;
        let mut chunks = Vec::new();
        let read = chunker
            .chunks::<_, ReadError>(&file, |c| {
                if let Some(p) = &shared.progress {
                    p.fetch_add(c.len() as u64, Ordering::Relaxed);
                }
                chunks.push(shared.add_blob(c, compress).map_err(ReadError::Fatal)?);
                Ok(())
            })
            .map_err(|e| match e {
                ReadError::Io(e) => skip(&path, &e),
                ReadError::Fatal(e) => FileIssue::Fatal(e),
            })?;
        let after = file.metadata().map_err(|e| skip(&path, &e))?;
        let stable = read == before.len()
            && after.len() == before.len()
            && after.mtime() == before.mtime()
            && after.mtime_nsec() == before.mtime_nsec()
            && after.ctime() == before.ctime()
            && after.ctime_nsec() == before.ctime_nsec();
        if stable || attempt == 1 {
            if let Some(fresh) = super::walk::node_from(&path, &after) {
                node = Node {
                    path: node.path,
                    ..fresh
                };
            }
            node.size = read;
            node.chunks = chunks;
            let warning = (!stable).then(|| {
                format!(
                    "`{}` changed while being read twice; its copy may be inconsistent",
                    path.display()
                )
            });
            return Ok((node, warning));
        }
    }
    unreachable!("the second attempt always returns")
}

enum ReadError {
    Io(std::io::Error),
    Fatal(String),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

fn skip(path: &std::path::Path, e: &std::io::Error) -> FileIssue {
    let why = match e.kind() {
        std::io::ErrorKind::NotFound => "it vanished before it could be read".to_string(),
        _ => e.to_string(),
    };
    FileIssue::Skip(format!("skipped `{}`: {why}", path.display()))
}

/// Uploads packs as they come, two at a time; returns their index entries.
async fn upload_packs(
    storage: Storage,
    job: String,
    mut rx: tokio::sync::mpsc::Receiver<FinishedPack>,
) -> Result<Vec<PackIndex>, String> {
    let mut done = Vec::new();
    let mut running = tokio::task::JoinSet::new();
    while let Some(pack) = rx.recv().await {
        while running.len() >= 2 {
            done.push(joined(running.join_next().await)?);
        }
        let storage = storage.clone();
        let key = keys::pack_key(&job, &pack.id);
        running.spawn(async move {
            let size = pack.bytes.len() as u64;
            storage
                .put_bytes(&key, pack.bytes.into())
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(PackIndex {
                id: pack.id,
                size,
                blobs: pack.blobs,
            })
        });
    }
    while let Some(r) = running.join_next().await {
        done.push(joined(Some(r))?);
    }
    Ok(done)
}

fn joined(
    r: Option<Result<Result<PackIndex, String>, tokio::task::JoinError>>,
) -> Result<PackIndex, String> {
    match r {
        Some(Ok(x)) => x,
        Some(Err(e)) => Err(format!("a pack upload task failed: {e}")),
        None => Err("no pack upload was running".into()),
    }
}

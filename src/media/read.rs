//! The reading threads of a media backup (src/media/backup.rs): each takes files from the walk,
//! opens them below the backed-up directory (src/media/beneath.rs), cuts them into chunks,
//! stores new chunks and hands the finished entry back. A file that changes while it is read
//! is read once more, then recorded with a warning.

use super::backup::{EngineError, Shared};
use super::beneath::Opener;
use super::chunker::{worth_compressing, Chunker, AVG_SIZE};
use super::pack::BlobEncoder;
use super::tree::Node;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Mutex};

/// Why reading one file did not give a clean result.
pub(super) enum FileIssue {
    /// Skip it, with this warning.
    Skip(String),
    /// The run cannot go on.
    Fatal(EngineError),
}

/// A file for a reading thread, and its slot in the tree.
pub(super) struct FileJob {
    pub(super) slot: usize,
    pub(super) node: Node,
}

/// A reading thread's result for the file in `slot`.
pub(super) struct FileDone {
    pub(super) slot: usize,
    pub(super) result: Result<(Node, Option<String>), FileIssue>,
}

/// One reading thread: reads files from `rx` until the walk closes it.
pub(super) fn worker(
    rx: &Mutex<mpsc::Receiver<FileJob>>,
    tx: &mpsc::Sender<FileDone>,
    shared: &Shared,
    roots: &[std::path::PathBuf],
) {
    let mut opener = Opener::new(roots, shared.follow_symlinks);
    let mut chunker = Chunker::default();
    let mut encoder = BlobEncoder::new(shared.level);
    loop {
        let job = match rx.lock().unwrap().recv() {
            Ok(j) => j,
            Err(_) => return,
        };
        let result = read_file(&mut opener, &mut chunker, &mut encoder, shared, job.node);
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
    opener: &mut Opener,
    chunker: &mut Chunker,
    encoder: &mut BlobEncoder,
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
        // Non-blocking (a FIFO renamed over the file since the walk is skipped below) and
        // never through a symlink below the backed-up directory (src/media/beneath.rs).
        let file = opener.open(&path).map_err(|e| skip(&path, &e))?;
        let before = file.metadata().map_err(|e| skip(&path, &e))?;
        if !before.is_file() {
            return Err(FileIssue::Skip(format!(
                "skipped `{}`: it is no longer a regular file (replaced while the backup ran)",
                path.display()
            )));
        }
        let mut chunks = Vec::with_capacity(1 + (before.len() / AVG_SIZE as u64) as usize);
        let read = chunker
            .chunks_upto::<_, ReadError>(&file, before.len(), |c| {
                if let Some(p) = &shared.progress {
                    p.fetch_add(c.len() as u64, Ordering::Relaxed);
                }
                chunks.push(
                    shared
                        .add_blob(encoder, c, compress)
                        .map_err(ReadError::Fatal)?,
                );
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
    Fatal(EngineError),
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> Self {
        ReadError::Io(e)
    }
}

fn skip(path: &std::path::Path, e: &std::io::Error) -> FileIssue {
    let why = match e.kind() {
        std::io::ErrorKind::NotFound => "it vanished before it could be read".to_string(),
        _ => super::walk::reason(e),
    };
    FileIssue::Skip(format!("skipped `{}`: {why}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::index::Reuse;
    use crate::media::pack::PackBuilder;
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::sync::Arc;

    #[test]
    fn a_fifo_swapped_in_for_a_file_is_skipped_not_waited_on() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("f");
        std::fs::write(&file, b"regular at walk time").unwrap();
        let md = std::fs::symlink_metadata(&file).unwrap();
        let node = super::super::walk::node_from(&file, &md).unwrap();
        std::fs::remove_file(&file).unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &file,
            rustix::fs::Mode::from_raw_mode(0o644),
        )
        .unwrap();
        let (pack_tx, _rx) = tokio::sync::mpsc::channel(1);
        let shared = Shared {
            reuse: Arc::new(Reuse::default()),
            new_blobs: Mutex::new(HashSet::new()),
            packer: Mutex::new(PackBuilder::with_capacity(1024)),
            tree_packer: Mutex::new(PackBuilder::default()),
            pack_tx,
            level: 3,
            new_bytes: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            progress: None,
            follow_symlinks: false,
        };
        let got = read_file(
            &mut Opener::new(&[d.path().to_path_buf()], false),
            &mut Chunker::default(),
            &mut BlobEncoder::new(3),
            &shared,
            node,
        );
        match got {
            Err(FileIssue::Skip(w)) => assert!(w.contains("no longer a regular file"), "{w}"),
            _ => panic!("a FIFO must be skipped"),
        }
    }
}

//! Restoring a media snapshot: its tree (checked against the manifest's sha256), the entries
//! `--path` selects, written side by side (`<state_dir>/restore/<job>/<time>/` + original path),
//! under `--to-dir`, or over the original paths (`--in-place`, `--delete` to remove what the
//! snapshot does not hold). Work goes pack by pack like restic's: each needed pack is downloaded
//! once, its blobs are checked and written at their offsets (`packs`, `write`).
//!
//! A damaged or missing pack does not stop the restore: everything else is restored, then
//! [`MediaError::Damaged`] names each pack and every file it cost.
//!
//! Parts: `select` (what `--path` picks, where entries go), `packs` (the plan by pack and the
//! download pipeline), `write` (the writing thread; `write/finish.rs` ends a restore),
//! `fs_ops` (one file-system step at a time), `beneath_target` (opening the directories below
//! the restore target without following symlinks), `damage` (the report of what failed) and
//! `verify` (the drill of `opsagent verify`, which writes nothing).

pub mod beneath_target;
mod damage;
pub mod fs_ops;
pub mod packs;
pub mod select;
pub mod verify;
pub mod write;

use crate::media::index::IndexError;
use crate::media::limits;
use crate::media::tree::{self, Node, NodeKind, Opened, TreeBlobs, TreeError};
use crate::restore::plan::Chosen;
use crate::snapshot::manifest::Manifest;
use crate::storage::{Storage, StorageError};
use beneath_target::trim;
pub use damage::{Damage, NAMED_FILES, NAMED_PROBLEMS};
use fs_ops::Excludes;
use packs::TaskError;
use select::{Destination, SelectError};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use write::{Counts, Restoring};

/// Why a media restore failed.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The snapshot's tree object cannot be read or is damaged.
    #[error("the tree of snapshot {snapshot} cannot be read: {why} (hint: restore an older snapshot with an earlier --date)")]
    Tree {
        /// Snapshot id.
        snapshot: String,
        /// What is wrong, naming the key.
        why: Box<TreeLoadError>,
    },
    /// `--path` selects nothing, or is not a usable path.
    #[error(transparent)]
    Select(#[from] SelectError),
    /// In place, the snapshot names a path the job's configuration does not.
    #[error("snapshot {snapshot} of job `{job}` holds `{path}`, which is {why}; an in-place restore writes only at or under the job's configured paths ({configured}), so nothing was restored (hint: restore it elsewhere with --to-dir and copy back what you need; the manifest may have been tampered with)")]
    NotConfigured {
        /// The snapshot id.
        snapshot: String,
        /// The job.
        job: String,
        /// The snapshot's path, as recorded.
        path: String,
        /// Why it is refused.
        why: &'static str,
        /// The job's paths in the configuration, for the message.
        configured: String,
    },
    /// The job's index cannot be read.
    #[error("reading the index of job `{job}`: {why}")]
    Index {
        /// The job.
        job: String,
        /// What is wrong.
        why: Box<IndexError>,
    },
    /// Some entries could not be restored; everything else was.
    #[error("{0}\neverything else was restored (hint: {hint})", hint = .0.hint())]
    Damaged(Damage),
    /// A task of the restore failed.
    #[error(transparent)]
    Task(#[from] TaskError),
}

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

/// What to restore where.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where entries go.
    pub dest: Destination,
    /// Only what is at or under this path (absolute, or relative to a backed-up directory).
    pub path: Option<PathBuf>,
    /// `--in-place --delete`: remove what the snapshot does not hold.
    pub delete: bool,
    /// The job's `exclude` patterns: `--delete` keeps what they match.
    pub exclude: Vec<String>,
    /// The job's `paths` in the current configuration (`None`: the job is not configured).
    /// In place, the snapshot's paths must be these or under them: the manifest, which
    /// anyone who can write to the bucket can forge, does not decide where root writes.
    pub job_paths: Option<Vec<String>>,
    /// Side by side: the (device, inode) of the directory created for it (see
    /// `beneath_target::Resolver::expect_under`); set when it is created.
    pub under_identity: Option<(u64, u64)>,
}

/// A restore ready to run: the selected entries and their totals.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The job.
    pub job: String,
    /// The snapshot id.
    pub snapshot: String,
    /// The backed-up directories.
    pub roots: Vec<String>,
    /// Selected entries, in tree order.
    pub nodes: Vec<Node>,
    /// The options.
    pub options: Options,
    /// Regular files, directories, symlinks selected.
    pub files: u64,
    /// Directories selected.
    pub dirs: u64,
    /// Symlinks selected.
    pub symlinks: u64,
    /// Bytes of the selected files.
    pub bytes: u64,
    /// The inode of each backed-up directory at backup time (keys without trailing slashes).
    pub root_inodes: HashMap<Vec<u8>, u64>,
    /// The packs the manifest lists (preferred where a blob is in several).
    pub packs: Vec<crate::media::Id>,
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

/// Refuses an in-place restore of `roots` (the manifest's paths) unless each is one of the
/// job's `configured` paths or under one, as a plain absolute path (no `.`, `..` or empty
/// names).
fn check_configured(
    m: &Manifest,
    roots: &[String],
    configured: Option<&[String]>,
) -> Result<(), MediaError> {
    let refuse = |path: &str, why| MediaError::NotConfigured {
        snapshot: m.id.clone(),
        job: m.job.clone(),
        path: path.escape_debug().to_string(),
        why,
        configured: match configured {
            Some(c) => c.join(", "),
            None => "the job is not in the configuration".into(),
        },
    };
    for r in roots {
        let p = trim(r.as_bytes());
        let plain = p.starts_with(b"/")
            && (p == b"/"
                || p.split(|b| *b == b'/')
                    .skip(1)
                    .all(|n| !matches!(n, b"" | b"." | b"..")));
        if !plain {
            return Err(refuse(r, "not a plain absolute path"));
        }
        let under = configured.unwrap_or_default().iter().any(|c| {
            let c = trim(c.as_bytes());
            c == b"/" || p == c || (p.starts_with(c) && p.get(c.len()) == Some(&b'/'))
        });
        if !under {
            return Err(refuse(
                r,
                "not one of the job's configured paths nor under one",
            ));
        }
    }
    Ok(())
}

/// Loads the tree of `chosen` and selects what `opts` asks for. Writes nothing.
pub async fn prepare(
    storage: &Storage,
    chosen: &Chosen,
    opts: Options,
) -> Result<Prepared, MediaError> {
    let m = &chosen.manifest;
    let roots = m
        .media
        .as_ref()
        .map(|s| s.paths.clone())
        .unwrap_or_default();
    if opts.dest == Destination::InPlace {
        check_configured(m, &roots, opts.job_paths.as_deref())?;
    }
    let nodes = load_tree(storage, m).await?;
    // What each backed-up directory was (its inode), before `--path` narrows the tree: an
    // in-place restore follows a symlink found there now only to that very directory.
    let root_inodes = nodes
        .iter()
        .filter(|n| {
            n.kind == NodeKind::Dir && roots.iter().any(|r| trim(r.as_bytes()) == trim(&n.path.0))
        })
        .map(|n| (trim(&n.path.0).to_vec(), n.inode))
        .collect();
    let nodes = select::select(nodes, &roots, opts.path.as_deref())?;
    let count = |k: NodeKind| nodes.iter().filter(|n| n.kind == k).count() as u64;
    Ok(Prepared {
        job: m.job.clone(),
        snapshot: m.id.clone(),
        files: count(NodeKind::File),
        dirs: count(NodeKind::Dir),
        symlinks: count(NodeKind::Symlink),
        bytes: nodes
            .iter()
            .filter(|n| n.kind == NodeKind::File)
            .map(|n| n.size)
            .sum(),
        packs: m
            .media
            .as_ref()
            .map(|s| s.packs.clone())
            .unwrap_or_default(),
        roots,
        root_inodes,
        nodes,
        options: opts,
    })
}

/// What a finished restore did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Counts.
    pub counts: Counts,
    /// Things worth saying that did not fail the restore.
    pub warnings: Vec<String>,
}

/// Runs a prepared restore. `progress` counts file bytes written. Fails with
/// [`MediaError::Damaged`] when anything could not be restored, after restoring the rest.
pub async fn execute(
    storage: &Storage,
    p: Prepared,
    progress: Option<Arc<AtomicU64>>,
) -> Result<Report, MediaError> {
    let (index, from_headers) = packs::load_index(storage, &p.job, &p.packs).await?;
    let owners = rustix::process::geteuid().is_root();
    let opts = p.options;
    let excludes = Excludes::new(&p.roots, &opts.exclude);
    let mut r = Restoring::new(
        Arc::new(p.nodes),
        &p.roots,
        &p.root_inodes,
        opts.dest.clone(),
        owners,
        opts.delete,
        progress,
    );
    r.expect_under(opts.under_identity);
    let job = p.job.clone();
    let (r, work) = tokio::task::spawn_blocking(move || {
        let files = r.lay_out();
        let plan = packs::plan(&job, &files, &index);
        drop(files);
        let work = r.apply_plan(plan);
        (r, work)
    })
    .await
    .map_err(TaskError::Writer)?;
    let r = packs::pipeline(storage, work, 2, r, |r, w, got| r.apply(w, got)).await?;
    let mut r = tokio::task::spawn_blocking(move || {
        let mut r = r;
        r.finish(&excludes);
        r
    })
    .await
    .map_err(TaskError::Writer)?;
    if r.damage.is_empty() {
        let mut warnings = from_headers;
        warnings.append(&mut r.damage.warnings);
        Ok(Report {
            counts: r.counts.clone(),
            warnings,
        })
    } else {
        Err(MediaError::Damaged(std::mem::take(&mut r.damage)))
    }
}

//! Restoring a media snapshot: its tree (checked against the manifest's sha256), the entries
//! `--path` selects, written side by side (`<state_dir>/restore/<job>/<time>/` + original path),
//! under `--to-dir`, or over the original paths (`--in-place`, `--delete` to remove what the
//! snapshot does not hold). Work goes pack by pack like restic's: each needed pack is downloaded
//! once, its blobs are checked and written at their offsets (`packs`, `write`).
//!
//! A damaged or missing pack does not stop the restore: everything else is restored, then
//! [`MediaError::Damaged`] names each pack and every file it cost.
//!
//! Parts: `tree` (the snapshot's tree, either format), `select` (what `--path` picks, where
//! entries go), `packs` (the plan by pack and the
//! download pipeline), `write` (the writing thread; `write/finish.rs` ends a restore),
//! `fs_ops` (one file-system step at a time), `beneath_target` (opening the directories below
//! the restore target without following symlinks), `damage` (the report of what failed) and
//! `verify` (the drill of `opsagent verify`, which writes nothing).

pub mod beneath_target;
mod damage;
pub mod fs_ops;
pub mod packs;
pub mod select;
mod tree;
pub mod verify;
pub mod write;

use crate::media::index::IndexError;
use crate::media::tree::{Node, NodeKind};
use crate::restore::plan::Chosen;
use crate::snapshot::manifest::Manifest;
use crate::storage::Storage;
use beneath_target::trim;
pub use damage::{Damage, NAMED_FILES, NAMED_PROBLEMS};
use fs_ops::Excludes;
use packs::TaskError;
use select::{Destination, SelectError};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
pub use tree::{load_tree, TreeLoadError};
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

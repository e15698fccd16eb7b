//! The writing side of a media restore, run on one blocking thread: lays out directories
//! (removing temporary files an interrupted restore left there), symlinks and temporary files
//! first, then writes each pack's blobs at their offsets (every
//! blob checked against its BLAKE3 id by `pack::extract`), renames each file into place the
//! moment its last chunk is written, and ends with `--delete` and the directories' own modes and
//! mtimes (deepest first, after everything inside them was written).
//!
//! A failure costs only the entries it touches: they are recorded in [`Damage`] (what failed,
//! which files) and the rest goes on. The end of a restore (`--delete`, the directories' own
//! metadata) is in `write/finish.rs`.

use super::beneath_target::{Place, Resolver};
use super::fs_ops::{self as fs_ops, EntryError, Swept};
use super::packs::{ChunkTarget, FetchError, Fetched, PackWork, Plan};
use super::select::Destination;
use super::Damage;
use crate::media::pack;
use crate::media::tree::{Node, NodeKind};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

mod finish;

/// One regular file with content being restored.
#[derive(Debug)]
struct FileState {
    /// Index of its node.
    node: usize,
    /// Its final path.
    dest: PathBuf,
    /// The temporary file's name (beside `dest`) while it is being written.
    temp: Option<OsString>,
    /// Chunk writes still missing.
    remaining: u32,
    /// Given up on (recorded in the damage).
    failed: bool,
}

/// Counts of what a restore did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    /// Regular files restored.
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Symlinks restored.
    pub symlinks: u64,
    /// File bytes written.
    pub bytes: u64,
    /// Packs downloaded.
    pub packs: u64,
    /// Bytes downloaded.
    pub downloaded: u64,
    /// What `--delete` removed and kept.
    pub swept: Swept,
}

/// The state of one restore.
pub struct Restoring {
    nodes: Arc<Vec<Node>>,
    dest: Destination,
    at: Resolver,
    owners: bool,
    delete: bool,
    files: Vec<FileState>,
    progress: Option<Arc<AtomicU64>>,
    /// Files restored without their setuid/setgid bit.
    stripped: fs_ops::Stripped,
    /// What failed.
    pub damage: Damage,
    /// What was done.
    pub counts: Counts,
}

impl Restoring {
    /// See [`Resolver::expect_under`].
    pub fn expect_under(&mut self, identity: Option<(u64, u64)>) {
        self.at.expect_under(identity);
    }

    /// A restore of `nodes` (tree order) of a snapshot of `roots` (their inodes at backup time
    /// in `root_inodes`) to `dest`; `owners` when running as root.
    pub fn new(
        nodes: Arc<Vec<Node>>,
        roots: &[String],
        root_inodes: &HashMap<Vec<u8>, u64>,
        dest: Destination,
        owners: bool,
        delete: bool,
        progress: Option<Arc<AtomicU64>>,
    ) -> Restoring {
        Restoring {
            nodes,
            at: Resolver::new(dest.clone(), roots, root_inodes.clone(), delete),
            dest,
            owners,
            delete,
            files: Vec::new(),
            progress,
            stripped: fs_ops::Stripped::default(),
            damage: Damage::default(),
            counts: Counts::default(),
        }
    }

    fn lost(&mut self, node: usize, what: &str, why: &str) {
        self.damage.problem(what, why);
        self.damage.file(&self.nodes[node].path.display());
    }

    /// Creates directories and symlinks, empty files, and a temporary file for every other
    /// file; returns the files to fill, in the order [`Restoring::apply_plan`] expects.
    pub fn lay_out(&mut self) -> Vec<&Node> {
        let nodes = self.nodes.clone();
        let mut stale = 0;
        for (i, n) in nodes.iter().enumerate() {
            let shown = self.dest.of(n).display().to_string();
            let at = match self.at.place(&n.path.0, n.kind == NodeKind::Dir) {
                Ok(at) => at,
                Err(e) => {
                    self.lost(i, &shown, &format!("its directory cannot be made: {e}"));
                    continue;
                }
            };
            let done = match n.kind {
                NodeKind::Dir => fs_ops::ensure_dir(&at, self.at.make()).map_err(EntryError::from),
                NodeKind::Symlink => self.symlink(n, &at),
                NodeKind::File => self.file(i, n, &at),
            };
            if let Err(why) = done {
                self.lost(i, &shown, &why.to_string());
            } else if n.kind == NodeKind::Dir {
                stale += self
                    .at
                    .dir(&n.path.0)
                    .and_then(|d| fs_ops::remove_stale_temps(&d))
                    .unwrap_or(0);
            }
        }
        if stale > 0 {
            self.damage.warnings.push(format!(
                "removed {stale} temporary file(s) `{}*` left by an interrupted restore",
                fs_ops::TEMP_PREFIX
            ));
        }
        self.files.iter().map(|f| &self.nodes[f.node]).collect()
    }

    /// Makes room for a file or symlink at `at` (a directory there goes only with `--delete`).
    fn clear(&mut self, at: &Place) -> Result<(), EntryError> {
        let cleared = fs_ops::clear_for_entry(at, self.delete);
        // A directory may have been removed: descriptors of what was under it are stale.
        self.at.forget();
        cleared
    }

    fn symlink(&mut self, n: &Node, at: &Place) -> Result<(), EntryError> {
        let target = n.target.as_ref().ok_or(EntryError::NoLinkTarget)?;
        self.clear(at)?;
        fs_ops::make_symlink(at, target)
            .and_then(|()| fs_ops::set_meta(&at.dir, &at.name, n, self.owners, true))?;
        self.counts.symlinks += 1;
        Ok(())
    }

    fn file(&mut self, i: usize, n: &Node, at: &Place) -> Result<(), EntryError> {
        self.clear(at)?;
        if n.size == 0 {
            let tmp = fs_ops::create_temp(at, 0)?;
            return self.put_in_place(at, &tmp, n);
        }
        let temp = fs_ops::create_temp(at, n.size)?;
        self.files.push(FileState {
            node: i,
            dest: self.dest.of(n),
            temp: Some(temp),
            remaining: 0,
            failed: false,
        });
        Ok(())
    }

    /// Applies the node's metadata to a complete temporary file and renames it to `at`.
    fn put_in_place(&mut self, at: &Place, tmp: &OsString, n: &Node) -> Result<(), EntryError> {
        let done = fs_ops::set_meta(&at.dir, tmp, n, self.owners, false)
            .and_then(|()| fs_ops::rename_into(at, tmp));
        if let Err(e) = done {
            fs_ops::remove_temp(&at.dir, tmp);
            return Err(e.into());
        }
        self.stripped.note(n);
        self.counts.files += 1;
        self.counts.bytes += n.size;
        Ok(())
    }

    /// Where file `file` goes (its directory opened again, from the cache when it can).
    fn place_of(&mut self, file: usize) -> std::io::Result<Place> {
        let node = self.files[file].node;
        let nodes = self.nodes.clone();
        self.at.place(&nodes[node].path.0, false)
    }

    /// Takes the planned number of writes per file and fails the files that cannot be planned.
    /// Returns the packs that still hold something to write.
    pub fn apply_plan(&mut self, plan: Plan) -> Vec<PackWork> {
        for (f, w) in self.files.iter_mut().zip(&plan.writes) {
            f.remaining = *w;
        }
        for (f, why) in &plan.unplannable {
            let shown = self.nodes[self.files[*f as usize].node].path.display();
            self.fail(*f, &shown, why);
        }
        let files = &self.files;
        plan.packs
            .into_iter()
            .filter(|w| {
                w.blobs
                    .iter()
                    .any(|b| b.targets.iter().any(|t| !files[t.file as usize].failed))
            })
            .collect()
    }

    fn fail(&mut self, file: u32, what: &str, why: &str) {
        if let Some(t) = self.files[file as usize].temp.take() {
            if let Ok(at) = self.place_of(file as usize) {
                fs_ops::remove_temp(&at.dir, &t);
            }
        }
        let f = &mut self.files[file as usize];
        if !f.failed {
            f.failed = true;
            let node = f.node;
            self.lost(node, what, why);
        } else {
            self.damage.problem(what, why);
        }
    }

    /// Writes what `work` needs from one downloaded pack (or fails its files).
    pub fn apply(&mut self, work: &PackWork, got: Result<Fetched, FetchError>) {
        self.counts.packs += 1;
        let fetched = match got {
            Ok(f) => f,
            Err(why) => {
                let why = why.to_string();
                for t in work.blobs.iter().flat_map(|b| &b.targets) {
                    self.fail(t.file, &work.key, &why);
                }
                return;
            }
        };
        self.counts.downloaded += fetched.bytes.len() as u64;
        let mut open: HashMap<u32, File> = HashMap::new();
        let mut bad_blobs = false;
        for b in &work.blobs {
            if b.targets.iter().all(|t| self.files[t.file as usize].failed) {
                continue;
            }
            match pack::extract(&work.key, &fetched.bytes, &b.entry) {
                Ok(data) => {
                    for t in &b.targets {
                        self.write(&mut open, *t, &data);
                    }
                }
                Err(e) => {
                    bad_blobs = true;
                    for t in &b.targets {
                        self.fail(t.file, &work.key, &e.to_string());
                    }
                }
            }
        }
        if !fetched.id_ok && !bad_blobs {
            self.damage.warnings.push(format!(
                "pack `{}` does not hash to its id, but every blob this restore took from it checked out (hint: `opsagent verify` names what else it holds)",
                work.key
            ));
        }
    }

    fn write(&mut self, open: &mut HashMap<u32, File>, t: ChunkTarget, data: &[u8]) {
        let f = &self.files[t.file as usize];
        let Some(temp) = f.temp.clone().filter(|_| !f.failed) else {
            return;
        };
        if let Err(e) = self.write_at(open, t, &temp, data) {
            open.remove(&t.file);
            let shown = self.files[t.file as usize].dest.display().to_string();
            return self.fail(t.file, &shown, &e.to_string());
        }
        if let Some(p) = &self.progress {
            p.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        let f = &mut self.files[t.file as usize];
        f.remaining -= 1;
        if f.remaining == 0 {
            open.remove(&t.file);
            let (node, dest) = (f.node, f.dest.clone());
            let temp = f.temp.take().expect("a file being written has a temp file");
            let n = self.nodes[node].clone();
            let placed = self
                .place_of(t.file as usize)
                .map_err(EntryError::from)
                .and_then(|at| self.put_in_place(&at, &temp, &n));
            if let Err(why) = placed {
                self.files[t.file as usize].temp = None;
                self.fail(t.file, &dest.display().to_string(), &why.to_string());
            }
        }
    }

    /// Writes `data` at its offset of temporary file `temp` (opened once per pack). The file
    /// starts as a hole of its full size, so blocks of zeros are skipped: sparse files (disk
    /// images, preallocated files) come back sparse.
    fn write_at(
        &mut self,
        open: &mut HashMap<u32, File>,
        t: ChunkTarget,
        temp: &OsString,
        data: &[u8],
    ) -> std::io::Result<()> {
        const BLOCK: usize = 64 << 10;
        for (i, block) in data.chunks(BLOCK).enumerate() {
            if block.iter().all(|b| *b == 0) {
                continue;
            }
            let handle = match open.entry(t.file) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let node = self.files[t.file as usize].node;
                    let at = self.at.place(&self.nodes[node].path.0, false)?;
                    v.insert(fs_ops::open_temp(&at.dir, temp)?)
                }
            };
            let at = t.offset + (i * BLOCK) as u64;
            handle.write_all_at(block, at)?;
        }
        Ok(())
    }
}

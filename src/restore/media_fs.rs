//! File-system steps of a media restore, one entry at a time: directories, temporary files that
//! are renamed into place only when complete (so a half-restored file never has its final
//! name), symlinks with their raw target bytes, owners/modes/mtimes (nanoseconds; symlinks'
//! own times), and the `--delete` sweep, which never crosses into another file system and
//! keeps what the job's `exclude` patterns leave out of backups.

use crate::media::tree::{Node, RawPath};
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use rustix::fs::{AtFlags, Gid, Mode, OFlags, Timespec, Timestamps, Uid, CWD, UTIME_OMIT};
use std::ffi::OsStr;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Name prefix of the temporary files and links a restore writes before renaming them.
pub const TEMP_PREFIX: &str = ".opsagent-restore-";

/// A fresh temporary name beside `dest`.
pub fn temp_name(dest: &Path) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let name = format!("{TEMP_PREFIX}{}-{n}", std::process::id());
    match dest.parent() {
        Some(p) => p.join(name),
        None => PathBuf::from(name),
    }
}

/// Makes `dest` a directory: keeps one that is there, replaces a file or symlink (never
/// followed), or creates it with any missing parents (mode 0700 until its own mode is set).
pub fn ensure_dir(dest: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dest) {
        Ok(md) if md.is_dir() => Ok(()),
        Ok(_) => {
            fs::remove_file(dest)?;
            DirBuilder::new().mode(0o700).create(dest)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new().recursive(true).mode(0o700).create(dest)
        }
        Err(e) => Err(e),
    }
}

/// Makes sure a file or symlink may be renamed to `dest`: a directory there is removed only
/// when `delete` is set (it, and what it holds, is not in the snapshot at this path).
pub fn clear_for_entry(dest: &Path, delete: bool) -> Result<(), String> {
    match fs::symlink_metadata(dest) {
        Ok(md) if md.is_dir() => {
            if !delete {
                return Err(
                    "a directory is there now; it was not replaced (hint: add --delete to replace it)"
                        .into(),
                );
            }
            remove_tree(dest, md.dev())
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        _ => Ok(()),
    }
}

/// Creates a new temporary file of `size` bytes (sparse until written) beside `dest`.
pub fn create_temp(dest: &Path, size: u64) -> io::Result<PathBuf> {
    let tmp = temp_name(dest);
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&tmp)?;
    if let Err(e) = f.set_len(size) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// Opens a temporary file for writing at offsets.
pub fn open_temp(tmp: &Path) -> io::Result<fs::File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(tmp)
}

/// Creates the symlink `dest` → `target` (raw bytes), replacing a file or link there.
pub fn make_symlink(dest: &Path, target: &RawPath) -> io::Result<()> {
    let tmp = temp_name(dest);
    std::os::unix::fs::symlink(OsStr::from_bytes(&target.0), &tmp)?;
    fs::rename(&tmp, dest).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// A `Timespec` from nanoseconds since the epoch (negative before 1970).
fn timespec(ns: i64) -> Timespec {
    Timespec {
        tv_sec: ns.div_euclid(1_000_000_000),
        tv_nsec: ns.rem_euclid(1_000_000_000) as _,
    }
}

fn times(node: &Node) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: timespec(node.mtime_ns),
    }
}

fn ids(node: &Node) -> (Option<Uid>, Option<Gid>) {
    (Some(Uid::from_raw(node.uid)), Some(Gid::from_raw(node.gid)))
}

/// Applies `node`'s owner (when `owners`: running as root), mode (not for symlinks) and mtime
/// to `path`. Nothing follows a symlink: files and directories are changed through a handle
/// opened with `O_NOFOLLOW` (so a link swapped in meanwhile fails instead of redirecting a
/// chmod or chown), symlinks themselves with the `*at(…, AT_SYMLINK_NOFOLLOW)` calls. Owner
/// first: chown clears setuid/setgid bits.
pub fn set_meta(path: &Path, node: &Node, owners: bool, symlink: bool) -> io::Result<()> {
    if symlink {
        if owners {
            let (u, g) = ids(node);
            rustix::fs::chownat(CWD, path, u, g, AtFlags::SYMLINK_NOFOLLOW)?;
        }
        rustix::fs::utimensat(CWD, path, &times(node), AtFlags::SYMLINK_NOFOLLOW)?;
        return Ok(());
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let fd = rustix::fs::open(path, flags, Mode::empty())?;
    if owners {
        let (u, g) = ids(node);
        rustix::fs::fchown(&fd, u, g)?;
    }
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(node.mode & 0o7777))?;
    rustix::fs::futimens(&fd, &times(node))?;
    Ok(())
}

/// Removes `path` and everything under it without following symlinks or entering another
/// file system than `dev` (such entries stay). Returns how many entries were removed.
pub fn remove_tree(path: &Path, dev: u64) -> io::Result<u64> {
    let md = fs::symlink_metadata(path)?;
    if !md.is_dir() {
        fs::remove_file(path)?;
        return Ok(1);
    }
    if md.dev() != dev {
        return Ok(0);
    }
    let mut n = 0;
    for e in fs::read_dir(path)? {
        n += remove_tree(&e?.path(), dev)?;
    }
    fs::remove_dir(path)?;
    Ok(n + 1)
}

/// The job's `exclude` patterns, per backed-up root: what backups leave out, `--delete` keeps.
#[derive(Default)]
pub struct Excludes(Vec<(PathBuf, Gitignore)>);

impl Excludes {
    /// Matchers for `patterns` under each of `roots`.
    pub fn new(roots: &[String], patterns: &[String]) -> Excludes {
        if patterns.is_empty() {
            return Excludes::default();
        }
        Excludes(
            roots
                .iter()
                .map(|r| {
                    let mut b = GitignoreBuilder::new(r);
                    for p in patterns {
                        let _ = b.add_line(None, p);
                    }
                    let g = b.build().unwrap_or_else(|_| Gitignore::empty());
                    (PathBuf::from(r), g)
                })
                .collect(),
        )
    }

    /// Whether backups leave `path` out.
    pub fn matches(&self, path: &Path, is_dir: bool) -> bool {
        self.0
            .iter()
            .any(|(r, g)| path.starts_with(r) && g.matched(path, is_dir).is_ignore())
    }
}

/// What `--delete` did in one directory.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Entries removed (a removed directory counts with its content).
    pub removed: u64,
    /// Entries kept because the job excludes them or they are another file system.
    pub kept: u64,
}

/// Removes the entries of directory `dir` whose paths `wanted` does not hold (the snapshot's
/// entries there), except excluded ones and mount points.
pub fn sweep(dir: &Path, wanted: &dyn Fn(&[u8]) -> bool, excludes: &Excludes) -> io::Result<Swept> {
    let dev = fs::symlink_metadata(dir)?.dev();
    let mut s = Swept::default();
    for e in fs::read_dir(dir)? {
        let path = e?.path();
        if wanted(path.as_os_str().as_bytes()) {
            continue;
        }
        let md = fs::symlink_metadata(&path)?;
        if md.dev() != dev || excludes.matches(&path, md.is_dir()) {
            s.kept += 1;
            continue;
        }
        s.removed += remove_tree(&path, dev)?;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tree::NodeKind;

    #[test]
    fn temp_files_symlinks_meta_and_sweep() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("sub/f");
        ensure_dir(&d.path().join("sub")).unwrap();
        let tmp = create_temp(&dest, 10).unwrap();
        assert!(tmp
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(TEMP_PREFIX));
        assert_eq!(fs::metadata(&tmp).unwrap().len(), 10);
        fs::rename(&tmp, &dest).unwrap();
        let node = Node {
            path: RawPath::from_path(&dest),
            kind: NodeKind::File,
            mode: 0o2640,
            uid: 0,
            gid: 0,
            mtime_ns: -1_500_000_001,
            ctime_ns: 0,
            inode: 0,
            size: 10,
            target: None,
            chunks: vec![],
        };
        set_meta(&dest, &node, false, false).unwrap();
        let md = fs::metadata(&dest).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o2640);
        assert_eq!((md.mtime(), md.mtime_nsec()), (-2, 499_999_999));
        // A symlink replaces the file; its own mtime is set, not its (dangling) target's.
        let link = d.path().join("sub/l");
        make_symlink(&link, &RawPath(b"../nowhere\xff".to_vec())).unwrap();
        assert_eq!(
            fs::read_link(&link).unwrap().as_os_str().as_bytes(),
            b"../nowhere\xff"
        );
        set_meta(
            &link,
            &Node {
                mtime_ns: 7,
                ..node.clone()
            },
            false,
            true,
        )
        .unwrap();
        assert_eq!(fs::symlink_metadata(&link).unwrap().mtime_nsec(), 7);
        // A directory in the way of a file goes only with --delete.
        let blocked = d.path().join("sub/blocked");
        fs::create_dir_all(blocked.join("x")).unwrap();
        assert!(clear_for_entry(&blocked, false)
            .unwrap_err()
            .contains("--delete"));
        clear_for_entry(&blocked, true).unwrap();
        assert!(!blocked.exists());
        // The sweep keeps wanted and excluded entries.
        fs::write(d.path().join("sub/cache.tmp"), b"").unwrap();
        fs::create_dir_all(d.path().join("sub/old/deep")).unwrap();
        let keep = dest.as_os_str().as_bytes().to_vec();
        let ex = Excludes::new(&[d.path().display().to_string()], &["*.tmp".into()]);
        let s = sweep(
            &d.path().join("sub"),
            &|p| p == keep || p.ends_with(b"/l"),
            &ex,
        )
        .unwrap();
        assert_eq!(
            s,
            Swept {
                removed: 2,
                kept: 1
            }
        );
        assert!(dest.exists() && !d.path().join("sub/old").exists());
    }
}

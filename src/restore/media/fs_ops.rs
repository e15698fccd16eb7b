//! File-system steps of a media restore, one entry at a time, each relative to a directory
//! opened without following symlinks (src/restore/media/beneath_target.rs): directories, temporary files
//! that are renamed into place only when complete (so a half-restored file never has its final
//! name), symlinks with their raw target bytes, owners/modes/mtimes (nanoseconds; symlinks'
//! own times), and the `--delete` sweep, which never crosses into another file system and
//! keeps what the job's `exclude` patterns leave out of backups.

use super::beneath_target::{step, Make, Place};
use crate::media::tree::{Node, NodeKind, RawPath};
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use rustix::fs::{
    AtFlags, FileType, Gid, Mode, OFlags, Stat, Timespec, Timestamps, Uid, UTIME_OMIT,
};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Name prefix of the temporary files and links a restore writes before renaming them.
pub const TEMP_PREFIX: &str = crate::media::walk::RESTORE_TEMP_PREFIX;

/// A fresh temporary name (in the directory of the entry it stands for).
pub fn temp_name() -> OsString {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    OsString::from(format!("{TEMP_PREFIX}{}-{n}", std::process::id()))
}

fn lstat(at: &Place) -> io::Result<Option<Stat>> {
    match rustix::fs::statat(&*at.dir, &at.name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn is_dir(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Directory
}

/// Makes `at` a directory: keeps one that is there, creates it (mode 0700 until its own mode
/// is set), or, with [`Make::Replace`], replaces a file or symlink there (never followed).
pub fn ensure_dir(at: &Place, make: Make) -> io::Result<()> {
    if at.name.is_empty() {
        return Ok(());
    }
    step(&at.dir, &at.name, make).map(drop)
}

/// Why one entry could not be restored: the damage report prints it after the entry's path.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// A file-system call failed (`No space left on device`, `Permission denied`, …).
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A directory stands where the snapshot has a file or symlink, and `--delete` is not set.
    #[error("a directory is there now; it was not replaced (hint: add --delete to replace it; side by side, restore into an empty --to-dir)")]
    DirectoryThere,
    /// The snapshot has a symlink whose target the backup could not read.
    #[error("its target could not be read at backup time")]
    NoLinkTarget,
}

/// Makes sure a file or symlink may be renamed to `at`: a directory there is removed only
/// when `delete` is set (it, and what it holds, is not in the snapshot at this path).
pub fn clear_for_entry(at: &Place, delete: bool) -> Result<(), EntryError> {
    match lstat(at)? {
        Some(st) if is_dir(&st) => {
            if !delete {
                return Err(EntryError::DirectoryThere);
            }
            remove_tree(&at.dir, &at.name, st.st_dev)?;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Creates a new temporary file of `size` bytes (sparse until written) beside `at`; returns
/// its name.
pub fn create_temp(at: &Place, size: u64) -> io::Result<OsString> {
    let tmp = temp_name();
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let f = File::from(rustix::fs::openat(
        &*at.dir,
        &tmp,
        flags,
        Mode::from_raw_mode(0o600),
    )?);
    if let Err(e) = f.set_len(size) {
        let _ = rustix::fs::unlinkat(&*at.dir, &tmp, AtFlags::empty());
        return Err(e);
    }
    Ok(tmp)
}

/// Opens temporary file `tmp` in `dir` for writing at offsets.
pub fn open_temp(dir: &OwnedFd, tmp: &OsStr) -> io::Result<File> {
    let flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(File::from(rustix::fs::openat(
        dir,
        tmp,
        flags,
        Mode::empty(),
    )?))
}

/// Removes temporary file `tmp` from `dir` (a failed or given-up file).
pub fn remove_temp(dir: &OwnedFd, tmp: &OsStr) {
    let _ = rustix::fs::unlinkat(dir, tmp, AtFlags::empty());
}

/// Renames `tmp` (in the same directory) to `at`.
pub fn rename_into(at: &Place, tmp: &OsStr) -> io::Result<()> {
    Ok(rustix::fs::renameat(&*at.dir, tmp, &*at.dir, &at.name)?)
}

/// Creates the symlink `at` → `target` (raw bytes), replacing a file or link there.
pub fn make_symlink(at: &Place, target: &RawPath) -> io::Result<()> {
    let tmp = temp_name();
    rustix::fs::symlinkat(OsStr::from_bytes(&target.0), &*at.dir, &tmp)?;
    rename_into(at, &tmp).inspect_err(|_| remove_temp(&at.dir, &tmp))
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

/// The mode a restore gives `node`: its permission and sticky bits, without setuid and
/// setgid on files (a restore runs as root, and a tree from the bucket must not make a
/// setuid-root program; [`Stripped`] lists them). A directory keeps setgid (files made in it
/// inherit its group, which grants nothing) and loses setuid, which Linux ignores there.
pub fn restorable_mode(node: &Node) -> u32 {
    let drop = if node.kind == NodeKind::Dir {
        libc::S_ISUID
    } else {
        libc::S_ISUID | libc::S_ISGID
    };
    node.mode & 0o7777 & !drop
}

/// How many file names the setuid/setgid warning lists before it only counts.
const NAMED_STRIPPED: usize = 10;

/// The files restored without the setuid or setgid bit their tree entry has, for one warning.
#[derive(Debug, Default)]
pub struct Stripped {
    named: Vec<String>,
    count: u64,
}

impl Stripped {
    /// Notes `node` if [`restorable_mode`] drops bits of its mode.
    pub fn note(&mut self, node: &Node) {
        if restorable_mode(node) == node.mode & 0o7777 {
            return;
        }
        self.count += 1;
        if self.named.len() < NAMED_STRIPPED {
            self.named
                .push(format!("`{}`", node.path.display().escape_debug()));
        }
    }

    /// The warning, when any bits were dropped.
    pub fn warning(&self) -> Option<String> {
        if self.count == 0 {
            return None;
        }
        let more = self.count - self.named.len() as u64;
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        Some(format!(
            "{} file(s) were restored without their setuid/setgid bit (a restore never makes such files): {}{more} (hint: if a program needs the bit, check it and set it again with chmod)",
            self.count,
            self.named.join(", ")
        ))
    }
}

/// Applies `node`'s owner (when `owners`: running as root), mode (not for symlinks) and mtime
/// to entry `name` of `dir` (`dir` itself when `name` is empty). Nothing follows a symlink:
/// files and directories are changed through a handle opened with `O_NOFOLLOW` (so a link
/// swapped in meanwhile fails instead of redirecting a chmod or chown), symlinks themselves
/// with the `*at(…, AT_SYMLINK_NOFOLLOW)` calls. Owner first: chown clears setuid/setgid bits.
/// The mode is [`restorable_mode`].
pub fn set_meta(
    dir: &OwnedFd,
    name: &OsStr,
    node: &Node,
    owners: bool,
    symlink: bool,
) -> io::Result<()> {
    if symlink {
        if owners {
            let (u, g) = ids(node);
            rustix::fs::chownat(dir, name, u, g, AtFlags::SYMLINK_NOFOLLOW)?;
        }
        rustix::fs::utimensat(dir, name, &times(node), AtFlags::SYMLINK_NOFOLLOW)?;
        return Ok(());
    }
    let opened;
    let fd = if name.is_empty() {
        dir
    } else {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        opened = rustix::fs::openat(dir, name, flags, Mode::empty())?;
        &opened
    };
    if owners {
        let (u, g) = ids(node);
        rustix::fs::fchown(fd, u, g)?;
    }
    rustix::fs::fchmod(fd, Mode::from_raw_mode(restorable_mode(node)))?;
    rustix::fs::futimens(fd, &times(node))?;
    Ok(())
}

/// The names in directory `dir`, without `.` and `..`.
fn names(dir: &OwnedFd) -> io::Result<Vec<OsString>> {
    let mut out = Vec::new();
    for e in rustix::fs::Dir::read_from(dir)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    Ok(out)
}

/// Removes the temporary files an interrupted restore (a process no longer running) left in
/// `dir`; returns how many.
pub fn remove_stale_temps(dir: &OwnedFd) -> io::Result<u64> {
    let mut n = 0;
    for name in names(dir)? {
        let Some(rest) = name.as_bytes().strip_prefix(TEMP_PREFIX.as_bytes()) else {
            continue;
        };
        let pid = std::str::from_utf8(rest.split(|b| *b == b'-').next().unwrap_or_default())
            .ok()
            .and_then(|p| p.parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw);
        let running = pid.is_some_and(|p| {
            p.as_raw_nonzero().get() as u32 == std::process::id()
                || !matches!(rustix::process::test_kill_process(p), Err(Errno::SRCH))
        });
        if pid.is_some() && !running && rustix::fs::unlinkat(dir, &name, AtFlags::empty()).is_ok() {
            n += 1;
        }
    }
    Ok(n)
}

/// Removes entry `name` of `dir` and everything under it without following symlinks or
/// entering another file system than `dev` (such entries stay). Returns how many entries were
/// removed.
pub fn remove_tree(dir: &OwnedFd, name: &OsStr, dev: u64) -> io::Result<u64> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if !is_dir(&st) {
        rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
        return Ok(1);
    }
    if st.st_dev != dev {
        return Ok(0);
    }
    let sub = step(dir, name, Make::Open)?;
    let mut n = 0;
    for child in names(&sub)? {
        n += remove_tree(&sub, &child, dev)?;
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
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

/// Removes the entries of directory `dir` (shown as `path`) whose paths `wanted` does not hold
/// (the snapshot's entries there), except excluded ones and what is not on file system `dev`
/// (the backed-up directory's): a directory that is itself another file system's mount point
/// is left whole.
pub fn sweep(
    dir: &OwnedFd,
    path: &Path,
    dev: u64,
    wanted: &dyn Fn(&[u8]) -> bool,
    excludes: &Excludes,
) -> io::Result<Swept> {
    let mut s = Swept::default();
    if rustix::fs::fstat(dir)?.st_dev != dev {
        s.kept += 1;
        return Ok(s);
    }
    for name in names(dir)? {
        let full = path.join(&name);
        if wanted(full.as_os_str().as_bytes()) {
            continue;
        }
        let st = rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)?;
        if st.st_dev != dev || excludes.matches(&full, is_dir(&st)) {
            s.kept += 1;
            continue;
        }
        s.removed += remove_tree(dir, &name, dev)?;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::media::beneath_target::Resolver;
    use crate::restore::media::select::Destination;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn temp_files_symlinks_meta_and_sweep() {
        let d = tempfile::tempdir().unwrap();
        let mut r = Resolver::new(
            Destination::Under(d.path().to_path_buf()),
            &[],
            Default::default(),
            false,
        );
        let at = r.place(b"/sub/f", false).unwrap();
        let tmp = create_temp(&at, 10).unwrap();
        assert!(tmp.to_str().unwrap().starts_with(TEMP_PREFIX));
        let dest = d.path().join("sub/f");
        assert_eq!(fs::metadata(dest.with_file_name(&tmp)).unwrap().len(), 10);
        rename_into(&at, &tmp).unwrap();
        let node = Node {
            path: RawPath(b"/sub/f".to_vec()),
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
        set_meta(&at.dir, &at.name, &node, false, false).unwrap();
        let md = fs::metadata(&dest).unwrap();
        // setgid is not restored on a file, and the warning names it.
        assert_eq!(md.mode() & 0o7777, 0o640);
        let mut stripped = Stripped::default();
        stripped.note(&node);
        assert!(stripped.warning().unwrap().contains("`/sub/f`"));
        let dir = Node {
            kind: NodeKind::Dir,
            mode: 0o6775,
            ..node.clone()
        };
        assert_eq!(restorable_mode(&dir), 0o2775);
        assert_eq!((md.mtime(), md.mtime_nsec()), (-2, 499_999_999));
        // A symlink replaces the file; its own mtime is set, not its (dangling) target's.
        let link = d.path().join("sub/l");
        let lat = r.place(b"/sub/l", false).unwrap();
        make_symlink(&lat, &RawPath(b"../nowhere\xff".to_vec())).unwrap();
        assert_eq!(
            fs::read_link(&link).unwrap().as_os_str().as_bytes(),
            b"../nowhere\xff"
        );
        let n7 = Node {
            mtime_ns: 7,
            ..node.clone()
        };
        set_meta(&lat.dir, &lat.name, &n7, false, true).unwrap();
        assert_eq!(fs::symlink_metadata(&link).unwrap().mtime_nsec(), 7);
        // A directory in the way of a file goes only with --delete.
        let blocked = d.path().join("sub/blocked");
        fs::create_dir_all(blocked.join("x")).unwrap();
        let bat = r.place(b"/sub/blocked", false).unwrap();
        assert!(clear_for_entry(&bat, false)
            .unwrap_err()
            .to_string()
            .contains("--delete"));
        clear_for_entry(&bat, true).unwrap();
        assert!(!blocked.exists());
        // The sweep keeps wanted and excluded entries, and never follows a symlink.
        fs::write(d.path().join("sub/cache.tmp"), b"").unwrap();
        fs::create_dir_all(d.path().join("sub/old/deep")).unwrap();
        fs::create_dir_all(d.path().join("outside/keep")).unwrap();
        std::os::unix::fs::symlink(d.path().join("outside"), d.path().join("sub/old/out")).unwrap();
        let keep = dest.as_os_str().as_bytes().to_vec();
        let ex = Excludes::new(&[d.path().display().to_string()], &["*.tmp".into()]);
        let sub = r.dir(b"/sub").unwrap();
        let dev = rustix::fs::fstat(&sub).unwrap().st_dev;
        let s = sweep(
            &sub,
            &d.path().join("sub"),
            dev,
            &|p| p == keep || p.ends_with(b"/l"),
            &ex,
        )
        .unwrap();
        assert_eq!(
            s,
            Swept {
                removed: 3,
                kept: 1
            }
        );
        assert!(dest.exists() && !d.path().join("sub/old").exists());
        assert!(d.path().join("outside/keep").exists());
        // Temporary files of a dead process go, this one's stay.
        let dead = format!("{TEMP_PREFIX}{}-3", i32::MAX);
        fs::write(d.path().join("sub").join(&dead), b"").unwrap();
        let mine = create_temp(&at, 1).unwrap();
        assert_eq!(remove_stale_temps(&sub).unwrap(), 1);
        assert!(!d.path().join("sub").join(&dead).exists());
        assert!(d.path().join("sub").join(&mine).exists());
    }
}

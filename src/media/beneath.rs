//! Opening the files a backup reads without following a symlink below the backed-up directory.
//!
//! The walk lists directories by path, and a worker opens each file later. In an upload
//! directory the web server's user can swap a directory for a symlink (`avatars` → `/etc`) in
//! between: opening `…/avatars/x` by path would then read a file from outside the tree (as the
//! backup's user, into a snapshot someone may restore in place). So the backed-up directory is
//! opened by path (following symlinks: the configuration names it), and every name below it with
//! `openat(…, O_NOFOLLOW)`; a directory replaced by a symlink is refused, not followed. Each
//! worker keeps the last directory it opened, so files of one directory cost one `openat` each.
//! With `follow_symlinks = true` files are opened by path, as that setting asks.

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

/// Opens files below a set of roots (one per reading thread).
pub struct Opener {
    roots: Vec<PathBuf>,
    follow: bool,
    /// The directory of the previous file, opened.
    last: Option<(PathBuf, OwnedFd)>,
}

/// Read-only, never blocking on a FIFO swapped in since the walk, closed on exec.
fn read_flags() -> OFlags {
    OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC
}

impl Opener {
    /// An opener for files under `roots`; `follow` opens by path (`follow_symlinks`).
    pub fn new(roots: &[PathBuf], follow: bool) -> Opener {
        Opener {
            roots: roots.to_vec(),
            follow,
            last: None,
        }
    }

    /// Opens `path`, found by the walk under one of the roots, for reading.
    pub fn open(&mut self, path: &Path) -> io::Result<File> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return self.by_path(path);
        };
        let root = self
            .roots
            .iter()
            .filter(|r| parent.starts_with(r))
            .max_by_key(|r| r.as_os_str().len());
        let Some(root) = root.cloned() else {
            // The root itself (a job path naming a file), or outside every root.
            return self.by_path(path);
        };
        if self.follow {
            return self.by_path(path);
        }
        if self.last.as_ref().is_none_or(|(p, _)| p != parent) {
            self.last = None;
            let fd = open_dir_beneath(&root, parent)?;
            self.last = Some((parent.to_path_buf(), fd));
        }
        let dir = &self.last.as_ref().expect("just opened").1;
        let fd = rustix::fs::openat(dir, name, read_flags() | OFlags::NOFOLLOW, Mode::empty())?;
        Ok(File::from(fd))
    }

    fn by_path(&self, path: &Path) -> io::Result<File> {
        let mut flags = read_flags();
        if !self.follow {
            flags |= OFlags::NOFOLLOW;
        }
        Ok(File::from(rustix::fs::open(path, flags, Mode::empty())?))
    }
}

/// Opens directory `dir` (at or under `root`): `root` by path, each name below without
/// following a symlink.
fn open_dir_beneath(root: &Path, dir: &Path) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut fd = rustix::fs::open(root, flags, Mode::empty())?;
    let rest = dir.strip_prefix(root).unwrap_or(Path::new(""));
    for c in rest.components() {
        let Component::Normal(name) = c else { continue };
        fd = match rustix::fs::openat(&fd, name, flags | OFlags::NOFOLLOW, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::LOOP | Errno::NOTDIR) => {
                return Err(io::Error::other(format!(
                    "`{}` is no longer a directory (a symlink or file replaced it while the backup ran; not followed)",
                    root.join(rest).display()
                )))
            }
            Err(e) => return Err(e.into()),
        };
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_directory_swapped_for_a_symlink_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), b"inside").unwrap();
        std::fs::create_dir_all(d.path().join("secret/b")).unwrap();
        std::fs::write(d.path().join("secret/b/f"), b"outside").unwrap();
        // The job's path is a symlink: followed.
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&root, &link).unwrap();
        let mut o = Opener::new(std::slice::from_ref(&link), false);
        let mut s = String::new();
        o.open(&link.join("a/b/f"))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "inside");
        std::fs::rename(root.join("a"), d.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(d.path().join("secret"), root.join("a")).unwrap();
        let mut fresh = Opener::new(std::slice::from_ref(&link), false);
        let e = fresh.open(&link.join("a/b/f")).unwrap_err();
        assert!(e.to_string().contains("not followed"), "{e}");
        // With follow_symlinks the link is followed, as configured.
        let mut follow = Opener::new(std::slice::from_ref(&link), true);
        let mut s = String::new();
        follow
            .open(&link.join("a/b/f"))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "outside");
        // A file that became a symlink is refused too.
        std::fs::remove_file(root.join("a")).unwrap();
        std::fs::create_dir(root.join("a")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("a/g")).unwrap();
        assert!(fresh.open(&link.join("a/g")).is_err());
    }
}

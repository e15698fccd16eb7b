//! Creating files and directories below a directory the configuration or the command line names
//! (the state dir, the directory of `restore --to-file`), without following a symlink.
//!
//! Threat model: the state dir belongs to the opsagent user, and verbs run by root (`backup`,
//! `restore`, `prune` from a shell) write there too. Whoever can act as the opsagent user (a
//! compromised daemon, a bug in a dump tool) can plant a symlink at any name below it: at
//! `locks/main.lock` pointing at `/etc/shadow`, or replacing `restore/` by a link to `/etc`. Root
//! following that link truncates, writes or creates files wherever the link points. Likewise a
//! user who can write in the directory of `--to-file` can plant `<file>.partial`.
//!
//! So the anchor (the configured state dir, the directory `--to-file` names) is opened by path,
//! following symlinks as the configuration asks, and every name below it one at a time with
//! `openat(…, O_NOFOLLOW)`. A name that is a symlink is refused with [`Symlink`], naming the path;
//! new files are created `O_EXCL` (never an existing file, never through a link) with an explicit
//! mode, new directories 0700. All descriptors are `O_CLOEXEC`.
//!
//! A leaf: imports nothing of ours.

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// A name below the anchor is a symlink; it was not followed. The payload of the
/// [`io::Error`]s this module returns for that case (see [`symlink_in`]).
#[derive(Debug, thiserror::Error)]
#[error("{} is a symlink; opsagent does not follow links there", .path.display())]
pub struct Symlink {
    /// The link.
    pub path: PathBuf,
}

/// The [`Symlink`] carried by `err`, if that is why it failed.
pub fn symlink_in(err: &io::Error) -> Option<&Symlink> {
    err.get_ref().and_then(|e| e.downcast_ref::<Symlink>())
}

fn refused(path: PathBuf) -> io::Error {
    io::Error::other(Symlink { path })
}

/// A directory opened below its anchor, with the path it was reached by (for messages).
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

impl Dir {
    /// Opens `anchor` by path (following symlinks: it is configured), then each component of
    /// `below` (plain names only) without following one; with `create`, missing directories
    /// are made with mode 0700.
    pub fn open(anchor: &Path, below: &Path, create: bool) -> io::Result<Dir> {
        if create {
            std::fs::create_dir_all(anchor)?;
        }
        let anchor = if anchor.as_os_str().is_empty() {
            Path::new(".")
        } else {
            anchor
        };
        let mut dir = Dir {
            fd: rustix::fs::open(anchor, dir_flags(), Mode::empty())?,
            path: anchor.to_path_buf(),
        };
        for c in below.components() {
            let Component::Normal(name) = c else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a plain relative path", below.display()),
                ));
            };
            dir = dir.sub(name, create)?;
        }
        Ok(dir)
    }

    /// The directory `name` in this one, made (0700) if missing and `create`.
    pub fn sub(&self, name: &OsStr, create: bool) -> io::Result<Dir> {
        let path = self.path.join(name);
        if create {
            match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }
        match rustix::fs::openat(
            &self.fd,
            name,
            dir_flags() | OFlags::NOFOLLOW,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(Dir { fd, path }),
            Err(e) => Err(self.explain(name, e)),
        }
    }

    /// The path this directory was reached by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the file `name` here, `O_EXCL`, with `mode`, open for writing. Fails when
    /// anything (a file, a symlink) is already there.
    pub fn create_new(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        let mode = Mode::from_raw_mode(mode);
        match rustix::fs::openat(&self.fd, name, flags | OFlags::CLOEXEC, mode) {
            Ok(fd) => Ok(File::from(fd)),
            Err(e) => Err(self.explain(name, e)),
        }
    }

    /// Opens the regular file `name` here for reading and writing, creating it with `mode` when
    /// missing (lock files). A symlink there is refused.
    pub fn open_or_create(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(mode))
            .map_err(|e| self.explain(name, e))?;
        let st = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(io::Error::other(format!(
                "{} is not a regular file",
                self.path.join(name).display()
            )));
        }
        Ok(File::from(fd))
    }

    /// Renames `from` to `to`, both in this directory, failing with `AlreadyExists` when `to`
    /// exists (a file, a directory or a symlink: nothing is replaced). `renameat2
    /// (RENAME_NOREPLACE)`, or `link` + `unlink` where the file system lacks it.
    pub fn rename_noreplace(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        let fd = &self.fd;
        match rustix::fs::renameat_with(fd, from, fd, to, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(()),
            Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {
                rustix::fs::linkat(fd, from, fd, to, AtFlags::empty())?;
                rustix::fs::unlinkat(fd, from, AtFlags::empty())?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the file `name` here (never what a symlink points at).
    pub fn remove(&self, name: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())?)
    }

    /// Whether `name` here is a symlink (not followed).
    fn is_symlink(&self, name: &OsStr) -> bool {
        rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
    }

    /// `err` from opening `name`, as [`Symlink`] when a link is why.
    fn explain(&self, name: &OsStr, err: Errno) -> io::Error {
        if matches!(err, Errno::LOOP | Errno::NOTDIR | Errno::EXIST) && self.is_symlink(name) {
            return refused(self.path.join(name));
        }
        io::Error::from(err)
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn links_below_the_anchor_are_refused_and_their_targets_untouched() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"root:x:0:0\n").unwrap();
        let state = d.path().join("state");
        // The anchor itself may be a link (the configuration names it).
        std::fs::create_dir(d.path().join("real")).unwrap();
        symlink(d.path().join("real"), &state).unwrap();
        let locks = Dir::open(&state, Path::new("locks"), true).unwrap();
        let md = std::fs::metadata(d.path().join("real/locks")).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o700);
        symlink(&victim, d.path().join("real/locks/j.lock")).unwrap();
        let e = locks
            .open_or_create(OsStr::new("j.lock"), 0o600)
            .unwrap_err();
        let s = symlink_in(&e).expect("a symlink refusal");
        assert_eq!(s.path, state.join("locks/j.lock"));
        let e = locks.create_new(OsStr::new("j.lock"), 0o600).unwrap_err();
        assert!(symlink_in(&e).is_some(), "{e}");
        // A directory replaced by a link.
        symlink(d.path(), d.path().join("real/restore")).unwrap();
        let e = Dir::open(&state, Path::new("restore/j"), true).unwrap_err();
        assert!(e.to_string().contains("restore is a symlink"), "{e}");
        assert!(!d.path().join("j").exists());
        assert_eq!(std::fs::read(&victim).unwrap(), b"root:x:0:0\n");
        assert!(Dir::open(&state, Path::new("../x"), true).is_err());
    }

    #[test]
    fn new_files_are_exclusive_and_renames_replace_nothing() {
        let d = tempfile::tempdir().unwrap();
        let dir = Dir::open(d.path(), Path::new(""), false).unwrap();
        let mut f = dir.create_new(OsStr::new("a.partial"), 0o600).unwrap();
        f.write_all(b"new").unwrap();
        let md = std::fs::metadata(d.path().join("a.partial")).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o600);
        let e = dir.create_new(OsStr::new("a.partial"), 0o600).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert!(symlink_in(&e).is_none());
        std::fs::write(d.path().join("a"), b"old").unwrap();
        let e = dir
            .rename_noreplace(OsStr::new("a.partial"), OsStr::new("a"))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(d.path().join("a")).unwrap(), b"old");
        dir.rename_noreplace(OsStr::new("a.partial"), OsStr::new("b"))
            .unwrap();
        assert_eq!(std::fs::read(d.path().join("b")).unwrap(), b"new");
        dir.remove(OsStr::new("b")).unwrap();
        assert!(!d.path().join("b").exists());
    }
}

//! Opening the directories an in-place media restore starts from (the backed-up paths and
//! their ancestors) from `/`, one name at a time.
//!
//! Threat model: an in-place restore runs as root, `--delete` removes what the snapshot does
//! not hold, and modes and owners are set. The directories *above* a backed-up path are often
//! the web server's: Laravel's `storage/app` above `storage/app/public` belongs to `www-data`,
//! who can replace it by a symlink to any directory (`/etc`, another site's files). Opening
//! the backed-up path by path would follow that link, and the restore would write, chmod and
//! delete in the link's target. So the path is opened from `/` with `openat(O_NOFOLLOW |
//! O_DIRECTORY)` one name at a time, and a symlink on the way is followed only when nobody but
//! root (or the user running the restore) can have made or changed it: the link and the
//! directory holding it are theirs, and that directory is not writable by group or others
//! (checked on the link itself, opened with `O_PATH`, so it cannot be swapped in between). Its
//! target is resolved the same way. The backed-up path itself may be a link anyone made
//! (Laravel's `public/storage`): it is followed, its target resolved the same way, only to the
//! very directory that was backed up (its inode at backup time). Any other symlink is refused
//! with an error naming it; nothing is written through it.

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Most symlinks followed while opening one path (the kernel's own limit).
const MAX_LINKS: usize = 40;

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// The names of `path` in order, the last one flagged with `last`.
fn names(path: &[u8], last: bool) -> VecDeque<(OsString, bool)> {
    let parts: Vec<&[u8]> = path
        .split(|b| *b == b'/')
        .filter(|n| !n.is_empty() && *n != b".")
        .collect();
    let n = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, p)| (OsStr::from_bytes(p).to_os_string(), last && i + 1 == n))
        .collect()
}

/// Whether only root or this process's user can have made or changed symlink `link` in `dir`.
fn trusted(link: &Stat, dir: &OwnedFd) -> io::Result<bool> {
    let me = rustix::process::geteuid().as_raw();
    let ours = |uid: u32| uid == 0 || uid == me;
    let d = rustix::fs::fstat(dir)?;
    Ok(ours(link.st_uid) && ours(d.st_uid) && d.st_mode & 0o022 == 0)
}

/// The backed-up directory an anchor is, if it is one.
#[derive(Debug, Clone, Copy)]
pub struct Root {
    /// Its inode at backup time (a symlink there is followed only to it).
    pub inode: Option<u64>,
    /// Whether a file there may be replaced by the directory (`--delete`).
    pub replace: bool,
}

struct Walk {
    /// The directories opened so far, `/` first (`..` goes back one).
    stack: Vec<OwnedFd>,
    /// Where they are, for messages.
    shown: PathBuf,
    links: usize,
}

/// Opens directory `path` (absolute) from `/` without following a symlink an unprivileged
/// user could have placed (see the module docs); `root` when `path` is a backed-up directory.
/// Missing directories are made (mode 0700 until a restore sets their own mode).
pub fn open(path: &Path, root: Option<Root>) -> io::Result<OwnedFd> {
    let top = rustix::fs::open("/", dir_flags(), Mode::empty())?;
    let mut w = Walk {
        stack: vec![top],
        shown: PathBuf::from("/"),
        links: 0,
    };
    let mut todo = names(path.as_os_str().as_bytes(), true);
    // The backed-up path was a symlink: (the link, its target).
    let mut via: Option<(PathBuf, PathBuf)> = None;
    while let Some((name, last)) = todo.pop_front() {
        if name == ".." {
            if w.stack.len() > 1 {
                w.stack.pop();
                w.shown.pop();
            }
            continue;
        }
        let here = w.shown.join(&name);
        let cur = w.stack.last().expect("`/` stays");
        let at = |e: Errno| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("`{}`: {e}", here.display()),
            )
        };
        let fd = match rustix::fs::openat(cur, &name, dir_flags(), Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if via.is_none() => {
                match rustix::fs::mkdirat(cur, &name, Mode::from_raw_mode(0o700)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(at(e)),
                }
                rustix::fs::openat(cur, &name, dir_flags(), Mode::empty()).map_err(at)?
            }
            Err(Errno::NOTDIR | Errno::LOOP) => {
                let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let link = rustix::fs::openat(cur, &name, flags, Mode::empty()).map_err(at)?;
                let st = rustix::fs::fstat(&link).map_err(at)?;
                if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
                    replace_file(cur, &name, &here, last.then_some(root).flatten())?
                } else {
                    let target = rustix::fs::readlinkat(&link, "", Vec::new()).map_err(at)?;
                    let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                    let backed_up = last && root.is_some();
                    if !backed_up && !trusted(&st, cur)? {
                        return Err(untrusted(&here, &target, st.st_uid));
                    }
                    w.links += 1;
                    if w.links > MAX_LINKS {
                        return Err(at(Errno::LOOP));
                    }
                    if backed_up && via.is_none() {
                        via = Some((here.clone(), target.clone()));
                    }
                    if target.is_absolute() {
                        w.stack.truncate(1);
                        w.shown = PathBuf::from("/");
                    }
                    for n in names(target.as_os_str().as_bytes(), last).into_iter().rev() {
                        todo.push_front(n);
                    }
                    continue;
                }
            }
            Err(e) => return Err(at(e)),
        };
        w.stack.push(fd);
        w.shown = here;
    }
    let fd = w.stack.pop().expect("`/` stays");
    if let Some((link, target)) = via {
        backed_up_directory(&fd, &link, &target, root)?;
    }
    Ok(fd)
}

/// Refuses `fd`, reached through the symlink `link` → `target` at a backed-up path, unless it
/// is the very directory that was backed up (its inode at backup time).
fn backed_up_directory(
    fd: &OwnedFd,
    link: &Path,
    target: &Path,
    root: Option<Root>,
) -> io::Result<()> {
    let ino = rustix::fs::fstat(fd)?.st_ino;
    if root.and_then(|r| r.inode) != Some(ino) {
        return Err(io::Error::other(format!(
            "`{}` is now a symlink to `{}`, not the directory that was backed up; it was not followed (hint: remove the link and restore again, or restore with --to-dir and copy back)",
            link.display(),
            target.display()
        )));
    }
    Ok(())
}

/// A file where a directory goes: replaced at a backed-up path with `--delete`, else refused.
fn replace_file(
    dir: &OwnedFd,
    name: &OsStr,
    here: &Path,
    root: Option<Root>,
) -> io::Result<OwnedFd> {
    if !root.is_some_and(|r| r.replace) {
        return Err(io::Error::other(format!(
            "`{}` is a file now, where the snapshot has a directory; it was not replaced (hint: add --delete to replace it; side by side, restore into an empty --to-dir)",
            here.display()
        )));
    }
    rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
    rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700))?;
    Ok(rustix::fs::openat(dir, name, dir_flags(), Mode::empty())?)
}

fn untrusted(link: &Path, target: &Path, uid: u32) -> io::Error {
    io::Error::other(format!(
        "`{}` is a symlink to `{}` (owned by uid {uid}, or in a directory others can write) that someone other than root could have made or changed; an in-place restore runs as root and it was not followed, nothing was written through it (hint: if the link belongs there, set the job's paths to the real directory, `realpath` prints it; else restore with --to-dir and copy back)",
        link.display(),
        target.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn trusted_links_are_followed_others_refused() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path();
        std::fs::create_dir_all(base.join("real/app/public")).unwrap();
        std::fs::create_dir_all(base.join("victim/public")).unwrap();
        // A link only the owner can change, with a relative target: followed.
        std::os::unix::fs::symlink("real", base.join("current")).unwrap();
        let fd = open(&base.join("current/app/public"), None).unwrap();
        let ino = std::fs::metadata(base.join("real/app/public"))
            .unwrap()
            .ino();
        assert_eq!(rustix::fs::fstat(&fd).unwrap().st_ino, ino);
        // Missing directories are made.
        open(&base.join("current/app/new/deeper"), None).unwrap();
        assert!(base.join("real/app/new/deeper").is_dir());
        // `app` replaced by a link in a directory others can write: refused, named.
        std::fs::rename(base.join("real/app"), base.join("old-app")).unwrap();
        std::os::unix::fs::symlink(base.join("victim"), base.join("real/app")).unwrap();
        std::fs::set_permissions(
            base.join("real"),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let root = Some(Root {
            inode: Some(ino),
            replace: true,
        });
        let e = open(&base.join("current/app/public"), root).unwrap_err();
        assert!(e.to_string().contains("/real/app`"), "{e}");
        assert!(e.to_string().contains("not followed"), "{e}");
        // The backed-up path itself as a link: only to the directory that was backed up.
        std::fs::set_permissions(
            base.join("real"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        std::fs::remove_file(base.join("real/app")).unwrap();
        std::fs::rename(base.join("old-app"), base.join("real/app")).unwrap();
        std::os::unix::fs::symlink(base.join("real/app/public"), base.join("link")).unwrap();
        open(&base.join("link"), root).unwrap();
        std::fs::remove_file(base.join("link")).unwrap();
        std::os::unix::fs::symlink(base.join("victim/public"), base.join("link")).unwrap();
        let e = open(&base.join("link"), root).unwrap_err();
        assert!(
            e.to_string()
                .contains("not the directory that was backed up"),
            "{e}"
        );
        // A file at the backed-up path: replaced only with --delete.
        std::fs::write(base.join("file"), b"x").unwrap();
        let keep = Some(Root {
            inode: None,
            replace: false,
        });
        assert!(open(&base.join("file"), keep)
            .unwrap_err()
            .to_string()
            .contains("--delete"));
        open(&base.join("file"), root).unwrap();
        assert!(base.join("file").is_dir());
        assert_eq!(
            std::fs::read_dir(base.join("victim/public"))
                .unwrap()
                .count(),
            0
        );
    }
}

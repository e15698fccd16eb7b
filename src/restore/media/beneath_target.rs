//! Where a media restore writes, resolved one name at a time without following symlinks.
//!
//! A restore writes entries by their snapshot paths (`/srv/up/a/b.jpg`), but the directories on
//! the way are whatever is on disk now: in an upload directory the web server's user may have
//! put a symlink where the snapshot has a directory (`a` → `/etc`). Opening `…/a/b.jpg` by path
//! would follow it and write outside the tree, as root. So only the *anchors* are opened by
//! path: the `--to-dir`/side-by-side directory (following symlinks: the command line names
//! it), or, in place, the backed-up directories and their ancestors, opened from `/` one name
//! at a time, following only links nobody else can change, and a backed-up path that is a link
//! (Laravel's `public/storage`) only to the directory that was backed up
//! (src/media/anchor.rs). Every name below an anchor is opened with `openat(…, O_NOFOLLOW |
//! O_DIRECTORY)` from its parent's descriptor, and entries are then created, renamed and changed
//! with the `*at` calls relative to that descriptor. This also lifts the 4096-byte `PATH_MAX`
//! limit on the paths a restore can write (a side-by-side restore adds its directory in front
//! of every original path).

use super::select::Destination;
use crate::media::anchor;
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;

/// Directory descriptors kept for reuse before the cache starts over: well under the usual
/// soft limit of 1024 open files (a restore also holds sockets and the files being written).
const CACHED: usize = 64;

/// An entry to write: a directory opened without following symlinks, and a name in it.
#[derive(Debug, Clone)]
pub struct Place {
    /// The directory holding the entry.
    pub dir: Arc<OwnedFd>,
    /// The entry's name in `dir`; empty when the entry is the anchor itself (a backed-up
    /// directory restored in place), which is then `dir`.
    pub name: OsString,
}

/// Opens the directories a restore writes into (see the module docs).
pub struct Resolver {
    dest: Destination,
    /// In place: the backed-up directories, without trailing slashes.
    roots: Vec<Vec<u8>>,
    /// What to do with a file or symlink where a directory goes.
    make: Make,
    /// In place: each backed-up directory's inode at backup time.
    root_inodes: HashMap<Vec<u8>, u64>,
    /// Side by side: the (device, inode) of the directory as it was created below the state
    /// dir; the destination opened by path must be that very directory.
    expect_under: Option<(u64, u64)>,
    cache: HashMap<Vec<u8>, Arc<OwnedFd>>,
}

/// The parent of absolute path `p` (`/` for `/x` and for `/`).
fn parent(p: &[u8]) -> &[u8] {
    match p.iter().rposition(|b| *b == b'/') {
        Some(0) | None => b"/",
        Some(i) => &p[..i],
    }
}

/// `p` without trailing slashes (`/` stays).
pub fn trim(p: &[u8]) -> &[u8] {
    let end = p.iter().rposition(|b| *b != b'/').map_or(1, |i| i + 1);
    &p[..end.min(p.len())]
}

/// Whether `path` is `prefix` or under it.
fn at_or_under(path: &[u8], prefix: &[u8]) -> bool {
    prefix == b"/"
        || (path.starts_with(prefix) && (path.len() == prefix.len() || path[prefix.len()] == b'/'))
}

/// How [`step`] treats a missing directory or something else in its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Make {
    /// Open only.
    Open,
    /// Create a missing directory; refuse a file or symlink in the way.
    Create,
    /// Create it, replacing a file or symlink in the way (`--delete`).
    Replace,
}

/// Opens the directory `name` in `dir` without following a symlink. A missing one is made
/// (mode 0700 until its own mode is set) unless `make` is [`Make::Open`]; a file or symlink in
/// the way is removed (never followed) with [`Make::Replace`], else refused.
pub fn step(dir: &OwnedFd, name: &OsStr, make: Make) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Err(Errno::NOENT) if make != Make::Open => {}
        Err(Errno::NOTDIR | Errno::LOOP) if make == Make::Replace => {
            rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
        }
        Err(Errno::NOTDIR | Errno::LOOP) if make == Make::Create => {
            return Err(io::Error::other(
                "a file or symlink is there now, where the snapshot has a directory; it was not replaced (hint: add --delete to replace it; side by side, restore into an empty --to-dir)",
            ));
        }
        other => return Ok(other?),
    }
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(rustix::fs::openat(dir, name, flags, Mode::empty())?)
}

impl Resolver {
    /// A resolver for `dest`; `roots` are the snapshot's backed-up paths, `root_inodes` what they
    /// were at backup time; `replace` (`--delete`) lets a file or symlink where the snapshot has
    /// a directory be replaced.
    pub fn new(
        dest: Destination,
        roots: &[String],
        root_inodes: HashMap<Vec<u8>, u64>,
        replace: bool,
    ) -> Resolver {
        Resolver {
            dest,
            root_inodes,
            make: if replace { Make::Replace } else { Make::Create },
            roots: roots.iter().map(|r| trim(r.as_bytes()).to_vec()).collect(),
            expect_under: None,
            cache: HashMap::new(),
        }
    }

    /// Requires the `Under` destination, once opened, to be the directory with this (device,
    /// inode): the side-by-side directory lives below the agent-owned state dir, whose owner
    /// could swap a name on its path for a symlink after it was created.
    pub fn expect_under(&mut self, identity: Option<(u64, u64)>) {
        self.expect_under = identity;
    }

    /// Whether snapshot path `p` is opened by path, following symlinks: the destination
    /// directory, or in place a backed-up directory or one of its ancestors.
    fn anchor(&self, p: &[u8]) -> bool {
        match self.dest {
            Destination::Under(_) => p == b"/",
            Destination::InPlace => self.roots.iter().any(|r| at_or_under(r, p)),
        }
    }

    /// The directory at snapshot path `p`, created (with missing parents) when missing.
    pub fn dir(&mut self, p: &[u8]) -> io::Result<Arc<OwnedFd>> {
        let p = trim(p);
        if let Some(fd) = self.cache.get(p) {
            return Ok(fd.clone());
        }
        let fd = if self.anchor(p) {
            let path = self.dest.of_bytes(p);
            if self.dest == Destination::InPlace {
                let root = self.roots.iter().any(|r| r == p).then(|| anchor::Root {
                    inode: self.root_inodes.get(p).copied(),
                    replace: self.make == Make::Replace,
                });
                anchor::open(&path, root)?
            } else {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&path)?;
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
                let fd = rustix::fs::open(&path, flags, Mode::empty())?;
                if let Some((dev, ino)) = self.expect_under {
                    let st = rustix::fs::fstat(&fd)?;
                    if (st.st_dev, st.st_ino) != (dev, ino) {
                        return Err(io::Error::other(format!(
                            "{} is no longer the directory this restore created (a name on its path was replaced, by a symlink?); nothing was written",
                            path.display()
                        )));
                    }
                }
                fd
            }
        } else {
            let up = self.dir(parent(p))?;
            step(&up, name_of(p), self.make).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("`{}`: {e}", self.dest.of_bytes(p).display()),
                )
            })?
        };
        let fd = Arc::new(fd);
        if self.cache.len() >= CACHED {
            self.cache.clear();
        }
        self.cache.insert(p.to_vec(), fd.clone());
        Ok(fd)
    }

    /// Where the entry at snapshot path `p` goes; its parent directories are made if missing.
    /// A directory that is an anchor is its own place (empty name). A path that could lead
    /// elsewhere (`..`, `.` or empty names, relative, or in place outside every backed-up
    /// directory: only a tampered tree has one) is refused.
    pub fn place(&mut self, p: &[u8], is_dir: bool) -> io::Result<Place> {
        let p = trim(p);
        let names_ok = p
            .split(|b| *b == b'/')
            .skip(1)
            .all(|n| !matches!(n, b"" | b"." | b".."));
        let inside = match self.dest {
            Destination::Under(_) => true,
            Destination::InPlace => self.roots.iter().any(|r| at_or_under(p, r)),
        };
        if !p.starts_with(b"/") || !(names_ok || p == b"/") || !inside {
            return Err(io::Error::other(format!(
                "the snapshot's path `{}` is not a plain path under its backed-up directories; refused (hint: the tree object may have been tampered with)",
                String::from_utf8_lossy(p).escape_debug()
            )));
        }
        if is_dir && self.anchor(p) {
            return Ok(Place {
                dir: self.dir(p)?,
                name: OsString::new(),
            });
        }
        Ok(Place {
            dir: self.dir(parent(p))?,
            name: name_of(p).to_os_string(),
        })
    }

    /// The file system (`st_dev`) of the anchor snapshot path `p` lies under: the backed-up
    /// directory in place, the target directory side by side.
    pub fn anchor_dev(&mut self, p: &[u8]) -> io::Result<u64> {
        let p = trim(p);
        let anchor: Vec<u8> = match self.dest {
            Destination::Under(_) => b"/".to_vec(),
            Destination::InPlace => self
                .roots
                .iter()
                .filter(|r| at_or_under(p, r))
                .max_by_key(|r| r.len())
                .cloned()
                .unwrap_or_else(|| b"/".to_vec()),
        };
        Ok(rustix::fs::fstat(&*self.dir(&anchor)?)?.st_dev)
    }

    /// What to do with a file or symlink where a directory goes.
    pub fn make(&self) -> Make {
        self.make
    }

    /// Forgets every descriptor (after a directory was removed or replaced).
    pub fn forget(&mut self) {
        self.cache.clear();
    }
}

/// The last name of absolute path `p`.
fn name_of(p: &[u8]) -> &OsStr {
    let start = p.iter().rposition(|b| *b == b'/').map_or(0, |i| i + 1);
    OsStr::from_bytes(&p[start..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn path_pieces() {
        assert_eq!(parent(b"/a/b"), b"/a");
        assert_eq!(parent(b"/a"), b"/");
        assert_eq!(parent(b"/"), b"/");
        assert_eq!(trim(b"/a/b//"), b"/a/b");
        assert_eq!(trim(b"/"), b"/");
        assert_eq!(trim(b"//"), b"/");
        assert_eq!(name_of(b"/a/b\xff"), OsStr::from_bytes(b"b\xff"));
        assert!(at_or_under(b"/a/b", b"/a") && !at_or_under(b"/ab", b"/a"));
    }

    #[test]
    fn symlinks_below_an_anchor_are_replaced_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("real")).unwrap();
        // The backed-up directory itself is a symlink: followed (configuration).
        let link_root = d.path().join("link-root");
        std::os::unix::fs::symlink(&root, &link_root).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("a")).unwrap();
        let lr = link_root.display().to_string();
        let ino = std::fs::metadata(&root).unwrap().ino();
        let inodes = HashMap::from([(lr.as_bytes().to_vec(), ino)]);
        let mut r = Resolver::new(
            Destination::InPlace,
            std::slice::from_ref(&lr),
            inodes.clone(),
            true,
        );
        let mut keep = Resolver::new(
            Destination::InPlace,
            std::slice::from_ref(&lr),
            inodes.clone(),
            false,
        );
        let e = keep
            .place(format!("{lr}/a/f").as_bytes(), false)
            .unwrap_err();
        assert!(e.to_string().contains("--delete"), "{e}");
        assert!(root.join("a").is_symlink());
        let p = r.place(format!("{lr}/a/f").as_bytes(), false).unwrap();
        assert_eq!(p.name, "f");
        assert!(root.join("a").is_dir() && !root.join("a").is_symlink());
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
        let top = r.place(lr.as_bytes(), true).unwrap();
        assert!(top.name.is_empty());
        assert!(std::fs::symlink_metadata(&link_root)
            .unwrap()
            .file_type()
            .is_symlink());
        // The backed-up directory's link pointed elsewhere: refused, not followed.
        std::fs::remove_file(&link_root).unwrap();
        std::os::unix::fs::symlink(&outside, &link_root).unwrap();
        let mut moved = Resolver::new(
            Destination::InPlace,
            std::slice::from_ref(&lr),
            inodes.clone(),
            true,
        );
        let e = moved
            .place(format!("{lr}/x").as_bytes(), false)
            .unwrap_err();
        assert!(e.to_string().contains("not followed"), "{e}");
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
        std::fs::remove_file(&link_root).unwrap();
        std::os::unix::fs::symlink(&root, &link_root).unwrap();
        // A tampered tree cannot lead out.
        for bad in [
            format!("{lr}/../x"),
            format!("{lr}/a/./x"),
            format!("{lr}//x"),
            "/etc/cron.d/x".to_string(),
            "relative/x".to_string(),
        ] {
            let e = r.place(bad.as_bytes(), false).unwrap_err();
            assert!(e.to_string().contains("refused"), "{bad}: {e}");
        }
        let mut under = Resolver::new(
            Destination::Under(d.path().join("u")),
            &[],
            HashMap::new(),
            false,
        );
        assert!(under.place(b"/srv/../../x", false).is_err());
        // Side by side, deeper than PATH_MAX.
        let mut deep = String::new();
        for i in 0..30 {
            deep.push_str(&format!("/{i:03}{}", "x".repeat(200)));
        }
        let base = d.path().join("under");
        let mut u = Resolver::new(Destination::Under(base.clone()), &[], HashMap::new(), false);
        let p = u.place(format!("{deep}/f").as_bytes(), false).unwrap();
        rustix::fs::openat(
            &*p.dir,
            "f",
            OFlags::CREATE | OFlags::WRONLY,
            Mode::from_raw_mode(0o600),
        )
        .unwrap();
        assert!(base.exists());
    }

    #[test]
    fn a_side_by_side_directory_swapped_for_a_symlink_is_not_written() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let (made, victim) = (d.path().join("restore/job/t"), d.path().join("victim"));
        std::fs::create_dir_all(&made).unwrap();
        std::fs::create_dir(&victim).unwrap();
        let m = std::fs::metadata(&made).unwrap();
        // The state dir's owner swaps a name on the path after the restore created it.
        std::fs::rename(d.path().join("restore"), d.path().join("old")).unwrap();
        std::fs::create_dir_all(d.path().join("restore")).unwrap();
        std::os::unix::fs::symlink(&victim, d.path().join("restore/job")).unwrap();
        std::fs::create_dir(victim.join("t")).unwrap();
        let mut r = Resolver::new(Destination::Under(made.clone()), &[], HashMap::new(), false);
        r.expect_under(Some((m.dev(), m.ino())));
        let e = r.place(b"/srv/up/x", false).unwrap_err();
        assert!(e.to_string().contains("no longer the directory"), "{e}");
        assert!(std::fs::read_dir(victim.join("t"))
            .unwrap()
            .next()
            .is_none());
        // Unswapped, the same check passes.
        let mut ok = Resolver::new(
            Destination::Under(d.path().join("old/job/t")),
            &[],
            HashMap::new(),
            false,
        );
        ok.expect_under(Some((m.dev(), m.ino())));
        assert!(ok.place(b"/srv/up/x", false).is_ok());
    }
}

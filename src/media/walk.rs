//! Walking the configured paths: which entries a snapshot holds, with their metadata, honouring
//! `exclude` (gitignore syntax, relative to each path), `one_file_system` and `follow_symlinks`.
//! Unreadable directories and vanished entries are reported as warnings, not failures.

use super::tree::{Node, NodeKind, RawPath};
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What to walk.
#[derive(Debug, Clone)]
pub struct WalkSettings {
    /// Absolute roots.
    pub paths: Vec<PathBuf>,
    /// gitignore-style patterns.
    pub exclude: Vec<String>,
    /// Stay on each root's file system.
    pub one_file_system: bool,
    /// Follow symlinks.
    pub follow_symlinks: bool,
}

/// Name prefix of the temporary files a restore writes before renaming them into place
/// (`.opsagent-restore-<pid>-<n>`): never user data, so a backup running during an in-place
/// restore leaves them out.
pub const RESTORE_TEMP_PREFIX: &str = ".opsagent-restore-";

/// Whether `name` is a restore's temporary file name.
pub fn is_restore_temp(name: &[u8]) -> bool {
    name.strip_prefix(RESTORE_TEMP_PREFIX.as_bytes())
        .and_then(|rest| {
            let (pid, n) = rest.split_at(rest.iter().position(|b| *b == b'-')?);
            Some(!pid.is_empty() && n.len() > 1)
                .filter(|_| pid.iter().chain(&n[1..]).all(u8::is_ascii_digit))
        })
        .unwrap_or(false)
}

/// A tree entry from its metadata (no chunks yet).
pub fn node_from(path: &Path, md: &Metadata) -> Option<Node> {
    let ft = md.file_type();
    let kind = if ft.is_file() {
        NodeKind::File
    } else if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_symlink() {
        NodeKind::Symlink
    } else {
        return None;
    };
    let target = if kind == NodeKind::Symlink {
        std::fs::read_link(path)
            .ok()
            .map(|t| RawPath::from_path(&t))
    } else {
        None
    };
    Some(Node {
        path: RawPath::from_path(path),
        kind,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime_ns: nanos(md.mtime(), md.mtime_nsec()),
        ctime_ns: nanos(md.ctime(), md.ctime_nsec()),
        inode: md.ino(),
        size: if kind == NodeKind::File { md.len() } else { 0 },
        target,
        chunks: Vec::new(),
    })
}

/// Nanoseconds since the epoch, clamped to what an `i64` holds (1677-09-21 to 2262-04-11):
/// ext4 and XFS take times up to 2446 and `touch -d 2500-01-01` is one command away.
pub fn nanos(sec: i64, nsec: i64) -> i64 {
    sec.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// Why a walk stopped before it began: a configured path cannot be read. (What cannot be read
/// below a path is a warning, not an error.)
#[derive(Debug, thiserror::Error)]
#[error(
    "path `{}` cannot be read: {cause} (hint: check `paths` in the job, and that the opsagent user may read it)",
    path.display()
)]
pub struct WalkError {
    /// The configured path.
    pub path: PathBuf,
    /// What the OS said.
    pub cause: std::io::Error,
}

/// Walks every root, calling `each` with every entry in path order (parents first) and `warn`
/// for what cannot be read. A root that does not exist is an error; so is any error of `each`,
/// which stops the walk.
pub fn walk<E: From<WalkError>>(
    s: &WalkSettings,
    mut each: impl FnMut(Node) -> Result<(), E>,
    mut warn: impl FnMut(String),
) -> Result<(), E> {
    for root in &s.paths {
        let meta = if s.follow_symlinks {
            std::fs::metadata(root)
        } else {
            std::fs::symlink_metadata(root)
        };
        if let Err(cause) = meta {
            return Err(WalkError {
                path: root.clone(),
                cause,
            }
            .into());
        }
        let matcher = matcher(root, &s.exclude);
        let walker = walkdir::WalkDir::new(root)
            .follow_links(s.follow_symlinks)
            .same_file_system(s.one_file_system)
            .sort_by(|a, b| a.file_name().cmp(b.file_name()))
            .into_iter()
            .filter_entry(|e| {
                e.depth() == 0
                    || !(is_restore_temp(e.file_name().as_encoded_bytes())
                        || matcher
                            .matched(e.path(), e.file_type().is_dir())
                            .is_ignore())
            });
        for entry in walker {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let what = e
                        .path()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
                    warn(format!("skipped `{what}`: {}", io_reason(&e)));
                    continue;
                }
            };
            // A root that is a symlink (Laravel's `public/storage`) stands for its target.
            let md = if entry.depth() == 0 {
                std::fs::metadata(entry.path()).map_err(|e| e.to_string())
            } else {
                entry.metadata().map_err(|e| io_reason(&e))
            };
            match md {
                Ok(md) => {
                    if let Some(node) = node_from(entry.path(), &md) {
                        each(node)?;
                    }
                }
                Err(e) => warn(format!("skipped `{}`: {e}", entry.path().display())),
            }
        }
    }
    Ok(())
}

fn io_reason(e: &walkdir::Error) -> String {
    match e.io_error() {
        Some(io) => reason(io),
        None => e.to_string(),
    }
}

/// Why an entry could not be read, with a hint for the limit an operator cannot guess.
pub fn reason(e: &std::io::Error) -> String {
    if e.raw_os_error() == Some(libc::ENAMETOOLONG) {
        format!("{e}: paths longer than 4096 bytes (PATH_MAX) are not backed up (hint: shorten the names on the way, or `exclude` the directory)")
    } else {
        e.to_string()
    }
}

fn matcher(root: &Path, patterns: &[String]) -> Gitignore {
    let mut b = GitignoreBuilder::new(root);
    for p in patterns {
        let _ = b.add_line(None, p);
    }
    b.build().unwrap_or_else(|_| Gitignore::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_temp_names() {
        assert!(is_restore_temp(b".opsagent-restore-123-4"));
        for n in [
            &b".opsagent-restore-123-"[..],
            b".opsagent-restore--4",
            b".opsagent-restore-12x-4",
            b".opsagent-restore-123",
            b"opsagent-restore-1-2",
        ] {
            assert!(!is_restore_temp(n), "{}", String::from_utf8_lossy(n));
        }
    }

    #[test]
    fn times_past_2262_are_clamped_not_overflowed() {
        assert_eq!(nanos(-2, 499_999_999), -1_500_000_001);
        assert_eq!(nanos(15_000_000_000, 5), i64::MAX);
        assert_eq!(nanos(-15_000_000_000, 5), i64::MIN + 5);
    }

    #[test]
    fn excludes_and_order() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("a/cache")).unwrap();
        std::fs::create_dir_all(r.join("b")).unwrap();
        std::fs::write(r.join("a/x.jpg"), b"1").unwrap();
        std::fs::write(r.join("a/cache/y"), b"2").unwrap();
        std::fs::write(r.join("b/z.tmp"), b"3").unwrap();
        std::fs::write(
            r.join("b/.opsagent-restore-77-0"),
            b"a restore's temporary file",
        )
        .unwrap();
        std::os::unix::fs::symlink("../a/x.jpg", r.join("b/link")).unwrap();
        let s = WalkSettings {
            paths: vec![r.to_path_buf()],
            exclude: vec!["cache/".into(), "*.tmp".into()],
            one_file_system: true,
            follow_symlinks: false,
        };
        let mut seen = Vec::new();
        walk::<WalkError>(
            &s,
            |n| {
                seen.push((n.path.display(), n.kind));
                Ok(())
            },
            |w| panic!("{w}"),
        )
        .unwrap();
        let rel: Vec<_> = seen
            .iter()
            .map(|(p, k)| {
                (
                    p.strip_prefix(&r.display().to_string())
                        .unwrap()
                        .to_string(),
                    *k,
                )
            })
            .collect();
        assert_eq!(
            rel,
            [
                ("".to_string(), NodeKind::Dir),
                ("/a".into(), NodeKind::Dir),
                ("/a/x.jpg".into(), NodeKind::File),
                ("/b".into(), NodeKind::Dir),
                ("/b/link".into(), NodeKind::Symlink),
            ]
        );
        let link_root = d.path().join("link-root");
        std::os::unix::fs::symlink(r.join("a"), &link_root).unwrap();
        let mut kinds = Vec::new();
        let via_link = WalkSettings {
            paths: vec![link_root.clone()],
            ..s.clone()
        };
        walk::<WalkError>(
            &via_link,
            |n| {
                kinds.push(n.kind);
                Ok(())
            },
            |w| panic!("{w}"),
        )
        .unwrap();
        assert_eq!(
            kinds,
            [NodeKind::Dir, NodeKind::File],
            "a symlinked root is its target"
        );
        let missing = WalkSettings {
            paths: vec![r.join("nope")],
            ..s
        };
        assert!(walk::<WalkError>(&missing, |_| Ok(()), |_| {})
            .unwrap_err()
            .to_string()
            .contains("nope"));
    }
}

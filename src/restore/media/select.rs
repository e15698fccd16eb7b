//! Which entries of a media snapshot a restore touches (`--path`), and where each one goes:
//! under a directory followed by its original absolute path (side by side, `--to-dir`), or
//! back to that path (`--in-place`). Pure, unit-tested.

use crate::config::Zone;
use crate::media::tree::Node;
use chrono::{DateTime, Utc};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Where restored entries go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Under this directory, followed by each entry's original absolute path.
    Under(PathBuf),
    /// Over the original paths.
    InPlace,
}

impl Destination {
    /// Where `node` is written.
    pub fn of(&self, node: &Node) -> PathBuf {
        self.of_bytes(&node.path.0)
    }

    /// Where the entry at absolute path `path` (raw bytes) is written.
    pub fn of_bytes(&self, path: &[u8]) -> PathBuf {
        match self {
            Destination::InPlace => PathBuf::from(OsStr::from_bytes(path)),
            Destination::Under(base) => {
                let start = path.iter().position(|b| *b != b'/').unwrap_or(path.len());
                base.join(OsStr::from_bytes(&path[start..]))
            }
        }
    }
}

/// A media job's configured `paths` as the restore compares them with a snapshot's (an
/// in-place restore writes only at or under these).
pub fn configured_paths(job: &crate::config::MediaJob) -> Vec<String> {
    job.paths
        .iter()
        .map(|p| p.as_os_str().to_string_lossy().into_owned())
        .collect()
}

/// The default side-by-side directory: `<state_dir>/restore/<job>/<snapshot time>` with the time
/// in the agent's zone, minutes precision (`2026-11-20T0230`).
pub fn side_by_side_dir(state_dir: &Path, job: &str, t: DateTime<Utc>, zone: Zone) -> PathBuf {
    state_dir
        .join("restore")
        .join(job)
        .join(zone.format(t, "%Y-%m-%dT%H%M"))
}

/// A path without `.` segments, repeated or trailing slashes; `None` if it has `..`.
fn normalize(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir => out.push("/"),
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Whether `path` is `prefix` or lies under it.
fn at_or_under(path: &[u8], prefix: &[u8]) -> bool {
    if prefix == b"/" {
        return true;
    }
    path.starts_with(prefix) && (path.len() == prefix.len() || path[prefix.len()] == b'/')
}

/// Why `--path` selects nothing: the operator's mistake, so the CLI exits as for usage.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// `..` would climb out of what was backed up.
    #[error("--path `{}` contains `..` (hint: give the path as it was backed up, absolute or relative to a backed-up directory)", path.display())]
    DotDot {
        /// The `--path` given.
        path: PathBuf,
    },
    /// Nothing of the snapshot is at or under it.
    #[error("`{}` is not in this snapshot, which holds {} (hint: give a path inside it, absolute or relative to one of those; `--dry-run` shows what a path selects)",
        path.display(),
        if roots.is_empty() { "nothing".to_string() } else { roots.join(", ") })]
    NotInSnapshot {
        /// The `--path` given.
        path: PathBuf,
        /// The snapshot's backed-up directories.
        roots: Vec<String>,
    },
}

/// The candidates `sub` may mean: itself when absolute, else each root joined with it.
fn candidates(sub: &Path, roots: &[String]) -> Result<Vec<Vec<u8>>, SelectError> {
    let norm = normalize(sub).ok_or_else(|| SelectError::DotDot {
        path: sub.to_path_buf(),
    })?;
    let list: Vec<PathBuf> = if norm.is_absolute() {
        vec![norm]
    } else {
        roots.iter().map(|r| Path::new(r).join(&norm)).collect()
    };
    Ok(list
        .into_iter()
        .filter_map(|p| normalize(&p))
        .map(|p| p.as_os_str().as_bytes().to_vec())
        .collect())
}

/// Keeps the nodes at or under `sub` (all when `None`). `sub` is absolute, or relative to one
/// of the snapshot's backed-up `roots` (every root where it exists counts). Errors when
/// nothing matches, naming the roots.
pub fn select(
    nodes: Vec<Node>,
    roots: &[String],
    sub: Option<&Path>,
) -> Result<Vec<Node>, SelectError> {
    let Some(sub) = sub else {
        return Ok(nodes);
    };
    let wanted = candidates(sub, roots)?;
    let picked: Vec<Node> = nodes
        .into_iter()
        .filter(|n| wanted.iter().any(|w| at_or_under(&n.path.0, w)))
        .collect();
    if picked.is_empty() {
        return Err(SelectError::NotInSnapshot {
            path: sub.to_path_buf(),
            roots: roots.to_vec(),
        });
    }
    Ok(picked)
}

/// Depth of an absolute path: the number of `/`-separated names in it.
pub fn depth(path: &[u8]) -> usize {
    path.split(|b| *b == b'/').filter(|s| !s.is_empty()).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tree::{NodeKind, RawPath};

    fn node(p: &[u8], kind: NodeKind) -> Node {
        Node {
            path: RawPath(p.to_vec()),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            inode: 0,
            size: 0,
            target: None,
            chunks: vec![],
        }
    }

    fn tree() -> Vec<Node> {
        vec![
            node(b"/srv/up", NodeKind::Dir),
            node(b"/srv/up/a", NodeKind::Dir),
            node(b"/srv/up/a/x.jpg", NodeKind::File),
            node(b"/srv/up/ab", NodeKind::File),
            node(b"/srv/up/caf\xe9", NodeKind::File),
            node(b"/var/av", NodeKind::Dir),
            node(b"/var/av/a", NodeKind::File),
        ]
    }

    fn paths(v: &[Node]) -> Vec<String> {
        v.iter().map(|n| n.path.display()).collect()
    }

    #[test]
    fn select_absolute_relative_and_missing() {
        let roots = vec!["/srv/up".to_string(), "/var/av".to_string()];
        assert_eq!(select(tree(), &roots, None).unwrap().len(), 7);
        let got = select(tree(), &roots, Some(Path::new("/srv/up/a/"))).unwrap();
        assert_eq!(paths(&got), ["/srv/up/a", "/srv/up/a/x.jpg"], "not `ab`");
        // Relative: every root where it exists.
        let got = select(tree(), &roots, Some(Path::new("./a"))).unwrap();
        assert_eq!(paths(&got), ["/srv/up/a", "/srv/up/a/x.jpg", "/var/av/a"]);
        let raw = OsStr::from_bytes(b"caf\xe9");
        assert_eq!(
            select(tree(), &roots, Some(Path::new(raw))).unwrap().len(),
            1
        );
        assert_eq!(
            select(tree(), &roots, Some(Path::new("/"))).unwrap().len(),
            7
        );
        let e = select(tree(), &roots, Some(Path::new("nope")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/srv/up, /var/av"), "{e}");
        let e = select(tree(), &roots, Some(Path::new("a/../../etc")))
            .unwrap_err()
            .to_string();
        assert!(e.contains(".."), "{e}");
    }

    #[test]
    fn destinations_and_default_dir() {
        let n = node(b"/srv/up/caf\xe9 x", NodeKind::File);
        let under = Destination::Under(PathBuf::from("/r/2026"));
        assert_eq!(
            under.of(&n).as_os_str().as_bytes(),
            b"/r/2026/srv/up/caf\xe9 x"
        );
        assert_eq!(
            Destination::InPlace.of(&n).as_os_str().as_bytes(),
            b"/srv/up/caf\xe9 x"
        );
        let t = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 20, 7, 30, 0).unwrap();
        let zone = Zone::Named(chrono_tz::America::Bogota);
        assert_eq!(
            side_by_side_dir(Path::new("/var/lib/opsagent"), "uploads", t, zone),
            PathBuf::from("/var/lib/opsagent/restore/uploads/2026-11-20T0230")
        );
        assert_eq!(depth(b"/srv/up/a"), 3);
        assert_eq!(depth(b"/"), 0);
    }
}

//! What a media backup knows of the previous snapshot: per file, what tells it unchanged (size,
//! mtime, ctime, inode) and its chunks, so an unchanged file is not read again.
//!
//! The previous tree is read in step with the walk rather than loaded into a table: both list
//! entries in walk order (each root in the job's order, parents before children, siblings by
//! name), so looking a file up is advancing a cursor. Memory stays at the compressed tree (about
//! 55 bytes a file) however many files there are; a table took about 250 bytes a file. If the
//! orders ever disagree (the job's paths were reordered), files are only read again: slower
//! once, never wrong.

use super::id::Id;
use super::index::Reuse;
use super::tree::{Node, NodeKind, RawPath, TreeError, TreeReader};
use std::cmp::Ordering;
use std::path::PathBuf;

/// What the previous snapshot knew of a file: enough to tell it unchanged, and its chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    inode: u64,
    /// The file's chunks, in order.
    pub(super) chunks: Vec<Id>,
}

impl Seen {
    /// A previous snapshot's file node, split into its path and what is kept of it.
    pub fn of(n: Node) -> (RawPath, Seen) {
        let seen = Seen {
            size: n.size,
            mtime_ns: n.mtime_ns,
            ctime_ns: n.ctime_ns,
            inode: n.inode,
            chunks: n.chunks,
        };
        (n.path, seen)
    }
}

/// The previous snapshot's files, looked up in walk order.
pub struct Previous {
    reader: Option<TreeReader>,
    /// The next file of the previous tree not yet passed by the walk.
    next: Option<(RawPath, Seen)>,
    /// The job's roots, in order.
    roots: Vec<Vec<u8>>,
    /// What went wrong reading the tree (then every later file is read again).
    pub error: Option<TreeError>,
}

impl Previous {
    /// No previous snapshot: every file is read.
    pub fn none() -> Previous {
        Previous {
            reader: None,
            next: None,
            roots: Vec::new(),
            error: None,
        }
    }

    /// The entries of the previous tree (src/media/tree.rs, either format), of a job walking
    /// `roots`.
    pub fn new(reader: TreeReader, roots: &[PathBuf]) -> Previous {
        Previous {
            reader: Some(reader),
            next: None,
            roots: roots.iter().map(|r| RawPath::from_path(r).0).collect(),
            error: None,
        }
    }

    /// What the previous snapshot had at `path`, if it was a file there. Call with the walk's
    /// files in walk order: entries before `path` are passed over for good.
    pub fn take(&mut self, path: &RawPath) -> Option<Seen> {
        loop {
            if self.next.is_none() {
                self.next = self.next_file();
            }
            let (p, _) = self.next.as_ref()?;
            match self.walk_order(&p.0, &path.0) {
                Ordering::Less => self.next = None,
                Ordering::Equal => return self.next.take().map(|(_, seen)| seen),
                Ordering::Greater => return None,
            }
        }
    }

    /// The next file entry of the previous tree.
    fn next_file(&mut self) -> Option<(RawPath, Seen)> {
        let reader = self.reader.as_mut()?;
        loop {
            match reader.next_node() {
                Ok(Some(n)) if n.kind == NodeKind::File => return Some(Seen::of(n)),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    self.error = Some(e);
                    break;
                }
            }
        }
        self.reader = None;
        None
    }

    /// How two paths compare in walk order: by root (in the job's order; paths under no root
    /// last), then component by component.
    fn walk_order(&self, a: &[u8], b: &[u8]) -> Ordering {
        let root = |p: &[u8]| {
            self.roots
                .iter()
                .position(|r| {
                    p.strip_prefix(r.as_slice())
                        .is_some_and(|rest| rest.is_empty() || rest[0] == b'/' || r.ends_with(b"/"))
                })
                .unwrap_or(usize::MAX)
        };
        root(a)
            .cmp(&root(b))
            .then_with(|| components(a).cmp(components(b)))
    }
}

/// A path's components (split at `/`).
fn components(p: &[u8]) -> impl Iterator<Item = &[u8]> {
    p.split(|&c| c == b'/')
}

/// Whether a file may be taken from the previous snapshot without reading it.
pub(super) fn unchanged(prev: &Seen, now: &Node, reuse: &Reuse) -> bool {
    prev.size == now.size
        && prev.mtime_ns == now.mtime_ns
        && prev.ctime_ns == now.ctime_ns
        && prev.inode == now.inode
        && (prev.size == 0 || !prev.chunks.is_empty())
        && prev.chunks.iter().all(|c| reuse.reusable(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tree::NodeKind;

    #[test]
    fn unchanged_needs_every_stat_field_equal_and_chunks_still_reusable() {
        let node = Node {
            path: RawPath(b"/up/a.jpg".to_vec()),
            kind: NodeKind::File,
            mode: 0o644,
            uid: 1,
            gid: 1,
            mtime_ns: 5,
            ctime_ns: 6,
            inode: 7,
            size: 0,
            target: None,
            chunks: vec![],
        };
        let index = Reuse::default();
        let (path, seen) = Seen::of(node.clone());
        assert_eq!(path, node.path);
        assert!(unchanged(&seen, &node, &index));
        for changed in [
            Node {
                mtime_ns: 9,
                ..node.clone()
            },
            Node {
                ctime_ns: 9,
                ..node.clone()
            },
            Node {
                inode: 9,
                ..node.clone()
            },
            Node {
                size: 9,
                ..node.clone()
            },
        ] {
            assert!(!unchanged(&seen, &changed, &index));
        }
        let gone = Seen::of(Node {
            size: 3,
            chunks: vec![Id::of(b"abc")],
            ..node.clone()
        })
        .1;
        let now = Node { size: 3, ..node };
        assert!(!unchanged(&gone, &now, &index), "its chunk is in no pack");
    }

    /// Walks `roots` and returns the file nodes in walk order, each with one made-up chunk.
    fn walked(roots: &[PathBuf]) -> Vec<Node> {
        let settings = crate::media::walk::WalkSettings {
            paths: roots.to_vec(),
            exclude: vec![],
            one_file_system: true,
            follow_symlinks: false,
        };
        let mut nodes = Vec::new();
        crate::media::walk::walk::<crate::media::walk::WalkError>(
            &settings,
            |mut n| {
                n.chunks = vec![Id::of(&n.path.0)];
                nodes.push(n);
                Ok(())
            },
            |w| panic!("{w}"),
        )
        .unwrap();
        nodes
    }

    #[test]
    fn the_cursor_finds_every_file_the_walk_meets_again() {
        use std::os::unix::ffi::OsStrExt;
        let d = tempfile::tempdir().unwrap();
        // Names whose byte order differs from the order of full paths ("a-c" < "a/b" bytewise,
        // but the walk visits a/ and all it holds before a-c), non-UTF-8, spaces.
        let (r1, r2) = (d.path().join("z-root"), d.path().join("a-root"));
        let names: [&[u8]; 10] = [
            b"a/b",
            b"a/b c/d",
            b"a-c/z",
            b"a.b",
            b"a b",
            b"A",
            b"\xff\xfe",
            b"a/\xc3\xa9/x",
            b"\xe2\x9c\x93",
            b"aa/b",
        ];
        for root in [&r1, &r2] {
            for n in names {
                let p = root.join(std::ffi::OsStr::from_bytes(n));
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, n).unwrap();
            }
        }
        // Roots in the job's order, which is not name order.
        let roots = vec![r1.clone(), r2.clone()];
        let before = walked(&roots);
        let bytes = encode_nodes(&before);
        // Between the two walks: one file goes, one comes, at the start, middle and end.
        std::fs::remove_file(r1.join("a b")).unwrap();
        std::fs::write(r1.join("a-b"), b"new").unwrap();
        std::fs::write(r2.join("0 first"), b"new").unwrap();
        std::fs::write(r2.join(std::ffi::OsStr::from_bytes(b"\xff\xff")), b"new").unwrap();
        let mut prev = opened(bytes, &roots);
        let (mut found, mut missed) = (0, Vec::new());
        for n in walked(&roots)
            .into_iter()
            .filter(|n| n.kind == NodeKind::File)
        {
            match prev.take(&n.path) {
                Some(seen) => {
                    assert_eq!(seen.chunks, vec![Id::of(&n.path.0)], "{}", n.path.display());
                    found += 1;
                }
                None => missed.push(n.path.display()),
            }
        }
        assert_eq!(
            found, 19,
            "every file but the removed one; missed: {missed:?}"
        );
        assert_eq!(missed.len(), 3, "the new files: {missed:?}");
        assert!(prev.error.is_none());
        // Roots reordered: files are read again, nothing is wrongly matched.
        let swapped = vec![r2, r1];
        let mut prev = opened(encode_nodes(&before), &swapped);
        for n in walked(&swapped)
            .into_iter()
            .filter(|n| n.kind == NodeKind::File)
        {
            if let Some(seen) = prev.take(&n.path) {
                assert_eq!(seen.chunks, vec![Id::of(&n.path.0)]);
            }
        }
    }

    fn opened(bytes: Vec<u8>, roots: &[PathBuf]) -> Previous {
        let n = bytes.len() as u64;
        match crate::media::tree::open("t", std::io::Cursor::new(bytes), n).unwrap() {
            crate::media::tree::Opened::Entries(r) => Previous::new(r, roots),
            crate::media::tree::Opened::Lists(_) => panic!("a format-1 tree"),
        }
    }

    fn encode_nodes(nodes: &[Node]) -> Vec<u8> {
        crate::media::tree::encode(nodes).unwrap()
    }
}

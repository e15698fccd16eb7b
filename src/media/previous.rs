//! What a media backup keeps of the previous snapshot: per file, what tells it unchanged
//! (size, mtime, ctime, inode) and its chunks, so an unchanged file is not read again.

use super::id::Id;
use super::index::Reuse;
use super::tree::{Node, RawPath};
use std::collections::HashMap;

/// What the previous snapshot knew of a file: enough to tell it unchanged, and its chunks.
/// (Half the size of a [`Node`]: the map of 100k files is the engine's biggest table.)
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
        let mut chunks = n.chunks;
        chunks.shrink_to_fit(); // decoding leaves room for 4 ids; most files have 1
        let seen = Seen {
            size: n.size,
            mtime_ns: n.mtime_ns,
            ctime_ns: n.ctime_ns,
            inode: n.inode,
            chunks,
        };
        (n.path, seen)
    }
}

/// Files of the previous snapshot by path.
pub type Previous = HashMap<RawPath, Seen>;

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
}

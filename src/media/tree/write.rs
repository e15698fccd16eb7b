//! Writing a format-2 tree: the entries text is cut with content-defined chunking into entry
//! blobs, the entry blobs' ids (one hex id a line) are cut the same way into list blobs, and the
//! tree object holds only the list blobs' ids. Each blob is stored like file data (in packs,
//! deduplicated by id), so the parts of a tree that did not change since an earlier snapshot
//! are the same blobs and cost nothing; a snapshot of an unchanged tree adds only its tree
//! object (about 35 bytes per list blob).
//!
//! Entries are serialized deterministically (walk order, no time of the backup run in them),
//! and a cut depends only on the bytes around it, so a changed entry changes the blob holding
//! it (and, rarely, a neighbour), one list blob, and the tree object.

use super::{entry_line, Node, TreeHeader, TREE_FORMAT};
use crate::media::id::Id;
use fastcdc::v2020::FastCDC;
use std::io::Write;

/// Smallest tree blob (but the last of a stream).
pub const TREE_MIN: usize = 1024;
/// Target average tree blob: an entry takes about 250 bytes, so a blob holds about 15
/// entries. Smaller blobs make a scattered change cost less (a 1 %-changed incremental of
/// 100 000 files rewrites about 1 000 blobs) but add index and list entries (about 200 bytes
/// each).
pub const TREE_AVG: usize = 4096;
/// Largest tree blob.
pub const TREE_MAX: usize = 16384;

/// Cuts a stream fed piece by piece where FastCDC over the whole stream would: a cut looks at
/// the next [`TREE_MAX`] bytes at most, and a chunk is cut only once that many are buffered
/// (or the stream ended).
#[derive(Default)]
pub struct Cutter {
    buf: Vec<u8>,
}

impl Cutter {
    /// Adds `data`; returns the chunks it completed, in order.
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        while self.buf.len() >= TREE_MAX {
            out.push(self.cut());
        }
        out
    }

    /// The stream ended: the remaining chunks.
    pub fn finish(mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while !self.buf.is_empty() {
            out.push(self.cut());
        }
        out
    }

    fn cut(&mut self) -> Vec<u8> {
        let (_, end) = FastCDC::new(&self.buf, TREE_MIN, TREE_AVG, TREE_MAX).cut(0, self.buf.len());
        let end = if end == 0 { self.buf.len() } else { end };
        self.buf.drain(..end).collect()
    }
}

/// A format-2 tree being written, entry by entry in walk order. `store` keeps a blob (once per
/// id) and returns its id.
#[derive(Default)]
pub struct TreeBuilder {
    entries: Cutter,
    lists: Cutter,
    /// The list blobs' ids, in order.
    roots: Vec<Id>,
    line: Vec<u8>,
}

impl TreeBuilder {
    /// Appends one entry.
    pub fn push<E: From<std::io::Error>>(
        &mut self,
        n: &Node,
        store: &mut impl FnMut(&[u8]) -> Result<Id, E>,
    ) -> Result<(), E> {
        entry_line(n, &mut self.line)?;
        let done = self.entries.push(&self.line);
        self.stored(done, store)
    }

    /// Stores completed entry blobs, and the list blobs that completes.
    fn stored<E>(
        &mut self,
        entry_blobs: Vec<Vec<u8>>,
        store: &mut impl FnMut(&[u8]) -> Result<Id, E>,
    ) -> Result<(), E> {
        for blob in entry_blobs {
            let line = format!("{}\n", store(&blob)?);
            for list in self.lists.push(line.as_bytes()) {
                self.roots.push(store(&list)?);
            }
        }
        Ok(())
    }

    /// Stores the last blobs; returns the tree object and the size of its text.
    pub fn finish<E: From<std::io::Error>>(
        mut self,
        store: &mut impl FnMut(&[u8]) -> Result<Id, E>,
    ) -> Result<(Vec<u8>, u64), E> {
        let last = std::mem::take(&mut self.entries).finish();
        self.stored(last, store)?;
        for list in std::mem::take(&mut self.lists).finish() {
            self.roots.push(store(&list)?);
        }
        Ok(root_object(&self.roots)?)
    }
}

/// The tree object listing `lists`: its compressed bytes and the size of its text.
pub fn root_object(lists: &[Id]) -> std::io::Result<(Vec<u8>, u64)> {
    let header = TreeHeader {
        format: TREE_FORMAT,
        lists: Some(lists.len() as u64),
    };
    let mut text = serde_json::to_vec(&header)?;
    text.push(b'\n');
    for id in lists {
        writeln!(text, "{id}")?;
    }
    let raw = text.len() as u64;
    Ok((zstd::bulk::compress(&text, 3)?, raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fed_piece_by_piece_cuts_where_the_whole_stream_does() {
        let mut state = 7u64;
        let data: Vec<u8> = (0..300_000)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                (state >> 33) as u8
            })
            .collect();
        let whole: Vec<Vec<u8>> = FastCDC::new(&data, TREE_MIN, TREE_AVG, TREE_MAX)
            .map(|c| data[c.offset..c.offset + c.length].to_vec())
            .collect();
        let mut c = Cutter::default();
        let mut pieces = Vec::new();
        for piece in data.chunks(777) {
            pieces.extend(c.push(piece));
        }
        pieces.extend(c.finish());
        assert_eq!(pieces, whole);
        assert!(whole.len() > 30, "{}", whole.len());
    }
}

//! Snapshot trees (see docs/FORMAT.md): entries, one JSON object per line, one line per file,
//! directory or symlink in path order. Paths are absolute byte strings: a JSON string when they
//! are UTF-8, else `{"hex":"…"}` (Linux file names are bytes, and every byte but `/` and NUL is
//! allowed).
//!
//! A tree object is zstd-compressed text whose first line is a header. Format 1 (written before
//! issue 21, still read) holds the entries itself. Format 2, written now, holds only the
//! ids of list blobs, one per line: the entries stream is cut into content-defined blobs stored
//! in packs like file data (src/media/tree_write.rs), so an unchanged part of the tree costs
//! nothing; the lists are read back by src/media/tree_read.rs.

use super::id::Id;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Tree format version written: the object lists the blobs holding the entries.
pub const TREE_FORMAT: u32 = 2;
/// The first tree format: the entries in the object itself (still read).
pub const TREE_FORMAT_WHOLE: u32 = 1;
/// Most list blobs a format-2 tree object may name: each list blob names about 60 entry blobs
/// of about 15 entries, so a million lists is some 900 million files.
pub const MAX_LISTS: u64 = 1 << 20;

/// A path as raw bytes, serialized losslessly.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RawPath(pub Vec<u8>);

impl RawPath {
    /// From a filesystem path.
    pub fn from_path(p: &Path) -> RawPath {
        RawPath(p.as_os_str().as_bytes().to_vec())
    }

    /// As a filesystem path.
    pub fn to_path(&self) -> PathBuf {
        PathBuf::from(std::ffi::OsStr::from_bytes(&self.0))
    }

    /// For messages.
    pub fn display(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum PathRepr {
    Utf8(String),
    Bytes { hex: String },
}

impl Serialize for RawPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => PathRepr::Bytes {
                hex: hex::encode(&self.0),
            }
            .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for RawPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawPath, D::Error> {
        match PathRepr::deserialize(d)? {
            PathRepr::Utf8(s) => Ok(RawPath(s.into_bytes())),
            PathRepr::Bytes { hex } => hex::decode(hex)
                .map(RawPath)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// What a tree entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
}

/// One entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Absolute path on the backed-up host.
    pub path: RawPath,
    /// File, dir or symlink.
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Group gid.
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Status-change time, nanoseconds (for change detection only).
    #[serde(default)]
    pub ctime_ns: i64,
    /// Inode number (for change detection only).
    #[serde(default)]
    pub inode: u64,
    /// Size in bytes (files).
    #[serde(default)]
    pub size: u64,
    /// Link target (symlinks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RawPath>,
    /// Content chunks in order (files); their concatenation is the file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<Id>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct TreeHeader {
    pub(super) format: u32,
    /// Format 2: how many list blob ids follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) lists: Option<u64>,
}

/// Encodes nodes (already in path order) into a format-1 tree object (the whole tree in one
/// object; backups write format 2, this serves tests and old-format fixtures).
pub fn encode(nodes: &[Node]) -> std::io::Result<Vec<u8>> {
    let mut w = TreeWriter::new()?;
    for n in nodes {
        w.push(n)?;
    }
    w.finish().map(|(bytes, _)| bytes)
}

/// Writes a format-1 tree object node by node (in path order), compressing as it goes.
pub struct TreeWriter {
    z: Counted<zstd::Encoder<'static, Vec<u8>>>,
    /// One line, serialized before it goes to the encoder in one write.
    line: Vec<u8>,
}

impl TreeWriter {
    /// Starts a tree (writes its header line).
    pub fn new() -> std::io::Result<TreeWriter> {
        let mut z = Counted(zstd::Encoder::new(Vec::new(), 3)?, 0);
        let header = TreeHeader {
            format: TREE_FORMAT_WHOLE,
            lists: None,
        };
        serde_json::to_writer(&mut z, &header)?;
        z.write_all(b"\n")?;
        Ok(TreeWriter {
            z,
            line: Vec::with_capacity(512),
        })
    }

    /// Appends one entry.
    pub fn push(&mut self, n: &Node) -> std::io::Result<()> {
        entry_line(n, &mut self.line)?;
        self.z.write_all(&self.line)
    }

    /// The tree object's bytes, and the size of its JSON lines before compression.
    pub fn finish(self) -> std::io::Result<(Vec<u8>, u64)> {
        let raw = self.z.1;
        Ok((self.z.0.finish()?, raw))
    }
}

/// Serializes `n` as one line of entries text (with its `\n`) into `line`.
pub fn entry_line(n: &Node, line: &mut Vec<u8>) -> std::io::Result<()> {
    line.clear();
    serde_json::to_writer(&mut *line, n)?;
    line.push(b'\n');
    Ok(())
}

/// A writer that counts what passes through.
struct Counted<W>(W, u64);

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(buf)?;
        self.1 += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Why a tree object cannot be read. Each names the object's key.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The compressed stream is damaged, or expands past its bound.
    #[error("tree `{key}` is damaged: {cause}")]
    Damaged {
        /// The tree's object key.
        key: String,
        /// What zstd or the bound said.
        cause: std::io::Error,
    },
    /// Not even a header.
    #[error("tree `{key}` is empty")]
    Empty {
        /// The tree's object key.
        key: String,
    },
    /// The header line is not a header.
    #[error("tree `{key}` header: {cause}")]
    Header {
        /// The tree's object key.
        key: String,
        /// What the JSON parser said.
        cause: serde_json::Error,
    },
    /// A format this build does not know.
    #[error("tree `{key}` has format {format}, unknown to this opsagent (hint: upgrade opsagent)")]
    Format {
        /// The tree's object key.
        key: String,
        /// The format it claims.
        format: u32,
    },
    /// A format-2 tree's list of blobs is damaged or forged.
    #[error("tree `{key}`: {why}")]
    Lists {
        /// The tree's object key.
        key: String,
        /// What is wrong.
        why: String,
    },
    /// A blob of a format-2 tree cannot be had.
    #[error("tree `{key}`: tree blob {blob} {why}")]
    Blob {
        /// The tree's object key.
        key: String,
        /// The blob.
        blob: Id,
        /// What is wrong, naming the pack's key.
        why: String,
    },
    /// A format-2 tree read where its blobs cannot be fetched (a bug of the caller).
    #[error("tree `{key}` is in format 2: its entries are in blobs, read it with tree_read")]
    NeedsBlobs {
        /// The tree's object key.
        key: String,
    },
    /// An entry line is not an entry.
    #[error("tree `{key}` line {line}: {cause}")]
    Line {
        /// The tree's object key.
        key: String,
        /// Its line number, the header being line 1.
        line: usize,
        /// What the JSON parser said.
        cause: serde_json::Error,
    },
}

pub mod blobs;
mod read;
pub mod write;
pub use blobs::TreeBlobs;
pub use read::{decode, decode_each, open, Opened, TreeReader};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_including_non_utf8_names() {
        let nodes = vec![
            Node {
                path: RawPath(b"/srv/up".to_vec()),
                kind: NodeKind::Dir,
                mode: 0o755,
                uid: 33,
                gid: 33,
                mtime_ns: 1_700_000_000_123_456_789,
                ctime_ns: 0,
                inode: 0,
                size: 0,
                target: None,
                chunks: vec![],
            },
            Node {
                path: RawPath(b"/srv/up/caf\xe9 \n\"x\".jpg".to_vec()),
                kind: NodeKind::File,
                mode: 0o4640,
                uid: 0,
                gid: 0,
                mtime_ns: -5,
                ctime_ns: 1,
                inode: 77,
                size: 3,
                target: None,
                chunks: vec![Id::of(b"abc")],
            },
            Node {
                path: RawPath("/srv/up/ünï link".as_bytes().to_vec()),
                kind: NodeKind::Symlink,
                mode: 0o777,
                uid: 1,
                gid: 1,
                mtime_ns: 0,
                ctime_ns: 0,
                inode: 0,
                size: 0,
                target: Some(RawPath(b"../\xff".to_vec())),
                chunks: vec![],
            },
        ];
        let mut w = TreeWriter::new().unwrap();
        for n in &nodes {
            w.push(n).unwrap();
        }
        let (bytes, raw) = w.finish().unwrap();
        assert_eq!(bytes, encode(&nodes).unwrap());
        assert_eq!(decode("t", &bytes).unwrap(), nodes);
        let text = zstd::stream::decode_all(&bytes[..]).unwrap();
        assert_eq!(raw, text.len() as u64);
        assert!(decode("t", b"nope")
            .unwrap_err()
            .to_string()
            .contains("`t`"));
        // A tree that expands a thousandfold is refused, whether in one line or many.
        let mut z = zstd::Encoder::new(Vec::new(), 3).unwrap();
        z.write_all(b"{\"format\":1}\n").unwrap();
        let line = serde_json::to_vec(&nodes[0]).unwrap();
        for _ in 0..(40 << 20) / line.len() {
            z.write_all(&line).unwrap();
            z.write_all(b"\n").unwrap();
        }
        let bomb = z.finish().unwrap();
        assert!(bomb.len() < (40 << 20) / 1000, "{}", bomb.len());
        let e = decode_each("bomb", &bomb, |_| {}).unwrap_err().to_string();
        assert!(e.contains("`bomb`") && e.contains("refused"), "{e}");
    }
}

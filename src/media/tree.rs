//! Snapshot trees: one JSON object per line, zstd-compressed (see docs/FORMAT.md). The first
//! line is a header (`{"format":1}`), then one line per file, directory or symlink in path
//! order. Paths are absolute byte strings: a JSON string when they are UTF-8, else
//! `{"hex":"…"}` (Linux file names are bytes, and every byte but `/` and NUL is allowed).

use super::id::Id;
use super::limits::{expanded_limit, Bounded};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Tree format version.
pub const TREE_FORMAT: u32 = 1;

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
struct TreeHeader {
    format: u32,
}

/// Encodes nodes (already in path order) into a tree object.
pub fn encode(nodes: &[Node]) -> std::io::Result<Vec<u8>> {
    let mut w = TreeWriter::new()?;
    for n in nodes {
        w.push(n)?;
    }
    w.finish().map(|(bytes, _)| bytes)
}

/// Writes a tree object node by node (in path order), compressing as it goes: a backup hands
/// each entry over once it is complete instead of holding the whole tree.
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
            format: TREE_FORMAT,
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
        self.line.clear();
        serde_json::to_writer(&mut self.line, n)?;
        self.line.push(b'\n');
        self.z.write_all(&self.line)
    }

    /// The tree object's bytes, and the size of its JSON lines before compression.
    pub fn finish(self) -> std::io::Result<(Vec<u8>, u64)> {
        let raw = self.z.1;
        Ok((self.z.0.finish()?, raw))
    }
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

/// Decodes a tree object; `key` names it in errors.
pub fn decode(key: &str, bytes: &[u8]) -> Result<Vec<Node>, TreeError> {
    let mut nodes = Vec::new();
    decode_each(key, bytes, |n| nodes.push(n))?;
    Ok(nodes)
}

/// Decodes a tree object node by node, in order. Streams: neither the decompressed text
/// (several times the object's size) nor the list of nodes is ever in memory as a whole.
pub fn decode_each(key: &str, bytes: &[u8], mut each: impl FnMut(Node)) -> Result<(), TreeError> {
    let mut r = TreeReader::new(key, bytes, bytes.len() as u64)?;
    while let Some(n) = r.next_node()? {
        each(n);
    }
    Ok(())
}

/// Reads a tree object's entries one at a time (in path order) from its compressed bytes.
/// The text it decompresses to is bounded by the object's size (src/media/limits.rs): a forged
/// tree that expands a thousandfold is refused, not held in memory.
pub struct TreeReader<R: std::io::Read> {
    text: BufReader<Bounded<zstd::Decoder<'static, BufReader<R>>>>,
    key: String,
    line: Vec<u8>,
    /// Lines read, the header included.
    n: usize,
}

impl<R: std::io::Read> TreeReader<R> {
    /// Opens a tree object of `stored` bytes and checks its header; `key` names it in errors.
    pub fn new(key: &str, compressed: R, stored: u64) -> Result<TreeReader<R>, TreeError> {
        let key = key.to_string();
        let decoder = match zstd::Decoder::new(compressed) {
            Ok(d) => d,
            Err(cause) => return Err(TreeError::Damaged { key, cause }),
        };
        let mut r = TreeReader {
            text: BufReader::new(Bounded::new(decoder, expanded_limit(stored))),
            key,
            line: Vec::new(),
            n: 0,
        };
        if !r.next_line()? {
            return Err(TreeError::Empty { key: r.key });
        }
        let header: TreeHeader = match serde_json::from_slice(r.line_text()) {
            Ok(h) => h,
            Err(cause) => return Err(TreeError::Header { key: r.key, cause }),
        };
        if header.format != TREE_FORMAT {
            return Err(TreeError::Format {
                key: r.key,
                format: header.format,
            });
        }
        Ok(r)
    }

    /// The next entry; `None` at the end.
    pub fn next_node(&mut self) -> Result<Option<Node>, TreeError> {
        if !self.next_line()? {
            return Ok(None);
        }
        serde_json::from_slice(self.line_text())
            .map(Some)
            .map_err(|cause| TreeError::Line {
                key: self.key.clone(),
                line: self.n,
                cause,
            })
    }

    /// Reads the next non-empty line into `line`; false at the end.
    fn next_line(&mut self) -> Result<bool, TreeError> {
        loop {
            self.line.clear();
            let read = self
                .text
                .read_until(b'\n', &mut self.line)
                .map_err(|cause| TreeError::Damaged {
                    key: self.key.clone(),
                    cause,
                })?;
            if read == 0 {
                return Ok(false);
            }
            if !self.line_text().is_empty() {
                self.n += 1;
                return Ok(true);
            }
        }
    }

    fn line_text(&self) -> &[u8] {
        self.line.strip_suffix(b"\n").unwrap_or(&self.line)
    }
}

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

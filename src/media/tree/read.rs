//! Reading tree objects: the header, then a format-1 tree's entries or a format-2 tree's list
//! of blob ids; and entries text, whichever way it was put together.

use super::{Id, Node, TreeError, TreeHeader, MAX_LISTS, TREE_FORMAT, TREE_FORMAT_WHOLE};
use crate::media::limits::{expanded_limit, Bounded};
use std::io::{BufRead, BufReader};

/// Decodes a format-1 tree object; `key` names it in errors (a format-2 one needs its blobs:
/// [`TreeError::NeedsBlobs`]).
pub fn decode(key: &str, bytes: &[u8]) -> Result<Vec<Node>, TreeError> {
    let mut nodes = Vec::new();
    decode_each(key, bytes, |n| nodes.push(n))?;
    Ok(nodes)
}

/// Decodes a format-1 tree object node by node, in order. Streams: neither the decompressed
/// text (several times the object's size) nor the list of nodes is ever in memory as a whole.
pub fn decode_each(key: &str, bytes: &[u8], mut each: impl FnMut(Node)) -> Result<(), TreeError> {
    let owned = bytes::Bytes::copy_from_slice(bytes);
    let Opened::Entries(mut r) = open(key, std::io::Cursor::new(owned), bytes.len() as u64)? else {
        return Err(TreeError::NeedsBlobs {
            key: key.to_string(),
        });
    };
    while let Some(n) = r.next_node()? {
        each(n);
    }
    Ok(())
}

/// A tree object, opened.
pub enum Opened {
    /// Format 1: its entries follow in the object.
    Entries(TreeReader),
    /// Format 2: the ids of its list blobs, in order.
    Lists(Vec<Id>),
}

/// Opens a tree object of `stored` compressed bytes and reads its header (and, in format 2, its
/// list of blob ids); `key` names it in errors. The text it decompresses to is bounded by the
/// object's size (src/media/limits.rs): a forged tree that expands a thousandfold is refused,
/// not held in memory.
pub fn open(
    key: &str,
    compressed: impl std::io::Read + Send + 'static,
    stored: u64,
) -> Result<Opened, TreeError> {
    let decoder = match zstd::Decoder::new(compressed) {
        Ok(d) => d,
        Err(cause) => {
            let key = key.to_string();
            return Err(TreeError::Damaged { key, cause });
        }
    };
    let text = BufReader::new(Bounded::new(decoder, expanded_limit(stored)));
    let mut r = TreeReader::of_text(key, Box::new(text));
    if !r.next_line()? {
        return Err(TreeError::Empty { key: r.key });
    }
    let header: TreeHeader = match serde_json::from_slice(r.line_text()) {
        Ok(h) => h,
        Err(cause) => return Err(TreeError::Header { key: r.key, cause }),
    };
    match (header.format, header.lists) {
        (TREE_FORMAT_WHOLE, _) => Ok(Opened::Entries(r)),
        (TREE_FORMAT, Some(n)) => r.list_ids(n).map(Opened::Lists),
        (format, _) => Err(TreeError::Format { key: r.key, format }),
    }
}

/// Reads a tree's entries one at a time (in path order) from their text.
pub struct TreeReader {
    text: Box<dyn BufRead + Send>,
    key: String,
    line: Vec<u8>,
    /// Lines read (in format 1 the header included).
    n: usize,
}

impl TreeReader {
    /// Entries text (no header): a format-2 tree's entry blobs put together; `key` names the
    /// tree in errors.
    pub fn of_text(key: &str, text: Box<dyn BufRead + Send>) -> TreeReader {
        TreeReader {
            text,
            key: key.to_string(),
            line: Vec::new(),
            n: 0,
        }
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

    /// The `n` list blob ids after a format-2 header, one hex id a line, and nothing after.
    fn list_ids(mut self, n: u64) -> Result<Vec<Id>, TreeError> {
        let refuse = |key: &str, why: String| TreeError::Lists {
            key: key.to_string(),
            why,
        };
        if n > MAX_LISTS {
            let why = format!("its header claims {n} list blobs, more than the {MAX_LISTS} opsagent ever writes (forged or damaged); refused");
            return Err(refuse(&self.key, why));
        }
        let mut ids = Vec::new();
        while self.next_line()? {
            let id = std::str::from_utf8(self.line_text())
                .ok()
                .and_then(Id::from_hex);
            match id {
                Some(id) if (ids.len() as u64) < n => ids.push(id),
                Some(_) => {
                    return Err(refuse(
                        &self.key,
                        format!("it lists more than the {n} list blobs its header claims; refused"),
                    ))
                }
                None => {
                    return Err(refuse(
                        &self.key,
                        format!("line {} is not a blob id", self.n),
                    ))
                }
            }
        }
        if ids.len() as u64 != n {
            let why = format!(
                "it lists {} list blobs where its header claims {n} (truncated?)",
                ids.len()
            );
            return Err(refuse(&self.key, why));
        }
        Ok(ids)
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

//! Pack objects: many blobs (file chunks) in one stored object, so 100k small files do not
//! mean 100k PUTs. Layout (see docs/FORMAT.md):
//!
//! ```text
//! [blob 0][blob 1]...[blob n-1][header: JSON][header length: u32 little-endian]["OAPK"]
//! ```
//!
//! Each blob is stored raw or as one zstd frame; the header lists, per blob, its id (BLAKE3 of
//! the plaintext), offset, stored length, plaintext length and compression. The pack's id is
//! the BLAKE3 of all its bytes, so a pack can be checked without its index, and the index can be
//! rebuilt from the packs alone.

use super::id::Id;
use super::limits::MAX_BLOB;
use serde::{Deserialize, Serialize};

/// Trailer magic.
pub const MAGIC: &[u8; 4] = b"OAPK";
/// Pack format version written in each header.
pub const PACK_FORMAT: u32 = 1;

/// How a blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// As is (already-compressed media: JPEG, MP4, ZIP…).
    None,
    /// One zstd frame.
    Zstd,
}

/// Where a blob sits in its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobEntry {
    /// BLAKE3 of the plaintext.
    pub id: Id,
    /// Byte offset in the pack.
    pub offset: u64,
    /// Stored bytes.
    pub length: u64,
    /// Plaintext bytes.
    pub raw_length: u64,
    /// How it is stored.
    pub compression: Compression,
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: u32,
    blobs: Vec<BlobEntry>,
}

/// Why a pack or blob cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PackError {
    /// The bytes are not a pack (wrong trailer or header).
    #[error("pack {pack} is damaged: {why}")]
    Damaged {
        /// Pack id (or key).
        pack: String,
        /// What is wrong.
        why: String,
    },
    /// A blob's content does not hash to its id.
    #[error("blob {blob} in pack {pack} is corrupt: {why}")]
    CorruptBlob {
        /// The blob id.
        blob: Id,
        /// The pack id.
        pack: String,
        /// What is wrong.
        why: String,
    },
}

/// Compresses `raw` if that helps: zstd at `level`, kept only when it saves at least 3 %.
pub fn encode_blob(raw: &[u8], try_compress: bool, level: i32) -> (Compression, Vec<u8>) {
    let mut encoder = BlobEncoder::new(level);
    let (c, stored) = encoder.encode(raw, try_compress);
    (c, stored.to_vec())
}

/// [`encode_blob`] for many blobs: keeps one zstd context and one output buffer (a fresh
/// context per small file costs more than compressing it), and hands back `raw` itself when
/// it is stored as is instead of a copy.
pub struct BlobEncoder {
    level: i32,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    out: Vec<u8>,
}

impl BlobEncoder {
    /// An encoder compressing at zstd `level`.
    pub fn new(level: i32) -> BlobEncoder {
        BlobEncoder {
            level,
            zstd: None,
            out: Vec::new(),
        }
    }

    /// How `raw` is stored and the stored bytes (borrowed from `raw` or from the encoder).
    pub fn encode<'a>(&'a mut self, raw: &'a [u8], try_compress: bool) -> (Compression, &'a [u8]) {
        if try_compress && raw.len() >= 64 && self.compress(raw) {
            return (Compression::Zstd, &self.out);
        }
        (Compression::None, raw)
    }

    /// Compresses into `out`; whether that saved at least 3 %.
    fn compress(&mut self, raw: &[u8]) -> bool {
        if self.zstd.is_none() {
            self.zstd = zstd::bulk::Compressor::new(self.level).ok();
        }
        let Some(z) = self.zstd.as_mut() else {
            return false;
        };
        self.out.clear();
        self.out.reserve(zstd::zstd_safe::compress_bound(raw.len()));
        z.compress_to_buffer(raw, &mut self.out).is_ok()
            && self.out.len() < raw.len() - raw.len() / 32
    }
}

/// Longest JSON header entry of a blob: 64 hex digits of id, three numbers of up to 20 digits
/// (u64), the compression word, keys, quotes and separators.
const MAX_HEADER_ENTRY: usize = 200;
/// The header's `{"format":…,"blobs":[…]}` frame plus the 8-byte trailer.
const HEADER_OVERHEAD: usize = 64;

/// A pack being filled.
#[derive(Debug, Default)]
pub struct PackBuilder {
    buf: Vec<u8>,
    blobs: Vec<BlobEntry>,
}

/// A pack ready to upload.
#[derive(Debug)]
pub struct FinishedPack {
    /// BLAKE3 of `bytes`.
    pub id: Id,
    /// The whole object.
    pub bytes: Vec<u8>,
    /// Its blobs.
    pub blobs: Vec<BlobEntry>,
}

impl PackBuilder {
    /// An empty pack with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> PackBuilder {
        PackBuilder {
            buf: Vec::with_capacity(capacity),
            blobs: Vec::new(),
        }
    }

    /// Appends one encoded blob.
    pub fn push(&mut self, id: Id, raw_length: u64, compression: Compression, stored: &[u8]) {
        self.blobs.push(BlobEntry {
            id,
            offset: self.buf.len() as u64,
            length: stored.len() as u64,
            raw_length,
            compression,
        });
        self.buf.extend_from_slice(stored);
    }

    /// Bytes of blob data so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// An upper bound of the finished pack's size (header and trailer included) if one more
    /// blob of `stored` bytes were pushed.
    pub fn size_with(&self, stored: usize) -> usize {
        self.buf.len() + stored + (self.blobs.len() + 1) * MAX_HEADER_ENTRY + HEADER_OVERHEAD
    }

    /// Whether no blob was added.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Appends the header and trailer.
    pub fn finish(self) -> FinishedPack {
        let PackBuilder { mut buf, blobs } = self;
        let header = Header {
            format: PACK_FORMAT,
            blobs,
        };
        let json = serde_json::to_vec(&header).expect("a pack header serializes");
        buf.extend_from_slice(&json);
        buf.extend_from_slice(&(json.len() as u32).to_le_bytes());
        buf.extend_from_slice(MAGIC);
        FinishedPack {
            id: Id::of(&buf),
            bytes: buf,
            blobs: header.blobs,
        }
    }
}

/// Reads the blob list from a whole pack's bytes. `name` is used in errors.
pub fn parse_header(name: &str, pack: &[u8]) -> Result<Vec<BlobEntry>, PackError> {
    let damaged = |why: &str| PackError::Damaged {
        pack: name.to_string(),
        why: why.to_string(),
    };
    if pack.len() < 8 || &pack[pack.len() - 4..] != MAGIC {
        return Err(damaged("no pack trailer (truncated or not a pack)"));
    }
    let n = u32::from_le_bytes(pack[pack.len() - 8..pack.len() - 4].try_into().unwrap()) as usize;
    let end = pack.len() - 8;
    let start = end
        .checked_sub(n)
        .ok_or_else(|| damaged("header length beyond the start of the pack"))?;
    let header: Header = serde_json::from_slice(&pack[start..end])
        .map_err(|e| damaged(&format!("header is not valid JSON: {e}")))?;
    if header.format != PACK_FORMAT {
        return Err(damaged(&format!(
            "pack format {} is unknown to this opsagent (hint: upgrade opsagent)",
            header.format
        )));
    }
    for b in &header.blobs {
        if b.raw_length > MAX_BLOB {
            return Err(damaged(&format!(
                "blob {} claims {} bytes of content, more than the {MAX_BLOB} a blob ever has (forged or damaged header); refused",
                b.id, b.raw_length
            )));
        }
        if b.offset
            .checked_add(b.length)
            .is_none_or(|e| e > start as u64)
        {
            return Err(damaged(&format!("blob {} lies outside the pack", b.id)));
        }
    }
    Ok(header.blobs)
}

/// The plaintext of blob `e` from a pack's bytes, checked against its id.
pub fn extract(name: &str, pack: &[u8], e: &BlobEntry) -> Result<Vec<u8>, PackError> {
    let corrupt = |why: String| PackError::CorruptBlob {
        blob: e.id,
        pack: name.to_string(),
        why,
    };
    // Bounded before anything is allocated: the entry comes from an index or header someone
    // else may have written (src/media/limits.rs).
    if e.raw_length > MAX_BLOB {
        return Err(corrupt(format!(
            "its entry claims {} bytes of content, more than the {MAX_BLOB} a blob ever has (forged or damaged index); refused",
            e.raw_length
        )));
    }
    let start = e.offset as usize;
    let stored = start
        .checked_add(e.length as usize)
        .and_then(|end| pack.get(start..end))
        .ok_or_else(|| corrupt("it lies outside the pack (truncated?)".into()))?;
    let raw = match e.compression {
        Compression::None => stored.to_vec(),
        Compression::Zstd => zstd::bulk::decompress(stored, e.raw_length as usize)
            .map_err(|err| corrupt(format!("zstd: {err}")))?,
    };
    if raw.len() as u64 != e.raw_length || Id::of(&raw) != e.id {
        return Err(corrupt("its content does not match its hash".into()));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FinishedPack {
        let mut p = PackBuilder::with_capacity(1024);
        for data in [&b"hello"[..], &[b'a'; 5000][..], &[0u8; 0][..]] {
            let (c, stored) = encode_blob(data, true, 3);
            p.push(Id::of(data), data.len() as u64, c, &stored);
        }
        p.finish()
    }

    #[test]
    fn round_trip_with_and_without_compression() {
        let pack = sample();
        assert_eq!(pack.id, Id::of(&pack.bytes));
        let blobs = parse_header("p", &pack.bytes).unwrap();
        assert_eq!(blobs, pack.blobs);
        assert_eq!(blobs[0].compression, Compression::None);
        assert_eq!(blobs[1].compression, Compression::Zstd);
        assert_eq!(extract("p", &pack.bytes, &blobs[0]).unwrap(), b"hello");
        assert_eq!(
            extract("p", &pack.bytes, &blobs[1]).unwrap(),
            vec![b'a'; 5000]
        );
        assert!(extract("p", &pack.bytes, &blobs[2]).unwrap().is_empty());
    }

    #[test]
    fn flipped_byte_is_detected_and_named() {
        let mut pack = sample();
        let blobs = pack.blobs.clone();
        pack.bytes[1] ^= 0x40;
        let err = extract("pk", &pack.bytes, &blobs[0]).unwrap_err();
        assert!(
            matches!(err, PackError::CorruptBlob { ref pack, .. } if pack == "pk"),
            "{err}"
        );
        let z = blobs[1].offset as usize + 10;
        pack.bytes[z] ^= 1;
        assert!(extract("pk", &pack.bytes, &blobs[1]).is_err());
        assert!(parse_header("pk", &pack.bytes[..pack.bytes.len() - 1]).is_err());
        assert!(parse_header("pk", b"").is_err());
        let mut bad_len = sample().bytes;
        let n = bad_len.len();
        bad_len[n - 8..n - 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_header("pk", &bad_len).is_err());
        // A 4 GiB blob in the header or the index is refused before anything is allocated.
        let huge = BlobEntry {
            raw_length: 4 << 30,
            ..blobs[1]
        };
        let e = extract("pk", &sample().bytes, &huge).unwrap_err();
        assert!(e.to_string().contains("4294967296"), "{e}");
        let mut p = PackBuilder::with_capacity(0);
        p.push(Id::of(b"x"), 4 << 30, Compression::Zstd, b"x");
        let e = parse_header("pk", &p.finish().bytes).unwrap_err();
        assert!(
            e.to_string().contains("pack pk") && e.to_string().contains("refused"),
            "{e}"
        );
    }

    #[test]
    fn a_reused_encoder_writes_what_a_fresh_context_writes() {
        let mut enc = BlobEncoder::new(3);
        let texts: Vec<Vec<u8>> = (0..4)
            .map(|i| {
                format!("{i} lorem ipsum dolor ")
                    .repeat(100 << i)
                    .into_bytes()
            })
            .collect();
        for t in texts.iter().chain(texts.iter().rev()) {
            let (c, stored) = enc.encode(t, true);
            assert_eq!(c, Compression::Zstd);
            assert_eq!(stored, zstd::bulk::compress(t, 3).unwrap());
        }
        let (c, stored) = enc.encode(b"short", true);
        assert_eq!((c, stored), (Compression::None, &b"short"[..]));
    }

    #[test]
    fn size_with_bounds_the_finished_pack_even_with_the_longest_numbers() {
        let mut p = PackBuilder::with_capacity(0);
        for n in [0usize, 1, 70_000, 5] {
            let bound = p.size_with(n);
            p.push(Id::of(&vec![9u8; n]), 0, Compression::Zstd, &vec![9u8; n]);
            let worst = PackBuilder {
                buf: p.buf.clone(),
                blobs: (p.blobs.iter())
                    .map(|b| BlobEntry {
                        offset: u64::MAX,
                        length: u64::MAX,
                        raw_length: u64::MAX,
                        ..*b
                    })
                    .collect(),
            };
            let finished = worst.finish().bytes.len();
            assert!(finished <= bound, "{finished} > {bound}");
        }
    }

    #[test]
    fn incompressible_data_is_stored_raw() {
        let mut x = 0x1234_5678_u32;
        let noise: Vec<u8> = (0..10_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        assert_eq!(encode_blob(&noise, true, 3).0, Compression::None);
        assert_eq!(encode_blob(&[7; 100], false, 3).0, Compression::None);
    }
}

//! Bounds on what reading an object back from the bucket may allocate.
//!
//! Whoever can write to the bucket can put any bytes under any key: a pack header claiming a
//! 4 GiB blob, a tree that decompresses a thousandfold, a manifest of a gigabyte. None of that
//! may make a restore, a prune or the next backup allocate more than the object's honest
//! content needs. So every length or count read from an object is checked against what opsagent
//! itself ever writes before anything is allocated for it, whole objects are read with a cap
//! ([`crate::storage::Storage::get_bytes_max`]), and decompression stops at a multiple of the
//! compressed size ([`Bounded`]). Each bound is far above what a legitimate object reaches, so
//! only a forged or damaged object hits one, and the error names its key.

use super::chunker;
use std::io::{self, Read};

/// Largest plaintext of one blob: the chunker never cuts a chunk longer than 4 MiB
/// ([`chunker::MAX_SIZE`]); four times that leaves room for a future chunker.
pub const MAX_BLOB: u64 = 4 * chunker::MAX_SIZE as u64;
/// Largest pack object as stored: backups close a pack at about 8 MiB
/// ([`super::backup::PACK_SIZE`]), plus its header and age's 16 bytes per 64 KiB.
pub const MAX_PACK: u64 = 64 << 20;
/// Largest tree object as stored: a compressed tree takes about 30–70 bytes per entry, so
/// 1 GiB is some 15 million files.
pub const MAX_TREE: u64 = 1 << 30;
/// Largest index object as stored (about 100 bytes per blob compressed: 10 million blobs).
pub const MAX_INDEX: u64 = 1 << 30;
/// Largest manifest: a media manifest lists its packs (67 bytes each), 64 MiB is ~8 TiB of
/// packs.
pub const MAX_MANIFEST: u64 = 64 << 20;
/// How many times its compressed size the JSON of a tree or index may be: JSON lines with
/// random 64-digit ids compress 3–10×, and 64× leaves room for trees of empty files.
pub const MAX_EXPANSION: u64 = 64;
/// What any tree or index may expand to whatever its compressed size (small objects).
pub const MIN_EXPANDED: u64 = 16 << 20;

/// How many bytes an object of `compressed` bytes may decompress to.
pub fn expanded_limit(compressed: u64) -> u64 {
    compressed.saturating_mul(MAX_EXPANSION).max(MIN_EXPANDED)
}

/// A reader that fails with [`io::ErrorKind::InvalidData`] once more than `limit` bytes came
/// through it (put after a decompressor).
pub struct Bounded<R> {
    inner: R,
    limit: u64,
    read: u64,
}

impl<R: Read> Bounded<R> {
    /// `inner`, cut off after `limit` bytes.
    pub fn new(inner: R, limit: u64) -> Bounded<R> {
        Bounded {
            inner,
            limit,
            read: 0,
        }
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "it decompresses to more than {} bytes ({}× its stored size, at least {} MiB), more than opsagent ever writes; refused",
                    self.limit,
                    MAX_EXPANSION,
                    MIN_EXPANDED >> 20
                ),
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_reads_up_to_the_limit_and_no_further() {
        let mut ok = Vec::new();
        Bounded::new(&[1u8; 100][..], 100)
            .read_to_end(&mut ok)
            .unwrap();
        assert_eq!(ok.len(), 100);
        let mut out = Vec::new();
        let e = Bounded::new(&[1u8; 101][..], 100)
            .read_to_end(&mut out)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("refused"), "{e}");
        assert_eq!(expanded_limit(1), MIN_EXPANDED);
        assert_eq!(expanded_limit(1 << 30), 64 << 30);
        assert_eq!(expanded_limit(u64::MAX), u64::MAX);
    }
}

//! Content-defined chunking (FastCDC 2020): a file is cut where its content says so, not at
//! fixed offsets, so an insertion or an append changes only the chunks around it. Files smaller
//! than [`MIN_SIZE`] are one chunk. The buffer is reused from file to file.

use fastcdc::v2020::FastCDC;
use std::io::Read;

/// Smallest chunk (except a file's last).
pub const MIN_SIZE: usize = 256 * 1024;
/// Target average chunk size.
pub const AVG_SIZE: usize = 1024 * 1024;
/// Largest chunk.
pub const MAX_SIZE: usize = 4 * 1024 * 1024;

/// A reusable chunker.
pub struct Chunker {
    buf: Vec<u8>,
}

impl Default for Chunker {
    fn default() -> Self {
        Chunker {
            buf: vec![0; MAX_SIZE],
        }
    }
}

impl Chunker {
    /// Reads `src` to its end, calling `each` with every chunk in order. Returns the bytes read.
    pub fn chunks<R: Read, E: From<std::io::Error>>(
        &mut self,
        mut src: R,
        mut each: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<u64, E> {
        let mut len = 0;
        let mut eof = false;
        let mut total = 0u64;
        loop {
            while !eof && len < self.buf.len() {
                match src.read(&mut self.buf[len..]) {
                    Ok(0) => eof = true,
                    Ok(n) => len += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if len == 0 {
                return Ok(total);
            }
            let cdc = FastCDC::new(&self.buf[..len], MIN_SIZE, AVG_SIZE, MAX_SIZE);
            let (_, end) = cdc.cut(0, len);
            let end = if end == 0 { len } else { end };
            each(&self.buf[..end])?;
            total += end as u64;
            self.buf.copy_within(end..len, 0);
            len -= end;
        }
    }
}

/// Whether content with this file name is worth compressing (already-compressed formats are not).
pub fn worth_compressing(name: &[u8]) -> bool {
    const SKIP: &[&str] = &[
        "jpg", "jpeg", "png", "gif", "webp", "avif", "heic", "mp4", "m4v", "mov", "mkv", "webm",
        "avi", "mp3", "m4a", "aac", "ogg", "opus", "flac", "zip", "gz", "tgz", "bz2", "xz", "zst",
        "7z", "rar", "jar", "apk", "docx", "xlsx", "pptx", "odt", "ods", "woff", "woff2", "pdf",
    ];
    let Some(dot) = name.iter().rposition(|b| *b == b'.') else {
        return true;
    };
    let ext = String::from_utf8_lossy(&name[dot + 1..]).to_ascii_lowercase();
    !SKIP.contains(&ext.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn cut(data: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        Chunker::default()
            .chunks::<_, std::io::Error>(data, |c| {
                out.push(c.to_vec());
                Ok(())
            })
            .unwrap();
        out
    }

    #[test]
    fn chunks_concatenate_to_the_input_and_respect_sizes() {
        let data = noise(12 << 20, 7);
        let chunks = cut(&data);
        assert_eq!(chunks.concat(), data);
        assert!(chunks.len() > 3, "{}", chunks.len());
        for c in &chunks[..chunks.len() - 1] {
            assert!((MIN_SIZE..=MAX_SIZE).contains(&c.len()), "{}", c.len());
        }
        assert_eq!(cut(b"small"), vec![b"small".to_vec()]);
        assert!(cut(b"").is_empty());
    }

    #[test]
    fn an_append_keeps_the_earlier_chunks() {
        let data = noise(10 << 20, 9);
        let before = cut(&data);
        let mut longer = data.clone();
        longer.extend(noise(3 << 20, 11));
        let after = cut(&longer);
        let shared = before.iter().filter(|c| after.contains(c)).count();
        assert!(shared >= before.len() - 1, "{shared} of {}", before.len());
    }

    #[test]
    fn compression_choice_by_name() {
        assert!(!worth_compressing(b"avatar.JPG"));
        assert!(!worth_compressing(b"clip.mp4"));
        assert!(worth_compressing(b"notes.txt"));
        assert!(worth_compressing(b"README"));
    }
}

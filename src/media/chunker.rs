//! Content-defined chunking (FastCDC 2020): a file is cut where its content says so, not at
//! fixed offsets, so an insertion or an append changes only the chunks around it. Files smaller
//! than [`MIN_SIZE`] are one chunk. The buffer for small files is reused from file to file.

use fastcdc::v2020::FastCDC;
use std::io::Read;

/// Smallest chunk (except a file's last).
pub const MIN_SIZE: usize = 256 * 1024;
/// Target average chunk size.
pub const AVG_SIZE: usize = 1024 * 1024;
/// Largest chunk.
pub const MAX_SIZE: usize = 4 * 1024 * 1024;

/// Window for large files: twice the largest chunk, so that after a refill several chunks are
/// cut before the unread remainder (less than [`MAX_SIZE`]) is moved to the front again.
const BUF_SIZE: usize = 2 * MAX_SIZE;
/// Window kept from file to file, for files up to this size (nearly all of an upload tree).
/// A larger file gets a window of its size (at most [`BUF_SIZE`]) for its read only, so the
/// memory a few big files needed goes back to the system instead of staying with each worker.
const SMALL_BUF: usize = 1 << 20;

/// A reusable chunker.
#[derive(Default)]
pub struct Chunker {
    small: Vec<u8>,
}

impl Chunker {
    /// Reads `src` to its end, calling `each` with every chunk in order. Returns the bytes read.
    pub fn chunks<R: Read, E: From<std::io::Error>>(
        &mut self,
        src: R,
        each: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<u64, E> {
        self.chunks_upto(src, u64::MAX, each)
    }

    /// As [`chunks`](Self::chunks), but stops after `limit` bytes (a file's size from `fstat`):
    /// a small file is then one `read` call, without a second one to see the end.
    pub fn chunks_upto<R: Read, E: From<std::io::Error>>(
        &mut self,
        src: R,
        limit: u64,
        each: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<u64, E> {
        let need = usize::try_from(limit).map_or(BUF_SIZE, |n| n.min(BUF_SIZE));
        if need > SMALL_BUF {
            // Zeroed pages are mapped lazily, and a block this large is unmapped when freed.
            return cut_all(&mut vec![0; need], src, limit, each);
        }
        if self.small.is_empty() {
            self.small = vec![0; SMALL_BUF];
        }
        cut_all(&mut self.small, src, limit, each)
    }
}

/// Reads up to `limit` bytes of `src` through `buf` and cuts them. Cut points are those of
/// FastCDC over the whole input: a cut looks at the next [`MAX_SIZE`] bytes at most, and the
/// window holds that many unless it holds everything up to the end. That needs `buf` to be
/// at least [`MAX_SIZE`] or `limit` bytes long.
fn cut_all<R: Read, E: From<std::io::Error>>(
    buf: &mut [u8],
    mut src: R,
    limit: u64,
    mut each: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<u64, E> {
    debug_assert!(buf.len() >= MAX_SIZE || buf.len() as u64 >= limit);
    let (mut start, mut len, mut eof, mut left) = (0, 0, false, limit);
    let mut total = 0u64;
    loop {
        if !eof && len - start < MAX_SIZE {
            buf.copy_within(start..len, 0);
            len -= start;
            start = 0;
            while !eof && left > 0 && len < buf.len() {
                let want = (buf.len() - len).min(usize::try_from(left).unwrap_or(usize::MAX));
                match src.read(&mut buf[len..len + want]) {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        len += n;
                        left -= n as u64;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            eof |= left == 0;
        }
        if start == len {
            return Ok(total);
        }
        let window = &buf[start..len];
        let (_, end) = FastCDC::new(window, MIN_SIZE, AVG_SIZE, MAX_SIZE).cut(0, window.len());
        let end = if end == 0 { window.len() } else { end };
        each(&window[..end])?;
        total += end as u64;
        start += end;
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

    /// Hands out at most `step` bytes per `read`, like a pipe or a slow disk.
    struct Short<'a>(&'a [u8], usize);

    impl Read for Short<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(out.len()).min(self.1);
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn cuts_match_fastcdc_over_the_whole_input_whatever_the_reads() {
        let all = noise(21 << 20, 5);
        let mut chunker = Chunker::default();
        for size in [
            0,
            1000,
            300_000,
            1 << 20,
            (1 << 20) + 1,
            5 << 20,
            9 << 20,
            21 << 20,
        ] {
            let data = &all[..size];
            let whole: Vec<usize> = FastCDC::new(data, MIN_SIZE, AVG_SIZE, MAX_SIZE)
                .map(|c| c.length)
                .collect();
            let sized = size as u64;
            for (step, limit) in [
                (usize::MAX, u64::MAX),
                (777_777, u64::MAX),
                (1 << 20, sized),
            ] {
                let mut lens = Vec::new();
                let read = chunker
                    .chunks_upto::<_, std::io::Error>(Short(data, step), limit, |c| {
                        lens.push(c.len());
                        Ok(())
                    })
                    .unwrap();
                assert_eq!(read, sized);
                assert_eq!(lens, whole, "{size} bytes, reads of {step}, limit {limit}");
            }
        }
        let mut got = Vec::new();
        let read = chunker
            .chunks_upto::<_, std::io::Error>(&all[..], 1000, |c| {
                got.extend_from_slice(c);
                Ok(())
            })
            .unwrap();
        assert_eq!((read, &got[..]), (1000, &all[..1000]));
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

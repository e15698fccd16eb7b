//! The FORMAT_DESCRIPTION event: whether events carry a CRC32, and the post-header length of
//! each event type (which decides whether table ids take 4 or 6 bytes).
//!
//! Body: binlog_version u16, server_version [50], create_timestamp u32, header_length u8, then
//! one post-header length per event type (index type − 1). Servers that know checksums (MySQL ≥
//! 5.6.1, MariaDB ≥ 5.3) end it with checksum_alg u8 and the event's own CRC32; their format
//! description carries that CRC32 whatever the algorithm, so it is checked only when the
//! algorithm is CRC32, like every later event.

use super::error::BinlogError;
use super::event::{crc32, le, Header, HEADER_LEN};

/// binlog_version + server_version + create_timestamp + header_length.
const FIXED: usize = 2 + 50 + 4 + 1;

/// What a format description says about the events after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    /// Every event ends with a CRC32 of the bytes before it.
    pub checksum: bool,
    /// Post-header length per event type, index type − 1.
    post_header: Vec<u8>,
}

impl Format {
    /// Parses a whole FORMAT_DESCRIPTION event that starts at `pos`.
    pub fn parse(event: &[u8], pos: u64) -> Result<Format, BinlogError> {
        let bad = |reason| BinlogError::BadFormat { pos, reason };
        let body = event.get(HEADER_LEN..).unwrap_or_default();
        if body.len() < FIXED {
            return Err(bad("it is shorter than its fixed fields"));
        }
        if le(&body[0..2]) != 4 {
            return Err(bad("its binlog version is not 4"));
        }
        if usize::from(body[FIXED - 1]) != HEADER_LEN {
            return Err(bad("its event header length is not 19"));
        }
        let version = &body[2..52];
        let printable = version.split(|&b| b == 0).next().unwrap_or_default();
        if printable.is_empty() || !printable.iter().all(|b| (0x20..0x7f).contains(b)) {
            return Err(bad("its server version is empty or not printable"));
        }
        let aware = knows_checksums(printable);
        let tail = if aware { 5 } else { 0 };
        if body.len() < FIXED + tail {
            return Err(bad("it is too short for its checksum fields"));
        }
        let checksum = match aware.then(|| event[event.len() - 5]) {
            None | Some(0) => false,
            Some(1) => true,
            Some(_) => return Err(bad("its checksum algorithm is neither off nor CRC32")),
        };
        let format = Format {
            checksum,
            post_header: body[FIXED..body.len() - tail].to_vec(),
        };
        format.verify(event, pos)?;
        Ok(format)
    }

    /// Checks the trailing CRC32 of a whole event when checksums are on.
    pub fn verify(&self, event: &[u8], pos: u64) -> Result<(), BinlogError> {
        if !self.checksum {
            return Ok(());
        }
        let type_code = event.get(4).copied().unwrap_or_default();
        let Some(split) = event.len().checked_sub(4).filter(|&n| n >= HEADER_LEN) else {
            return Err(BinlogError::Malformed {
                pos,
                type_code,
                reason: "it has no room for its checksum",
            });
        };
        let stored = le(&event[split..]) as u32;
        let computed = crc32(&event[..split]);
        if stored != computed {
            return Err(BinlogError::Checksum {
                pos,
                type_code,
                stored,
                computed,
            });
        }
        Ok(())
    }

    /// The event's body after the header, without its checksum.
    pub fn body<'a>(&self, event: &'a [u8]) -> &'a [u8] {
        let end = event
            .len()
            .saturating_sub(if self.checksum { 4 } else { 0 });
        event.get(HEADER_LEN..end).unwrap_or_default()
    }

    /// The post-header length the format gives an event type (0 when it gives none).
    pub fn post_header_len(&self, type_code: u8) -> usize {
        let index = usize::from(type_code).wrapping_sub(1);
        self.post_header.get(index).map_or(0, |&n| usize::from(n))
    }

    /// The table id at the start of a TABLE_MAP or row event's post-header, and the rest of
    /// the body after the post-header. A post-header length of 6 means a 4-byte id (MySQL 5.1
    /// format), anything else a 6-byte one, as the server reads it.
    pub fn table_id<'a>(
        &self,
        head: &Header,
        body: &'a [u8],
        pos: u64,
    ) -> Result<(u64, &'a [u8]), BinlogError> {
        let malformed = |reason| BinlogError::Malformed {
            pos,
            type_code: head.type_code,
            reason,
        };
        let index = usize::from(head.type_code).wrapping_sub(1);
        let Some(&len) = self.post_header.get(index) else {
            return Err(malformed(
                "the format description gives no length for its type",
            ));
        };
        let width = if len == 6 { 4 } else { 6 };
        let len = usize::from(len);
        // The id and the flags, or the server would read the body from inside them.
        if len < width + 2 {
            return Err(malformed(
                "the format description gives its type a short post-header",
            ));
        }
        if body.len() < len {
            return Err(malformed("it is shorter than its post-header"));
        }
        Ok((le(&body[..width]), &body[len..]))
    }
}

/// Whether a server of this version writes checksum_alg: MySQL from 5.6.1, MariaDB from 5.3.
fn knows_checksums(version: &[u8]) -> bool {
    let text = String::from_utf8_lossy(version);
    let mut parts = text
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let v = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    v >= (5, 6, 1) || (text.contains("MariaDB") && v >= (5, 3, 0))
}

//! Synthetic binary logs for the filter's tests: events with correct headers, positions and
//! CRC32s, laid out as MariaDB 10.11 writes them.

mod filtering;
mod hostile;
mod refusals;
mod scanning;
mod stopping;

use super::event::{crc32, MAGIC};
use super::{filter_file, BinlogError, Filter, Summary};

/// The post-header lengths of a MariaDB 10.11 format description (171 types); with `width4`,
/// TABLE_MAP and v1 rows have the MySQL 5.1 length 6, i.e. 4-byte table ids.
fn post_headers(width4: bool) -> Vec<u8> {
    let mut p = vec![0u8; 171];
    let lens: &[(u8, u8)] = &[
        (1, 56),
        (2, 13),
        (4, 8),
        (6, 18),
        (8, 4),
        (9, 4),
        (10, 4),
        (11, 4),
        (12, 18),
        (15, 228),
        (17, 4),
        (18, 26),
        (19, 8),
        (23, 8),
        (24, 8),
        (25, 8),
        (26, 2),
        (30, 10),
        (31, 10),
        (32, 10),
        (161, 4),
        (162, 19),
        (163, 4),
        (165, 13),
        (166, 8),
        (167, 8),
        (168, 8),
        (169, 10),
        (170, 10),
        (171, 10),
    ];
    for &(t, n) in lens {
        p[usize::from(t) - 1] = n;
    }
    if width4 {
        for t in [19, 23, 24, 25] {
            p[t - 1] = 6;
        }
    }
    p
}

/// A binary log being written.
pub struct Log {
    pub bytes: Vec<u8>,
    /// (start, end) of every event, the format description first.
    pub events: Vec<(usize, usize)>,
    checksum: bool,
    width4: bool,
}

impl Log {
    /// A MariaDB log with CRC32 checksums and 6-byte table ids.
    pub fn new() -> Log {
        Log::with(true, false)
    }

    /// A log with or without checksums, with 4- or 6-byte table ids.
    pub fn with(checksum: bool, width4: bool) -> Log {
        let mut log = Log {
            bytes: MAGIC.to_vec(),
            events: Vec::new(),
            checksum,
            width4,
        };
        let mut body = 4u16.to_le_bytes().to_vec();
        let mut version = b"10.11.19-MariaDB-log".to_vec();
        version.resize(50, 0);
        body.extend(version);
        body.extend(1000u32.to_le_bytes());
        body.push(19);
        body.extend(post_headers(width4));
        body.push(u8::from(checksum));
        // A checksum-aware server's format description always carries its CRC32.
        log.raw(1000, 15, &body, true);
        log
    }

    fn raw(&mut self, ts: u32, type_code: u8, body: &[u8], crc: bool) -> usize {
        let pos = self.bytes.len();
        let size = 19 + body.len() + if crc { 4 } else { 0 };
        self.bytes.extend(ts.to_le_bytes());
        self.bytes.push(type_code);
        self.bytes.extend(1u32.to_le_bytes());
        self.bytes.extend((size as u32).to_le_bytes());
        self.bytes.extend(((pos + size) as u32).to_le_bytes());
        self.bytes.extend(0u16.to_le_bytes());
        self.bytes.extend_from_slice(body);
        if crc {
            let sum = crc32(&self.bytes[pos..]);
            self.bytes.extend(sum.to_le_bytes());
        }
        self.events.push((pos, self.bytes.len()));
        pos
    }

    /// Appends an event; returns its start offset.
    pub fn event(&mut self, ts: u32, type_code: u8, body: &[u8]) -> usize {
        self.raw(ts, type_code, body, self.checksum)
    }

    fn table_id(&self, id: u64) -> Vec<u8> {
        let width = if self.width4 { 4 } else { 6 };
        id.to_le_bytes()[..width].to_vec()
    }

    /// A MariaDB GTID event `0-1-seq`.
    pub fn gtid(&mut self, ts: u32, seq: u64) -> usize {
        let mut body = seq.to_le_bytes().to_vec();
        body.extend([0u8; 11]);
        self.event(ts, 162, &body)
    }

    /// A TABLE_MAP of `db.table` (one INT column) to `id`.
    pub fn table_map(&mut self, ts: u32, id: u64, db: &str, table: &str) -> usize {
        let mut body = self.table_id(id);
        body.extend([0, 0]);
        for name in [db, table] {
            body.push(name.len() as u8);
            body.extend(name.as_bytes());
            body.push(0);
        }
        body.extend([1, 3, 0, 0]);
        self.event(ts, 19, &body)
    }

    /// A row event of `type_code` for table `id` (one row, one INT).
    pub fn rows(&mut self, ts: u32, type_code: u8, id: u64) -> usize {
        let mut body = self.table_id(id);
        body.extend(1u16.to_le_bytes());
        if matches!(type_code, 30..=32 | 169..=171) {
            body.extend(2u16.to_le_bytes());
        }
        body.extend([1, 0x01, 0, 42, 0, 0, 0]);
        self.event(ts, type_code, &body)
    }

    /// A QUERY event with `sql` run in `db`.
    pub fn query(&mut self, ts: u32, db: &str, sql: &str) -> usize {
        let mut body = 7u32.to_le_bytes().to_vec();
        body.extend(0u32.to_le_bytes());
        body.push(db.len() as u8);
        body.extend(0u16.to_le_bytes());
        body.extend(0u16.to_le_bytes());
        body.extend(db.as_bytes());
        body.push(0);
        body.extend(sql.as_bytes());
        self.event(ts, 2, &body)
    }

    /// An XID (commit) event.
    pub fn xid(&mut self, ts: u32) -> usize {
        self.event(ts, 16, &9u64.to_le_bytes())
    }

    /// GTID, TABLE_MAP of `db.table` to `id`, WRITE_ROWS, XID; returns the GTID's offset.
    pub fn transaction(&mut self, ts: u32, seq: u64, id: u64, db: &str, table: &str) -> usize {
        let start = self.gtid(ts, seq);
        self.table_map(ts, id, db, table);
        self.rows(ts, 23, id);
        self.xid(ts);
        start
    }

    /// The events whose indexes are listed, after the magic, concatenated.
    pub fn only(&self, indexes: impl IntoIterator<Item = usize>) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for i in indexes {
            let (a, b) = self.events[i];
            out.extend_from_slice(&self.bytes[a..b]);
        }
        out
    }
}

/// Filters `bytes`; the output and the summary.
pub fn run(bytes: &[u8], f: &Filter) -> Result<(Vec<u8>, Summary), BinlogError> {
    let mut out = Vec::new();
    let summary = filter_file(&mut &bytes[..], &mut out, f)?;
    Ok((out, summary))
}

/// A filter for the database `shop`.
pub fn shop() -> Filter {
    Filter::new("shop")
}

#[test]
fn crc32_matches_the_standard_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
}

//! The event header, the type codes and what the filter does with each type.
//!
//! The filter works from an allow list: a type not named in [`kind`] is [`Kind::Unknown`] and
//! stops the filter, so a future event type that carries row data cannot slip through.

use super::error::BinlogError;

/// The four bytes every binary log starts with.
pub const MAGIC: [u8; 4] = *b"\xfebin";
/// The length of an event header (binlog format v4).
pub const HEADER_LEN: usize = 19;

/// Event type codes (MySQL `Log_event_type`, MariaDB additions from 160).
pub mod code {
    /// A statement.
    pub const QUERY: u8 = 2;
    /// STOP_EVENT: the server shut down; the file ends here.
    pub const STOP: u8 = 3;
    /// ROTATE_EVENT: the next file begins.
    pub const ROTATE: u8 = 4;
    /// The format of the events after it.
    pub const FORMAT_DESCRIPTION: u8 = 15;
    /// XID_EVENT: a transaction commits.
    pub const XID: u8 = 16;
    /// Maps a table id to `db.table` for the row events after it.
    pub const TABLE_MAP: u8 = 19;
    /// MySQL's GTID_LOG_EVENT.
    pub const GTID_MYSQL: u8 = 33;
    /// MySQL's ANONYMOUS_GTID_LOG_EVENT (GTIDs off).
    pub const ANONYMOUS_GTID: u8 = 34;
    /// MariaDB: the statement behind the row events after it.
    pub const ANNOTATE_ROWS: u8 = 160;
    /// MariaDB's GTID_EVENT.
    pub const GTID_MARIADB: u8 = 162;
    /// MariaDB: the rest of the file is encrypted.
    pub const START_ENCRYPTION: u8 = 164;
    /// MariaDB: a statement compressed with zlib.
    pub const QUERY_COMPRESSED: u8 = 165;
}

/// What the filter does with an event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// FORMAT_DESCRIPTION (15): read for the format, always written.
    Format,
    /// TABLE_MAP (19): kept when its database is the source database.
    TableMap,
    /// A row event: kept when its table id was mapped to the source database.
    Rows,
    /// A GTID event (MariaDB 162, MySQL 33 and 34): starts a transaction.
    Gtid,
    /// QUERY (2): passes once checked for `BINLOG`; `BEGIN` starts a transaction.
    Query,
    /// ANNOTATE_ROWS (160): the statement behind row events, printed as `#Q>` comments only.
    Annotate,
    /// LOAD DATA events (6, 8–12, 17, 18): they read files, so they are dropped.
    Load,
    /// START_ENCRYPTION (164): the rest cannot be read; an error.
    Encryption,
    /// A type the filter cannot check; an error naming why.
    Unsupported(&'static str, &'static str),
    /// USER_VAR (14): printed as a `SET` statement; passes once checked for `BINLOG`.
    UserVar,
    /// ROTATE, BINLOG_CHECKPOINT, INCIDENT: a name printed in a comment, after this many bytes
    /// of the body; passes when the name is printable.
    Named(usize),
    /// Events printed as numbers or not at all, which the server checks or ignores.
    Pass,
    /// Any other type; an error.
    Unknown,
}

/// Classifies an event type code.
pub fn kind(type_code: u8) -> Kind {
    match type_code {
        code::FORMAT_DESCRIPTION => Kind::Format,
        code::TABLE_MAP => Kind::TableMap,
        // Pre-GA 5.1 rows (20-22), v1 (23-25), v2 (30-32), MySQL partial updates (39), MariaDB
        // compressed rows v0 (166-168) and v1 (169-171).
        20..=25 | 30..=32 | 39 | 166..=171 => Kind::Rows,
        code::GTID_MARIADB | code::GTID_MYSQL | code::ANONYMOUS_GTID => Kind::Gtid,
        code::QUERY => Kind::Query,
        code::ANNOTATE_ROWS => Kind::Annotate,
        6 | 8..=12 | 17 | 18 => Kind::Load,
        code::START_ENCRYPTION => Kind::Encryption,
        code::QUERY_COMPRESSED => Kind::Unsupported(
            "a compressed query",
            "archive binary logs of a server with log_bin_compress=OFF",
        ),
        40 => Kind::Unsupported(
            "a compressed transaction",
            "archive binary logs of a server with binlog_transaction_compression=OFF",
        ),
        14 => Kind::UserVar,
        // ROTATE: position u64, file name; BINLOG_CHECKPOINT: length u32, file name; INCIDENT:
        // number u16, length u8, message.
        4 => Kind::Named(8),
        161 => Kind::Named(4),
        26 => Kind::Named(3),
        // STOP, INTVAR, RAND, XID, HEARTBEAT, IGNORABLE, ROWS_QUERY, PREVIOUS_GTIDS,
        // TRANSACTION_CONTEXT, VIEW_CHANGE, XA_PREPARE (`mariadb-binlog` prints the MySQL ones
        // as "Ignorable event"), GTID_LIST.
        3 | 5 | 13 | 16 | 27..=29 | 35..=38 | 163 => Kind::Pass,
        _ => Kind::Unknown,
    }
}

/// An event header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Seconds since the epoch, UTC.
    pub timestamp: u32,
    /// The event type code.
    pub type_code: u8,
    /// The server that wrote it.
    pub server_id: u32,
    /// The whole event's length: header, body and checksum.
    pub event_size: u32,
    /// Where the event ends in the original file.
    pub log_pos: u32,
}

impl Header {
    /// Decodes the 19 header bytes.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Header {
        Header {
            timestamp: le(&b[0..4]) as u32,
            type_code: b[4],
            server_id: le(&b[5..9]) as u32,
            event_size: le(&b[9..13]) as u32,
            log_pos: le(&b[13..17]) as u32,
        }
    }

    /// Checks the size against the header length and `max`, and `log_pos` against where the
    /// event ends when it starts at `pos` (0 is allowed: servers write it for artificial events).
    pub fn check(&self, pos: u64, max: u64) -> Result<(), BinlogError> {
        let size = u64::from(self.event_size);
        if size < HEADER_LEN as u64 {
            return Err(BinlogError::TooSmall { pos, size });
        }
        if size > max {
            return Err(BinlogError::TooLarge { pos, size, max });
        }
        let end = pos.saturating_add(size);
        let log_pos = u64::from(self.log_pos);
        if log_pos != 0 && log_pos != end {
            return Err(BinlogError::Misplaced { pos, log_pos, end });
        }
        Ok(())
    }
}

/// A little-endian unsigned integer of up to 8 bytes.
pub fn le(b: &[u8]) -> u64 {
    b.iter().rev().fold(0, |acc, &x| (acc << 8) | u64::from(x))
}

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC_TABLE: [u32; 256] = crc_table();

/// CRC-32 (IEEE, as zlib's `crc32`), the binary-log event checksum.
pub fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |c, &b| {
        CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

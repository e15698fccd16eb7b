//! Errors of the binary-log filter.
//!
//! Policy: the input is untrusted (anyone who can write to the bucket can write it), so every
//! problem with it is an error that names the byte position of the event (its offset in the
//! input file) and, where it matters, the event type; nothing in it is ever a panic. Each message
//! ends with a hint. Damage and forgery cannot be told apart, so both get [`DAMAGED`]: restoring
//! to a moment before the bad segment still works. The event types the filter will not pass
//! (encryption, compressed queries, types it does not know) get a hint saying which server
//! setting produced them.

use std::io;

/// The hint for input that is damaged or forged.
pub const DAMAGED: &str =
    "the archived segment is damaged or was not written by opsagent; restore to an earlier moment";

/// The hint for an event that smuggles a `BINLOG` statement.
const SMUGGLED: &str = "a `BINLOG` statement replays row events without privilege checks, so \
     it never passes the filter; the segment was forged or the server logged a statement naming \
     BINLOG: restore to an earlier moment";

/// An error of [`super::filter_file`] or [`super::scan_events`]. Positions are byte offsets in
/// the input binary-log file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BinlogError {
    /// Reading the input failed.
    #[error(
        "cannot read the binary log at byte {pos}: {source} (hint: check the download and retry)"
    )]
    Read {
        /// Where the read started.
        pos: u64,
        /// The I/O error.
        #[source]
        source: io::Error,
    },

    /// Writing the filtered output failed.
    #[error(
        "cannot write the filtered binary log (input byte {pos}): {source} (hint: is the \
         restore's temporary directory full?)"
    )]
    Write {
        /// The input position of the event being written.
        pos: u64,
        /// The I/O error.
        #[source]
        source: io::Error,
    },

    /// The [`super::Filter`] itself cannot work.
    #[error("invalid binary-log filter: {reason} (hint: name the source database of the job)")]
    InvalidFilter {
        /// What is wrong.
        reason: &'static str,
    },

    /// The input does not start with the binary-log magic `\xfebin`.
    #[error("not a binary log: it starts with {found:02x?}, not fe 62 69 6e (hint: {DAMAGED})")]
    NotABinlog {
        /// The first bytes found (up to 4).
        found: Vec<u8>,
    },

    /// The input ends inside an event.
    #[error(
        "the event at byte {pos} is cut short: {got} of its {needed} bytes are there (hint: {DAMAGED})"
    )]
    Truncated {
        /// Where the event starts.
        pos: u64,
        /// How many bytes it needs (the header, or its `event_size`).
        needed: u64,
        /// How many were there.
        got: u64,
    },

    /// An event claims to be smaller than its own header.
    #[error(
        "the event at byte {pos} claims {size} bytes, less than its 19-byte header (hint: {DAMAGED})"
    )]
    TooSmall {
        /// Where the event starts.
        pos: u64,
        /// Its `event_size`.
        size: u64,
    },

    /// An event is larger than the filter buffers.
    #[error(
        "the event at byte {pos} claims {size} bytes, more than the limit of {max} (hint: \
         {DAMAGED}; raise the limit only for servers whose max_allowed_packet is that large)"
    )]
    TooLarge {
        /// Where the event starts.
        pos: u64,
        /// Its `event_size`.
        size: u64,
        /// The limit ([`super::Filter::max_event`]).
        max: u64,
    },

    /// An event's `log_pos` is not where it ends in the file.
    #[error(
        "the event at byte {pos} says it ends at byte {log_pos}, but it ends at byte {end} \
         (hint: {DAMAGED})"
    )]
    Misplaced {
        /// Where the event starts.
        pos: u64,
        /// Its `log_pos` field.
        log_pos: u64,
        /// Where it really ends.
        end: u64,
    },

    /// The first event is not a format description.
    #[error(
        "the first event (byte 4) has type {type_code}, not a format description (15) \
         (hint: {DAMAGED}; binary logs older than MySQL 5.0 are not supported)"
    )]
    NoFormatDescription {
        /// The type found.
        type_code: u8,
    },

    /// A format description event cannot be used.
    #[error("the format description at byte {pos} is unusable: {reason} (hint: {DAMAGED})")]
    BadFormat {
        /// Where the event starts.
        pos: u64,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// An event fails its CRC32.
    #[error(
        "the event at byte {pos} (type {type_code}) fails its CRC32: stored {stored:08x}, \
         computed {computed:08x} (hint: {DAMAGED})"
    )]
    Checksum {
        /// Where the event starts.
        pos: u64,
        /// Its type code.
        type_code: u8,
        /// The checksum in the event.
        stored: u32,
        /// The checksum of its bytes.
        computed: u32,
    },

    /// An event's body cannot be parsed.
    #[error("the event at byte {pos} (type {type_code}) is malformed: {reason} (hint: {DAMAGED})")]
    Malformed {
        /// Where the event starts.
        pos: u64,
        /// Its type code.
        type_code: u8,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The log is encrypted (a START_ENCRYPTION event).
    #[error(
        "the binary log is encrypted (START_ENCRYPTION event at byte {pos}) and cannot be \
         filtered (hint: archive binary logs of a server with encrypt_binlog=OFF, or restore \
         to the last full backup)"
    )]
    Encrypted {
        /// Where the event starts.
        pos: u64,
    },

    /// An event type the filter does not pass.
    #[error(
        "the event at byte {pos} has type {type_code} ({what}), which the filter cannot check \
         (hint: {hint}, or restore to the last full backup)"
    )]
    Unsupported {
        /// Where the event starts.
        pos: u64,
        /// Its type code.
        type_code: u8,
        /// What it is.
        what: &'static str,
        /// Which setting produces it.
        hint: &'static str,
    },

    /// A passing event contains the word `BINLOG`.
    #[error(
        "the event at byte {pos} (type {type_code}) contains the word BINLOG (hint: {SMUGGLED})"
    )]
    Smuggled {
        /// Where the event starts.
        pos: u64,
        /// Its type code.
        type_code: u8,
    },

    /// The start position is not an event boundary.
    #[error(
        "start position {start} is inside the event at bytes {pos}..{end} (hint: the position \
         recorded with the backup does not belong to this file; {DAMAGED})"
    )]
    StartInsideEvent {
        /// The requested start.
        start: u64,
        /// Where the event containing it starts.
        pos: u64,
        /// Where it ends.
        end: u64,
    },
}

impl BinlogError {
    /// The input byte position the error is about, if any.
    pub fn pos(&self) -> Option<u64> {
        use BinlogError::*;
        match self {
            Read { pos, .. } | Write { pos, .. } | Truncated { pos, .. } | TooSmall { pos, .. } => {
                Some(*pos)
            }
            TooLarge { pos, .. } | Misplaced { pos, .. } | BadFormat { pos, .. } => Some(*pos),
            Checksum { pos, .. } | Malformed { pos, .. } | Encrypted { pos } => Some(*pos),
            Unsupported { pos, .. } | Smuggled { pos, .. } | StartInsideEvent { pos, .. } => {
                Some(*pos)
            }
            NoFormatDescription { .. } => Some(4),
            InvalidFilter { .. } | NotABinlog { .. } => None,
        }
    }
}

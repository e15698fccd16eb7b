//! The checks that refuse an event or a whole file, and names for people.

use super::body::{has_binlog_word, printable};
use super::error::BinlogError;
use super::event::{Header, Kind};

/// The error for an event type that refuses the whole file.
pub(super) fn refusal(kind: Kind, head: &Header, pos: u64) -> BinlogError {
    let (what, hint) = match kind {
        Kind::Encryption => return BinlogError::Encrypted { pos },
        Kind::Unsupported(what, hint) => (what, hint),
        _ => (
            "a type opsagent does not know",
            "archive binary logs of MariaDB 10.x or MySQL 5.7/8.0 without newer features",
        ),
    };
    BinlogError::Unsupported {
        pos,
        type_code: head.type_code,
        what,
        hint,
    }
}

/// Checks the name an event carries after `skip` bytes, which `mariadb-binlog` prints in a
/// comment: a newline would end the comment and the rest would run as SQL.
pub(super) fn check_name(
    body: &[u8],
    skip: usize,
    head: &Header,
    pos: u64,
) -> Result<(), BinlogError> {
    let reason = match body.get(skip..) {
        Some(name) if printable(name) => return Ok(()),
        Some(_) => "the name it carries holds control characters",
        None => "it is shorter than its fixed fields",
    };
    Err(malformed(head, pos, reason))
}

/// The error for the event at `pos` (its header `head`) that is malformed.
pub(super) fn malformed(head: &Header, pos: u64, reason: &'static str) -> BinlogError {
    BinlogError::Malformed {
        pos,
        type_code: head.type_code,
        reason,
    }
}

/// Refuses an event `mariadb-binlog` prints as text when the text names `BINLOG`.
pub(super) fn refuse_binlog_word(body: &[u8], head: &Header, pos: u64) -> Result<(), BinlogError> {
    if has_binlog_word(body) {
        return Err(BinlogError::Smuggled {
            pos,
            type_code: head.type_code,
        });
    }
    Ok(())
}

/// A name for people: lossy UTF-8 with control characters escaped.
pub(super) fn escaped(name: &[u8]) -> String {
    String::from_utf8_lossy(name)
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

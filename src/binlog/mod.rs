//! A pure, bounded, streaming filter over MariaDB/MySQL binary-log files (format v4), run on
//! archived logs before a point-in-time restore replays them.
//!
//! Why: `mariadb-binlog` turns row events into `BINLOG '<base64>'` statements, and the server
//! applies those *without checking table privileges*: an account with grants on `db2` alone
//! can replay a row event into `db1`. The restore's narrow account therefore cannot protect
//! other databases from a forged or foreign log, so opsagent removes, before `mariadb-binlog`
//! sees the file, every row event that does not belong to the source database.
//!
//! Threat model: the input is written by anyone who can write to the bucket. It is read as a
//! stream, one event in memory at a time, no event larger than [`Filter::max_event`]; every
//! malformed size, position, checksum or body is a [`BinlogError`] naming the byte offset,
//! never a panic. The filter keeps by construction, from an allow list of event types:
//!
//! * the magic and the FORMAT_DESCRIPTION event are written unchanged;
//! * events starting before [`Filter::start_pos`] are skipped;
//! * at the first transaction start (a GTID event, or `BEGIN` in logs without GTIDs) whose
//!   header timestamp is at or after [`Filter::stop_before`], nothing more is written, so the
//!   output holds whole transactions;
//! * a TABLE_MAP passes only when its database name equals the source database byte for byte;
//!   a row event (v1, v2, MariaDB compressed, pre-GA, partial) passes only when its table id
//!   was mapped by a passing TABLE_MAP since the transaction started (a refused map takes the
//!   id back);
//! * LOAD DATA events are dropped and counted: they read files on the replaying host;
//! * START_ENCRYPTION, compressed queries and compressed transactions (which hide their
//!   content), and any type not on the list, refuse the whole file;
//! * every other event (QUERY, XID, GTID, INTVAR, RAND, USER_VAR, ROTATE, …) passes: the server
//!   checks what they do against the replaying account, and ANNOTATE_ROWS is only printed as
//!   `#Q>` comments. Since `mariadb-binlog` prints them as text, any of them written holding the
//!   word `BINLOG` (which would replay rows unchecked) refuses the file (statements of other
//!   databases are left out first, so a restore's own `GRANT BINLOG REPLAY` does not), and
//!   so does a passing table name with control characters (a newline would end the comment
//!   it is printed in).
//!
//! Kept events are copied byte for byte: their checksums stay valid, their `log_pos` fields
//! point into the original file, which `mariadb-binlog` accepts when reading a file. What the
//! replay must still do: run `mariadb-binlog` without `--verbose` (its decoded rows are not
//! checked here) and the `mariadb` client with `--sandbox` (text in events could otherwise
//! hold client commands such as `\!`), as an account that may only touch the target.
//!
//! [`scan_events`] serves the archiver: where a growing log may be cut on an event boundary.

mod body;
mod error;
mod event;
mod filter;
mod format;
mod read;
mod recent;
mod refuse;
mod scan;
mod summary;
#[cfg(test)]
mod tests;

pub use error::{BinlogError, DAMAGED};
pub use filter::{
    filter_file, Filter, Summary, DEFAULT_MAX_EVENT, MAX_DROPPED_TABLES, MAX_TABLES_PER_TRANSACTION,
};
pub use recent::{Transaction, MAX_STATEMENT, MAX_TABLES};
pub use scan::{scan_events, Scan};

//! What [`super::filter_file`] reports.

use std::collections::BTreeSet;

/// What the filter read, wrote and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Events read (skipped ones before the start position included).
    pub events_in: u64,
    /// Events written, the format description included.
    pub events_out: u64,
    /// Transactions started in the output (GTID events, or `BEGIN` in logs without GTIDs).
    pub transactions: u64,
    /// QUERY events written.
    pub queries: u64,
    /// Row events dropped because their table is not in the source database.
    pub dropped_row_events: u64,
    /// LOAD DATA events dropped.
    pub dropped_load_events: u64,
    /// QUERY events dropped: run under another database or none.
    pub dropped_queries: u64,
    /// `db.table` of refused table maps (control characters escaped), at most
    /// [`super::MAX_DROPPED_TABLES`] of them.
    pub dropped_tables: BTreeSet<String>,
    /// Tables of the source database whose table maps were kept (at most
    /// [`super::MAX_DROPPED_TABLES`] names): those the kept row events change.
    pub tables: BTreeSet<String>,
    /// Statements written that are not transaction control (DDL, or DML logged as a
    /// statement): which tables they change is not known.
    pub statements: u64,
    /// The header timestamp of the last event written.
    pub last_timestamp: Option<i64>,
    /// Where the filter stopped (for [`super::Filter::stop_before`], `stop_at_pos` or
    /// `stop_at_gtid`): the input offset and timestamp of
    /// the first transaction it left out.
    pub stopped_at: Option<(u64, i64)>,
    /// The last [`super::Filter::recent`] transactions written that hold a row event or a
    /// statement of the source database, oldest first.
    pub recent: Vec<super::Transaction>,
}

//! The last transactions a filter kept, for the operator who picks where a replay stops
//! (`restore --show-events`, then `--to-position`/`--to-gtid`). Bounded: at most
//! [`super::Filter::recent`] transactions, each with at most [`MAX_TABLES`] names and a
//! statement cut to [`MAX_STATEMENT`] characters, whatever the input holds.

use std::collections::{BTreeSet, VecDeque};

/// The longest statement text kept per transaction, in characters.
pub const MAX_STATEMENT: usize = 200;
/// How many table names a transaction lists at most.
pub const MAX_TABLES: usize = 8;

/// A transaction the filter let through (at least one row event or statement of the source
/// database).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    /// The input offset of its first event (its GTID event, `BEGIN`, or the statement): a
    /// replay stopped at this position leaves it out.
    pub pos: u64,
    /// Its first event's header timestamp (Unix seconds).
    pub timestamp: i64,
    /// Its GTID, when the log has them.
    pub gtid: Option<String>,
    /// The first statement: a QUERY's text, or the ANNOTATE_ROWS text behind its rows (control
    /// characters escaped, cut to [`MAX_STATEMENT`] characters).
    pub statement: Option<String>,
    /// Row events kept.
    pub row_events: u64,
    /// Tables its kept table maps name (at most [`MAX_TABLES`]).
    pub tables: BTreeSet<String>,
}

/// The transaction being read and the last ones kept.
#[derive(Debug, Default)]
pub(super) struct Recent {
    keep: usize,
    current: Option<Transaction>,
    touched: bool,
    annotate: Option<String>,
    pub(super) done: VecDeque<Transaction>,
}

impl Recent {
    pub(super) fn new(keep: usize) -> Recent {
        Recent {
            keep,
            ..Recent::default()
        }
    }

    /// A transaction starts at `pos`.
    pub(super) fn start(&mut self, pos: u64, timestamp: i64, gtid: Option<String>) {
        self.finish();
        if self.keep > 0 {
            self.current = Some(Transaction {
                pos,
                timestamp,
                gtid,
                ..Transaction::default()
            });
        }
    }

    /// An ANNOTATE_ROWS event: the statement behind the row events after it.
    pub(super) fn annotate(&mut self, text: &[u8]) {
        if self.keep > 0 {
            self.annotate = Some(cut(text));
        }
    }

    /// A kept table map names `table`.
    pub(super) fn table(&mut self, table: &[u8]) {
        if let Some(t) = self.current.as_mut() {
            if t.tables.len() < MAX_TABLES {
                t.tables.insert(cut(table));
            }
        }
    }

    /// A kept row event.
    pub(super) fn row(&mut self) {
        if let Some(t) = self.current.as_mut() {
            t.row_events += 1;
            if t.statement.is_none() {
                t.statement = self.annotate.take();
            }
            self.touched = true;
        }
    }

    /// A kept statement (not transaction control) at `pos`; one outside a transaction (DDL in
    /// a log without GTIDs) is a transaction of its own.
    pub(super) fn statement(&mut self, sql: &[u8], pos: u64, timestamp: i64) {
        if self.keep == 0 {
            return;
        }
        if self.current.is_none() {
            self.start(pos, timestamp, None);
        }
        if let Some(t) = self.current.as_mut() {
            t.statement.get_or_insert_with(|| cut(sql));
            self.touched = true;
        }
    }

    /// The current transaction ends (XID, COMMIT, ROLLBACK, the next starts, or the input ends).
    pub(super) fn finish(&mut self) {
        self.annotate = None;
        let Some(t) = self.current.take() else { return };
        if std::mem::take(&mut self.touched) {
            if self.done.len() == self.keep {
                self.done.pop_front();
            }
            self.done.push_back(t);
        }
    }
}

/// Text for people: lossy UTF-8, whitespace runs as one space, control and bidi characters
/// escaped, at most [`MAX_STATEMENT`] characters (then `…`).
pub(super) fn cut(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(MAX_STATEMENT * 4)];
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    let mut n = 0;
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in word.chars() {
            if n == MAX_STATEMENT {
                out.push('…');
                return out;
            }
            n += 1;
            if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
    }
    if bytes.len() > head.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transactions_that_kept_something_are_listed_and_only_the_last_ones() {
        let mut r = Recent::new(2);
        for i in 0..5u64 {
            r.start(i * 100, i as i64, Some(format!("0-1-{i}")));
            if i != 3 {
                r.table(b"orders");
                r.row();
            }
        }
        r.finish();
        let pos: Vec<u64> = r.done.iter().map(|t| t.pos).collect();
        assert_eq!(pos, [200, 400]);
        assert_eq!(r.done[1].row_events, 1);
        assert_eq!(r.done[1].gtid.as_deref(), Some("0-1-4"));
    }

    #[test]
    fn the_statement_is_the_annotation_of_the_rows_or_the_query() {
        let mut r = Recent::new(5);
        r.start(10, 1, None);
        r.annotate(b"DELETE FROM orders\n  WHERE 1");
        r.row();
        r.row();
        r.finish(); // XID
        r.statement(b"ALTER TABLE orders DROP note", 90, 2);
        r.finish();
        assert_eq!(
            r.done[0].statement.as_deref(),
            Some("DELETE FROM orders WHERE 1")
        );
        assert_eq!(r.done[1].pos, 90);
        assert_eq!(
            r.done[1].statement.as_deref(),
            Some("ALTER TABLE orders DROP note")
        );
        // With nothing to keep, nothing is gathered.
        let mut off = Recent::new(0);
        off.statement(b"x", 1, 1);
        off.finish();
        assert!(off.done.is_empty());
    }

    #[test]
    fn hostile_text_is_escaped_and_bounded() {
        let s = cut(b"DROP \x1b[2J\xff \xe2\x80\xae evil");
        assert!(!s.contains('\x1b') && !s.contains('\u{202e}'), "{s:?}");
        assert!(s.contains("\\u{1b}[2J\u{fffd}"), "{s:?}");
        let long = cut(&vec![b'a'; 100_000]);
        assert_eq!(long.chars().count(), MAX_STATEMENT + 1);
        let mut r = Recent::new(1);
        r.start(1, 1, None);
        for i in 0..100 {
            r.table(format!("t{i}").as_bytes());
        }
        r.row();
        r.finish();
        assert_eq!(r.done[0].tables.len(), MAX_TABLES);
    }
}

//! Counting what a dump wrote, table by table, while it streams past (`dump::stream` feeds
//! every byte of the tool's output): rows are the tuples of each `INSERT … VALUES (…),(…);`
//! statement, bytes the length of those statements. The counts are exact for the snapshot, unlike
//! `information_schema.TABLES.TABLE_ROWS` (an InnoDB estimate, refreshed in the background),
//! and cost no query: one pass over bytes already in memory, in the thread that reads the
//! dump. The fast path skips what lies between the bytes that matter: quoted text with
//! `memchr2` (its quote or a backslash), the rest with a table lookup. Profiled in a backup of a
//! 1 000 000-row, 456 MiB dump on the 2-core machine: 1.5 % of the CPU samples (zstd's block
//! compressor 29 %), down from 5.3 % with a per-byte closure (and 230 MiB/s byte by byte before).
//!
//! An insert statement starts a line with `INSERT ` or `REPLACE ` up to `INTO \``, and ends
//! at the first `;` outside quotes and parentheses; mysqldump writes it on one line, MariaDB's
//! dump one tuple per line. String values have their newlines escaped (`\n`), blobs are hex
//! (`--hex-blob`), so a raw newline is never inside a value. `CREATE TABLE \`t\`` registers `t` with no rows, so a
//! table emptied since the previous snapshot shows as 0. Views are never `CREATE TABLE` lines
//! (their placeholders are `/*!50001 CREATE …`).

use crate::snapshot::manifest::TableStats;
use std::collections::BTreeMap;

/// The bytes that can change the count outside quotes: quotes, parentheses and `;`.
const MATTERS_UNQUOTED: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    let stops = *b"'\"`();";
    while i < stops.len() {
        t[stops[i] as usize] = true;
        i += 1;
    }
    t
};

/// The longest line start looked at to tell an insert from other lines.
const PREFIX_MAX: usize = 48;
/// The longest table name kept (MySQL allows 64 characters, 256 bytes in UTF-8).
const NAME_MAX: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    Insert,
    Create,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the start of a line into `prefix`.
    Prefix,
    /// Inside the backquoted table name; `tick` after a backquote (doubled or closing?).
    Name { what: What, tick: bool },
    /// The rest of an insert line: counting top-level tuples.
    Values,
    /// A line of no interest, until its newline.
    Skip,
}

/// Rows and bytes per table of one dump, fed in pieces of any size.
#[derive(Debug)]
pub struct TableCounter {
    state: State,
    prefix: Vec<u8>,
    name: Vec<u8>,
    tables: BTreeMap<String, (u64, u64)>,
    /// The table of the insert line being read.
    current: Option<String>,
    line_bytes: u64,
    tuples: u64,
    depth: u32,
    /// The quote character of the string being read (0: none); `escaped` after a backslash.
    quote: u8,
    escaped: bool,
    /// No byte of the values seen yet; `columns`: the first was `(`, a column list.
    first: bool,
    columns: bool,
}

impl Default for TableCounter {
    fn default() -> Self {
        TableCounter {
            state: State::Prefix,
            prefix: Vec::with_capacity(PREFIX_MAX),
            name: Vec::new(),
            tables: BTreeMap::new(),
            current: None,
            line_bytes: 0,
            tuples: 0,
            depth: 0,
            quote: 0,
            escaped: false,
            first: true,
            columns: false,
        }
    }
}

impl TableCounter {
    /// Takes the next piece of the dump.
    pub fn feed(&mut self, data: &[u8]) {
        let mut i = 0;
        while i < data.len() {
            if self.state == State::Values {
                // Fast path: skip what cannot change the count (most of a dump).
                let n = self.skippable(&data[i..]);
                self.line_bytes += n as u64;
                i += n;
                if i == data.len() {
                    break;
                }
            }
            let b = data[i];
            i += 1;
            self.line_bytes += 1;
            if self.state == State::Values {
                self.value_byte(b);
                continue;
            }
            if b == b'\n' {
                self.end_line();
                continue;
            }
            match self.state {
                State::Skip | State::Values => {}
                State::Prefix => self.prefix_byte(b),
                State::Name { what, tick } => self.name_byte(what, tick, b),
            }
        }
    }

    /// Every table seen, by name.
    pub fn finish(mut self) -> Vec<TableStats> {
        if self.state != State::Prefix || !self.prefix.is_empty() {
            self.end_line();
        }
        self.tables
            .into_iter()
            .map(|(name, (rows, bytes))| TableStats { name, rows, bytes })
            .collect()
    }

    fn prefix_byte(&mut self, b: u8) {
        self.prefix.push(b);
        let p = self.prefix.as_slice();
        let insert = p.starts_with(b"INSERT ") || p.starts_with(b"REPLACE ");
        let create = p.starts_with(b"CREATE TABLE ");
        let could_be = |word: &[u8]| word.starts_with(&p[..p.len().min(word.len())]);
        if insert && p.ends_with(b"INTO `") {
            self.start_name(What::Insert);
        } else if create && b == b'`' {
            self.start_name(What::Create);
        } else if p.len() >= PREFIX_MAX
            || !(could_be(b"INSERT ") || could_be(b"REPLACE ") || could_be(b"CREATE TABLE "))
        {
            self.state = State::Skip;
        }
    }

    fn start_name(&mut self, what: What) {
        self.name.clear();
        self.state = State::Name { what, tick: false };
    }

    fn name_byte(&mut self, what: What, tick: bool, b: u8) {
        match (tick, b) {
            (false, b'`') => self.state = State::Name { what, tick: true },
            (true, b'`') | (false, _) => {
                if self.name.len() < NAME_MAX {
                    self.name.push(b);
                }
                self.state = State::Name { what, tick: false };
            }
            (true, _) => {
                let name = String::from_utf8_lossy(&self.name).into_owned();
                self.tables.entry(name.clone()).or_insert((0, 0));
                if what == What::Insert {
                    self.current = Some(name);
                    self.state = State::Values;
                    self.value_byte(b);
                } else {
                    self.state = State::Skip;
                }
            }
        }
    }

    /// How many bytes at the start of `rest` (inside an insert's values) [`Self::value_byte`]
    /// would ignore.
    fn skippable(&self, rest: &[u8]) -> usize {
        if self.escaped || self.first {
            return 0;
        }
        let at = match self.quote {
            // Outside quotes: a table lookup per byte (six bytes matter there).
            0 => rest.iter().position(|&c| MATTERS_UNQUOTED[usize::from(c)]),
            q => memchr::memchr2(q, b'\\', rest),
        };
        at.unwrap_or(rest.len())
    }

    fn value_byte(&mut self, b: u8) {
        if self.quote != 0 {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' && self.quote != b'`' {
                self.escaped = true;
            } else if b == self.quote {
                self.quote = 0;
            }
            return;
        }
        if self.first && !b.is_ascii_whitespace() {
            self.first = false;
            self.columns = b == b'(';
        }
        match b {
            b'\'' | b'"' | b'`' => self.quote = b,
            b'(' => {
                if self.depth == 0 {
                    self.tuples += 1;
                }
                self.depth += 1;
            }
            b')' => self.depth = self.depth.saturating_sub(1),
            b';' if self.depth == 0 => {
                self.end_line();
                self.state = State::Skip;
            }
            _ => {}
        }
    }

    fn end_line(&mut self) {
        if let Some(t) = self.current.take() {
            let rows = self.tuples.saturating_sub(u64::from(self.columns));
            let e = self.tables.entry(t).or_insert((0, 0));
            e.0 += rows;
            e.1 += self.line_bytes;
        }
        self.state = State::Prefix;
        self.prefix.clear();
        self.line_bytes = 0;
        self.tuples = 0;
        self.depth = 0;
        self.quote = 0;
        self.escaped = false;
        self.first = true;
        self.columns = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "/*M!999999\\- enable the sandbox mode */ \n\
-- MariaDB dump\n\
DROP TABLE IF EXISTS `orders`;\n\
CREATE TABLE `orders` (\n  `id` int(11) NOT NULL,\n  `note` text\n) ENGINE=InnoDB;\n\
CREATE TABLE `empty``one` (`x` int);\n\
INSERT INTO `orders` VALUES (1,'a (b), c'),(2,'it\\'s ) \\\\'),(3,NULL);\n\
INSERT INTO `orders` VALUES\n(4,'x\\ny;'),\n(5,0x28);\n\
INSERT INTO `hist` (`id`, `row_start`, `row_end`) VALUES (1,'2026-01-01','2038-01-19');\n\
REPLACE INTO `r``q` VALUES ('\"(\"');\n\
/*!50001 CREATE TABLE `view_placeholder` (`id` int) */;\n\
-- Dump completed\n";

    fn count(pieces: usize) -> Vec<TableStats> {
        let mut c = TableCounter::default();
        let bytes = DUMP.as_bytes();
        let step = bytes.len().div_ceil(pieces);
        for chunk in bytes.chunks(step.max(1)) {
            c.feed(chunk);
        }
        c.finish()
    }

    #[test]
    fn counts_rows_and_bytes_per_table_whatever_the_pieces() {
        let got = count(1);
        let rows: Vec<(&str, u64)> = got.iter().map(|t| (t.name.as_str(), t.rows)).collect();
        assert_eq!(
            rows,
            [("empty`one", 0), ("hist", 1), ("orders", 5), ("r`q", 1)]
        );
        let statements: u64 = DUMP
            .split_inclusive(";\n")
            .filter(|l| l.contains("INSERT INTO `orders`"))
            .map(|l| l.len() as u64 - 1)
            .sum();
        assert_eq!(got[2].bytes, statements);
        for pieces in [2, 7, 50, DUMP.len()] {
            assert_eq!(count(pieces), got, "in {pieces} pieces");
        }
    }

    #[test]
    fn one_row_per_statement_and_an_unterminated_last_line() {
        let mut c = TableCounter::default();
        c.feed(
            b"INSERT INTO `t` VALUES (1);\nINSERT INTO `t` VALUES (2);\nINSERT INTO `t` VALUES (3)",
        );
        assert_eq!(c.finish()[0].rows, 3);
        let mut c = TableCounter::default();
        c.feed(b"SELECT 1;\nINSERTX INTO `t` VALUES (1);\n");
        assert!(c.finish().is_empty());
    }
}

//! The streaming filter: reads one event at a time, decides, copies the kept ones byte for byte.

use super::body::{printable, query_parts, table_names};
use super::error::BinlogError;
use super::event::{code, kind, Header, Kind, HEADER_LEN, MAGIC};
use super::format::Format;
use super::read::{read_event, read_magic};
use super::recent::Recent;
use super::refuse::{check_name, escaped, malformed, refusal, refuse_binlog_word};
use super::scan::gtid;
pub use super::summary::Summary;
use std::collections::{BTreeSet, HashSet};
use std::io::{BufReader, BufWriter, Read, Write};

/// The default [`Filter::max_event`]: 1 GiB, MariaDB's largest `max_allowed_packet`.
pub const DEFAULT_MAX_EVENT: u64 = 1 << 30;

/// How many names [`Summary::dropped_tables`] holds at most (the input decides how many
/// distinct names it shows).
pub const MAX_DROPPED_TABLES: usize = 1000;

/// How many tables one transaction may map to the source database: the set of their ids is
/// the only state that grows with the input.
pub const MAX_TABLES_PER_TRANSACTION: usize = 1 << 16;

/// What to let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The database whose row events pass, compared byte for byte with TABLE_MAP names.
    pub source_db: String,
    /// Events starting before this input offset are skipped (the format description is
    /// always written). It must be an event boundary.
    pub start_pos: Option<u64>,
    /// Stop before the first transaction that starts at or after this moment (Unix seconds,
    /// the event header's timestamp).
    pub stop_before: Option<i64>,
    /// The largest event accepted, in bytes; a larger `event_size` is an error.
    pub max_event: u64,
    /// The database the kept TABLE_MAP events name instead of the source (a restore under
    /// another name): the rows can then reach no other database, whatever the tool that turns
    /// the file into statements does. At most 255 bytes.
    pub rename_to: Option<String>,
    /// Only these tables of the source database (`None`: all). Statements then pass only
    /// when they are transaction control: a statement cannot be told to touch one table.
    pub tables: Option<BTreeSet<String>>,
    /// Stop at the first event starting at or after this input offset (`--to-position`: the
    /// position of a transaction's first event leaves that transaction out).
    pub stop_at_pos: Option<u64>,
    /// Stop before the transaction with this GTID (`--to-gtid`), as [`super::Scan`] spells
    /// GTIDs.
    pub stop_at_gtid: Option<String>,
    /// How many of the last kept transactions [`Summary::recent`] lists (0: none).
    pub recent: usize,
    /// [`Summary::tables`] and [`Summary::statements`] count only events whose header
    /// timestamp is at or after this moment (Unix seconds).
    pub count_from: Option<i64>,
}

impl Filter {
    /// A filter for `source_db` over the whole file, with [`DEFAULT_MAX_EVENT`].
    pub fn new(source_db: impl Into<String>) -> Filter {
        Filter {
            source_db: source_db.into(),
            start_pos: None,
            stop_before: None,
            max_event: DEFAULT_MAX_EVENT,
            rename_to: None,
            tables: None,
            stop_at_pos: None,
            stop_at_gtid: None,
            recent: 0,
            count_from: None,
        }
    }
}

/// Copies the events of one binary-log file from `input` to `out` that may be replayed for
/// `f.source_db` (see the module documentation for the rules). The output is a binary-log file
/// itself. Reads the input once, holding one event at a time.
pub fn filter_file(
    input: &mut impl Read,
    out: &mut impl Write,
    f: &Filter,
) -> Result<Summary, BinlogError> {
    if f.source_db.is_empty() || f.source_db.contains('\0') {
        return Err(BinlogError::InvalidFilter {
            reason: "the source database name is empty or contains a NUL",
        });
    }
    if (f.rename_to.as_ref()).is_some_and(|t| t.is_empty() || t.len() > 255 || t.contains('\0')) {
        return Err(BinlogError::InvalidFilter {
            reason: "the target database name is empty, longer than 255 bytes or contains a NUL",
        });
    }
    let mut input = BufReader::with_capacity(1 << 16, input);
    let mut out = BufWriter::with_capacity(1 << 16, out);
    read_magic(&mut input)?;
    write(&mut out, &MAGIC, 0)?;
    let mut run = Run {
        f,
        format: None,
        kept: HashSet::new(),
        gtids_seen: false,
        summary: Summary::default(),
        recent: Recent::new(f.recent),
    };
    let mut event = Vec::new();
    let mut pos = MAGIC.len() as u64;
    while let Some(head) = read_event(&mut input, pos, f.max_event, &mut event)? {
        run.summary.events_in += 1;
        let end = pos + u64::from(head.event_size);
        match run.decide(&head, &event, pos, end)? {
            Decision::Keep => {
                write(&mut out, &event, pos)?;
                run.summary.events_out += 1;
                run.summary.last_timestamp = Some(i64::from(head.timestamp));
            }
            Decision::Rename { at } => {
                let checksum = run.format.as_ref().is_some_and(|f| f.checksum);
                let to = f.rename_to.as_deref().unwrap_or(&f.source_db);
                write(
                    &mut out,
                    &super::body::renamed(&event, at, to, checksum),
                    pos,
                )?;
                run.summary.events_out += 1;
                run.summary.last_timestamp = Some(i64::from(head.timestamp));
            }
            Decision::Drop => {}
            Decision::Stop => break,
        }
        pos = end;
    }
    if run.format.is_none() {
        // The magic alone: a log needs its format description.
        return Err(BinlogError::Truncated {
            pos,
            needed: HEADER_LEN as u64,
            got: 0,
        });
    }
    out.flush()
        .map_err(|source| BinlogError::Write { pos, source })?;
    run.recent.finish();
    run.summary.recent = run.recent.done.into();
    Ok(run.summary)
}

fn write(out: &mut impl Write, bytes: &[u8], pos: u64) -> Result<(), BinlogError> {
    out.write_all(bytes)
        .map_err(|source| BinlogError::Write { pos, source })
}

enum Decision {
    Keep,
    /// Keep a TABLE_MAP with its database renamed to [`Filter::rename_to`]; `at` is the offset
    /// of the database name's length byte in the event.
    Rename {
        at: usize,
    },
    Drop,
    Stop,
}

struct Run<'f> {
    f: &'f Filter,
    /// The last format description; `None` before the first event.
    format: Option<Format>,
    /// Table ids mapped to the source database in the current transaction.
    kept: HashSet<u64>,
    /// A GTID event was seen: `BEGIN` no longer starts a transaction.
    gtids_seen: bool,
    summary: Summary,
    recent: Recent,
}

impl Run<'_> {
    fn decide(
        &mut self,
        head: &Header,
        event: &[u8],
        pos: u64,
        end: u64,
    ) -> Result<Decision, BinlogError> {
        let kind = kind(head.type_code);
        let Some(format) = self.format.take() else {
            if head.type_code != code::FORMAT_DESCRIPTION {
                return Err(BinlogError::NoFormatDescription {
                    type_code: head.type_code,
                });
            }
            self.format = Some(Format::parse(event, pos)?);
            return Ok(Decision::Keep);
        };
        if kind == Kind::Format {
            // A new format (relay logs have several): tables are mapped anew after it.
            self.format = Some(Format::parse(event, pos)?);
            self.kept.clear();
            return Ok(Decision::Keep);
        }
        if self.f.stop_at_pos.is_some_and(|stop| pos >= stop) {
            self.format = Some(format);
            self.summary.stopped_at = Some((pos, i64::from(head.timestamp)));
            return Ok(Decision::Stop);
        }
        let decision = match format
            .verify(event, pos)
            .and(self.skip_before_start(pos, end))
        {
            Ok(false) => self.decide_with(&format, kind, head, format.body(event), pos),
            Ok(true) => Ok(Decision::Drop),
            Err(e) => Err(e),
        };
        self.format = Some(format);
        decision
    }

    /// Whether the event with header `head` counts in the summary's tables and statements.
    fn counts(&self, head: &Header) -> bool {
        (self.f.count_from).is_none_or(|t| i64::from(head.timestamp) >= t)
    }

    /// Whether the event at `pos..end` comes before [`Filter::start_pos`]; an error when the
    /// start is inside it.
    fn skip_before_start(&self, pos: u64, end: u64) -> Result<bool, BinlogError> {
        let start = self.f.start_pos.unwrap_or(0);
        if pos < start && end > start {
            return Err(BinlogError::StartInsideEvent { start, pos, end });
        }
        Ok(pos < start)
    }

    fn decide_with(
        &mut self,
        format: &Format,
        kind: Kind,
        head: &Header,
        body: &[u8],
        pos: u64,
    ) -> Result<Decision, BinlogError> {
        match kind {
            Kind::TableMap => self.table_map(format, head, body, pos),
            Kind::Rows => {
                let (id, _) = format.table_id(head, body, pos)?;
                if self.kept.contains(&id) {
                    self.recent.row();
                    return Ok(Decision::Keep);
                }
                self.summary.dropped_row_events += 1;
                Ok(Decision::Drop)
            }
            Kind::Gtid => {
                self.gtids_seen = true;
                Ok(self.transaction_start(head, pos, gtid(head, body)))
            }
            Kind::Query => self.query(format, head, body, pos),
            Kind::Load => {
                self.summary.dropped_load_events += 1;
                Ok(Decision::Drop)
            }
            Kind::UserVar => refuse_binlog_word(body, head, pos).map(|()| Decision::Keep),
            Kind::Named(skip) => check_name(body, skip, head, pos).map(|()| Decision::Keep),
            Kind::Annotate => {
                self.recent.annotate(body);
                Ok(Decision::Keep)
            }
            Kind::Pass | Kind::Format => {
                if head.type_code == code::XID {
                    self.recent.finish();
                }
                Ok(Decision::Keep)
            }
            Kind::Encryption | Kind::Unsupported(..) | Kind::Unknown => {
                Err(refusal(kind, head, pos))
            }
        }
    }

    /// A transaction starts: forget mapped tables, stop if it is at or after `stop_before` or
    /// is the one `stop_at_gtid` names.
    fn transaction_start(&mut self, head: &Header, pos: u64, gtid: Option<String>) -> Decision {
        self.kept.clear();
        let ts = i64::from(head.timestamp);
        if self.f.stop_before.is_some_and(|stop| ts >= stop)
            || (gtid.is_some() && gtid == self.f.stop_at_gtid)
        {
            self.summary.stopped_at = Some((pos, ts));
            return Decision::Stop;
        }
        self.summary.transactions += 1;
        self.recent.start(pos, ts, gtid);
        Decision::Keep
    }

    fn table_map(
        &mut self,
        format: &Format,
        head: &Header,
        body: &[u8],
        pos: u64,
    ) -> Result<Decision, BinlogError> {
        let malformed = |reason| malformed(head, pos, reason);
        let (id, rest) = format.table_id(head, body, pos)?;
        let names = table_names(rest).ok_or(malformed("its database or table name is cut"))?;
        let wanted = |t: &[u8]| {
            (self.f.tables.as_ref()).is_none_or(|ts| ts.iter().any(|x| x.as_bytes() == t))
        };
        if names.db == self.f.source_db.as_bytes() && wanted(names.table) {
            if !printable(names.table) {
                return Err(malformed("its table name holds control characters"));
            }
            if self.kept.len() >= MAX_TABLES_PER_TRANSACTION && !self.kept.contains(&id) {
                return Err(malformed("its transaction maps more than 65536 tables"));
            }
            self.kept.insert(id);
            self.recent.table(names.table);
            if self.counts(head) && self.summary.tables.len() < MAX_DROPPED_TABLES {
                self.summary.tables.insert(escaped(names.table));
            }
            if self
                .f
                .rename_to
                .as_ref()
                .is_some_and(|t| *t != self.f.source_db)
            {
                let at = HEADER_LEN + body.len() - rest.len();
                return Ok(Decision::Rename { at });
            }
            return Ok(Decision::Keep);
        }
        // The id may have been mapped to the source database before: rows that follow are
        // meant for this other table.
        self.kept.remove(&id);
        if self.summary.dropped_tables.len() < MAX_DROPPED_TABLES {
            let name = format!("{}.{}", escaped(names.db), escaped(names.table));
            self.summary.dropped_tables.insert(name);
        }
        Ok(Decision::Drop)
    }

    fn query(
        &mut self,
        format: &Format,
        head: &Header,
        body: &[u8],
        pos: u64,
    ) -> Result<Decision, BinlogError> {
        let (db, sql) = query_parts(body, format.post_header_len(code::QUERY))
            .ok_or_else(|| malformed(head, pos, "its database name or SQL text is cut"))?;
        // A statement run under another database (or none) is not this database's: left out.
        // (One under it that reaches elsewhere is refused by the server: the replay runs as
        // an account that may only touch the target.)
        let control = [&b"BEGIN"[..], b"COMMIT", b"ROLLBACK"].contains(&sql);
        if !control && (db != self.f.source_db.as_bytes() || self.f.tables.is_some()) {
            self.summary.dropped_queries += 1;
            return Ok(Decision::Drop);
        }
        // Only what is written can smuggle a `BINLOG` statement to the replay (a restore's or
        // a drill's own `GRANT BINLOG REPLAY` to its load account, logged under no database,
        // is left out above).
        refuse_binlog_word(body, head, pos)?;
        if sql == b"BEGIN" {
            self.kept.clear();
            if !self.gtids_seen {
                if let Decision::Stop = self.transaction_start(head, pos, None) {
                    return Ok(Decision::Stop);
                }
            }
        }
        if !control {
            self.summary.statements += u64::from(self.counts(head));
            self.recent.statement(sql, pos, i64::from(head.timestamp));
        } else if sql != b"BEGIN" {
            self.recent.finish();
        }
        self.summary.queries += 1;
        Ok(Decision::Keep)
    }
}

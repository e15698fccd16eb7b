//! Event boundaries in a piece of a binary log, for the archiver: where a segment may be cut,
//! and which moments and GTIDs it covers.

use super::error::BinlogError;
use super::event::{code, le, Header, HEADER_LEN, MAGIC};

/// What [`scan_events`] found in a piece of a binary-log file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// How many of the given bytes form complete events (the magic included when they start
    /// at offset 0): a segment cut there ends on an event boundary.
    pub complete: u64,
    /// Complete events.
    pub events: u64,
    /// The header timestamp of the first complete event.
    pub first_timestamp: Option<i64>,
    /// The header timestamp of the last complete event.
    pub last_timestamp: Option<i64>,
    /// The first GTID: MariaDB `domain-server-seq`, MySQL `uuid:gno`.
    pub first_gtid: Option<String>,
    /// The last GTID, as [`Scan::first_gtid`].
    pub last_gtid: Option<String>,
    /// The last complete event ends its file: a ROTATE (the server moved on to the next file)
    /// or a STOP (it shut down). Without one, a later file following is a gap.
    pub ends_file: bool,
}

/// Scans `bytes`, which start at offset `from_pos` of a binary-log file (0: they include the
/// magic), up to the first incomplete event. Checks each event's size and `log_pos` (which
/// also catches a `from_pos` that is not an event boundary), not checksums: without the
/// format description it cannot know whether events carry them. Never panics.
pub fn scan_events(bytes: &[u8], from_pos: u64) -> Result<Scan, BinlogError> {
    let mut scan = Scan::default();
    let mut at = 0usize;
    if from_pos == 0 {
        let found = &bytes[..bytes.len().min(MAGIC.len())];
        if !MAGIC.starts_with(found) {
            return Err(BinlogError::NotABinlog {
                found: found.to_vec(),
            });
        }
        if found.len() < MAGIC.len() {
            return Ok(scan);
        }
        at = MAGIC.len();
        scan.complete = at as u64;
    } else if from_pos < MAGIC.len() as u64 {
        return Err(BinlogError::StartInsideEvent {
            start: from_pos,
            pos: 0,
            end: MAGIC.len() as u64,
        });
    }
    while let Some(Ok(head)) = bytes
        .get(at..at.saturating_add(HEADER_LEN))
        .map(<&[u8; HEADER_LEN]>::try_from)
    {
        let head = Header::parse(head);
        head.check(from_pos.saturating_add(at as u64), u64::MAX)?;
        let end = at.saturating_add(head.event_size as usize);
        let Some(event) = bytes.get(at..end) else {
            break;
        };
        scan.note(&head, event);
        at = end;
        scan.complete = at as u64;
    }
    Ok(scan)
}

impl Scan {
    fn note(&mut self, head: &Header, event: &[u8]) {
        self.events += 1;
        let ts = i64::from(head.timestamp);
        self.first_timestamp.get_or_insert(ts);
        self.last_timestamp = Some(ts);
        self.ends_file = matches!(head.type_code, code::ROTATE | code::STOP);
        if let Some(gtid) = gtid(head, event.get(HEADER_LEN..).unwrap_or_default()) {
            if self.first_gtid.is_none() {
                self.first_gtid = Some(gtid.clone());
            }
            self.last_gtid = Some(gtid);
        }
    }
}

/// The GTID of a MariaDB GTID event (seq_no u64, domain_id u32, …) or a MySQL one (flags u8,
/// source uuid [16], gno i64, …).
pub(super) fn gtid(head: &Header, body: &[u8]) -> Option<String> {
    match head.type_code {
        code::GTID_MARIADB => {
            let seq = le(body.get(0..8)?);
            let domain = le(body.get(8..12)?);
            Some(format!("{domain}-{}-{seq}", head.server_id))
        }
        code::GTID_MYSQL => {
            let uuid = body.get(1..17)?;
            let gno = le(body.get(17..25)?) as i64;
            let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
            let (a, rest) = hex.split_at(8);
            let (b, rest) = rest.split_at(4);
            let (c, rest) = rest.split_at(4);
            let (d, e) = rest.split_at(4);
            Some(format!("{a}-{b}-{c}-{d}-{e}:{gno}"))
        }
        _ => None,
    }
}

//! Where a replay stops: at a moment (`--date`), before a position (`--to-position FILE:POS`)
//! or before a GTID's transaction (`--to-gtid`). Positions and GTIDs come from `restore
//! --show-events`, which lists the last transactions before the stop with both.

use super::BinlogRestoreError;
use crate::snapshot::binlog::Segment;
use crate::snapshot::manifest::BinlogPos;

/// Where the replay stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopAt {
    /// After the last transaction committed at or before the moment.
    Moment,
    /// Before the first event at or after this position: a transaction's listed position
    /// leaves it and everything after it out.
    Position(BinlogPos),
    /// Before the transaction with this GTID.
    Gtid(String),
}

impl StopAt {
    /// `--to-position FILE:POS` (`binlog.000042:5512`). (Both parsers return a `String`: it is
    /// the whole message of a usage error, which the CLI wraps in `UsageError`, exit 2.)
    pub fn position(arg: &str) -> Result<StopAt, String> {
        let bad = || {
            format!("--to-position {arg:?} is not FILE:POS (hint: copy a position from `restore --show-events`, such as binlog.000042:5512)")
        };
        let (file, pos) = arg.rsplit_once(':').ok_or_else(bad)?;
        let pos: u64 = pos.parse().map_err(|_| bad())?;
        if !crate::snapshot::binlog::valid_file(file) || pos < 4 {
            return Err(bad());
        }
        Ok(StopAt::Position(BinlogPos {
            file: file.to_string(),
            pos,
        }))
    }

    /// `--to-gtid GTID`: MariaDB `domain-server-seq` or MySQL `uuid:gno`.
    pub fn gtid(arg: &str) -> Result<StopAt, String> {
        let mariadb = mariadb_gtid(arg).is_some();
        let mysql = arg.split_once(':').is_some_and(|(u, n)| {
            u.len() == 36
                && u.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
                && n.parse::<u64>().is_ok()
        });
        if !mariadb && !mysql {
            return Err(format!("--to-gtid {arg:?} is not a GTID (hint: MariaDB GTIDs look like 0-1-345, MySQL ones like 3e11fa47-71ca-11e1-9e33-c80aa9429562:23; `restore --show-events` lists them)"));
        }
        Ok(StopAt::Gtid(arg.to_string()))
    }

    /// For people: "binlog.000042:5512", "GTID 0-1-345"; `None` for a moment.
    pub fn target(&self) -> Option<String> {
        match self {
            StopAt::Moment => None,
            StopAt::Position(p) => Some(format!("{}:{}", p.file, p.pos)),
            StopAt::Gtid(g) => Some(format!("GTID {g}")),
        }
    }

    /// "before binlog.000042:5512", "before GTID 0-1-345"; `None` for a moment.
    pub fn describe(&self) -> Option<String> {
        self.target().map(|t| format!("before {t}"))
    }
}

/// (domain, server, seq) of a MariaDB GTID.
fn mariadb_gtid(g: &str) -> Option<(u32, u32, u64)> {
    let mut it = g.split('-');
    let d = it.next()?.parse().ok()?;
    let s = it.next()?.parse().ok()?;
    let n = it.next()?.parse().ok()?;
    it.next().is_none().then_some((d, s, n))
}

/// Cuts `segments` (from the dump's file on, in order) after the one that holds the stop;
/// an error when the stop is before the dump or past what the archive holds.
pub fn cut(
    job: &str,
    from: &BinlogPos,
    stop: &StopAt,
    segments: &mut Vec<Segment>,
) -> Result<(), BinlogRestoreError> {
    let not_reached = |what: String, segments: &[Segment]| BinlogRestoreError::NotReached {
        job: job.to_string(),
        what,
        newest: segments
            .last()
            .map_or("nothing after the dump".into(), |s| {
                format!("{}:{}", s.file, s.end)
            }),
    };
    match stop {
        StopAt::Moment => Ok(()),
        StopAt::Position(p) => {
            if p < from {
                return Err(BinlogRestoreError::BeforeDump {
                    what: format!("{}:{}", p.file, p.pos),
                    dump: format!("{}:{}", from.file, from.pos),
                });
            }
            // The segment the event at the stop is in: one whose end is past it (an event
            // starting where a segment ends is in the next one, and the filter meets the stop
            // only by reading an event at or after it).
            let Some(i) = segments
                .iter()
                .position(|s| s.file == p.file && s.end > p.pos)
            else {
                return Err(not_reached(format!("{}:{}", p.file, p.pos), segments));
            };
            segments.truncate(i + 1);
            Ok(())
        }
        StopAt::Gtid(g) => {
            // The first segment whose last GTID of the same domain is at or past it; the
            // filter then finds the event (segments without GTIDs in their manifests are all
            // read, and a GTID not found is an error before anything is replayed).
            let Some((domain, _, seq)) = mariadb_gtid(g) else {
                return Ok(());
            };
            let past = |s: &Segment| {
                (s.last_gtid.as_deref().and_then(mariadb_gtid))
                    .is_some_and(|(d, _, n)| d == domain && n >= seq)
            };
            if let Some(i) = segments.iter().position(past) {
                segments.truncate(i + 1);
            } else if segments.iter().any(|s| s.last_gtid.is_some()) {
                // The manifests name GTIDs, none this far: the archive does not reach it.
                return Err(not_reached(format!("GTID {g}"), segments));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_gtids_are_parsed_or_refused_with_a_hint() {
        assert_eq!(
            StopAt::position("binlog.000042:5512").unwrap(),
            StopAt::Position(BinlogPos {
                file: "binlog.000042".into(),
                pos: 5512
            })
        );
        for bad in ["binlog.000042", "binlog.000042:x", "../x:5", ":5", "b.1:2"] {
            let e = StopAt::position(bad).unwrap_err();
            assert!(e.contains("--show-events"), "{bad}: {e}");
        }
        assert!(StopAt::gtid("0-1-345").is_ok());
        assert!(StopAt::gtid("3e11fa47-71ca-11e1-9e33-c80aa9429562:23").is_ok());
        for bad in ["0-1", "0-1-x", "0-1-2-3", "abc:1", "'; DROP"] {
            assert!(StopAt::gtid(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_position_where_a_segment_ends_takes_the_segment_after_it() {
        let seg = |start, end| Segment::new("main", "h", "binlog.000001", (start, end));
        let from = BinlogPos {
            file: "binlog.000001".into(),
            pos: 850,
        };
        let stop = |pos| {
            StopAt::Position(BinlogPos {
                file: "binlog.000001".into(),
                pos,
            })
        };
        let all = vec![seg(0, 1250), seg(1250, 1600), seg(1600, 2000)];
        let mut segments = all.clone();
        cut("main", &from, &stop(1250), &mut segments).unwrap();
        assert_eq!(
            segments.len(),
            2,
            "the event at 1250 is in the second segment"
        );
        let mut segments = all.clone();
        cut("main", &from, &stop(1249), &mut segments).unwrap();
        assert_eq!(segments.len(), 1);
        // Where the archive ends: the event there is not archived yet.
        let mut segments = all;
        let e = cut("main", &from, &stop(2000), &mut segments).unwrap_err();
        assert!(e.to_string().contains("ends at binlog.000001:2000"), "{e}");
    }
}

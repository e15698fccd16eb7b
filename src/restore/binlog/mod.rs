//! Rolling a restored dump forward to a moment with the archived binary log (`binlog = true`).
//!
//! The dump's manifest says where its snapshot stands in the server's binary log. The plan
//! takes the archive's segments from the start of that file on, checks that they touch (a
//! gap refuses a moment past it, naming the gap and the newest moment reachable), and stops
//! one segment past the moment. The replay rebuilds each file from its segments (each checked
//! against its SHA-256), filters it (`crate::binlog`: only row events of the source database's
//! tables pass, their table maps renamed to the target by the filter itself, by construction,
//! since the server applies row events without checking table privileges; events before the
//! dump's position and transactions after the moment are cut) and pipes `mariadb-binlog
//! --rewrite-db=SOURCE->TARGET` (for the statements' default database) into the client logged
//! in as the load account, which may reach the target alone: statements are checked by the
//! server. Segment manifests are untrusted: a file name must be a plain name, and each
//! segment's object key is derived from its place, not read from the manifest.

use crate::config::MysqlJob;

pub mod drill;
mod pipe;
mod replay;
pub mod stop;
pub use replay::{preview, replay, Preview};
pub use stop::StopAt;

use crate::snapshot::binlog::{self as segment, Segment};
use crate::snapshot::manifest::BinlogPos;
use crate::storage::{Storage, StorageError};
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};

/// What a roll forward does.
#[derive(Debug, Clone)]
pub struct RollForward {
    /// The job whose archive it reads.
    pub job: String,
    /// Where the dump stands.
    pub from: BinlogPos,
    /// The moment: transactions committed at or before it are replayed.
    pub to: DateTime<Utc>,
    /// The segments read, in order.
    pub segments: Vec<Segment>,
    /// The newest event the archive has (the moment replayed when `to` is later).
    pub reach: Option<DateTime<Utc>>,
    /// `--table`: only these tables' row events (empty: the whole database's).
    pub tables: Vec<String>,
    /// Where it stops: at `to`, or before a position or GTID (then `to` only chose the dump).
    pub stop: StopAt,
    /// A preview counts the tables and statements of events from this moment on only.
    pub count_from: Option<DateTime<Utc>>,
}

/// Why a roll forward cannot be planned or run.
#[derive(Debug, thiserror::Error)]
pub enum BinlogRestoreError {
    /// The archive does not go back to the dump's position.
    #[error("the binary log archive of `{job}` does not hold {file} from its start (the dump stands at byte {pos} of it): it cannot roll the dump forward (hint: restore to the dump's own time, or to a later dump taken while archiving ran)")]
    NotArchived {
        /// The job.
        job: String,
        /// The dump's file and position.
        file: String,
        /// …
        pos: u64,
    },
    /// Segments are missing between two points.
    #[error("the binary log archive of `{job}` has a gap at {file} byte {at}: the newest moment it can restore to is {reach} (hint: restore with --date {reach} or earlier; a later dump starts a whole chain again)")]
    Gap {
        /// The job.
        job: String,
        /// The file with the gap (or the first file missing).
        file: String,
        /// Where.
        at: u64,
        /// The newest event before the gap.
        reach: String,
    },
    /// A segment's bytes are not what its manifest says.
    #[error("binary log segment `{key}` is damaged: its SHA-256 is {got}, the manifest says {want} (hint: restore to a moment before {file})")]
    Damaged {
        /// The object.
        key: String,
        /// What it hashes to.
        got: String,
        /// What the manifest says.
        want: String,
        /// The file it is part of.
        file: String,
    },
    /// Filtering a file failed (damaged or forged input).
    #[error("binary log {file}: {cause}")]
    Filter {
        /// The file.
        file: String,
        /// What the filter said.
        cause: String,
    },
    /// The work directory.
    #[error("binary log work directory {path}: {cause} (hint: check the state directory's disk)")]
    Work {
        /// The path.
        path: PathBuf,
        /// What failed.
        cause: String,
    },
    /// The replay failed.
    #[error("replaying the binary log into `{target}` failed: {cause}")]
    Replay {
        /// The database.
        target: String,
        /// What the tools said.
        cause: String,
    },
    /// `--to-position`/`--to-gtid` for a dump that cannot roll forward.
    #[error("cannot stop {what} for job `{job}`: {why} (hint: restore with --date alone, or pick a dump taken while archiving ran)")]
    NoArchive {
        /// The job.
        job: String,
        /// The stop asked.
        what: String,
        /// Why not.
        why: &'static str,
    },
    /// `--to-position`/`--to-gtid` past the archive's end.
    #[error("the binary log archive of `{job}` does not reach {what}: it ends at {newest} (hint: `restore --show-events` lists what it holds; check `opsagent status` for the archive's lag)")]
    NotReached {
        /// The job.
        job: String,
        /// The stop asked.
        what: String,
        /// Where the archive ends.
        newest: String,
    },
    /// `--to-position` before the dump.
    #[error("{what} comes before the dump chosen by --date, which stands at {dump}: rolling it forward cannot stop there (hint: an earlier --date picks an older dump)")]
    BeforeDump {
        /// The stop asked.
        what: String,
        /// Where the dump stands.
        dump: String,
    },
    /// The stop was not found reading the archive.
    #[error("the binary log of `{job}` between the dump ({dump}) and the archive's end holds no {what} of this database; nothing was replayed (hint: `restore --show-events` lists the transactions with their positions and GTIDs; a GTID before the dump needs an earlier --date)")]
    StopNotFound {
        /// The job.
        job: String,
        /// The stop asked.
        what: String,
        /// Where the dump stands.
        dump: String,
    },
    /// A drill's copy differs from the live database in a table the archive shows unchanged.
    #[error("the copy of `{database}` rolled forward to {moment} has {copy} rows in `{table}`, the live database {live}, and the binary log shows no change to that table since: the dump or the replay lost or doubled rows (hint: restore the table side by side with --table and compare; run `opsagent backup` for a fresh chain)")]
    Diverged {
        /// The database.
        database: String,
        /// The table.
        table: String,
        /// Rows in the copy.
        copy: u64,
        /// Rows live.
        live: u64,
        /// The moment rolled forward to.
        moment: String,
    },
    /// Storage.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The roll forward of a dump of `job` standing at `from` up to `to`; `None` when the dump
/// already is the moment (nothing was written after it up to `to`).
pub async fn plan(
    storage: &Storage,
    job: &str,
    from: &BinlogPos,
    to: DateTime<Utc>,
    stop: &StopAt,
) -> Result<RollForward, BinlogRestoreError> {
    let all = segment::list(storage, job).await?;
    let mut segments: Vec<Segment> = all.into_iter().filter(|s| s.file >= from.file).collect();
    let not_archived = || BinlogRestoreError::NotArchived {
        job: job.to_string(),
        file: from.file.clone(),
        pos: from.pos,
    };
    match segments.first() {
        Some(s) if s.file == from.file && s.start == 0 => {}
        _ => return Err(not_archived()),
    }
    let moment = *stop == StopAt::Moment;
    if moment {
        // Keep segments up to one starting after the moment (a transaction may straddle two).
        if let Some(cut) = segments
            .iter()
            .position(|s| s.first_event_at.is_some_and(|t| t > to))
        {
            segments.truncate(cut + 1);
        }
    } else {
        stop::cut(job, from, stop, &mut segments)?;
    }
    if let Err((i, gap)) = check_contiguous(job, &segments) {
        // A gap after the moment does not matter: the segment past it was only taken in
        // case a transaction straddled two segments.
        if !moment || segments[i].first_event_at.is_none_or(|t| t <= to) || i == 0 {
            return Err(gap);
        }
        segments.truncate(i);
    }
    let reach = segments.iter().filter_map(|s| s.last_event_at).max();
    Ok(RollForward {
        job: job.to_string(),
        from: from.clone(),
        to,
        segments,
        reach,
        tables: Vec::new(),
        stop: stop.clone(),
        count_from: None,
    })
}

/// Plans, for each step of a job archiving its binary log, the roll forward from its dump to
/// `at` (not for `--to-file`, which writes the dump as stored).
pub async fn plan_steps(
    config: &crate::config::Config,
    storage: &Storage,
    steps: &mut [super::Step],
    target: &super::Target,
    (at, stop): (DateTime<Utc>, &StopAt),
) -> Result<(), super::RestoreError> {
    if matches!(target, super::Target::File(_)) {
        return Ok(());
    }
    for step in steps.iter_mut() {
        let job = &step.chosen.key.job;
        let archives = config
            .mysql
            .iter()
            .any(|j| &j.name == job && j.binlog.is_some());
        let Some(from) = step.chosen.manifest.binlog.as_ref().filter(|_| archives) else {
            if let Some(what) = stop.describe() {
                return Err(BinlogRestoreError::NoArchive {
                    job: job.clone(),
                    what,
                    why: if archives {
                        "its dump records no binary log position (it was taken before `binlog = true`)"
                    } else {
                        "the job does not archive its binary log (`binlog = true`)"
                    },
                }
                .into());
            }
            continue;
        };
        if at <= step.chosen.manifest.finished_at && *stop == StopAt::Moment {
            continue;
        }
        let mut rf = plan(storage, job, from, at, stop).await?;
        rf.tables = step.tables.clone();
        step.roll_forward = Some(rf);
    }
    Ok(())
}

/// After the dump was loaded (`loaded`), replays `roll` when there is one, as the load
/// account `login`; logs what it replayed.
pub async fn after_load<T>(
    storage: &Storage,
    loaded: Result<T, super::RestoreError>,
    roll: Option<(&RollForward, &Path)>,
    (login, client): (&MysqlJob, &Path),
    (source, target): (&str, &str),
) -> Result<T, super::RestoreError> {
    let Some((rf, work)) = roll.filter(|_| loaded.is_ok()) else {
        return loaded;
    };
    let said = replay(storage, rf, (login, client), (source, target), work).await?;
    tracing::info!(database = target, "{said}");
    loaded
}

/// A fresh work directory for a replay, under the state directory.
pub fn work_dir(state_dir: &Path) -> PathBuf {
    state_dir.join(format!("binlog-replay-{}", super::names::random_hex(4)))
}

/// Each file's segments touch from 0, and the files follow each other without one missing.
/// The error comes with the index of the first segment after the gap.
fn check_contiguous(job: &str, segments: &[Segment]) -> Result<(), (usize, BinlogRestoreError)> {
    let mut reach: Option<DateTime<Utc>> = None;
    let gap = |file: &str, at: u64, reach: Option<DateTime<Utc>>| BinlogRestoreError::Gap {
        job: job.to_string(),
        file: file.to_string(),
        at,
        reach: reach.map_or("the dump's own time".into(), |t| t.to_rfc3339()),
    };
    let mut prev: Option<&Segment> = None;
    for (i, s) in segments.iter().enumerate() {
        match prev {
            Some(p) if p.file == s.file && p.end != s.start => {
                return Err((i, gap(&s.file, p.end, reach)))
            }
            // The previous file must have been archived to its end (its ROTATE event).
            Some(p) if p.file != s.file && !p.ends_file => {
                return Err((i, gap(&p.file, p.end, reach)))
            }
            Some(p) if p.file != s.file && (s.start != 0 || !follows(&p.file, &s.file)) => {
                return Err((i, gap(&s.file, 0, reach)))
            }
            _ => {}
        }
        reach = s.last_event_at.or(reach);
        prev = Some(s);
    }
    Ok(())
}

/// Whether binary log file `b` is the one after `a` (`binlog.000041` → `binlog.000042`).
fn follows(a: &str, b: &str) -> bool {
    let split = |f: &str| {
        let (base, n) = f.rsplit_once('.')?;
        Some((base.to_string(), n.parse::<u64>().ok()?))
    };
    matches!((split(a), split(b)), (Some((x, m)), Some((y, n))) if x == y && n == m + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(file: &str, start: u64, end: u64) -> Segment {
        Segment {
            events: 1,
            ends_file: true,
            ..Segment::new("main", "h", file, (start, end))
        }
    }

    #[test]
    fn gaps_are_found_within_and_between_files() {
        let ok = [
            seg("b.000001", 0, 10),
            seg("b.000001", 10, 20),
            seg("b.000002", 0, 5),
        ];
        assert!(check_contiguous("main", &ok).is_ok());
        let hole = [seg("b.000001", 0, 10), seg("b.000001", 12, 20)];
        let e = check_contiguous("main", &hole).unwrap_err().1.to_string();
        assert!(e.contains("gap at b.000001 byte 10"), "{e}");
        let skipped = [seg("b.000001", 0, 10), seg("b.000003", 0, 5)];
        assert!(check_contiguous("main", &skipped).is_err());
        // A file archived only partly (no ROTATE at its end), then the next one.
        let mut cut = seg("b.000001", 0, 10);
        cut.ends_file = false;
        let (i, e) = check_contiguous("main", &[cut, seg("b.000002", 0, 5)]).unwrap_err();
        assert_eq!(i, 1);
        assert!(e.to_string().contains("gap at b.000001 byte 10"), "{e}");
        assert!(follows("binlog.000009", "binlog.000010"));
        assert!(!follows("binlog.000009", "other.000010"));
    }
}

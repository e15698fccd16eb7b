//! Rolling a restored dump forward to a moment with the archived binary log (`binlog = true`).
//!
//! The dump's manifest says where its snapshot stands in the server's binary log. The plan
//! takes the archive's segments from the start of that file on, checks that they touch (a
//! gap refuses a moment past it, naming the gap and the newest moment reachable), and stops
//! one segment past the moment. The replay rebuilds each file from its segments (each checked
//! against its SHA-256), filters it (`crate::binlog`: only row events of the source database's
//! tables pass, by construction, since the server applies row events without checking table
//! privileges; events before the dump's position and transactions after the moment are cut)
//! and pipes `mariadb-binlog --rewrite-db=SOURCE->TARGET` into the client logged in as the load
//! account, which may reach the target alone: statements are checked by the server.

use crate::config::MysqlJob;
use crate::snapshot::binlog::{self as segment, Segment};
use crate::snapshot::manifest::BinlogPos;
use crate::storage::{Storage, StorageError};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::io::Write;
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
    // Keep segments up to one starting after the moment (a transaction may straddle two).
    if let Some(cut) = segments
        .iter()
        .position(|s| s.first_event_at.is_some_and(|t| t > to))
    {
        segments.truncate(cut + 1);
    }
    if let Err((i, gap)) = check_contiguous(job, &segments) {
        // A gap after the moment does not matter: the segment past it was only taken in
        // case a transaction straddled two segments.
        if segments[i].first_event_at.is_none_or(|t| t <= to) || i == 0 {
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
    })
}

/// Plans, for each step of a job archiving its binary log, the roll forward from its dump to
/// `at` (not for `--to-file`, which writes the dump as stored).
pub async fn plan_steps(
    config: &crate::config::Config,
    storage: &Storage,
    steps: &mut [super::Step],
    target: &super::Target,
    at: DateTime<Utc>,
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
            continue;
        };
        if at <= step.chosen.manifest.finished_at {
            continue;
        }
        step.roll_forward = Some(plan(storage, job, from, at).await?);
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

/// Replays `rf` into `target` (the dump of `source` is loaded there), logged in as `login`
/// (the load account); `work` is a directory for the rebuilt files, removed afterwards.
/// Returns what was replayed, for the report.
pub async fn replay(
    storage: &Storage,
    rf: &RollForward,
    (login, client): (&MysqlJob, &Path),
    (source, target): (&str, &str),
    work: &Path,
) -> Result<String, BinlogRestoreError> {
    let werr = |e: std::io::Error| BinlogRestoreError::Work {
        path: work.to_path_buf(),
        cause: e.to_string(),
    };
    std::fs::create_dir_all(work).map_err(werr)?;
    let result = async {
        let (files, events, transactions) = filtered(storage, rf, source, work).await?;
        let (login, client) = (login.clone(), client.to_path_buf());
        let (source, t) = (source.to_string(), target.to_string());
        tokio::task::spawn_blocking(move || pipe(&files, &login, &client, (&source, &t)))
            .await
            .map_err(|e| BinlogRestoreError::Replay {
                target: target.to_string(),
                cause: e.to_string(),
            })??;
        Ok(format!(
            "{transactions} transaction(s), {events} event(s) of the binary log replayed"
        ))
    }
    .await;
    let _ = std::fs::remove_dir_all(work);
    result
}

/// Each file of `rf` rebuilt and filtered in `work`, until the moment; with the events and
/// transactions kept.
async fn filtered(
    storage: &Storage,
    rf: &RollForward,
    source: &str,
    work: &Path,
) -> Result<(Vec<PathBuf>, u64, u64), BinlogRestoreError> {
    let mut files = Vec::new();
    let (mut events, mut transactions) = (0u64, 0u64);
    let mut files_in: Vec<&str> = rf.segments.iter().map(|s| s.file.as_str()).collect();
    files_in.dedup();
    for file in files_in {
        let raw = work.join(format!("{file}.raw"));
        rebuild(storage, rf, file, &raw).await?;
        let filtered = work.join(file);
        let filter = crate::binlog::Filter {
            start_pos: (file == rf.from.file).then_some(rf.from.pos),
            stop_before: Some(rf.to.timestamp() + 1),
            ..crate::binlog::Filter::new(source)
        };
        let (raw2, out2) = (raw.clone(), filtered.clone());
        let summary = tokio::task::spawn_blocking(move || filter_one(&raw2, &out2, &filter))
            .await
            .map_err(|e| BinlogRestoreError::Filter {
                file: file.to_string(),
                cause: e.to_string(),
            })?
            .map_err(|cause| BinlogRestoreError::Filter {
                file: file.to_string(),
                cause,
            })?;
        let _ = std::fs::remove_file(&raw);
        events += summary.events_out;
        transactions += summary.transactions;
        files.push(filtered);
        if summary.stopped_at.is_some() {
            break;
        }
    }
    Ok((files, events, transactions))
}

/// Writes `file`'s segments of `rf` one after the other into `out`, each checked.
async fn rebuild(
    storage: &Storage,
    rf: &RollForward,
    file: &str,
    out: &Path,
) -> Result<(), BinlogRestoreError> {
    let werr = |e: std::io::Error| BinlogRestoreError::Work {
        path: out.to_path_buf(),
        cause: e.to_string(),
    };
    let mut f = std::fs::File::create(out).map_err(werr)?;
    for s in rf.segments.iter().filter(|s| s.file == file) {
        let max = (s.end - s.start) + (1 << 20);
        let packed = storage.get_bytes_max(&s.object, max).await?;
        let raw = zstd::bulk::decompress(&packed, (s.end - s.start) as usize).unwrap_or_default();
        let got = hex::encode(Sha256::digest(&raw));
        if got != s.sha256 || raw.len() as u64 != s.end - s.start {
            return Err(BinlogRestoreError::Damaged {
                key: s.object.clone(),
                got,
                want: s.sha256.clone(),
                file: file.to_string(),
            });
        }
        f.write_all(&raw).map_err(werr)?;
    }
    f.sync_all().map_err(werr)
}

fn filter_one(
    raw: &Path,
    out: &Path,
    filter: &crate::binlog::Filter,
) -> Result<crate::binlog::Summary, String> {
    let mut input = std::io::BufReader::new(std::fs::File::open(raw).map_err(|e| e.to_string())?);
    let mut output =
        std::io::BufWriter::new(std::fs::File::create(out).map_err(|e| e.to_string())?);
    let summary =
        crate::binlog::filter_file(&mut input, &mut output, filter).map_err(|e| e.to_string())?;
    output.flush().map_err(|e| e.to_string())?;
    Ok(summary)
}

/// `mariadb-binlog --rewrite-db=SOURCE->TARGET FILES… | mariadb` as the load account.
fn pipe(
    files: &[PathBuf],
    login: &MysqlJob,
    client: &Path,
    (source, target): (&str, &str),
) -> Result<(), BinlogRestoreError> {
    let fail = |cause: String| BinlogRestoreError::Replay {
        target: target.to_string(),
        cause,
    };
    let tool = crate::mysql_client::which("mariadb-binlog")
        .or_else(|| crate::mysql_client::which("mysqlbinlog"))
        .ok_or_else(|| fail("neither mariadb-binlog nor mysqlbinlog is on PATH".into()))?;
    // (Its own GTID checks would refuse a replay that starts mid-file; the archive's
    // continuity was checked by the plan.)
    let mut reader = std::process::Command::new(&tool)
        .arg("--skip-gtid-strict-mode")
        .arg(format!("--rewrite-db={source}->{target}"))
        .args(files)
        .env("TZ", "UTC")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {}: {e}", tool.display())))?;
    let database = format!("--database={target}");
    let mut args = vec![
        "--batch",
        "--max-allowed-packet=1G",
        "--default-character-set=utf8mb4",
    ];
    args.extend(crate::mysql_client::sandbox_flag(client));
    args.push(&database);
    let mut running = login
        .login(client)
        .spawn(args, true, false)
        .map_err(|e| fail(e.to_string()))?;
    let mut stdin = running.take_stdin().expect("piped stdin");
    let mut out = reader.stdout.take().expect("piped stdout");
    let copied = std::io::copy(&mut out, &mut stdin);
    drop(stdin);
    let finished = running.finish().map_err(|e| fail(e.to_string()))?;
    let read = reader.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !read.status.success() {
        return Err(fail(
            String::from_utf8_lossy(&read.stderr).trim().to_string(),
        ));
    }
    if !finished.status.success() {
        return Err(fail(finished.stderr.trim().to_string()));
    }
    copied.map(drop).map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(file: &str, start: u64, end: u64) -> Segment {
        Segment {
            format: 1,
            job: "main".into(),
            host: "h".into(),
            file: file.into(),
            start,
            end,
            events: 1,
            first_event_at: None,
            last_event_at: None,
            ends_file: true,
            sha256: String::new(),
            object: String::new(),
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

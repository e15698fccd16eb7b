//! The binary log archive of a `[[mysql]]` job with `binlog = true`: what the server writes
//! after each dump, kept in storage so a restore can roll a dump forward to any moment.
//!
//! How: `mariadb-binlog --read-from-remote-server --raw --stop-never` (or `mysqlbinlog`), logged
//! in as the job's user (it needs `REPLICATION SLAVE`), copies the server's binary log files into
//! a spool directory under the state dir as the server writes them, byte for byte. Every
//! `binlog_interval` the archiver commits what is new in each spool file as a segment (whole
//! events only; see `segment.rs`) and records how far it is in the catalog (`status` shows
//! "data at risk"). A spool file the server has moved on from is deleted once committed, so the
//! spool holds about one binary log file. Why the streaming reader rather than rotating and
//! uploading closed files: rotating every few seconds would litter the server with files (and
//! `FLUSH BINARY LOGS` needs RELOAD), while the reader sees each event as it is written.
//!
//! Resuming (a restart, a crash, the server or the storage down for a while) starts the reader
//! again at the beginning of the file of the last committed segment and commits from that
//! segment's end: positions stay contiguous, nothing is committed twice. The first start of a
//! job begins at the start of the server's current file.

pub mod position;
mod reader;
pub mod retention;
mod start;

use crate::catalog::BinlogProgress;
use crate::config::{BinlogSettings, MysqlJob};
use crate::mysql_client::MysqlError;
use crate::snapshot::binlog::{self as segment, Segment};
use crate::snapshot::Env;
use crate::storage::StorageError;
use chrono::{DateTime, TimeZone, Utc};
use reader::Reader;
use start::{server_files, start_point};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The most bytes committed as one segment.
const MAX_SEGMENT: u64 = 16 << 20;
/// Waits after a failed session, doubling up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Why archiving stopped for a while.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The MySQL tools.
    #[error(transparent)]
    Mysql(#[from] MysqlError),
    /// Storage.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The spool directory.
    #[error(
        "binary log spool {path}: {cause} (hint: check the state directory's disk and permissions)"
    )]
    Spool {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        cause: String,
    },
    /// The server has no binary log.
    #[error("the server of job `{job}` writes no binary log (hint: add `log_bin` (and `binlog_format = ROW`, `server_id = 1`) under [mariadb] or [mysqld] in its configuration and restart it, or remove binlog = true)")]
    NoBinlog {
        /// The job.
        job: String,
    },
    /// The reader stopped.
    #[error("{program} stopped: {stderr} (hint: the job's user needs REPLICATION SLAVE and REPLICATION CLIENT: GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO …; a purged file means a gap: the next dump starts a new chain)")]
    Reader {
        /// The tool.
        program: String,
        /// Its last words.
        stderr: String,
    },
    /// A spool file does not cut into events.
    #[error("binary log {file}: {cause}; archiving stopped there (hint: report this; the next dump starts a new chain)")]
    Damaged {
        /// The file.
        file: String,
        /// What is wrong.
        cause: String,
    },
}

/// Archives `job`'s binary log until the task is dropped, starting a new session after each
/// failure (after a growing wait); each failure is logged and recorded for `status`.
pub async fn run(env: Env, job: MysqlJob, settings: BinlogSettings) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let started = tokio::time::Instant::now();
        let e = session(&env, &job, settings).await;
        tracing::warn!(job = %job.name, error = %e, "binary log archiving stopped; it starts again shortly");
        record_error(&env, &job.name, &e.to_string());
        if started.elapsed() > MAX_BACKOFF {
            backoff = MIN_BACKOFF;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The spool directory of `job`.
fn spool_dir(env: &Env, job: &str) -> PathBuf {
    env.config.agent.state_dir.join("binlog").join(job)
}

/// One reader process and the commits of what it writes, until something fails.
async fn session(env: &Env, job: &MysqlJob, settings: BinlogSettings) -> ArchiveError {
    match session_inner(env, job, settings).await {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

async fn session_inner(
    env: &Env,
    job: &MysqlJob,
    settings: BinlogSettings,
) -> Result<std::convert::Infallible, ArchiveError> {
    let segments = segment::list(&env.storage, &job.name).await?;
    let server = server_files(job).await?;
    let (file, pos) = start_point(&job.name, segment::resume_point(&segments), &server);
    let last_event_at = segments.last().and_then(|s| s.last_event_at);
    let ended = (segments.last().filter(|s| s.ends_file))
        .map(|s| s.file.clone())
        .into_iter()
        .collect();
    let spool = spool_dir(env, &job.name);
    fresh_dir(&spool)?;
    let mut reader = Reader::start(job, &spool, &file)?;
    let mut a = Archive {
        env,
        job,
        spool,
        done: BTreeMap::from([(file, pos)]),
        ended,
        last_event_at,
    };
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = None;
    let mut storage_down: Option<tokio::time::Instant> = None;
    loop {
        tick.tick().await;
        let exited = reader.exited();
        match a.commit_new().await {
            // The storage is down: the reader keeps spooling (to disk), and the next tick
            // commits from where the last commit ended, so nothing is lost or committed twice.
            Err(ArchiveError::Storage(e)) if !exited => {
                if storage_down.is_none_or(|t| t.elapsed() > Duration::from_secs(300)) {
                    tracing::warn!(job = %job.name, error = %e, "cannot store the binary log; it is kept in the spool and committed when the storage answers again");
                    storage_down = Some(tokio::time::Instant::now());
                }
                record_error(env, &job.name, &e.to_string());
                continue;
            }
            Err(e) => return Err(e),
            Ok(()) => {
                if storage_down.take().is_some() {
                    tracing::info!(job = %job.name, "the storage answers again; the binary log archive caught up");
                }
            }
        }
        if exited {
            return Err(reader.stopped());
        }
        // The reader wrote nothing since the last tick: the archive has all the server wrote
        // (as of the last tick). Else it has up to its newest event.
        let total = a.spool_bytes();
        let whole = match seen.replace(total) {
            Some(before) if before == total => Some(Utc::now() - settings.interval),
            _ => a.last_event_at,
        };
        a.record(whole);
    }
}

/// Empties (or makes) the spool directory, mode 0700.
fn fresh_dir(dir: &Path) -> Result<(), ArchiveError> {
    let err = |e: std::io::Error| ArchiveError::Spool {
        path: dir.to_path_buf(),
        cause: e.to_string(),
    };
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    std::fs::create_dir_all(dir).map_err(err)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)
}

/// One session's state: how far each spool file is committed.
struct Archive<'a> {
    env: &'a Env,
    job: &'a MysqlJob,
    spool: PathBuf,
    /// File → the offset committed up to (files before the first are not in the spool).
    done: BTreeMap<String, u64>,
    /// Files whose last committed segment ends them (ROTATE, STOP, or an end marker).
    ended: std::collections::BTreeSet<String>,
    last_event_at: Option<DateTime<Utc>>,
}

impl Archive<'_> {
    /// Commits what is new in every spool file, and deletes the files the server left.
    async fn commit_new(&mut self) -> Result<(), ArchiveError> {
        let files = self.spool_files()?;
        let first = self.done.keys().next().cloned().unwrap_or_default();
        for (i, name) in files.iter().enumerate() {
            if *name < first {
                continue;
            }
            let path = self.spool.join(name);
            while self.commit_one(name, &path).await? {}
            let later = i + 1 < files.len();
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if later && self.done.get(name) == Some(&size) {
                if !self.ended.contains(name) {
                    self.commit_end(name, size).await?;
                }
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(())
    }

    /// The spool's files, in order.
    fn spool_files(&self) -> Result<Vec<String>, ArchiveError> {
        let rd = std::fs::read_dir(&self.spool).map_err(|e| ArchiveError::Spool {
            path: self.spool.clone(),
            cause: e.to_string(),
        })?;
        let mut names: Vec<String> = rd
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Commits the next segment of `name` if there is a whole event; whether it did.
    async fn commit_one(&mut self, name: &str, path: &Path) -> Result<bool, ArchiveError> {
        let start = self.done.get(name).copied().unwrap_or(0);
        let raw = read_from(path, start).map_err(|e| ArchiveError::Spool {
            path: path.to_path_buf(),
            cause: e.to_string(),
        })?;
        let scanned =
            crate::binlog::scan_events(&raw, start).map_err(|e| ArchiveError::Damaged {
                file: name.to_string(),
                cause: e.to_string(),
            })?;
        if scanned.events == 0 {
            return Ok(false);
        }
        let len = scanned.complete as usize;
        let end = start + scanned.complete;
        let time = |t: Option<i64>| t.and_then(|t| Utc.timestamp_opt(t, 0).single());
        let host = &self.env.config.agent.hostname;
        let seg = Segment {
            events: scanned.events,
            first_event_at: time(scanned.first_timestamp),
            last_event_at: time(scanned.last_timestamp),
            ends_file: scanned.ends_file,
            first_gtid: scanned.first_gtid,
            last_gtid: scanned.last_gtid,
            ..Segment::new(&self.job.name, host, name, (start, end))
        };
        let seg = segment::commit(&self.env.storage, seg, &raw[..len]).await?;
        if seg.ends_file {
            self.ended.insert(name.to_string());
        }
        self.done.insert(name.to_string(), end);
        self.last_event_at = seg.last_event_at.or(self.last_event_at);
        Ok(true)
    }

    /// Commits an end marker for `name`, archived whole up to `size`: the server moved on to
    /// the next file without writing ROTATE or STOP at its end (it crashed, or was killed), so
    /// nothing in the file says it ends; the reader passing on to the next file does.
    async fn commit_end(&mut self, name: &str, size: u64) -> Result<(), ArchiveError> {
        let host = &self.env.config.agent.hostname;
        let seg = Segment {
            ends_file: true,
            ..Segment::new(&self.job.name, host, name, (size, size))
        };
        segment::commit(&self.env.storage, seg, &[]).await?;
        tracing::info!(job = %self.job.name, file = name, "the server left this binary log without closing it (a crash?); the archive marks it ended at byte {size}");
        self.ended.insert(name.to_string());
        Ok(())
    }

    /// The bytes in the spool.
    fn spool_bytes(&self) -> u64 {
        let files = self.spool_files().unwrap_or_default();
        (files.iter())
            .filter_map(|f| std::fs::metadata(self.spool.join(f)).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Records in the catalog that the archive is whole up to `whole`.
    fn record(&self, whole: Option<DateTime<Utc>>) {
        let Some(whole) = whole else { return };
        let (file, pos) = (self.done.iter().next_back())
            .map(|(f, p)| (f.clone(), *p))
            .unwrap_or_default();
        let p = BinlogProgress {
            job: self.job.name.clone(),
            file,
            pos,
            last_event_at: self.last_event_at,
            updated_at: whole,
            error: None,
        };
        if let Err(e) = self.env.catalog.set_binlog_progress(&p) {
            tracing::warn!(job = %self.job.name, error = %e, "cannot record the binary log archive's progress");
        }
    }
}

/// Up to [`MAX_SEGMENT`] bytes of `path` from `start`.
fn read_from(path: &Path, start: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    f.take(MAX_SEGMENT).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Records that archiving of `job` stopped, keeping how far it was.
fn record_error(env: &Env, job: &str, error: &str) {
    let mut p = match env.catalog.binlog_progress(job) {
        Ok(Some(p)) => p,
        _ => BinlogProgress {
            job: job.to_string(),
            file: String::new(),
            pos: 0,
            last_event_at: None,
            updated_at: Utc::now(),
            error: None,
        },
    };
    // (`updated_at` stays: the archive is whole up to then.)
    p.error = Some(error.to_string());
    if let Err(e) = env.catalog.set_binlog_progress(&p) {
        tracing::warn!(%job, error = %e, "cannot record the binary log archive's state");
    }
}

/// Starts the archive of every job with `binlog = true`; dropping the handles (aborting the
/// tasks) stops them and their readers.
pub fn spawn_all(env: &Env) -> Vec<tokio::task::JoinHandle<()>> {
    (env.config.mysql.iter())
        .filter_map(|job| Some((job.clone(), job.binlog?)))
        .map(|(job, settings)| tokio::spawn(run(env.clone(), job, settings)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_starts_after_the_archive_or_at_the_oldest_file_left() {
        let server = ["b.000003".to_string(), "b.000004".to_string()];
        assert_eq!(start_point("j", None, &server), ("b.000004".into(), 0));
        let at = Some(("b.000003".to_string(), 900));
        assert_eq!(start_point("j", at, &server), ("b.000003".into(), 900));
        let purged = Some(("b.000001".to_string(), 900));
        assert_eq!(start_point("j", purged, &server), ("b.000003".into(), 0));
    }
}

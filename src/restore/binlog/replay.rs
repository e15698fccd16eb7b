//! The replay itself: each file rebuilt from its segments (each checked against its SHA-256),
//! filtered (`crate::binlog`), and piped through `mariadb-binlog` into the client logged in as
//! the load account.

use super::{BinlogRestoreError, RollForward, StopAt};
use crate::config::MysqlJob;
use crate::storage::Storage;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

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
        // A stop at a position or GTID the log does not hold is refused before anything is
        // replayed (a moment always exists): the files are read once for it, up to the stop,
        // and kept for the replay.
        let files = if rf.stop != StopAt::Moment {
            filtered(storage, rf, source, work, (0, true)).await?.raws
        } else {
            let mut files = Vec::new();
            for file in file_names(rf) {
                let raw = work.join(format!("{file}.raw"));
                rebuild(storage, rf, file, &raw).await?;
                files.push((file.to_string(), raw));
            }
            files
        };
        let (login, client) = (login.clone(), client.to_path_buf());
        let (source, t, rf2) = (source.to_string(), target.to_string(), rf.clone());
        let w = work.to_path_buf();
        let (events, transactions) = tokio::task::spawn_blocking(move || {
            super::pipe::run(&rf2, &files, (&login, &client), (&source, &t), &w)
        })
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

/// What reading the archive up to the stop found, without replaying it
/// (`restore --show-events`).
#[derive(Debug, Clone, Default)]
pub struct Preview {
    /// Transactions of the database that a replay would apply.
    pub transactions: u64,
    /// Events it would apply.
    pub events: u64,
    /// The first transaction left out: file, position, timestamp.
    pub stopped_at: Option<(String, u64, i64)>,
    /// The last transactions applied, oldest first, with their file.
    pub recent: Vec<(String, crate::binlog::Transaction)>,
    /// Tables whose row events it would apply (bounded, see [`crate::binlog::Summary`]).
    pub tables: std::collections::BTreeSet<String>,
    /// Statements it would apply that are not transaction control.
    pub statements: u64,
}

/// Reads `rf` as a replay would (every segment checked, the same filter), keeping the last
/// `n` transactions of `source`, and replays nothing.
pub async fn preview(
    storage: &Storage,
    rf: &RollForward,
    source: &str,
    n: usize,
    work: &Path,
) -> Result<Preview, BinlogRestoreError> {
    std::fs::create_dir_all(work).map_err(|e| BinlogRestoreError::Work {
        path: work.to_path_buf(),
        cause: e.to_string(),
    })?;
    let result = filtered(storage, rf, source, work, (n, false)).await;
    let _ = std::fs::remove_dir_all(work);
    let f = result?;
    Ok(Preview {
        transactions: f.transactions,
        events: f.events,
        stopped_at: f.stopped_at,
        recent: f.recent,
        tables: f.tables,
        statements: f.statements,
    })
}

/// What the filter counted, and the rebuilt files when kept.
#[derive(Default)]
struct Filtered {
    raws: Vec<(String, PathBuf)>,
    events: u64,
    transactions: u64,
    stopped_at: Option<(String, u64, i64)>,
    recent: Vec<(String, crate::binlog::Transaction)>,
    tables: std::collections::BTreeSet<String>,
    statements: u64,
}

/// The binary log files of `rf`, in order.
fn file_names(rf: &RollForward) -> Vec<&str> {
    let mut names: Vec<&str> = rf.segments.iter().map(|s| s.file.as_str()).collect();
    names.dedup();
    names
}

/// Each file of `rf` rebuilt in `work` and read through the filter (writing nothing), until
/// the stop, keeping the last `recent` transactions, and the rebuilt files when `keep`. A
/// position or GTID the filter did not meet is an error: the replay must not silently run to
/// the archive's end.
async fn filtered(
    storage: &Storage,
    rf: &RollForward,
    source: &str,
    work: &Path,
    (recent, keep): (usize, bool),
) -> Result<Filtered, BinlogRestoreError> {
    let mut done = Filtered::default();
    for file in file_names(rf) {
        let raw = work.join(format!("{file}.raw"));
        rebuild(storage, rf, file, &raw).await?;
        let filter = super::pipe::filter_for(rf, file, (source, None), recent);
        let raw2 = raw.clone();
        let summary = tokio::task::spawn_blocking(move || {
            // Writing nothing: what it would keep.
            super::pipe::filter_raw(&raw2, &mut std::io::sink(), &filter)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(|cause| BinlogRestoreError::Filter {
            file: file.to_string(),
            cause,
        })?;
        if keep {
            done.raws.push((file.to_string(), raw));
        } else {
            let _ = std::fs::remove_file(&raw);
        }
        done.events += summary.events_out;
        done.transactions += summary.transactions;
        done.statements += summary.statements;
        done.tables.extend(summary.tables);
        let tagged = summary.recent.into_iter().map(|t| (file.to_string(), t));
        done.recent.extend(tagged);
        let extra = done.recent.len().saturating_sub(recent);
        done.recent.drain(..extra);
        if let Some((pos, ts)) = summary.stopped_at {
            done.stopped_at = Some((file.to_string(), pos, ts));
            break;
        }
    }
    match rf.stop.target() {
        Some(what) if done.stopped_at.is_none() => Err(BinlogRestoreError::StopNotFound {
            job: rf.job.clone(),
            what,
            dump: format!("{}:{}", rf.from.file, rf.from.pos),
        }),
        _ => Ok(done),
    }
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
        // The key from the segment's place, not the manifest's `object` (it could name any
        // object of the bucket).
        let (object, _) = crate::snapshot::binlog::keys(&rf.job, &s.file, s.start, s.end);
        let packed = storage.get_bytes_max(&object, max).await?;
        let raw = zstd::bulk::decompress(&packed, (s.end - s.start) as usize).unwrap_or_default();
        let got = hex::encode(Sha256::digest(&raw));
        if got != s.sha256 || raw.len() as u64 != s.end - s.start {
            return Err(BinlogRestoreError::Damaged {
                key: object,
                got,
                want: s.sha256.clone(),
                file: file.to_string(),
            });
        }
        f.write_all(&raw).map_err(werr)?;
    }
    f.sync_all().map_err(werr)
}

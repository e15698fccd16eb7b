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
        let f = filtered(storage, rf, (source, Some(target)), work, 0).await?;
        let (files, events, transactions) = (f.files, f.events, f.transactions);
        let (login, client) = (login.clone(), client.to_path_buf());
        let (source, t) = (source.to_string(), target.to_string());
        let w = work.to_path_buf();
        tokio::task::spawn_blocking(move || pipe(&files, &login, &client, (&source, &t), &w))
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
    let result = filtered(storage, rf, (source, None), work, n).await;
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

/// The filtered files and what the filter counted.
#[derive(Default)]
struct Filtered {
    files: Vec<PathBuf>,
    events: u64,
    transactions: u64,
    stopped_at: Option<(String, u64, i64)>,
    recent: Vec<(String, crate::binlog::Transaction)>,
    tables: std::collections::BTreeSet<String>,
    statements: u64,
}

/// Each file of `rf` rebuilt and filtered in `work` (to nothing without a `target`), until
/// the stop, keeping the last `recent` transactions. A position or GTID the filter did not
/// meet is an error: the replay must not silently run to the archive's end.
async fn filtered(
    storage: &Storage,
    rf: &RollForward,
    (source, target): (&str, Option<&str>),
    work: &Path,
    recent: usize,
) -> Result<Filtered, BinlogRestoreError> {
    let mut done = Filtered::default();
    let mut files_in: Vec<&str> = rf.segments.iter().map(|s| s.file.as_str()).collect();
    files_in.dedup();
    for file in files_in {
        let raw = work.join(format!("{file}.raw"));
        rebuild(storage, rf, file, &raw).await?;
        let filtered = target.map(|_| work.join(file));
        let filter = crate::binlog::Filter {
            start_pos: (file == rf.from.file).then_some(rf.from.pos),
            stop_before: (rf.stop == StopAt::Moment).then_some(rf.to.timestamp() + 1),
            stop_at_pos: match &rf.stop {
                StopAt::Position(p) if p.file == file => Some(p.pos),
                _ => None,
            },
            stop_at_gtid: match &rf.stop {
                StopAt::Gtid(g) => Some(g.clone()),
                _ => None,
            },
            tables: (!rf.tables.is_empty()).then(|| rf.tables.iter().cloned().collect()),
            rename_to: target.map(str::to_string),
            recent,
            count_from: rf.count_from.map(|t| t.timestamp()),
            ..crate::binlog::Filter::new(source)
        };
        let (raw2, out2) = (raw.clone(), filtered.clone());
        let summary =
            tokio::task::spawn_blocking(move || filter_one(&raw2, out2.as_deref(), &filter))
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
        done.events += summary.events_out;
        done.transactions += summary.transactions;
        done.statements += summary.statements;
        done.tables.extend(summary.tables);
        done.files.extend(filtered);
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

/// Filters `raw` into `out` (into nothing without one).
fn filter_one(
    raw: &Path,
    out: Option<&Path>,
    filter: &crate::binlog::Filter,
) -> Result<crate::binlog::Summary, String> {
    let mut input = std::io::BufReader::new(std::fs::File::open(raw).map_err(|e| e.to_string())?);
    let mut output: Box<dyn Write> = match out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).map_err(|e| e.to_string())?,
        )),
        None => Box::new(std::io::sink()),
    };
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
    work: &Path,
) -> Result<(), BinlogRestoreError> {
    let fail = |cause: String| BinlogRestoreError::Replay {
        target: target.to_string(),
        cause,
    };
    let tool = crate::mysql_client::which("mariadb-binlog")
        .or_else(|| crate::mysql_client::which("mysqlbinlog"))
        .ok_or_else(|| fail("neither mariadb-binlog nor mysqlbinlog is on PATH".into()))?;
    // Its stderr to a file: a pipe nobody reads while its stdout is copied could fill.
    let err_path = work.join("mariadb-binlog.err");
    let errors = std::fs::File::create(&err_path).map_err(|e| fail(e.to_string()))?;
    // (Its own GTID checks would refuse a replay that starts mid-file; the archive's
    // continuity was checked by the plan.)
    let mut reader = std::process::Command::new(&tool)
        .arg("--skip-gtid-strict-mode")
        .arg(format!("--rewrite-db={source}->{target}"))
        .args(files)
        .env("TZ", "UTC")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(errors)
        .spawn()
        .map_err(|e| fail(format!("cannot run {}: {e}", tool.display())))?;
    let args = crate::restore::sql::load_args(client, target);
    let mut running = match login.login(client).spawn(args, true, false) {
        Ok(r) => r,
        Err(e) => {
            let _ = reader.kill();
            let _ = reader.wait();
            return Err(fail(e.to_string()));
        }
    };
    let mut stdin = running.take_stdin().expect("piped stdin");
    let mut out = reader.stdout.take().expect("piped stdout");
    let copied = std::io::copy(&mut out, &mut stdin);
    drop(stdin);
    if copied.is_err() {
        // The client stopped first: the reader must not wait on a pipe nobody reads.
        let _ = reader.kill();
    }
    drop(out);
    let finished = running.finish().map_err(|e| fail(e.to_string()))?;
    let status = reader.wait().map_err(|e| fail(e.to_string()))?;
    if !finished.status.success() {
        return Err(fail(finished.stderr.trim().to_string()));
    }
    if !status.success() {
        let said = std::fs::read(&err_path).unwrap_or_default();
        let said = String::from_utf8_lossy(&said[..said.len().min(4096)])
            .trim()
            .to_string();
        return Err(fail(crate::quote::printable(&said)));
    }
    copied.map(drop).map_err(|e| fail(e.to_string()))
}

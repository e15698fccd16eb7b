//! One database, streamed: dump tool stdout → zstd → object storage, with bounded memory and no
//! temporary files. The dump is a success only when the tool exits 0, wrote nothing that looks
//! like an error on stderr, and its output ends with the `-- Dump completed` trailer; otherwise
//! the upload is aborted and nothing becomes visible.
//!
//! A blocking thread reads the tool and compresses (CPU work off the async runtime); it hands
//! 1 MiB chunks through a bounded channel to the uploading task. Back-pressure from a slow store
//! stops the reads, which stops the dump tool: memory stays flat whatever the dump's size.

use super::binlog::position::keep_head;
use super::dump_rows::TableCounter;
use crate::config::MysqlJob;
use crate::mysql_client::{with_hint, MysqlError};
use crate::snapshot::manifest::{BinlogPos, TableStats};
use crate::storage::{ObjectWriter, PutInfo, Storage, StorageError};
use bytes::{Bytes, BytesMut};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

const CHUNK: usize = 1 << 20;
const READ_BUF: usize = 256 << 10;
const TRAILER: &[u8] = b"-- Dump completed";
const PIPE_SIZE: usize = 1 << 20;
const ZSTD_JOB: u32 = 2 << 20;

/// Why one database's backup failed (the dump, or committing it).
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// The MySQL tools (finding, starting or asking them).
    #[error(transparent)]
    Mysql(#[from] MysqlError),
    /// `binlog = true` but the dump did not say where it stands in the binary log.
    #[error("the dump wrote no binary log position (hint: is log_bin on? `SHOW VARIABLES LIKE 'log_bin'` must say ON; see check-config --connect)")]
    NoBinlogPos,
    /// The storage (upload, listing).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A worker thread or task failed.
    #[error("{what} failed: {cause}")]
    Task {
        /// Which.
        what: &'static str,
        /// Why.
        cause: String,
    },
    /// The compressor could not be set up.
    #[error("zstd: {cause}")]
    Zstd {
        /// Why.
        cause: String,
    },
    /// The upload stopped taking data (its own error is the cause).
    #[error("the upload stopped")]
    UploadStopped,
    /// Reading the tool's output failed.
    #[error("reading the dump failed: {cause}")]
    Read {
        /// Why.
        cause: String,
    },
    /// The tool exited unsuccessfully; `detail` is its (last) error line.
    #[error("{}", exited(*.status, detail))]
    Exited {
        /// Its exit code (`None`: killed by a signal).
        status: Option<i32>,
        /// Its last error line, or its stderr.
        detail: String,
    },
    /// The tool exited 0 but printed an error.
    #[error("the dump tool reported an error: {}", with_hint(line))]
    Reported {
        /// The first error line.
        line: String,
    },
    /// The output lacks the trailer.
    #[error("the dump ended without its `-- Dump completed` trailer (truncated output)")]
    Truncated,
    /// The store holds another size than was sent.
    #[error("object `{key}` holds {stored:?} bytes after upload, {sent} were sent; not committed")]
    NotStored {
        /// The object.
        key: String,
        /// Its size in the store.
        stored: Option<u64>,
        /// Bytes sent.
        sent: u64,
    },
    /// Writing the manifest failed (`snapshot::commit`): no snapshot.
    #[error(transparent)]
    Commit(crate::storage::StorageError),
}

fn exited(status: Option<i32>, detail: &str) -> String {
    let why = match status {
        Some(c) => format!("the dump tool exited with status {c}"),
        None => "the dump tool was killed by a signal".to_string(),
    };
    if detail.is_empty() {
        why
    } else {
        format!("{why}: {}", with_hint(detail))
    }
}

/// What one dump adds to the job's settings (see `mysql_inspect`).
#[derive(Debug, Clone, Default)]
pub struct DumpOptions {
    /// Arguments after the job's `extra_args`.
    pub args: Vec<String>,
    /// SQL put in front of the tool's output (after its sandbox-mode first line).
    pub preamble: Vec<u8>,
    /// The IO class and nice value the dump tool runs at (`[agent] io_priority`, `nice`).
    pub priority: Option<crate::priority::Priority>,
}

/// The arguments for dumping `db` (after the credentials argument, which must come first).
pub fn dump_args(job: &MysqlJob, db: &str, more: &[String]) -> Vec<String> {
    let mut a: Vec<String> = [
        "--single-transaction",
        "--quick",
        "--routines",
        "--triggers",
        "--events",
        "--hex-blob",
        "--default-character-set=utf8mb4",
        "--max-allowed-packet=1G",
        "--skip-dump-date",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(job.extra_args.iter().cloned());
    a.extend(more.iter().cloned());
    a.extend(super::binlog::position::dump_arg(job));
    // One database, without CREATE DATABASE/USE, so it restores under any name.
    a.push("--".to_string());
    a.push(db.to_string());
    a
}

/// A stored dump.
#[derive(Debug, Clone)]
pub struct Dumped {
    /// The object.
    pub put: PutInfo,
    /// Uncompressed SQL bytes.
    pub raw_size: u64,
    /// Rows and bytes per table, counted in the stream (see `dump_rows`).
    pub tables: Vec<TableStats>,
    /// Where the snapshot stands in the server's binary log (`--master-data=2`), when asked.
    pub binlog: Option<BinlogPos>,
}

/// Dumps `db` into `key`. On any failure the upload is aborted; the error says why.
pub async fn dump_to(
    storage: &Storage,
    job: &MysqlJob,
    tool: &Path,
    db: &str,
    key: &str,
    progress: Option<Arc<AtomicU64>>,
    opts: &DumpOptions,
) -> Result<Dumped, DumpError> {
    let mut writer = storage.writer(key).await?;
    let (tx, mut rx) = mpsc::channel::<Bytes>(4);
    let (job2, tool2, db2, opts2) = (
        job.clone(),
        tool.to_path_buf(),
        db.to_string(),
        opts.clone(),
    );
    let producer =
        tokio::task::spawn_blocking(move || produce(&job2, &tool2, &db2, &opts2, tx, progress));
    let mut upload_err = None;
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = writer.write(chunk).await {
            upload_err = Some(e);
            break;
        }
    }
    drop(rx);
    let produced = producer.await.unwrap_or_else(|e| {
        Err(DumpError::Task {
            what: "dump thread",
            cause: e.to_string(),
        })
    });
    match (upload_err, produced) {
        (None, Ok((raw_size, tables, binlog))) => {
            let put = writer.finish().await?;
            Ok(Dumped {
                put,
                raw_size,
                tables,
                binlog,
            })
        }
        (Some(up), _) => abort(writer, up.into()).await,
        (None, Err(e)) => abort(writer, e).await,
    }
}

async fn abort(writer: ObjectWriter, why: DumpError) -> Result<Dumped, DumpError> {
    if let Err(e) = writer.abort().await {
        tracing::warn!(error = %e, "could not abort the upload; it will be cleaned up later");
    }
    Err(why)
}

/// Sends compressed output to the channel in `CHUNK`-sized pieces.
struct ChunkSender {
    buf: BytesMut,
    tx: mpsc::Sender<Bytes>,
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "upload stopped"))
    }
}

/// Runs the dump tool and compresses its output into `tx`. Returns the raw byte count and
/// what each table holds.
fn produce(
    job: &MysqlJob,
    tool: &Path,
    db: &str,
    opts: &DumpOptions,
    tx: mpsc::Sender<Bytes>,
    progress: Option<Arc<AtomicU64>>,
) -> Result<(u64, Vec<TableStats>, Option<BinlogPos>), DumpError> {
    let client = job.login(tool).with_priority(opts.priority);
    let mut running = client.spawn(dump_args(job, db, &opts.args), false, true)?;
    let mut stdout = running.take_stdout().expect("piped stdout");
    // A deeper pipe lets the dump tool run ahead while a chunk is compressed (best effort).
    let _ = rustix::pipe::fcntl_setpipe_size(&stdout, PIPE_SIZE);
    let streamed = stream(
        &mut stdout,
        job.compression_level,
        &opts.preamble,
        tx,
        progress,
    );
    if streamed.is_err() {
        running.kill();
    }
    drop(stdout);
    let finished = running.finish()?;
    let s = streamed?;
    check_outcome(finished.status, &finished.stderr, &s.tail)?;
    let binlog = super::binlog::position::of_dump(job, &s.head)?;
    Ok((s.raw, s.tables.finish(), binlog))
}

/// What [`stream`] read: the raw byte count, the output's last bytes (for the trailer), the
/// tables' counts.
struct Streamed {
    raw: u64,
    /// The output's first `HEAD_KEEP` bytes (where `--master-data` writes its position).
    head: Vec<u8>,
    tail: Vec<u8>,
    tables: TableCounter,
}

fn stream(
    src: &mut impl Read,
    level: i32,
    preamble: &[u8],
    tx: mpsc::Sender<Bytes>,
    progress: Option<Arc<AtomicU64>>,
) -> Result<Streamed, DumpError> {
    let sink = ChunkSender {
        buf: BytesMut::with_capacity(CHUNK + READ_BUF),
        tx,
    };
    let zstd = |e: std::io::Error| DumpError::Zstd {
        cause: e.to_string(),
    };
    let mut enc = zstd::Encoder::new(sink, level).map_err(zstd)?;
    // Compress in a zstd worker thread so reading the dump never waits for compression.
    // Small jobs keep zstd's buffers (and so the process's memory) to a few MiB.
    enc.multithread(1).map_err(zstd)?;
    enc.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB))
        .map_err(zstd)?;
    let mut buf = vec![0u8; READ_BUF];
    let mut tail: Vec<u8> = Vec::with_capacity(1024);
    let mut head: Vec<u8> = Vec::new();
    let mut raw = 0u64;
    let mut tables = TableCounter::default();
    let upload_stopped = |_| DumpError::UploadStopped;
    let mut preamble = (!preamble.is_empty()).then_some(preamble);
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(DumpError::Read {
                    cause: e.to_string(),
                })
            }
        };
        if let Some(p) = preamble.take() {
            let at = after_sandbox_line(&buf[..n]);
            enc.write_all(&buf[..at]).map_err(upload_stopped)?;
            enc.write_all(p).map_err(upload_stopped)?;
            enc.write_all(&buf[at..n]).map_err(upload_stopped)?;
            raw += p.len() as u64;
        } else {
            enc.write_all(&buf[..n]).map_err(upload_stopped)?;
        }
        raw += n as u64;
        tables.feed(&buf[..n]);
        if let Some(p) = &progress {
            p.fetch_add(n as u64, Ordering::Relaxed);
        }
        keep_head(&mut head, &buf[..n]);
        let keep = n.min(512);
        tail.extend_from_slice(&buf[n - keep..n]);
        if tail.len() > 512 {
            tail.drain(..tail.len() - 512);
        }
    }
    let mut sink = enc.finish().map_err(upload_stopped)?;
    sink.flush().map_err(upload_stopped)?;
    Ok(Streamed {
        raw,
        head,
        tail,
        tables,
    })
}

/// Where the preamble goes in the first piece of output: after the sandbox-mode marker line
/// (`/*M!999999\- enable the sandbox mode */`, which newer clients honour only as the first
/// line), else at the very start.
fn after_sandbox_line(first: &[u8]) -> usize {
    if first.starts_with(b"/*M!999999") {
        if let Some(i) = first.iter().position(|b| *b == b'\n') {
            return i + 1;
        }
    }
    0
}

/// Decides whether a finished dump is complete.
pub fn check_outcome(
    status: std::process::ExitStatus,
    stderr: &str,
    tail: &[u8],
) -> Result<(), DumpError> {
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("error"))
        .collect();
    if !status.success() {
        let detail = if errors.is_empty() {
            stderr.trim()
        } else {
            errors.last().map(|s| s.trim()).unwrap_or("")
        };
        return Err(DumpError::Exited {
            status: status.code(),
            detail: detail.to_string(),
        });
    }
    if let Some(e) = errors.first() {
        return Err(DumpError::Reported {
            line: e.trim().to_string(),
        });
    }
    let last_line = tail
        .strip_suffix(b"\n")
        .unwrap_or(tail)
        .rsplit(|b| *b == b'\n')
        .next()
        .unwrap_or(b"");
    if !last_line.starts_with(TRAILER) {
        return Err(DumpError::Truncated);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn ok() -> std::process::ExitStatus {
        std::process::ExitStatus::from_raw(0)
    }

    #[test]
    fn preamble_goes_after_the_sandbox_line() {
        let out = |src: &[u8]| {
            let (tx, mut rx) = mpsc::channel(16);
            let raw = stream(&mut &src[..], 1, b"PRE;\n", tx, None).unwrap().raw;
            let mut all = Vec::new();
            while let Ok(c) = rx.try_recv() {
                all.extend_from_slice(&c);
            }
            (raw, zstd::decode_all(&all[..]).unwrap())
        };
        let sandbox = b"/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump\n";
        let (raw, sql) = out(sandbox);
        assert_eq!(raw, sandbox.len() as u64 + 5);
        assert!(sql.starts_with(b"/*M!999999") && sql.ends_with(b"\nPRE;\n-- MariaDB dump\n"));
        assert_eq!(out(b"-- MySQL dump\n").1, b"PRE;\n-- MySQL dump\n");
    }

    #[test]
    fn outcome_table() {
        let done = b"INSERT ...;\n-- Dump completed\n";
        assert!(check_outcome(ok(), "", done).is_ok());
        assert!(check_outcome(ok(), "", b"INSERT ...;\n")
            .unwrap_err()
            .to_string()
            .contains("trailer"));
        let e = check_outcome(
            std::process::ExitStatus::from_raw(2 << 8),
            "mariadb-dump: Got error: 1045: Access denied",
            b"",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("status 2") && e.contains("1045") && e.contains("password"),
            "{e}"
        );
        assert!(
            check_outcome(std::process::ExitStatus::from_raw(9), "", done)
                .unwrap_err()
                .to_string()
                .contains("signal")
        );
        assert!(check_outcome(ok(), "mariadb-dump: Error 2013: Lost connection", done).is_err());
        assert!(check_outcome(ok(), "Warning: something harmless", done).is_ok());
    }
}

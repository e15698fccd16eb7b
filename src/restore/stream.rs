//! Streaming a stored dump out of storage, checking its sha256 on the way: into a MySQL client
//! (decrypted when it is an age file, then decompressed), or into a file. The hash is of the
//! stored bytes (the ciphertext when encrypted); the last chunk is held back until the whole
//! object's hash is known, so a corrupted object never reaches the end of its SQL: the consumer
//! is stopped, and the caller drops whatever was loaded. (A flipped byte in an encrypted dump
//! already fails age's authentication of its 64 KiB chunk, naming the object the same way.)

use super::error::FileError;
use super::rewrite::Definers;
use super::RestoreError;
use crate::config::MysqlJob;
use crate::snapshot::manifest::ObjectRef;
use crate::storage::Storage;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// Reads `obj`, verifying size and sha256, and hands its bytes to `tx`; the last chunk only
/// after the hash matched. On mismatch sets `abort` and returns the error naming the object.
async fn feed(
    storage: &Storage,
    obj: &ObjectRef,
    tx: mpsc::Sender<Bytes>,
    abort: &AtomicBool,
    progress: Option<&AtomicU64>,
) -> Result<(), RestoreError> {
    let result = feed_inner(storage, obj, &tx, progress).await;
    if result.is_err() {
        abort.store(true, Ordering::SeqCst);
    }
    result
}

async fn feed_inner(
    storage: &Storage,
    obj: &ObjectRef,
    tx: &mpsc::Sender<Bytes>,
    progress: Option<&AtomicU64>,
) -> Result<(), RestoreError> {
    let mut reader = storage.raw_reader(&obj.key).await?;
    let mut hash = Sha256::new();
    let mut size = 0u64;
    let mut held: Option<Bytes> = None;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .await
            .map_err(|e| RestoreError::ReadObject {
                key: obj.key.clone(),
                cause: e.to_string(),
            })?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        size += n as u64;
        if let Some(p) = progress {
            p.fetch_add(n as u64, Ordering::Relaxed);
        }
        if let Some(prev) = held.replace(Bytes::copy_from_slice(&buf[..n])) {
            tx.send(prev).await.map_err(|_| RestoreError::Stopped)?;
        }
    }
    let got = hex::encode(hash.finalize());
    if size != obj.size || got != obj.sha256 {
        return Err(RestoreError::Corrupt {
            key: obj.key.clone(),
            size,
            sha256: got,
            want_size: obj.size,
            want_sha256: obj.sha256.clone(),
        });
    }
    if let Some(last) = held {
        tx.send(last).await.map_err(|_| RestoreError::Stopped)?;
    }
    Ok(())
}

/// A blocking `Read` over the channel.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

/// Loads the dump `obj` of database `source` into database `target` with the MySQL client,
/// logged in as `login` (the load account that may only touch `target`, see `sandbox`); `job`
/// is the restore user's own connection. Returns the definers the dump named.
pub async fn load_into_database(
    storage: &Storage,
    (job, login): (&MysqlJob, &MysqlJob),
    client: &Path,
    obj: &ObjectRef,
    (source, target, tables): (&str, &str, &[String]),
    progress: Option<Arc<AtomicU64>>,
) -> Result<Definers, RestoreError> {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let abort = Arc::new(AtomicBool::new(false));
    let (job2, client2, abort2) = (
        (job.clone(), login.clone()),
        client.to_path_buf(),
        abort.clone(),
    );
    let names = (source.to_string(), target.to_string(), tables.to_vec());
    let (storage2, key) = (storage.clone(), obj.key.clone());
    let consumer = tokio::task::spawn_blocking(move || {
        let stored = ChannelReader {
            rx,
            cur: Bytes::new(),
        };
        // Decrypts when the object is an age file; reads of the header wait on the channel.
        let plain = storage2
            .decrypting_read(&key, stored)
            .map_err(RestoreError::from);
        run_client(&job2, &client2, &names, plain, &abort2)
    });
    let fed = feed(storage, obj, tx, &abort, progress.as_deref()).await;
    let consumed = consumer.await.unwrap_or_else(|e| {
        Err(RestoreError::Task {
            what: Some("restore thread"),
            cause: e.to_string(),
        })
    });
    match (fed, consumed) {
        // The client failed first: its error is the cause, the feeder only saw it stop.
        (_, Err(c)) if !matches!(c, RestoreError::Aborted) => Err(c),
        (Err(f), _) => Err(f),
        (Ok(()), r) => r,
    }
}

fn run_client(
    (job, login): &(MysqlJob, MysqlJob),
    client: &Path,
    (source, target, tables): &(String, String, Vec<String>),
    plain: Result<Box<dyn Read + Send>, RestoreError>,
    abort: &Arc<AtomicBool>,
) -> Result<Definers, RestoreError> {
    let raised = super::sql::GlobalRaise::for_load(job, client);
    let result = load(login, client, (target, source, tables), plain, abort);
    for r in raised {
        r.restore(job, client);
    }
    result
}

fn load(
    job: &MysqlJob,
    client: &Path,
    (target, source, tables): (&str, &str, &[String]),
    plain: Result<Box<dyn Read + Send>, RestoreError>,
    abort: &Arc<AtomicBool>,
) -> Result<Definers, RestoreError> {
    let rename = (source != target).then_some(source);
    let plain = plain?;
    let sql = zstd::Decoder::new(plain).map(|dec| {
        let sql = std::io::BufReader::with_capacity(1 << 20, dec);
        let sql: Box<dyn std::io::BufRead> = match tables {
            [] => Box::new(sql),
            _ => Box::new(std::io::BufReader::with_capacity(
                1 << 20,
                super::tables::TableFilter::new(sql, tables),
            )),
        };
        sql
    });
    let threads = job.restore_threads;
    super::parallel::load((job, client), (target, rename), sql, threads, abort).map(|r| r.definers)
}

/// The client's error for a load into `target`. Refused privileges of the load account mean
/// the dump reached for something outside its target: said so, not "grant more".
pub(super) fn load_error(target: &str, err: &str) -> RestoreError {
    let stderr = err.trim().to_string();
    let target = target.to_string();
    let denied = [1044, 1142, 1227, 1370]
        .iter()
        .any(|n| crate::mysql_client::code(&stderr, *n));
    if denied && stderr.contains(super::sandbox::PREFIX) {
        return RestoreError::LoadOutside { target, stderr };
    }
    RestoreError::Load { target, stderr }
}

/// Writes the dump to `path`: the stored bytes as they are when the path ends in `.age`, the
/// `.sql.zst` (decrypted if need be) when it ends in `.zst`, plain SQL otherwise. Written to a
/// temporary name and renamed only when the hash matched.
pub async fn write_file(
    storage: &Storage,
    obj: &ObjectRef,
    path: &Path,
    progress: Option<Arc<AtomicU64>>,
) -> Result<(), RestoreError> {
    // `<file>.partial`, then `<file>`, in the directory `path` names (opened once, by path):
    // created O_EXCL|O_NOFOLLOW with mode 0600 and renamed without replacing anything, so a
    // symlink or file planted at either name is refused, never followed, truncated or replaced.
    let Some(name) = path.file_name() else {
        return Err(FileError::NoName {
            path: path.to_path_buf(),
        }
        .into());
    };
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".partial");
    let tmp = path.with_file_name(&tmp_name);
    let parent = path.parent().unwrap_or(Path::new(""));
    let dir = crate::nofollow::Dir::open(parent, Path::new(""), false).map_err(|e| {
        FileError::OpenDir {
            path: path.to_path_buf(),
            cause: e.to_string(),
        }
    })?;
    let f = dir.create_new(&tmp_name, 0o600).map_err(|e| {
        let what = match crate::nofollow::symlink_in(&e) {
            Some(_) => "a symlink",
            None if e.kind() == std::io::ErrorKind::AlreadyExists => {
                "left by an interrupted restore, or planted"
            }
            None => {
                return FileError::Create {
                    path: tmp.clone(),
                    cause: e.to_string(),
                }
            }
        };
        FileError::Planted {
            path: tmp.clone(),
            what,
        }
    })?;
    let result = copy_to_file(storage, obj, path, (f, &tmp), progress).await;
    let result = result.and_then(|()| {
        dir.rename_noreplace(&tmp_name, name)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => FileError::Exists {
                    path: path.to_path_buf(),
                },
                _ => FileError::Rename {
                    from: tmp.clone(),
                    to: path.to_path_buf(),
                    cause: e.to_string(),
                },
            })
            .map_err(RestoreError::from)
    });
    if result.is_err() {
        let _ = dir.remove(&tmp_name);
    }
    result
}

/// Streams `obj` into `f` (the temporary file `tmp`) as [`write_file`] says for `path`.
async fn copy_to_file(
    storage: &Storage,
    obj: &ObjectRef,
    path: &Path,
    (mut f, tmp): (std::fs::File, &Path),
    progress: Option<Arc<AtomicU64>>,
) -> Result<(), RestoreError> {
    let compressed = path.extension().is_some_and(|e| e == "zst");
    let stored_as_is = path.extension().is_some_and(|e| e == "age");
    let (storage2, key) = (storage.clone(), obj.key.clone());
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let abort = Arc::new(AtomicBool::new(false));
    let tmp2 = tmp.to_path_buf();
    let consumer = tokio::task::spawn_blocking(move || -> Result<(), RestoreError> {
        let mut src: Box<dyn Read + Send> = Box::new(ChannelReader {
            rx,
            cur: Bytes::new(),
        });
        if !stored_as_is {
            src = storage2.decrypting_read(&key, src)?;
        }
        let r = if compressed || stored_as_is {
            std::io::copy(&mut src, &mut f).map(|_| ())
        } else {
            zstd::Decoder::new(src)
                .and_then(|mut d| std::io::copy(&mut d, &mut f))
                .map(|_| ())
        };
        r.and_then(|_| f.flush())
            .and_then(|_| f.sync_all())
            .map_err(|e| {
                FileError::Write {
                    path: tmp2,
                    cause: e.to_string(),
                }
                .into()
            })
    });
    let fed = feed(storage, obj, tx, &abort, progress.as_deref()).await;
    let consumed = consumer
        .await
        .unwrap_or_else(|e| Err(RestoreError::task(e)));
    // The consumer's error is the cause when it stopped first (e.g. a chunk failing age's check).
    match fed {
        Err(RestoreError::Stopped) => consumed.and(Err(RestoreError::Stopped)),
        fed => fed.and(consumed),
    }
}

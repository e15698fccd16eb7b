//! A local directory as storage: `<path>/<prefix>/<key>`, one file per object.
//!
//! Uploads go to a temp file in `<path>/<prefix>/.opsagent-tmp/`, are fsynced, renamed into
//! place and the target directory is fsynced, so an object is either complete or absent,
//! also after a crash. The temp directory never shows in listings and its name is not
//! allowed as a key segment. Deleting an object removes directories it leaves empty.
//! Temp files left by killed runs are swept at the next upload, at most hourly (see
//! `local_tmp`).
//!
//! Objects are created `O_EXCL|O_NOFOLLOW` with mode 0600, directories 0700: dumps are
//! readable by the agent's user only, whatever the umask.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::fs;

use super::error::{ErrorContext, Op};
use super::key::normalize_prefix;
use super::local_tmp;
use super::local_write::LocalWriter;
use super::{Backend, BackendWriter, ObjectInfo, ObjectReader, StorageError, StorageFuture};

/// Name of the temp directory under the storage root.
pub(crate) const TMP_DIR: &str = ".opsagent-tmp";

/// Makes temp file names unique within the process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// What to check when the OS says "permission denied".
const DENIED_HINT: &str = "check the owner and mode of the directory; opsagent reads and \
                           writes it as its own user";

/// Where a local backend's files are, and how to describe it.
pub(super) struct Place {
    /// `<path>/<prefix>`.
    pub(super) root: PathBuf,
    /// The configured `path`, which must exist.
    base: PathBuf,
    /// `local directory /srv/backups/web-01/`.
    describe: String,
    /// When the temp directory was last swept for leftovers.
    swept: Mutex<Option<Instant>>,
}

impl Place {
    fn ctx<'a>(&'a self, op: Op, key: &'a str) -> ErrorContext<'a> {
        ErrorContext::new(&self.describe, op, key)
    }

    /// Turns an I/O error into a [`StorageError`]; `doing` says what failed on which path.
    pub(super) fn error(&self, op: Op, key: &str, doing: String, err: io::Error) -> StorageError {
        let ctx = self.ctx(op, key);
        let cause = format!("{doing}: {err}");
        match err.kind() {
            io::ErrorKind::NotFound if matches!(op, Op::Download | Op::Stat) => ctx.not_found(),
            io::ErrorKind::PermissionDenied => ctx.denied(cause, DENIED_HINT),
            io::ErrorKind::StorageFull => {
                ctx.failed(cause, "free space on that disk, or prune old backups")
            }
            io::ErrorKind::ReadOnlyFilesystem => ctx.failed(cause, "remount it read-write"),
            _ => ctx.failed(cause, "check the disk and the directory"),
        }
    }
}

/// The local directory backend.
pub(crate) struct LocalBackend {
    place: Arc<Place>,
}

impl LocalBackend {
    /// Configures the backend. No I/O.
    pub(crate) fn new(path: &Path, prefix: &str) -> Result<Self, StorageError> {
        let config_error = |reason: String| StorageError::Config {
            backend: format!("local directory {}", path.display()),
            reason,
            hint: "fix `path` and `prefix` in the storage settings".into(),
        };
        if path.as_os_str().is_empty() {
            return Err(config_error("the directory path is empty".into()));
        }
        let prefix = normalize_prefix(prefix).map_err(|e| config_error(e.to_string()))?;
        if prefix.split('/').any(|segment| segment == TMP_DIR) {
            return Err(config_error(format!("`{TMP_DIR}` is reserved")));
        }
        let root = path.join(prefix.trim_end_matches('/'));
        let describe = format!("local directory {}/", root.display()).replace("//", "/");
        let base = path.to_path_buf();
        Ok(LocalBackend {
            place: Arc::new(Place {
                root,
                base,
                describe,
                swept: Mutex::new(None),
            }),
        })
    }

    fn path_of(&self, key: &str) -> PathBuf {
        self.place.root.join(key)
    }

    fn check_reserved(key: &str) -> Result<(), StorageError> {
        if key.split('/').any(|segment| segment == TMP_DIR) {
            return Err(StorageError::InvalidKey {
                key: key.to_string(),
                reason: "`.opsagent-tmp` is reserved for unfinished uploads",
            });
        }
        Ok(())
    }

    async fn start_upload(&self, key: &str) -> Result<LocalWriter, StorageError> {
        Self::check_reserved(key)?;
        let place = &self.place;
        let tmp_dir = place.root.join(TMP_DIR);
        let fail = |doing: String, err| place.error(Op::Upload, key, doing, err);
        private_dirs(&tmp_dir)
            .await
            .map_err(|e| fail(format!("cannot create {}", tmp_dir.display()), e))?;
        local_tmp::sweep_now_and_then(&self.place.swept, &tmp_dir).await;
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp_path = tmp_dir.join(format!("{}-{n}.tmp", std::process::id()));
        // O_EXCL, never through a symlink, 0600 whatever the umask: dumps are private.
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp_path)
            .await
            .map_err(|e| fail(format!("cannot create {}", tmp_path.display()), e))?;
        // Held until the file is renamed or removed: tells a sweep that it is being written.
        local_tmp::lock(&file)
            .map_err(|e| fail(format!("cannot lock {}", tmp_path.display()), e))?;
        Ok(LocalWriter {
            place: self.place.clone(),
            key: key.to_string(),
            final_path: self.path_of(key),
            tmp_path,
            file: Some(file),
            done: false,
        })
    }

    async fn open_reader(&self, key: &str) -> Result<ObjectReader, StorageError> {
        let path = self.path_of(key);
        let fail = |e| {
            let doing = format!("cannot open {}", path.display());
            self.place.error(Op::Download, key, doing, e)
        };
        let file = fs::File::open(&path).await.map_err(fail)?;
        let meta = file.metadata().await.map_err(fail)?;
        if !meta.is_file() {
            return Err(self.place.ctx(Op::Download, key).not_found());
        }
        let what = format!("cannot download `{key}` from {}", self.place.describe);
        Ok(ObjectReader::new(file, Some(meta.len()), what))
    }

    async fn remove(&self, key: &str) -> Result<(), StorageError> {
        Self::check_reserved(key)?;
        let path = self.path_of(key);
        match fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if no_such_file(&e) => return Ok(()),
            Err(e) => {
                let doing = format!("cannot remove {}", path.display());
                return Err(self.place.error(Op::Delete, key, doing, e));
            }
        }
        // Prune directories left empty, up to the root; stops at the first non-empty one.
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| *d != self.place.root && d.starts_with(&self.place.root))
        {
            if fs::remove_dir(d).await.is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    async fn is_file(&self, key: &str) -> Result<bool, StorageError> {
        let path = self.path_of(key);
        match fs::metadata(&path).await {
            Ok(meta) => Ok(meta.is_file()),
            Err(e) if no_such_file(&e) => Ok(false),
            Err(e) => {
                let doing = format!("cannot stat {}", path.display());
                Err(self.place.error(Op::Stat, key, doing, e))
            }
        }
    }

    async fn check(&self) -> Result<(), StorageError> {
        let place = &self.place;
        let dir = if fs::metadata(&place.root).await.is_ok() {
            &place.root
        } else {
            &place.base
        };
        let result = fs::read_dir(dir).await;
        result.map(drop).map_err(|e| {
            let doing = format!("cannot read directory {}", dir.display());
            match e.kind() {
                io::ErrorKind::NotFound => place.ctx(Op::List, "").failed(
                    format!("{doing}: it does not exist"),
                    "create it (owned by the opsagent user), or fix `path`",
                ),
                _ => place.error(Op::List, "", doing, e),
            }
        })
    }
}

/// Creates `dir` and its missing parents, mode 0700.
pub(super) async fn private_dirs(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .await
}

/// Whether `err` means "there is no file at that path" (missing, a directory, or a file
/// where a directory was expected).
fn no_such_file(err: &io::Error) -> bool {
    use io::ErrorKind::{IsADirectory, NotADirectory, NotFound};
    matches!(err.kind(), NotFound | NotADirectory | IsADirectory)
}

/// Walks `root` for files whose key starts with `prefix`; skips the temp directory.
fn walk(root: &Path, prefix: &str) -> io::Result<Vec<ObjectInfo>> {
    let start = prefix.rsplit_once('/').map_or("", |(dir, _)| dir);
    let mut stack = vec![(root.join(start), start.to_string())];
    let mut objects = Vec::new();
    while let Some((dir, rel)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if no_such_file(&e) => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                tracing::warn!(path = %entry.path().display(), "skipping a non-UTF-8 file name");
                continue;
            };
            if name == TMP_DIR {
                continue;
            }
            let key = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                let dir_key = format!("{key}/");
                if dir_key.starts_with(prefix) || prefix.starts_with(&dir_key) {
                    stack.push((entry.path(), key));
                }
            } else if file_type.is_file() && key.starts_with(prefix) {
                match entry.metadata() {
                    Ok(meta) => objects.push(ObjectInfo {
                        key,
                        size: meta.len(),
                    }),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(objects)
}

impl Backend for LocalBackend {
    fn describe(&self) -> &str {
        &self.place.describe
    }

    fn check_access(&self) -> StorageFuture<'_, ()> {
        Box::pin(self.check())
    }

    fn writer<'a>(&'a self, key: &'a str) -> StorageFuture<'a, Box<dyn BackendWriter>> {
        Box::pin(async move {
            let writer = self.start_upload(key).await?;
            Ok(Box::new(writer) as Box<dyn BackendWriter>)
        })
    }

    fn reader<'a>(&'a self, key: &'a str) -> StorageFuture<'a, ObjectReader> {
        Box::pin(self.open_reader(key))
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StorageFuture<'a, Vec<ObjectInfo>> {
        let place = self.place.clone();
        let owned = prefix.to_string();
        Box::pin(async move {
            let root = place.root.clone();
            let walked = tokio::task::spawn_blocking(move || walk(&root, &owned)).await;
            let doing = format!("cannot walk {}", place.root.display());
            match walked {
                Ok(result) => result.map_err(|e| place.error(Op::List, prefix, doing, e)),
                Err(join) => Err(place.ctx(Op::List, prefix).failed(join, "this is a bug")),
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StorageFuture<'a, ()> {
        Box::pin(self.remove(key))
    }

    fn exists<'a>(&'a self, key: &'a str) -> StorageFuture<'a, bool> {
        Box::pin(self.is_file(key))
    }
}

//! The writer of the local directory backend: an upload into a private temp file, fsynced,
//! renamed into place and the directory fsynced on `finish`; removed on `abort` or drop.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use tokio::fs;
use tokio::io::AsyncWriteExt;

use super::error::Op;
use super::local::{private_dirs, Place};
use super::{BackendWriter, StorageError, StorageFuture};

/// An upload into a temp file, renamed into place on `finish`.
pub(super) struct LocalWriter {
    pub(super) place: Arc<Place>,
    pub(super) key: String,
    pub(super) tmp_path: PathBuf,
    pub(super) final_path: PathBuf,
    pub(super) file: Option<fs::File>,
    /// Set once the temp file is renamed or removed.
    pub(super) done: bool,
}

impl LocalWriter {
    fn error(&self, doing: String, err: io::Error) -> StorageError {
        self.place.error(Op::Upload, &self.key, doing, err)
    }

    async fn append(&mut self, data: Bytes) -> Result<(), StorageError> {
        let file = self.file.as_mut().expect("file is open until finish/abort");
        if let Err(e) = file.write_all(&data).await {
            return Err(self.error(format!("cannot write {}", self.tmp_path.display()), e));
        }
        Ok(())
    }

    /// fsync the temp file, rename it into place, fsync the directory.
    async fn commit(&mut self) -> Result<(), StorageError> {
        let mut file = self.file.take().expect("file is open until finish/abort");
        let tmp = self.tmp_path.display().to_string();
        file.flush()
            .await
            .map_err(|e| self.error(format!("cannot write {tmp}"), e))?;
        file.sync_all()
            .await
            .map_err(|e| self.error(format!("cannot fsync {tmp}"), e))?;
        // `file` (and its lock) stays open until the rename, so a sweep never takes it.
        let parent = self
            .final_path
            .parent()
            .unwrap_or(&self.place.root)
            .to_path_buf();
        let mut tries = 0;
        loop {
            let created = private_dirs(&parent).await;
            let renamed = match created {
                Ok(()) => fs::rename(&self.tmp_path, &self.final_path).await,
                Err(e) => Err(e),
            };
            match renamed {
                Ok(()) => break,
                // A concurrent delete may have pruned the directory just now: try again.
                Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 3 => tries += 1,
                Err(e) => {
                    let doing = format!("cannot move {tmp} to {}", self.final_path.display());
                    return Err(self.error(doing, e));
                }
            }
        }
        self.done = true;
        drop(file);
        let dir = fs::File::open(&parent).await;
        let synced = match dir {
            Ok(dir) => dir.sync_all().await,
            Err(e) => Err(e),
        };
        synced.map_err(|e| self.error(format!("cannot fsync {}", parent.display()), e))
    }

    fn remove_tmp(&mut self) -> io::Result<()> {
        self.file = None;
        self.done = true;
        match std::fs::remove_file(&self.tmp_path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

impl BackendWriter for LocalWriter {
    fn write(&mut self, data: Bytes) -> StorageFuture<'_, ()> {
        Box::pin(self.append(data))
    }

    fn finish(self: Box<Self>) -> StorageFuture<'static, ()> {
        let mut this = self;
        Box::pin(async move {
            let result = this.commit().await;
            if result.is_err() && !this.done {
                let _ = this.remove_tmp();
            }
            result
        })
    }

    fn abort(self: Box<Self>) -> StorageFuture<'static, ()> {
        let mut this = self;
        Box::pin(async move {
            this.remove_tmp().map_err(|e| {
                let doing = format!("cannot remove {}", this.tmp_path.display());
                this.place.error(Op::Abort, &this.key, doing, e)
            })
        })
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        if !self.done {
            if let Err(err) = self.remove_tmp() {
                tracing::warn!(path = %self.tmp_path.display(), %err, "cannot remove temp file");
            }
        }
    }
}

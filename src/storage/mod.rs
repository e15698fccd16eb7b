//! Object storage: where MySQL dumps and media packs go. The bucket (or directory) is the
//! source of truth; the catalog only caches what is in it.
//!
//! [`Storage`] is the one type the rest of opsagent codes against. [`Storage::open`] chooses a
//! backend from a [`StorageSpec`] with a single `match` (model: rustic_core's `choose.rs`);
//! each backend is one file behind the small [`Backend`] trait:
//!
//! - `local.rs`: a directory, written by hand on std/tokio fs. Objects appear atomically:
//!   temp file in `.opsagent-tmp/`, fsync, rename, fsync of the directory.
//! - `s3.rs`: S3 and compatibles (MinIO, B2, moto) through opendal; no hand-written signing.
//!   It builds an opendal operator that `opendal_backend.rs` runs, with retries and timeouts.
//! - [`Storage::in_memory`]: opendal's memory service, for tests of other modules.
//!
//! `multipart/write.rs` is the streaming multipart upload shared by the opendal backends: parts
//! that grow with the stream (S3 allows 10 000), one part in flight, about three parts in memory;
//! `multipart/abort.rs` lists the uploads left open and aborts them, signed by `sign.rs`.
//!
//! Bandwidth limits (`max_upload_rate`, `max_download_rate`): `rate.rs` decorates any backend
//! so its transfers take their bytes from the process's token bucket of that storage.
//!
//! S3 Object Lock (`object_lock` on a storage): `lock.rs` locks every object as it is written,
//! `versions.rs` deletes every unlocked version of a key (prune) and reads the versions hidden
//! behind delete markers ([`Storage::undeleted`], for a restore), `multipart/object_lock.rs`
//! reads the bucket's settings and extends or reads one object's lock.
//!
//! Keys are relative to the configured prefix (see `key.rs` for the rules). Uploads stream
//! through an [`ObjectWriter`] with bounded memory and become visible only on
//! [`ObjectWriter::finish`]; a failed, aborted or dropped upload leaves nothing behind.

mod copy;
mod crypt;
mod error;
mod key;
mod local;
mod local_tmp;
mod local_write;
mod lock;
pub mod multipart;
mod object;
mod opendal_backend;
mod rate;
mod s3;
mod sign;
mod versions;
mod wire;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::io::AsyncReadExt;

use crate::priority::Priority;
use crate::secret::Secret;

pub use crypt::{
    parse_recipient, parse_recipients_file, read_identity_file, stays_plaintext, BadRecipient,
    CannotDecrypt, EncryptionSpec, IdentityError, AGE_MAGIC,
};
pub use error::{Op, StorageError};
pub use key::validate_key;
pub use lock::ObjectLock;
pub use object::{ObjectReader, ObjectWriter};
pub use rate::RateLimits;

/// Where objects are stored. Owned by this adapter; the config module converts to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageSpec {
    /// A local directory (a mounted disk, an NFS share).
    Local {
        /// The directory; created on the first upload if missing.
        path: PathBuf,
        /// Sub-directory for this host's objects (`web-01`); may be empty.
        prefix: String,
    },
    /// An S3-compatible bucket.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix for this host's objects (`web-01`); may be empty.
        prefix: String,
        /// Endpoint URL (`http://127.0.0.1:9000`); `None` means AWS (or `AWS_ENDPOINT_URL`).
        endpoint: Option<String>,
        /// Region (`us-east-1`; MinIO and moto accept any).
        region: String,
        /// Path-style URLs (`endpoint/bucket/key`), as MinIO and moto want; else virtual-host.
        path_style: bool,
        /// Access key id; `None` (with the secret) uses the AWS environment and profile.
        access_key_id: Option<String>,
        /// Secret access key; `None` (with the id) uses the AWS environment and profile.
        secret_access_key: Option<Secret>,
        /// S3 Object Lock: every object written is locked this long (`lock.rs`).
        object_lock: Option<ObjectLock>,
    },
}

impl StorageSpec {
    /// The S3 Object Lock every object written here gets, when configured.
    pub fn object_lock(&self) -> Option<ObjectLock> {
        match self {
            StorageSpec::S3 { object_lock, .. } => *object_lock,
            StorageSpec::Local { .. } => None,
        }
    }

    /// The same storage under another key prefix (another host's objects).
    pub fn with_prefix(mut self, new: String) -> StorageSpec {
        match &mut self {
            StorageSpec::Local { prefix, .. } | StorageSpec::S3 { prefix, .. } => *prefix = new,
        }
        self
    }
}

/// What a finished upload stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutInfo {
    /// The key, relative to the storage prefix.
    pub key: String,
    /// Number of bytes stored.
    pub size: u64,
    /// SHA-256 of the stored bytes, lowercase hex.
    pub sha256: String,
}

/// One object found by [`Storage::list`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectInfo {
    /// The key, relative to the storage prefix.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
}

/// A boxed future returning a storage result; what [`Backend`] methods return.
pub type StorageFuture<'a, T> = BoxFuture<'a, Result<T, StorageError>>;

/// One storage backend. Keys are valid ([`validate_key`]) and relative to the prefix, which
/// the backend joins in itself. A new kind of storage implements it (see docs/ARCHITECTURE.md);
/// [`Storage::map_backend`] wraps one, e.g. to observe or delay calls in a test.
pub trait Backend: Send + Sync + 'static {
    /// Human description, without secrets: `s3://bucket/prefix/ at endpoint`.
    fn describe(&self) -> &str;
    /// Lists the prefix (non-recursively, one entry is enough) to test access.
    fn check_access(&self) -> StorageFuture<'_, ()>;
    /// Starts an upload that becomes visible on `finish`.
    fn writer<'a>(&'a self, key: &'a str) -> StorageFuture<'a, Box<dyn BackendWriter>>;
    /// Opens an object for streaming reads; [`StorageError::NotFound`] if missing.
    fn reader<'a>(&'a self, key: &'a str) -> StorageFuture<'a, ObjectReader>;
    /// All objects whose key starts with `prefix`, in any order.
    fn list<'a>(&'a self, prefix: &'a str) -> StorageFuture<'a, Vec<ObjectInfo>>;
    /// Deletes an object; a missing object is not an error.
    fn delete<'a>(&'a self, key: &'a str) -> StorageFuture<'a, ()>;
    /// Whether an object exists.
    fn exists<'a>(&'a self, key: &'a str) -> StorageFuture<'a, bool>;
    /// The same place seen through object versions: each key's newest version that is not a
    /// delete marker. `None` where there are no versions (a directory).
    fn undeleted(&self) -> Option<Arc<dyn Backend>> {
        None
    }
    /// This place with the bodies of its uploads paced by `bucket` as they go on the wire
    /// (`wire.rs`). `None` where the backend cannot: the bytes are then paced as they enter
    /// its writers (`rate.rs`).
    fn paced_on_the_wire(&self, bucket: Arc<rate::Bucket>) -> Option<Arc<dyn Backend>> {
        let _ = bucket;
        None
    }
}

/// The backend half of an [`ObjectWriter`]: receives the bytes, makes them visible or not.
pub trait BackendWriter: Send {
    /// Takes the next bytes of the object.
    fn write(&mut self, data: Bytes) -> StorageFuture<'_, ()>;
    /// Makes the object visible. On error nothing is visible (the backend aborts itself).
    fn finish(self: Box<Self>) -> StorageFuture<'static, ()>;
    /// Discards everything written; nothing becomes visible.
    fn abort(self: Box<Self>) -> StorageFuture<'static, ()>;
}
// A backend writer dropped unfinished must clean up in its `Drop`, without blocking:
// spawn on the runtime what must be awaited.

/// A storage location: cheap to clone, shareable between tasks.
#[derive(Clone)]
pub struct Storage {
    backend: Arc<dyn Backend>,
    /// Client-side encryption (`crypt.rs`), when configured.
    crypt: Option<Arc<crypt::Crypt>>,
    /// The priority uploads hash and encrypt big chunks at (`object.rs`); `None`: the
    /// blocking pool's.
    gentle: Option<Priority>,
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Storage").field(&self.describe()).finish()
    }
}

impl Storage {
    /// Chooses and configures the backend for `spec`. Does no I/O; errors are settings that
    /// cannot work (bad prefix, empty bucket, unparsable endpoint).
    pub fn open(spec: &StorageSpec) -> Result<Storage, StorageError> {
        let backend: Arc<dyn Backend> = match spec {
            StorageSpec::Local { path, prefix } => {
                Arc::new(local::LocalBackend::new(path, prefix)?)
            }
            StorageSpec::S3 {
                bucket,
                prefix,
                endpoint,
                region,
                path_style,
                access_key_id,
                secret_access_key,
                object_lock,
            } => {
                let backend = s3::open(&s3::S3Settings {
                    bucket,
                    prefix,
                    endpoint: endpoint.as_deref(),
                    region,
                    path_style: *path_style,
                    access_key_id: access_key_id.as_deref(),
                    secret_access_key: secret_access_key.as_ref(),
                    object_lock: *object_lock,
                })?;
                // (Only with a lock: the client opens this storage without one.)
                let bucket = match object_lock {
                    Some(_) => multipart::Uploads::open(spec)?,
                    None => None,
                };
                match bucket {
                    Some(bucket) => Arc::new(backend.deleting_versions(bucket)),
                    None => Arc::new(backend),
                }
            }
        };
        Ok(Storage {
            backend,
            crypt: None,
            gentle: None,
        })
    }

    /// An empty in-memory storage, for tests of code that uses storage. Clones share it.
    pub fn in_memory() -> Storage {
        Storage {
            backend: Arc::new(opendal_backend::memory()),
            crypt: None,
            gentle: None,
        }
    }

    /// This storage with its backend replaced by `f(backend)` (encryption is kept above it):
    /// the seam for decorating a backend, as tests do to pause a run at a chosen read.
    pub fn map_backend(self, f: impl FnOnce(Arc<dyn Backend>) -> Arc<dyn Backend>) -> Storage {
        Storage {
            backend: f(self.backend),
            crypt: self.crypt,
            gentle: self.gentle,
        }
    }

    /// This storage with the CPU work of its uploads (hashing, encryption) done at `priority`
    /// (the configuration's `[agent] io_priority` and `nice`), as the backup's readers do.
    pub fn with_priority(mut self, priority: Priority) -> Storage {
        self.gentle = Some(priority);
        self
    }

    /// This storage with its uploads and downloads paced by `limits` (`rate.rs`): one bucket
    /// per direction for this place, shared by every `Storage` of the process that opens it.
    /// Encryption stays above, so the limits count the bytes as stored.
    pub fn with_rate_limits(self, limits: RateLimits) -> Storage {
        if limits == RateLimits::default() {
            return self;
        }
        self.map_backend(|inner| Arc::new(rate::Limited::new(inner, limits)))
    }

    /// Where this storage is, for messages: `s3://backups/web-01/ at http://127.0.0.1:9000`
    /// or `local directory /srv/backups/web-01/`. Never contains a secret.
    pub fn describe(&self) -> String {
        self.backend.describe().to_string()
    }

    /// Tests that the prefix can be listed (for `check-config --connect`).
    pub async fn check_access(&self) -> Result<(), StorageError> {
        self.backend.check_access().await
    }

    /// Starts a streaming upload to `key`; nothing is visible until [`ObjectWriter::finish`].
    /// With encryption on, the bytes are encrypted unless [`stays_plaintext`] exempts `key`.
    pub async fn writer(&self, key: &str) -> Result<ObjectWriter, StorageError> {
        validate_key(key)?;
        let inner = self.backend.writer(key).await?;
        let sealer = self.encryptor_for(key);
        Ok(ObjectWriter::new(key, inner, sealer, self.gentle))
    }

    /// Uploads `data` as `key` in one go.
    pub async fn put_bytes(&self, key: &str, data: Bytes) -> Result<PutInfo, StorageError> {
        let mut writer = self.writer(key).await?;
        writer.write(data).await?;
        writer.finish().await
    }

    /// Opens `key` for streaming reads; [`StorageError::NotFound`] if it does not exist.
    /// Yields plaintext: an age-encrypted object is decrypted with the configured identity.
    pub async fn reader(&self, key: &str) -> Result<ObjectReader, StorageError> {
        let stored = self.raw_reader(key).await?;
        self.plaintext(key, stored).await
    }

    /// Reads the whole object `key` into memory (for small objects: manifests, markers).
    pub async fn get_bytes(&self, key: &str) -> Result<Bytes, StorageError> {
        let mut reader = self.reader(key).await?;
        let mut buf = Vec::with_capacity(reader.size().unwrap_or(0).min(64 << 20) as usize);
        reader.read_to_end(&mut buf).await.map_err(|err| {
            error::ErrorContext::new(self.backend.describe(), Op::Download, key)
                .failed(err, "retry; if it persists, check the storage's health")
        })?;
        Ok(Bytes::from(buf))
    }

    /// [`get_bytes`](Self::get_bytes) for an object others may have written: refuses one of
    /// more than `max` bytes (plaintext) without reading or allocating more than that, so a
    /// forged object cannot make its reader allocate gigabytes. `max` is what an object of
    /// that kind never exceeds (src/media/limits.rs).
    pub async fn get_bytes_max(&self, key: &str, max: u64) -> Result<Bytes, StorageError> {
        let ctx = error::ErrorContext::new(self.backend.describe(), Op::Download, key);
        let too_big = |size: u64| {
            ctx.failed(
                format!("it is {size} bytes or more, beyond the {max} bytes an object of its kind ever has; refused"),
                "the object was not written by opsagent or was tampered with: restore an older snapshot",
            )
        };
        let reader = self.reader(key).await?;
        let size = reader.size().unwrap_or(0);
        if size > max {
            return Err(too_big(size));
        }
        let mut buf = Vec::with_capacity(size as usize);
        reader
            .take(max + 1)
            .read_to_end(&mut buf)
            .await
            .map_err(|err| ctx.failed(err, "retry; if it persists, check the storage's health"))?;
        if buf.len() as u64 > max {
            return Err(too_big(buf.len() as u64));
        }
        Ok(Bytes::from(buf))
    }

    /// All objects whose key starts with `prefix` (a string prefix such as `mysql/` or
    /// `mysql/main/sh`; empty for everything), recursively, sorted by key. Keys are relative
    /// to the storage prefix.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        key::validate_list_prefix(prefix)?;
        let mut objects = self.backend.list(prefix).await?;
        objects.retain(|o| o.key.starts_with(prefix));
        objects.sort();
        Ok(objects)
    }

    /// Deletes `key`; deleting a missing key is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        validate_key(key)?;
        self.backend.delete(key).await
    }

    /// This storage seen through object versions: what it held before someone hid its objects
    /// behind delete markers (a leaked key can, even when object lock forbids deleting data).
    /// Read-only use: for a restore. `None` for a directory.
    pub fn undeleted(&self) -> Option<Storage> {
        Some(Storage {
            backend: self.backend.undeleted()?,
            crypt: self.crypt.clone(),
            gentle: self.gentle,
        })
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        validate_key(key)?;
        self.backend.exists(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_memory_round_trip() {
        let storage = Storage::in_memory();
        assert_eq!(storage.describe(), "in-memory storage");
        let info = storage
            .put_bytes("a/b c", Bytes::from_static(b"hello"))
            .await;
        assert_eq!(info.unwrap().size, 5);
        let mut writer = storage.writer("a/streamed").await.unwrap();
        writer.write(Bytes::from_static(b"x")).await.unwrap();
        writer.write(Bytes::from(vec![7u8; 9 << 20])).await.unwrap();
        assert_eq!(writer.finish().await.unwrap().size, (9 << 20) + 1);
        drop(storage.writer("a/dropped").await.unwrap());
        let listed = storage.clone().list("a/").await.unwrap();
        let keys: Vec<_> = listed.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["a/b c", "a/streamed"]);
        assert_eq!(storage.get_bytes("a/b c").await.unwrap(), "hello");
        storage.delete("a/b c").await.unwrap();
        assert!(storage.get_bytes("a/b c").await.unwrap_err().is_not_found());
        assert!(!storage.exists("a/b c").await.unwrap());
    }

    #[tokio::test]
    async fn invalid_keys_rejected_before_io() {
        let storage = Storage::in_memory();
        for key in ["", "/a", "a/../b"] {
            let err = storage.put_bytes(key, Bytes::new()).await.unwrap_err();
            assert!(
                matches!(err, StorageError::InvalidKey { .. }),
                "{key:?}: {err}"
            );
        }
        assert!(storage.list("/").await.is_err());
    }
}

//! The caller's side of one object: [`ObjectWriter`] (streaming upload; counts and hashes the
//! bytes as they pass) and [`ObjectReader`] (streaming download, a tokio `AsyncRead`).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures::Stream;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

use super::crypt::Encryptor;
use super::{BackendWriter, PutInfo, StorageError};
use crate::priority::Priority;

/// Chunks at least this big are hashed on the blocking pool, not on the async worker.
const HASH_OFFLOAD_BYTES: usize = 1 << 20;

/// A streaming upload of one object, from [`super::Storage::writer`]. With encryption on, the
/// bytes are encrypted first; size and hash are then those of the stored ciphertext.
///
/// Memory stays bounded whatever the object size. The object becomes visible only when
/// [`finish`](Self::finish) succeeds. [`abort`](Self::abort), a failed `finish`, or dropping
/// the writer unfinished leaves nothing behind: no object, no open multipart upload, no temp
/// file. (A drop can only start the cleanup; it runs in the background, best effort.)
pub struct ObjectWriter {
    key: String,
    inner: Option<Box<dyn BackendWriter>>,
    encryptor: Option<Encryptor>,
    hasher: Sha256,
    size: u64,
    /// The priority big chunks are hashed and encrypted at ([`offload`]).
    gentle: Option<Priority>,
}

impl ObjectWriter {
    pub(crate) fn new(
        key: &str,
        inner: Box<dyn BackendWriter>,
        encryptor: Option<Encryptor>,
        gentle: Option<Priority>,
    ) -> Self {
        ObjectWriter {
            key: key.to_string(),
            inner: Some(inner),
            encryptor,
            hasher: Sha256::new(),
            size: 0,
            gentle,
        }
    }

    /// The key being written, relative to the storage prefix.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Bytes stored so far (ciphertext when encrypted).
    pub fn written(&self) -> u64 {
        self.size
    }

    /// Appends `data` to the object. Waits while the backend is behind (back-pressure).
    /// After an error the upload cannot continue: call [`abort`](Self::abort) (or drop it).
    pub async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        if data.is_empty() {
            return Ok(());
        }
        let data = self.seal(data).await;
        self.store(data).await
    }

    /// Hashes, counts and hands `data` (as stored) to the backend.
    async fn store(&mut self, data: Bytes) -> Result<(), StorageError> {
        if data.is_empty() {
            return Ok(());
        }
        self.hash(&data).await;
        self.size += data.len() as u64;
        let inner = self
            .inner
            .as_mut()
            .expect("writer is live until finish/abort");
        inner.write(data).await
    }

    /// Encrypts `data` when encryption is on (big chunks on the blocking pool).
    async fn seal(&mut self, data: Bytes) -> Bytes {
        let Some(encryptor) = self.encryptor.as_mut() else {
            return data;
        };
        if data.len() < HASH_OFFLOAD_BYTES {
            return encryptor.push(&data);
        }
        let mut encryptor = self.encryptor.take().expect("checked above");
        let (encryptor, sealed) = offload(self.gentle, move || {
            let sealed = encryptor.push(&data);
            (encryptor, sealed)
        })
        .await;
        self.encryptor = Some(encryptor);
        sealed
    }

    async fn hash(&mut self, data: &Bytes) {
        if data.len() < HASH_OFFLOAD_BYTES {
            self.hasher.update(data);
            return;
        }
        let mut hasher = std::mem::take(&mut self.hasher);
        let chunk = data.clone();
        self.hasher = offload(self.gentle, move || {
            hasher.update(&chunk);
            hasher
        })
        .await;
    }

    /// Completes the upload: the object becomes visible. Returns its size and SHA-256.
    pub async fn finish(mut self) -> Result<PutInfo, StorageError> {
        if let Some(encryptor) = self.encryptor.take() {
            self.store(encryptor.finish()).await?;
        }
        let inner = self
            .inner
            .take()
            .expect("writer is live until finish/abort");
        inner.finish().await?;
        let sha256 = hex::encode(std::mem::take(&mut self.hasher).finalize());
        tracing::debug!(key = %self.key, size = self.size, %sha256, "object uploaded");
        Ok(PutInfo {
            key: std::mem::take(&mut self.key),
            size: self.size,
            sha256,
        })
    }

    /// Discards the upload: nothing becomes visible, server-side parts are deleted.
    pub async fn abort(mut self) -> Result<(), StorageError> {
        let inner = self
            .inner
            .take()
            .expect("writer is live until finish/abort");
        inner.abort().await
    }
}

impl std::fmt::Debug for ObjectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectWriter")
            .field("key", &self.key)
            .field("written", &self.size)
            .finish_non_exhaustive()
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            tracing::warn!(
                key = %self.key,
                written = self.size,
                "upload dropped before finish; aborting it so nothing is left behind"
            );
            // The backend writer's own `Drop` aborts (spawned where it must wait).
            drop(inner);
        }
    }
}

/// Runs `work` off the async workers: on a thread of its own at `gentle` (lowered for good;
/// the thread ends with the work), so a backup's hashing and encryption take the CPU only as
/// its readers do; on the blocking pool without one, or when no thread can be made.
async fn offload<T: Send + 'static>(
    gentle: Option<Priority>,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let slot = Arc::new(Mutex::new(Some(work)));
    if let Some(priority) = gentle {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mine = slot.clone();
        let spawned = std::thread::Builder::new()
            .name("opsagent-hash".into())
            .spawn(move || {
                // A sandbox that forbids lowering it leaves the thread as it is.
                let _ = priority.apply_to_thread();
                let work = mine.lock().expect("offload slot").take();
                if let Some(work) = work {
                    let _ = tx.send(work());
                }
            });
        if spawned.is_ok() {
            return rx
                .await
                .expect("hashing or encrypting a chunk does not panic");
        }
    }
    let work = slot.lock().expect("offload slot").take();
    let work = work.expect("the work is still here: no thread took it");
    tokio::task::spawn_blocking(work)
        .await
        .expect("hashing or encrypting a chunk does not panic")
}

/// A streaming download of one object, from [`super::Storage::reader`]. Read it with
/// `tokio::io::AsyncReadExt`. I/O errors name the backend and the key.
pub struct ObjectReader {
    inner: Pin<Box<dyn AsyncRead + Send>>,
    size: Option<u64>,
    /// "cannot download `key` from backend", the start of every error message.
    what: String,
}

impl ObjectReader {
    /// A reader over `inner`; `what` starts the message of every I/O error (none when empty).
    pub(crate) fn new(
        inner: impl AsyncRead + Send + 'static,
        size: Option<u64>,
        what: String,
    ) -> Self {
        ObjectReader {
            inner: Box::pin(inner),
            size,
            what,
        }
    }

    /// A reader over a stream of byte chunks (what opendal yields).
    pub(crate) fn from_stream<S>(stream: S, size: Option<u64>, what: String) -> Self
    where
        S: Stream<Item = io::Result<Bytes>> + Send + 'static,
    {
        let reader = StreamReader {
            stream: Box::pin(stream),
            chunk: Bytes::new(),
        };
        Self::new(reader, size, what)
    }

    /// The object's size in bytes, when the backend said.
    pub fn size(&self) -> Option<u64> {
        self.size
    }
}

impl std::fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReader")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl AsyncRead for ObjectReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let result = ready!(self.inner.as_mut().poll_read(cx, buf));
        if self.what.is_empty() {
            // A decorating reader whose inner errors are already named (`crypt.rs`).
            return Poll::Ready(result);
        }
        Poll::Ready(
            result.map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", self.what))),
        )
    }
}

/// Adapts a stream of `Bytes` to `AsyncRead` (as tokio-util's `StreamReader` does).
struct StreamReader {
    stream: Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>,
    chunk: Bytes,
}

impl AsyncRead for StreamReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.chunk.is_empty() {
            match ready!(self.stream.as_mut().poll_next(cx)) {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(err)) => return Poll::Ready(Err(err)),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = self.chunk.len().min(buf.remaining());
        buf.put_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// (policy, nice) of the calling thread.
    fn policy_and_nice() -> (i32, i32) {
        // SAFETY: plain syscalls about the calling thread.
        unsafe {
            (
                libc::sched_getscheduler(0),
                libc::getpriority(libc::PRIO_PROCESS, 0),
            )
        }
    }

    #[tokio::test]
    async fn big_chunks_are_hashed_at_the_given_priority_on_a_thread_of_their_own() {
        use crate::priority::{Cpu, IoClass};
        let base = policy_and_nice();
        let idle = Priority {
            io: IoClass::Idle,
            cpu: Cpu::Idle,
        };
        assert_eq!(
            offload(Some(idle), policy_and_nice).await.0,
            libc::SCHED_IDLE
        );
        let nice = Priority {
            io: IoClass::BestEffort,
            cpu: Cpu::Nice(7),
        };
        let niced = (libc::SCHED_OTHER, base.1.max(7));
        assert_eq!(offload(Some(nice), policy_and_nice).await, niced);
        // No priority: the blocking pool, left as it is; the runtime's own thread untouched.
        assert_eq!(offload(None, policy_and_nice).await, base);
        assert_eq!(policy_and_nice(), base);
    }

    #[tokio::test]
    async fn stream_reader_concatenates_chunks() {
        let chunks = vec![
            Ok(Bytes::from_static(b"hello ")),
            Ok(Bytes::new()),
            Ok(Bytes::from_static(b"world")),
        ];
        let mut reader =
            ObjectReader::from_stream(futures::stream::iter(chunks), Some(11), "x".into());
        let mut out = String::new();
        reader.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
        assert_eq!(reader.size(), Some(11));
    }

    #[tokio::test]
    async fn stream_reader_passes_errors() {
        let chunks = vec![Ok(Bytes::from_static(b"ab")), Err(io::Error::other("boom"))];
        let mut reader = ObjectReader::from_stream(
            futures::stream::iter(chunks),
            None,
            "cannot download `k`".into(),
        );
        let mut out = Vec::new();
        let err = reader.read_to_end(&mut out).await.unwrap_err();
        assert_eq!(err.to_string(), "cannot download `k`: boom");
        assert_eq!(out, b"ab");
    }
}

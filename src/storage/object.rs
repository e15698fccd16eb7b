//! The caller's side of one object: [`ObjectWriter`] (streaming upload; counts and hashes the
//! bytes as they pass) and [`ObjectReader`] (streaming download, a tokio `AsyncRead`).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures::Stream;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

use super::crypt::Encryptor;
use super::{BackendWriter, PutInfo, StorageError};

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
}

impl ObjectWriter {
    pub(crate) fn new(
        key: &str,
        inner: Box<dyn BackendWriter>,
        encryptor: Option<Encryptor>,
    ) -> Self {
        ObjectWriter {
            key: key.to_string(),
            inner: Some(inner),
            encryptor,
            hasher: Sha256::new(),
            size: 0,
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
        let (encryptor, sealed) = tokio::task::spawn_blocking(move || {
            let sealed = encryptor.push(&data);
            (encryptor, sealed)
        })
        .await
        .expect("encrypting a chunk does not panic");
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
        self.hasher = tokio::task::spawn_blocking(move || {
            hasher.update(&chunk);
            hasher
        })
        .await
        .expect("hashing a chunk does not panic");
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

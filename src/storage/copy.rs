//! Copying an object, as stored, from one storage to another (copies of snapshots to a second
//! storage): the bytes are streamed verbatim — an encrypted object stays encrypted, nothing is
//! decrypted or re-encrypted — in chunks, so memory stays bounded whatever the object size.

use super::error::ErrorContext;
use super::{validate_key, ObjectWriter, Op, PutInfo, Storage, StorageError};
use bytes::BytesMut;
use tokio::io::AsyncReadExt;

/// The most read from the source before it is handed to the target's writer.
const CHUNK: usize = 1 << 20;

impl Storage {
    /// Copies `key`'s stored bytes to the same key in `target`, streaming; returns what
    /// `target` stored (its size and SHA-256 are those of the bytes read here). Nothing is
    /// visible in `target` unless every byte arrived.
    pub async fn copy_to(&self, key: &str, target: &Storage) -> Result<PutInfo, StorageError> {
        validate_key(key)?;
        let mut src = self.raw_reader(key).await?;
        let expected = src.size();
        let inner = target.backend.writer(key).await?;
        let mut out = ObjectWriter::new(key, inner, None, target.gentle);
        loop {
            let mut buf = BytesMut::with_capacity(CHUNK);
            let n = match (&mut src).take(CHUNK as u64).read_buf(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = out.abort().await;
                    return Err(
                        ErrorContext::new(self.backend.describe(), Op::Download, key)
                            .failed(e, "retry; if it persists, check the storage's health"),
                    );
                }
            };
            if n == 0 {
                break;
            }
            if let Err(e) = out.write(buf.freeze()).await {
                let _ = out.abort().await;
                return Err(e);
            }
        }
        if let Some(size) = expected.filter(|s| *s != out.written()) {
            let got = out.written();
            let _ = out.abort().await;
            return Err(
                ErrorContext::new(self.backend.describe(), Op::Download, key).failed(
                    format!("read {got} bytes of an object of {size}"),
                    "the object changed or the connection broke while it was copied; retry",
                ),
            );
        }
        out.finish().await
    }
}

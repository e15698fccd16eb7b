//! S3 Object Lock and media deduplication: a new snapshot uses packs that earlier runs wrote,
//! whose locks end sooner than its own. Before the snapshot is committed, the lock of every
//! pack it lists is pushed to `days` from now (`PutObjectRetention`), so a leaked key cannot
//! delete a pack the newest snapshot needs. Only packs are shared between snapshots; trees,
//! dumps and manifests are written by their own run and locked as they are written.

use crate::media::{keys as media_keys, Id};
use crate::storage::multipart::Uploads;
use crate::storage::{StorageError, StorageSpec};
use futures::StreamExt;

/// Requests in flight at once.
const CONCURRENCY: usize = 8;

/// Extends the lock of `packs` of `job` in `spec` (a storage with `object_lock`; nothing to do
/// otherwise) to `days` from now. Returns how many were extended.
pub async fn extend_packs(
    spec: &StorageSpec,
    job: &str,
    packs: &[Id],
) -> Result<usize, StorageError> {
    let Some(lock) = spec.object_lock() else {
        return Ok(0);
    };
    let Some(bucket) = Uploads::open(spec)? else {
        return Ok(0);
    };
    let until = lock.until(chrono::Utc::now());
    let bucket = std::sync::Arc::new(bucket);
    let requests: Vec<futures::future::BoxFuture<'static, Result<(), StorageError>>> = (packs
        .iter())
    .map(|p| {
        let (bucket, key) = (bucket.clone(), media_keys::pack_key(job, p));
        Box::pin(async move { bucket.extend_lock(&key, lock, until).await }) as _
    })
    .collect();
    let mut results = futures::stream::iter(requests).buffer_unordered(CONCURRENCY);
    let mut done = 0;
    while let Some(r) = results.next().await {
        r?;
        done += 1;
    }
    Ok(done)
}

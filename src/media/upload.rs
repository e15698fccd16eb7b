//! Pack uploads of a media backup: packs go up as they are finished, a few at a time, and
//! their index entries come back for the run's index object.

use super::backup::EngineError;
use super::index::PackIndex;
use super::keys;
use super::pack::FinishedPack;
use crate::storage::Storage;

/// Pack uploads in flight.
pub(super) const UPLOADS: usize = 2;

/// Uploads packs as they come, [`UPLOADS`] at a time; returns their index entries.
pub(super) async fn upload_packs(
    storage: Storage,
    job: String,
    mut rx: tokio::sync::mpsc::Receiver<FinishedPack>,
) -> Result<Vec<PackIndex>, EngineError> {
    let mut done = Vec::new();
    let mut running = tokio::task::JoinSet::new();
    loop {
        // A free slot first, then the next pack: a pack is taken from the queue only when it
        // can go up at once (not held here while waiting, a fourth pack in memory).
        while running.len() >= UPLOADS {
            done.push(joined(running.join_next().await)?);
        }
        let Some(pack) = rx.recv().await else {
            break;
        };
        let storage = storage.clone();
        let key = keys::pack_key(&job, &pack.id);
        running.spawn(async move {
            let size = pack.bytes.len() as u64;
            storage.put_bytes(&key, pack.bytes.into()).await?;
            Ok::<_, EngineError>(PackIndex {
                id: pack.id,
                size,
                blobs: pack.blobs,
            })
        });
    }
    while let Some(r) = running.join_next().await {
        done.push(joined(Some(r))?);
    }
    Ok(done)
}

fn joined(
    r: Option<Result<Result<PackIndex, EngineError>, tokio::task::JoinError>>,
) -> Result<PackIndex, EngineError> {
    match r {
        Some(Ok(x)) => x,
        Some(Err(e)) => Err(EngineError::PackUploadTask(e)),
        None => Err(EngineError::NoUploadRunning),
    }
}

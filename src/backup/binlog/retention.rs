//! Retention of the binary log archive: a segment stays while a kept dump may need it to roll
//! forward, i.e. every segment of the oldest file a kept dump of the job stands in, and after.
//! Older files' segments are deleted (manifest first, so no listed segment lacks its data),
//! after the dumps themselves were forgotten.

use crate::media::limits::MAX_MANIFEST;
use crate::snapshot::binlog as segment;
use crate::snapshot::keys::SnapshotKey;
use crate::snapshot::manifest::Manifest;
use crate::snapshot::Env;
use crate::storage::StorageError;

/// Deletes the segments of `job` that none of the `kept` snapshots needs; how many went. A kept
/// dump that cannot be read keeps everything (it may be the oldest).
pub async fn prune_segments(
    env: &Env,
    job: &str,
    kept: &[&SnapshotKey],
) -> Result<usize, StorageError> {
    let mut oldest: Option<String> = None;
    for k in kept {
        let bytes = env.storage.get_bytes_max(&k.key, MAX_MANIFEST).await?;
        let Ok(m) = Manifest::parse(&k.key, &bytes) else {
            return Ok(0);
        };
        if let Some(b) = m.binlog {
            oldest = Some(oldest.map_or(b.file.clone(), |o| o.min(b.file)));
        }
    }
    let Some(oldest) = oldest else {
        return Ok(0);
    };
    let mut deleted = 0;
    for s in segment::list(&env.storage, job).await? {
        if s.file >= oldest {
            continue;
        }
        let (object, manifest) = segment::keys(job, &s.file, s.start, s.end);
        env.storage.delete(&manifest).await?;
        env.storage.delete(&object).await?;
        deleted += 1;
    }
    if deleted > 0 {
        tracing::info!(job, segments = deleted, before = %oldest, "binary log segments no kept dump needs deleted");
    }
    Ok(deleted)
}

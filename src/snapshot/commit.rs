//! Committing a snapshot, for every kind of job: the manifest is written last, after every byte
//! of data is stored and checked; the catalog row follows (and can be rebuilt from manifests).

use super::manifest::Manifest;
use super::Env;
use crate::catalog::SnapshotRow;
use crate::storage::StorageError;
use bytes::Bytes;

/// Commits a snapshot: writes its manifest (the commit point), then records it in the catalog
/// (a catalog failure is only logged: `snapshots --refresh` rebuilds the row from the manifest).
pub async fn commit(env: &Env, manifest: &Manifest, run_id: i64) -> Result<(), StorageError> {
    let json = serde_json::to_vec_pretty(manifest).expect("manifest serializes");
    // Manifests are plaintext: an encrypted snapshot's table names and row counts stay in the
    // local catalog only (the anomaly guard reads them there; after a refresh it compares
    // sizes).
    let stored = match (&manifest.encryption, &manifest.tables) {
        (Some(_), Some(_)) => {
            let bare = Manifest {
                tables: None,
                ..manifest.clone()
            };
            serde_json::to_vec_pretty(&bare).expect("manifest serializes")
        }
        _ => json.clone(),
    };
    env.storage
        .put_bytes(&manifest.key(), Bytes::from(stored))
        .await?;
    let row = snapshot_row(manifest, String::from_utf8(json).expect("json is utf-8"));
    if let Err(e) = env.catalog.add_snapshot(&row, Some(run_id)) {
        tracing::warn!(error = %e, "snapshot committed to storage but not to the catalog; `opsagent snapshots --refresh` fixes it");
    }
    Ok(())
}

/// The catalog row for a manifest.
pub fn snapshot_row(m: &Manifest, json: String) -> SnapshotRow {
    SnapshotRow {
        id: m.id.clone(),
        job: m.job.clone(),
        kind: m.kind.clone(),
        host: m.host.clone(),
        item: m.item.clone(),
        started_at: m.started_at,
        finished_at: m.finished_at,
        size: m.media.as_ref().map_or(m.raw_size(), |s| s.bytes),
        stored_size: m.stored_size() + m.media.as_ref().map_or(0, |s| s.new_stored),
        manifest_key: m.key(),
        manifest: json,
    }
}

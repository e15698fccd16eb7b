//! Rebuilds the catalog's snapshot table from the manifests in storage (`snapshots --refresh`),
//! so a new machine, or a lost state_dir, finds every backup the bucket holds.

use super::commit::snapshot_row;
use super::keys::manifests_prefix;
use super::manifest::Manifest;
use crate::catalog::{Catalog, SnapshotRow};
use crate::media::limits::MAX_MANIFEST;
use crate::storage::{Storage, StorageError};

/// What a refresh found.
#[derive(Debug, Default)]
pub struct Refreshed {
    /// Snapshots now in the catalog.
    pub snapshots: usize,
    /// Manifests that could not be parsed, with the reason (they name their key).
    pub bad: Vec<String>,
}

/// Reads every manifest under the storage prefix and replaces the catalog's snapshot table.
pub async fn refresh(storage: &Storage, catalog: &Catalog) -> Result<Refreshed, RefreshError> {
    let (rows, bad) = read_rows(storage, None).await?;
    catalog.replace_snapshots(&rows)?;
    Ok(Refreshed {
        snapshots: rows.len(),
        bad,
    })
}

/// The catalog rows of every manifest of `job` (or of all jobs) in `storage`, newest first,
/// and the reasons of those that do not pass their checks.
pub async fn read_rows(
    storage: &Storage,
    job: Option<&str>,
) -> Result<(Vec<SnapshotRow>, Vec<String>), StorageError> {
    let listed = storage.list(&manifests_prefix(job)).await?;
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    for o in listed.iter().filter(|o| o.key.ends_with(".json")) {
        let bytes = storage.get_bytes_max(&o.key, MAX_MANIFEST).await?;
        match Manifest::parse(&o.key, &bytes) {
            Ok(m) => rows.push(snapshot_row(
                &m,
                String::from_utf8_lossy(&bytes).into_owned(),
            )),
            Err(e) => bad.push(e.to_string()),
        }
    }
    rows.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
    Ok((rows, bad))
}

/// A refresh failed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// Listing or reading storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Writing the catalog failed.
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
}

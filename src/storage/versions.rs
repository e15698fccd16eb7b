//! Object versions, on a bucket that keeps them (object lock turns versioning on).
//!
//! Two uses. A restore after someone hid every object behind a delete marker (a leaked key can
//! do that even when object lock forbids deleting data) reads each key's newest version that is
//! not a delete marker: [`undeleted`] lists them and [`newest`] finds one key's. And prune on a
//! locked bucket removes every version of a key ([`delete_all`]): a plain delete only adds a
//! delete marker there, which hides the data but keeps paying for it.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use opendal::{EntryMode, Operator};

use super::multipart::Uploads;
use super::StorageError;

/// One key's newest version that is not a delete marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Undeleted {
    /// The full path (storage prefix included).
    pub path: String,
    pub size: u64,
    pub version: String,
}

/// One version or delete marker, as the listing gives it.
struct Seen {
    deleted: bool,
    current: bool,
    modified: Option<opendal::raw::Timestamp>,
    size: u64,
    version: Option<String>,
}

/// Every version and delete marker under `path`, grouped by key.
async fn all_versions(op: &Operator, path: &str) -> opendal::Result<BTreeMap<String, Vec<Seen>>> {
    let mut lister = (op.lister_with(path).recursive(true))
        .versions(true)
        .deleted(true)
        .await?;
    let mut by_key: BTreeMap<String, Vec<Seen>> = BTreeMap::new();
    while let Some(entry) = lister.try_next().await? {
        let meta = entry.metadata();
        if meta.mode() != EntryMode::FILE && !meta.is_deleted() {
            continue;
        }
        by_key
            .entry(entry.path().to_string())
            .or_default()
            .push(Seen {
                deleted: meta.is_deleted(),
                current: meta.is_current() == Some(true),
                modified: meta.last_modified(),
                size: meta.content_length(),
                version: meta.version().map(str::to_string),
            });
    }
    Ok(by_key)
}

/// The newest of `seen` that is not a delete marker (the current one on a tie).
fn pick(path: String, seen: &[Seen]) -> Option<Undeleted> {
    let best = (seen.iter())
        .filter(|s| !s.deleted && s.version.is_some())
        .max_by_key(|s| (s.modified, s.current))?;
    Some(Undeleted {
        path,
        size: best.size,
        version: best.version.clone()?,
    })
}

/// Under `path`: each key's newest version that is not a delete marker, and how many keys are
/// hidden (their current entry is a delete marker).
pub(crate) async fn undeleted(
    op: &Operator,
    path: &str,
) -> opendal::Result<(Vec<Undeleted>, usize)> {
    let by_key = all_versions(op, path).await?;
    let hidden = (by_key.values())
        .filter(|seen| !seen.iter().any(|s| s.current && !s.deleted))
        .count();
    let found = (by_key.into_iter())
        .filter_map(|(path, seen)| pick(path, &seen))
        .collect();
    Ok((found, hidden))
}

/// The newest version of exactly `path` that is not a delete marker.
pub(crate) async fn newest(op: &Operator, path: &str) -> opendal::Result<Option<Undeleted>> {
    let mut by_key = all_versions(op, path).await?;
    Ok(by_key
        .remove(path)
        .and_then(|seen| pick(path.to_string(), &seen)))
}

/// Deletes every version and delete marker of exactly `path` (`key` relative to the prefix)
/// that is not locked any more; a version still locked (its lock read from `bucket`) stays,
/// for a later prune. Prune deletes a pack only after every snapshot that used it is gone,
/// and so unlocked; what else it deletes was locked once, when written.
pub(crate) async fn delete_unlocked(
    op: &Operator,
    path: &str,
    key: &str,
    bucket: &Uploads,
) -> Result<(), DeleteError> {
    let mut by_key = all_versions(op, path).await?;
    let now = chrono::Utc::now();
    for seen in by_key.remove(path).unwrap_or_default() {
        let Some(v) = &seen.version else { continue };
        if !seen.deleted && bucket.locked_until(key, v).await?.is_some_and(|t| t > now) {
            continue;
        }
        op.delete_with(path).version(v).await?;
    }
    Ok(())
}

/// Why [`delete_unlocked`] failed.
pub(crate) enum DeleteError {
    Opendal(opendal::Error),
    Storage(StorageError),
}

impl From<opendal::Error> for DeleteError {
    fn from(e: opendal::Error) -> Self {
        DeleteError::Opendal(e)
    }
}

impl From<StorageError> for DeleteError {
    fn from(e: StorageError) -> Self {
        DeleteError::Storage(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(deleted: bool, current: bool, secs: i64, v: &str) -> Seen {
        Seen {
            deleted,
            current,
            modified: Some(opendal::raw::Timestamp::from_second(secs).unwrap()),
            size: 1,
            version: Some(v.to_string()),
        }
    }

    #[test]
    fn newest_version_that_is_not_a_delete_marker() {
        let list = [
            seen(false, false, 10, "a"),
            seen(false, false, 20, "b"),
            seen(true, true, 30, "m"),
        ];
        assert_eq!(pick("k".into(), &list).unwrap().version, "b");
        assert!(pick("k".into(), &[seen(true, true, 30, "m")]).is_none());
    }
}

//! Segments of the binary log archive: a byte range of one of the server's binary log files,
//! cut at event boundaries, stored zstd-compressed (and encrypted with `[encryption]`) as
//! `binlog/<job>/<file>/<start>-<end>.zst`, then committed by its manifest
//! `binlog/<job>/<file>/<start>-<end>.json` (plaintext, like snapshot manifests): file, byte
//! range, event count, first and last event times, and the SHA-256 of the raw bytes. A segment
//! exists once its manifest does; concatenating a file's segments from position 0 gives the
//! server's file byte for byte (but for the "in use" flag of its first event). A file the
//! server left without ROTATE or STOP (it crashed) gets an end marker once the archive has
//! read past it: a segment of no bytes at the file's end with `ends_file` set.

use crate::storage::{Storage, StorageError};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The largest segment manifest read back (they are a few hundred bytes).
pub const MAX_MANIFEST: u64 = 64 << 10;
/// The manifest format written.
pub const FORMAT: u32 = 1;

/// A committed segment, as its manifest says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// [`FORMAT`].
    pub format: u32,
    /// The job.
    pub job: String,
    /// The host that archived it.
    pub host: String,
    /// The server's binary log file.
    pub file: String,
    /// The first byte's offset in that file (0: the segment starts with the file's magic).
    pub start: u64,
    /// The offset after its last byte.
    pub end: u64,
    /// Whole events in it.
    pub events: u64,
    /// The first and last events' times (the server's clock, whole seconds).
    pub first_event_at: Option<DateTime<Utc>>,
    /// …
    pub last_event_at: Option<DateTime<Utc>>,
    /// Its last event ends the file (ROTATE or STOP): the next file follows without a gap.
    #[serde(default)]
    pub ends_file: bool,
    /// The first and last GTIDs in it (MariaDB `domain-server-seq`, MySQL `uuid:gno`), when
    /// the server writes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_gtid: Option<String>,
    /// …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_gtid: Option<String>,
    /// SHA-256 of the raw bytes (before compression and encryption).
    pub sha256: String,
    /// The stored object.
    pub object: String,
}

impl Segment {
    /// A segment of `file`'s bytes `start..end` for `job` on `host`, with nothing counted yet.
    pub fn new(job: &str, host: &str, file: &str, (start, end): (u64, u64)) -> Segment {
        Segment {
            format: FORMAT,
            job: job.to_string(),
            host: host.to_string(),
            file: file.to_string(),
            start,
            end,
            events: 0,
            first_event_at: None,
            last_event_at: None,
            ends_file: false,
            first_gtid: None,
            last_gtid: None,
            sha256: String::new(),
            object: String::new(),
        }
    }
}

/// Where the archive of `job` is.
pub fn job_prefix(job: &str) -> String {
    format!("binlog/{job}/")
}

/// The keys of a segment: its data object and its manifest.
pub fn keys(job: &str, file: &str, start: u64, end: u64) -> (String, String) {
    let base = format!("{}{file}/{start:012}-{end:012}", job_prefix(job));
    (format!("{base}.zst"), format!("{base}.json"))
}

/// Compresses and stores `raw` (bytes `start..` of `file`, whole events), then its manifest.
pub async fn commit(
    storage: &Storage,
    mut seg: Segment,
    raw: &[u8],
) -> Result<Segment, StorageError> {
    let (object, manifest) = keys(&seg.job, &seg.file, seg.start, seg.end);
    seg.sha256 = hex::encode(Sha256::digest(raw));
    seg.object = object.clone();
    let packed = zstd::bulk::compress(raw, 3).map_err(|e| StorageError::Failed {
        op: crate::storage::Op::Upload,
        backend: storage.describe(),
        key: Some(object.clone()),
        cause: format!("compressing: {e}"),
        hint: "report this as a bug".into(),
    })?;
    storage.put_bytes(&object, Bytes::from(packed)).await?;
    let json = serde_json::to_vec_pretty(&seg).expect("a segment serializes");
    storage.put_bytes(&manifest, Bytes::from(json)).await?;
    Ok(seg)
}

/// Every committed segment of `job` whose manifest reads, in (file, start) order; manifests
/// that do not parse are skipped with a warning (a restore refuses the gap they leave).
pub async fn list(storage: &Storage, job: &str) -> Result<Vec<Segment>, StorageError> {
    let mut out = Vec::new();
    for o in storage.list(&job_prefix(job)).await? {
        if !o.key.ends_with(".json") {
            continue;
        }
        let bytes = storage.get_bytes_max(&o.key, MAX_MANIFEST).await?;
        match serde_json::from_slice::<Segment>(&bytes) {
            Ok(s) if s.job == job && valid_file(&s.file) && (s.end > s.start || end_marker(&s)) => {
                out.push(s)
            }
            Ok(_) => {
                tracing::warn!(key = %o.key, "binlog segment manifest for another job or empty; ignored")
            }
            Err(e) => {
                tracing::warn!(key = %o.key, error = %e, "binlog segment manifest does not parse; ignored")
            }
        }
    }
    out.sort_by(|a, b| (&a.file, a.start).cmp(&(&b.file, b.start)));
    Ok(out)
}

/// An end marker: no bytes, the file ends where the segment before it ended (the server left
/// the file without ROTATE or STOP, e.g. it crashed, and moved on to the next).
pub fn end_marker(s: &Segment) -> bool {
    s.start == s.end && s.events == 0 && s.ends_file && s.start >= 4
}

/// Whether `file` can be a binary log file's name (it becomes a key and a local file name):
/// letters, digits, `.`, `_`, `-`, not starting with a dot, at most 255 bytes.
pub fn valid_file(file: &str) -> bool {
    !file.is_empty()
        && file.len() <= 255
        && !file.starts_with('.')
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Where archiving resumes: the end of the newest committed segment.
pub fn resume_point(segments: &[Segment]) -> Option<(String, u64)> {
    let last = segments.last()?;
    Some((last.file.clone(), last.end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_from_manifests_are_checked() {
        assert!(valid_file("binlog.000042") && valid_file("mysql-bin.000001"));
        for bad in ["", "../x", "a/b", ".hidden", "a b", "x\0"] {
            assert!(!valid_file(bad), "{bad:?}");
        }
    }

    #[test]
    fn keys_sort_by_position() {
        let (a, m) = keys("main", "binlog.000002", 4, 1000);
        assert_eq!(a, "binlog/main/binlog.000002/000000000004-000000001000.zst");
        assert!(m.ends_with("000000000004-000000001000.json"));
        assert!(crate::storage::stays_plaintext(&m) && !crate::storage::stays_plaintext(&a));
    }
}
